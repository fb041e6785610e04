package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	a, b := UniqueName(t, "E2E_x"), UniqueName(t, "E2E_x")
	if a == b {
		t.Fatalf("two names are equal: %s", a)
	}
	if !strings.HasPrefix(a, "e2e-x-testuniquename-") || !valid.MatchString(a) {
		t.Fatalf("bad name %q", a)
	}
	t.Run("Sub/test with spaces+plus", func(t *testing.T) {
		n := UniqueName(t, strings.Repeat("p", 80))
		if !valid.MatchString(n) || len(n) > 100 || !strings.Contains(n, "-sub-test-with-spaces-plus-") {
			t.Fatalf("bad name %q (%d)", n, len(n))
		}
	})
	if n := UniqueName(t, ""); !strings.HasPrefix(n, "testuniquename-") {
		t.Fatalf("bad name %q", n)
	}
}

// TestBed checks that the bed's servers answer (skipped without the bed).
func TestBed(t *testing.T) {
	for _, b := range Kafka(t) {
		c, err := net.DialTimeout("tcp", b, 5*time.Second)
		if err != nil {
			t.Fatalf("kafka %s: %v", b, err)
		}
		c.Close()
	}
	for _, b := range KafkaSCRAM(t) {
		c, err := net.DialTimeout("tcp", b, 5*time.Second)
		if err != nil {
			t.Fatalf("kafka SCRAM listener %s: %v", b, err)
		}
		c.Close()
	}
	s3 := S3(t)
	if s3.Endpoint == "" || s3.Bucket == "" {
		t.Fatalf("incomplete S3 config %+v", s3)
	}
	rows := DuckDB(t, "SELECT 42, 'x', NULL, 2::HUGEINT ** 1 > 1, 9007199254740993::BIGINT")
	if len(rows) != 1 || len(rows[0]) != 5 || rows[0][0] != float64(42) || rows[0][1] != "x" || rows[0][2] != nil ||
		rows[0][3] != true || rows[0][4] != "9007199254740993" {
		t.Fatalf("DuckDB rows %#v", rows)
	}
}

// TestPostgres: each call gives a fresh, empty, writable database, dropped after the test.
func TestPostgres(t *testing.T) {
	need(t, EnvPostgresDSN)
	ctx := context.Background()
	var dsns []string
	t.Run("fresh", func(t *testing.T) {
		a, b := Postgres(t), Postgres(t)
		if a == b {
			t.Fatalf("two calls gave the same database %s", a)
		}
		for _, dsn := range []string{a, b} {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatalf("connect %s: %v", dsn, err)
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
				t.Errorf("%s: %d tables in public (%v), want an empty database", dsn, n, err)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE iceberg_tables (catalog_name text PRIMARY KEY)"); err != nil {
				t.Errorf("%s: create table: %v", dsn, err)
			}
			conn.Close(ctx)
		}
		dsns = []string{a, b}
	})
	t.Run(strings.Repeat("a very long test name ", 8), func(t *testing.T) {
		dsn := Postgres(t)
		u, _ := url.Parse(dsn)
		if name := strings.TrimPrefix(u.Path, "/"); len(name) > 63 || !strings.HasPrefix(name, "lakesink_") {
			t.Errorf("database name %q (%d bytes)", name, len(name))
		}
	})
	for _, dsn := range dsns {
		conn, err := pgx.Connect(ctx, dsn)
		var pe *pgconn.PgError
		if err == nil {
			conn.Close(ctx)
			t.Errorf("%s still exists after its test", dsn)
		} else if !errors.As(err, &pe) || pe.Code != "3D000" {
			t.Errorf("%s: %v, want invalid_catalog_name (3D000)", dsn, err)
		}
	}
}

// TestGlue: moto answers a Glue GetDatabases call (moto does not check signatures).
func TestGlue(t *testing.T) {
	ep := Glue(t)
	req, _ := http.NewRequest(http.MethodPost, ep, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AWSGlue.GetDatabases")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=lakesink/20260101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=0")
	var body struct{ DatabaseList []any }
	httpJSON(t, req, &body)
	if body.DatabaseList == nil {
		t.Fatalf("GetDatabases on %s: no DatabaseList", ep)
	}
}

// TestREST: the Iceberg REST catalog answers GET /v1/config.
func TestREST(t *testing.T) {
	uri := REST(t)
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(uri, "/")+"/v1/config", nil)
	var body struct{ Defaults, Overrides map[string]string }
	httpJSON(t, req, &body)
	if body.Defaults == nil || body.Overrides == nil {
		t.Fatalf("GET %s/v1/config: %+v", uri, body)
	}
}

// TestRegistry: the bed's schema registry registers a schema under a new subject
// through the Confluent API, serves it back by id, lists the subject's versions, and
// answers an unknown id with the Confluent error 40403.
func TestRegistry(t *testing.T) {
	u := strings.TrimSuffix(Registry(t), "/")
	subject := UniqueName(t, "sr") + "-value"
	schema := `{"type":"record","name":"R","namespace":"` + strings.ReplaceAll(subject, "-", "_") + `","fields":[{"name":"a","type":"long"}]}`
	body, _ := json.Marshal(map[string]string{"schema": schema})
	req, _ := http.NewRequest(http.MethodPost, u+"/subjects/"+subject+"/versions", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	var reg struct{ ID int }
	httpJSON(t, req, &reg)
	if reg.ID <= 0 {
		t.Fatalf("register under %s: id %d", subject, reg.ID)
	}
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/schemas/ids/%d", u, reg.ID), nil)
	var got struct{ Schema string }
	httpJSON(t, req, &got)
	if !strings.Contains(got.Schema, `"name":"a"`) {
		t.Fatalf("schema %d: %q", reg.ID, got.Schema)
	}
	req, _ = http.NewRequest(http.MethodGet, u+"/subjects/"+subject+"/versions", nil)
	var versions []int
	httpJSON(t, req, &versions)
	if fmt.Sprint(versions) != "[1]" {
		t.Fatalf("versions of %s: %v", subject, versions)
	}
	resp, err := http.Get(u + "/schemas/ids/2147483000")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "40403") {
		t.Fatalf("unknown id: %d %s", resp.StatusCode, b)
	}
}

func httpJSON(t *testing.T, req *http.Request, v any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d: %s", req.Method, req.URL, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s: %v in %s", req.Method, req.URL, err, b)
	}
}

// testRow is a row of the table icebergq.py --write-test-table writes.
type testRow struct {
	ID        *int64 `json:"id"`
	TS        string `json:"ts"`
	Topic     string `json:"_kafka_topic"`
	Partition int32  `json:"_kafka_partition"`
	Offset    int64  `json:"_kafka_offset"`
}

// icebergTestData: three appends (commits) over hours 12-14 of 2026-11-24, one duplicate
// Kafka key (id 3 again) and one null id; hour(ts) partitions give 5 data files, 2 in hour 13.
func icebergTestData() [][]testRow {
	id := func(i int64) *int64 { return &i }
	var b0 []testRow
	for i := int64(1); i <= 5; i++ {
		b0 = append(b0, testRow{id(i), fmt.Sprintf("2026-11-24T13:%02d:00Z", (i-1)*10), "t", 0, i - 1})
	}
	b1 := []testRow{
		{id(6), "2026-11-24T14:00:00Z", "t", 1, 0}, {id(7), "2026-11-24T14:30:00Z", "t", 1, 1},
		{id(8), "2026-11-24T14:59:59.999999Z", "t", 1, 2}, {id(3), "2026-11-24T13:20:00Z", "t", 0, 2},
	}
	b2 := []testRow{{id(9), "2026-11-24T12:59:59.999999Z", "t", 2, 0}, {nil, "2026-11-24T14:10:00Z", "t", 2, 1}}
	return [][]testRow{b0, b1, b2}
}

// TestIcebergQ proves deploy/local/icebergq.py before the compactor exists: PyIceberg writes
// a table through each catalog of the bed, and icebergq.py must read back what Go expects.
func TestIcebergQ(t *testing.T) {
	need(t, EnvPython, EnvIcebergQ)
	data := icebergTestData()
	var ids []string
	var rows int64
	for _, b := range data {
		for _, r := range b {
			rows++
			if r.ID != nil {
				ids = append(ids, fmt.Sprint(*r.ID))
			}
		}
	}
	rowsFile := filepath.Join(t.TempDir(), "rows.json")
	js, _ := json.Marshal(data)
	if err := os.WriteFile(rowsFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	wantAll := IcebergSummary{Count: rows, PerHour: map[string]int64{"2026-11-24T12": 1, "2026-11-24T13": 6, "2026-11-24T14": 4},
		IDChecksum: IDChecksum(ids), NullIDs: 1}
	want13 := IcebergSummary{Count: 6, PerHour: map[string]int64{"2026-11-24T13": 6}, IDChecksum: IDChecksum([]string{"1", "2", "3", "3", "4", "5"})}

	check := func(t *testing.T, q IcebergQuery, dir string) {
		for _, engine := range []string{"pyiceberg", "duckdb"} {
			q := q
			q.Engine, q.IDColumn, q.TimeColumn = engine, "id", "ts"
			got := IcebergQ(t, q)
			if got.Count != wantAll.Count || !maps.Equal(got.PerHour, wantAll.PerHour) || got.IDChecksum != wantAll.IDChecksum ||
				got.NullIDs != 1 || got.DupKeys == nil || *got.DupKeys != 1 || len(got.Schema) != 5 || got.Engine != engine {
				t.Errorf("%s read %v\nwant count %d, per_hour %v, id_checksum %s, 1 null id, 1 dup key, 5 columns",
					engine, got, wantAll.Count, wantAll.PerHour, wantAll.IDChecksum)
			}
			if engine == "pyiceberg" && (got.FilesTotal == nil || *got.FilesTotal != 5 || len(got.FilesPerPartition) != 3 ||
				got.FilesPerPartition["ts_hour=2026-11-24-13"] != 2) {
				t.Errorf("pyiceberg plan: %v, want 5 files, 2 of them in ts_hour=2026-11-24-13", got)
			}
			if engine == "pyiceberg" && dir != "" && !strings.HasPrefix(got.MetadataLocation, "file:") {
				t.Errorf("metadata at %s, want under %s", got.MetadataLocation, dir)
			}
			q.FilterHour = "2026-11-24T13"
			got = IcebergQ(t, q)
			if got.Count != want13.Count || !maps.Equal(got.PerHour, want13.PerHour) || got.IDChecksum != want13.IDChecksum ||
				*got.DupKeys != 1 || (engine == "pyiceberg" && (got.FilesPlanned == nil || *got.FilesPlanned != 2)) {
				t.Errorf("%s read hour 13 as %v\nwant count 6, id_checksum %s, 1 dup key, 2 files planned", engine, got, want13.IDChecksum)
			}
			if engine == "pyiceberg" && (got.BytesPlanned == nil || got.BytesTotal == nil || *got.BytesPlanned <= 0 || *got.BytesPlanned >= *got.BytesTotal) {
				t.Errorf("pyiceberg hour 13: bytes planned %v of %v, want some but not all", got.BytesPlanned, got.BytesTotal)
			}
		}
	}
	write := func(t *testing.T, q IcebergQuery) {
		args := []string{"--write-test-table", rowsFile, "--catalog", q.Catalog, "--table", q.Table}
		for _, a := range [][2]string{{"--uri", q.URI}, {"--warehouse", q.Warehouse}, {"--glue-endpoint", q.GlueEndpoint}} {
			if a[1] != "" {
				args = append(args, a[0], a[1])
			}
		}
		RunIcebergQ(t, args...)
	}
	ns := func(t *testing.T) string { return strings.ReplaceAll(UniqueName(t, "ns"), "-", "_") + ".events" }

	t.Run("sql-sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		q := IcebergQuery{Catalog: "sql", URI: "sqlite:///" + filepath.Join(dir, "catalog.db"), Warehouse: "file://" + dir, Table: "ns.events"}
		write(t, q)
		check(t, q, dir)
	})
	t.Run("sql-postgres", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		q := IcebergQuery{Catalog: "sql", URI: Postgres(t), Warehouse: "file://" + dir, Table: "ns.events"}
		write(t, q)
		check(t, q, dir)
	})
	t.Run("glue", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		q := IcebergQuery{Catalog: "glue", GlueEndpoint: Glue(t), Warehouse: "file://" + dir, Table: ns(t)}
		write(t, q)
		check(t, q, dir)
	})
	t.Run("rest-file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		q := IcebergQuery{Catalog: "rest", URI: REST(t), Warehouse: "file://" + dir, Table: ns(t)}
		write(t, q)
		check(t, q, dir)
	})
	t.Run("rest-s3", func(t *testing.T) {
		t.Parallel()
		S3(t)
		q := IcebergQuery{Catalog: "rest", URI: REST(t), Table: ns(t)}
		write(t, q)
		check(t, q, "")
		if got := IcebergQ(t, IcebergQuery{Catalog: "rest", URI: q.URI, Table: q.Table, IDColumn: "id", TimeColumn: "ts"}); !strings.HasPrefix(got.MetadataLocation, "s3://lakesink-test/rest-warehouse/") {
			t.Errorf("metadata at %s, want under s3://lakesink-test/rest-warehouse/", got.MetadataLocation)
		}
	})
}

func TestIDChecksum(t *testing.T) {
	// printf '1\n10\n2' | sha256sum: bytewise order puts 10 before 2.
	if got := IDChecksum([]string{"2", "10", "1"}); got != "32d5c2d95a5bef8b0f13c335628b73422fa80b6eba491f32520f57a395c464bb" {
		t.Errorf("IDChecksum = %s", got)
	}
}

// TestTrino: the bed's Trino answers with exact values, reports query errors as *TrinoError,
// lists the four catalogs, and TrinoScanSplits sees partition pruning on a table Trino
// writes into the REST catalog (three hour partitions; one hour reads one file).
func TestTrino(t *testing.T) {
	rows := Trino(t, "SELECT BIGINT '9007199254740993', DECIMAL '12345678901234567890.123456', "+
		"TIMESTAMP '2026-11-24 13:05:00.123456 UTC', X'cafe', ARRAY[1, 2], MAP(ARRAY['a'], ARRAY[1]), CAST(ROW(1, 'x') AS ROW(n integer, s varchar)), NULL")
	want := []any{json.Number("9007199254740993"), "12345678901234567890.123456", "2026-11-24 13:05:00.123456 UTC", "yv4=",
		[]any{json.Number("1"), json.Number("2")}, map[string]any{"a": json.Number("1")}, []any{json.Number("1"), "x"}, nil}
	if len(rows) != 1 || fmt.Sprint(rows[0]) != fmt.Sprint(want) {
		t.Fatalf("Trino rows %#v, want %#v", rows, want)
	}
	_, err := TrinoExec(t, "SELECT * FROM rest.no_such_schema.no_such_table")
	var te *TrinoError
	if !errors.As(err, &te) || te.Name != "SCHEMA_NOT_FOUND" && te.Name != "TABLE_NOT_FOUND" {
		t.Fatalf("query of a missing table: %v, want SCHEMA_NOT_FOUND or TABLE_NOT_FOUND", err)
	}
	var cats []string
	for _, r := range Trino(t, "SELECT catalog_name FROM system.metadata.catalogs ORDER BY 1") {
		cats = append(cats, r[0].(string))
	}
	if got := strings.Join(cats, ","); got != "glue,gluehive,rest,sql,system" {
		t.Fatalf("catalogs %s, want glue,gluehive,rest,sql,system", got)
	}

	schema := "rest." + strings.ReplaceAll(UniqueName(t, "trino"), "-", "_")
	Trino(t, "CREATE SCHEMA "+schema)
	t.Cleanup(func() {
		_, _ = TrinoExec(t, "DROP TABLE IF EXISTS "+schema+".t")
		_, _ = TrinoExec(t, "DROP SCHEMA IF EXISTS "+schema)
	})
	Trino(t, "CREATE TABLE "+schema+".t (id bigint, ts timestamp(6) with time zone) WITH (partitioning = ARRAY['hour(ts)'])")
	Trino(t, "INSERT INTO "+schema+".t VALUES (1, TIMESTAMP '2026-11-24 13:05:00 UTC'), (2, TIMESTAMP '2026-11-24 14:05:00 UTC'), (3, TIMESTAMP '2026-11-24 15:05:00 UTC')")
	all := TrinoScanSplits(t, "SELECT sum(id) FROM "+schema+".t")
	one := TrinoScanSplits(t, "SELECT sum(id) FROM "+schema+".t WHERE ts >= TIMESTAMP '2026-11-24 14:00:00 UTC' AND ts < TIMESTAMP '2026-11-24 15:00:00 UTC'")
	if fmt.Sprint(all) != "[3]" || fmt.Sprint(one) != "[1]" {
		t.Fatalf("splits read: whole table %v, one hour %v; want [3] and [1]", all, one)
	}
}

// Package testbed gives tests the servers of the local test bed started by
// deploy/local/bed.sh (no Docker): a real Kafka broker, a real S3 server (versitygw),
// PostgreSQL (for the Iceberg SQL catalog), moto as an AWS Glue endpoint, Iceberg's REST
// catalog, DuckDB and PyIceberg, in a project-local Python venv, as independent readers of
// what was written, and Trino (Athena's engine) over the Glue, REST and SQL catalogs.
//
// The bed is found through the LAKESINK_TEST_* environment variables that
// `deploy/local/bed.sh env` prints; `make test` starts the bed and sets them. When they are
// unset, a test that asks for the bed is skipped, or fails when LAKESINK_REQUIRE_BED=1 (as
// under `make test`), so a missing bed can never pass silently in CI. With -short every
// accessor skips.
//
// Besides the standard library only pgx is used (Postgres creates a database per test).
package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// NotRunning is the message of a test skipped (or failed) because the bed is not running.
const NotRunning = "test bed not running: run make test or deploy/local/bed.sh up"

// Environment variables set by `deploy/local/bed.sh env`.
const (
	EnvKafkaBrokers = "LAKESINK_TEST_KAFKA_BROKERS"       // comma-separated host:port list
	EnvKafkaSCRAM   = "LAKESINK_TEST_KAFKA_SCRAM_BROKERS" // the SASL_PLAINTEXT (SCRAM) listener
	EnvS3Endpoint   = "LAKESINK_TEST_S3_ENDPOINT"         // http://127.0.0.1:19000
	EnvS3AccessKey  = "LAKESINK_TEST_S3_ACCESS_KEY"       // lakesink
	EnvS3SecretKey  = "LAKESINK_TEST_S3_SECRET_KEY"       // lakesinksecret
	EnvS3Region     = "LAKESINK_TEST_S3_REGION"           // us-east-1
	EnvS3Bucket     = "LAKESINK_TEST_S3_BUCKET"           // lakesink-test
	EnvS3Dir        = "LAKESINK_TEST_S3_DIR"              // versitygw's POSIX root (optional)
	EnvPython       = "LAKESINK_TEST_PYTHON"              // the venv's python
	EnvDuckQ        = "LAKESINK_TEST_DUCKQ"               // deploy/local/duckq.py
	EnvIcebergQ     = "LAKESINK_TEST_ICEBERGQ"            // deploy/local/icebergq.py
	EnvPostgresDSN  = "LAKESINK_TEST_POSTGRES_DSN"        // postgres://lakesink:lakesink@127.0.0.1:15432/lakesink?sslmode=disable
	EnvGlueEndpoint = "LAKESINK_TEST_GLUE_ENDPOINT"       // http://127.0.0.1:15000 (moto)
	EnvRESTURI      = "LAKESINK_TEST_REST_URI"            // http://127.0.0.1:18181 (Iceberg REST catalog)
	EnvTrinoURI     = "LAKESINK_TEST_TRINO_URI"           // http://127.0.0.1:18080 (Trino 476)
	EnvRequireBed   = "LAKESINK_REQUIRE_BED"              // "1": a missing bed fails the test
)

// DuckDBTimeout bounds one DuckDB query run by DuckDB, and one icebergq.py run by IcebergQ.
var DuckDBTimeout = 5 * time.Minute

// PostgresTimeout bounds creating or dropping a test database.
var PostgresTimeout = time.Minute

// need returns the values of the named variables, or skips/fails the test if one is unset.
func need(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test bed; skipped with -short")
	}
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = os.Getenv(n)
		if vals[i] == "" {
			if os.Getenv(EnvRequireBed) == "1" {
				t.Fatalf("%s (%s is unset)", NotRunning, n)
			}
			t.Skipf("%s (%s is unset)", NotRunning, n)
		}
	}
	return vals
}

// Python returns the bed's venv python (with duckdb and pyiceberg).
func Python(t testing.TB) string {
	t.Helper()
	return need(t, EnvPython)[0]
}

// Kafka returns the bootstrap brokers (host:port) of the bed's Kafka: a single KRaft node
// with auto topic creation off and 6 partitions by default, so a test creates its topics
// (named with UniqueName).
func Kafka(t testing.TB) []string {
	t.Helper()
	return splitList(need(t, EnvKafkaBrokers)[0])
}

// KafkaSCRAM returns the bed broker's SASL_PLAINTEXT listener (SCRAM-SHA-256/512). It has
// no users: tests create theirs through the admin API on the plaintext listener (Kafka).
func KafkaSCRAM(t testing.TB) []string {
	t.Helper()
	return splitList(need(t, EnvKafkaSCRAM)[0])
}

func splitList(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// S3Config locates the bed's S3 server, its credentials and its test bucket.
type S3Config struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:19000 (use path-style addressing).
	Endpoint string
	// AccessKey and SecretKey are the fixed test credentials.
	AccessKey, SecretKey string
	// Region is the signing region (us-east-1).
	Region string
	// Bucket is a bucket that exists and that tests share: put each test's objects under a
	// key prefix from UniqueName.
	Bucket string
	// Dir is the server's POSIX root: the object Key of Bucket is the file Dir/Bucket/Key.
	// Empty if the bed did not say (LAKESINK_TEST_S3_DIR unset).
	Dir string
}

// S3 returns the bed's S3 server.
func S3(t testing.TB) S3Config {
	t.Helper()
	v := need(t, EnvS3Endpoint, EnvS3AccessKey, EnvS3SecretKey, EnvS3Region, EnvS3Bucket)
	return S3Config{Endpoint: v[0], AccessKey: v[1], SecretKey: v[2], Region: v[3], Bucket: v[4], Dir: os.Getenv(EnvS3Dir)}
}

// DuckDB runs sql in DuckDB (deploy/local/duckq.py in the bed's venv), with httpfs set up
// for the bed's S3 server so that read_parquet('s3://<bucket>/...') and iceberg_scan work,
// and returns the result rows. Values are decoded from JSON: numbers are float64; integers
// beyond ±2^53, DECIMALs and non-finite floats are exact strings; timestamps, dates and
// times are ISO 8601 strings (time zone UTC); BLOBs are lowercase hex; NULL is nil. The
// test fails, showing DuckDB's error, if the query fails.
func DuckDB(t testing.TB, sql string) [][]any {
	t.Helper()
	v := need(t, EnvPython, EnvDuckQ)
	s3 := S3(t)
	ctx, cancel := context.WithTimeout(context.Background(), DuckDBTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v[0], v[1], "--s3-endpoint", s3.Endpoint, "--sql", sql)
	cmd.Env = append(os.Environ(),
		EnvS3AccessKey+"="+s3.AccessKey, EnvS3SecretKey+"="+s3.SecretKey, EnvS3Region+"="+s3.Region)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb query failed: %v\nsql: %s\n%s", err, sql, strings.TrimSpace(stderr.String()))
	}
	var rows [][]any
	for _, line := range bytes.Split(stdout.Bytes(), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var row []any
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("duckdb output line %q: %v\nsql: %s", line, err, sql)
		}
		rows = append(rows, row)
	}
	return rows
}

// Postgres returns the DSN (postgres://...?sslmode=disable) of a fresh, empty database on the
// bed's PostgreSQL, named lakesink_<test name>_<random> and owned by the role lakesink, for
// one test: iceberg-go's SQL catalog (driver pgx) or PyIceberg's (icebergq.py rewrites the
// scheme to postgresql+psycopg2) create their tables in it. The database is dropped (with
// its remaining connections) when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := need(t, EnvPostgresDSN)[0]
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s=%q is not a postgres:// URL", EnvPostgresDSN, admin)
	}
	name := pgDatabaseName(t)
	ctx, cancel := context.WithTimeout(context.Background(), PostgresTimeout)
	defer cancel()
	if err := pgExec(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s on %s: %v", name, u.Redacted(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), PostgresTimeout)
		defer cancel()
		if err := pgExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// pgDatabaseName: lakesink_<test name>_<8 hex>, at most 63 bytes (Postgres' identifier limit).
func pgDatabaseName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ReplaceAll(sanitize(t.Name()), "-", "_")
	if n := 63 - len("lakesink__") - 8; len(name) > n {
		name = strings.Trim(name[:n], "_")
	}
	return "lakesink_" + name + "_" + hex.EncodeToString(b[:])
}

// pgExec runs one statement on a new connection to dsn. CREATE DATABASE can fail with
// object_in_use (55006) while another session briefly uses the template: it is retried.
func pgExec(ctx context.Context, dsn, sql string) error {
	for attempt := 0; ; attempt++ {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, sql)
		conn.Close(context.Background())
		var pe *pgconn.PgError
		if err == nil || attempt >= 20 || !errors.As(err, &pe) || pe.Code != "55006" {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Glue returns the endpoint URL of the bed's AWS Glue (moto's server). It accepts any
// credentials and region (use the S3 ones and us-east-1). Its state is shared by every test
// of a run and kept in memory: name Glue databases with UniqueName (with '_' for '-').
func Glue(t testing.TB) string {
	t.Helper()
	return need(t, EnvGlueEndpoint)[0]
}

// REST returns the URI of the bed's Iceberg REST catalog (Apache Iceberg's REST catalog test
// fixture: a JdbcCatalog in SQLite). A table created without a location is put under
// s3://lakesink-test/rest-warehouse on the bed's S3; a client may also give any
// s3://lakesink-test/... or file:///... location. The server hands out no S3 credentials:
// clients configure the bed's S3 themselves. Tests share it: use UniqueName namespaces.
func REST(t testing.TB) string {
	t.Helper()
	return need(t, EnvRESTURI)[0]
}

// IcebergQuery says which Iceberg table IcebergQ reads, through which catalog, and how.
type IcebergQuery struct {
	// Catalog is sql, glue or rest.
	Catalog string
	// CatalogName is the name the writer gave its catalog (the SQL catalog keys its rows by
	// it); empty means lakesink.
	CatalogName string
	// URI: sql, a DSN from Postgres (postgres://...) or an SQLAlchemy URI
	// (sqlite:////abs/catalog.db); rest, the catalog's URI (REST).
	URI string
	// Warehouse is the catalog's warehouse (file:///abs/dir or s3://bucket/prefix); optional.
	Warehouse string
	// GlueEndpoint is the Glue endpoint (Glue) for Catalog glue.
	GlueEndpoint string
	// Table is namespace.name.
	Table string
	// Engine is pyiceberg (the default) or duckdb.
	Engine string
	// IDColumn and TimeColumn name the id column (checksummed) and the timestamp column
	// (counted per UTC hour).
	IDColumn, TimeColumn string
	// FilterHour, e.g. "2026-11-24T13", reads only the rows of that UTC hour.
	FilterHour string
}

// IcebergSummary is what icebergq.py prints.
type IcebergSummary struct {
	Count int64 `json:"count"`
	// PerHour counts rows by the UTC hour of TimeColumn ("2026-11-24T13").
	PerHour map[string]int64 `json:"per_hour"`
	// IDChecksum is IDChecksum of the non-null ids, each as text.
	IDChecksum string `json:"id_checksum"`
	NullIDs    int64  `json:"null_ids"`
	// DupKeys is rows minus distinct (_kafka_topic, _kafka_partition, _kafka_offset); nil if
	// the table lacks those columns.
	DupKeys *int64 `json:"dup_keys"`
	// FilesPlanned is how many data files PyIceberg's scan plans for the filter, FilesTotal
	// how many the current snapshot has, FilesPerPartition those by partition path
	// ("ts_hour=2026-11-24-13"). nil for the duckdb engine.
	FilesPlanned      *int64           `json:"files_planned"`
	FilesTotal        *int64           `json:"files_total"`
	FilesPerPartition map[string]int64 `json:"files_per_partition"`
	// BytesPlanned and BytesTotal are the sizes of those planned files and of all of them.
	BytesPlanned *int64 `json:"bytes_planned"`
	BytesTotal   *int64 `json:"bytes_total"`
	// Schema is the table's top-level column names in order.
	Schema           []string `json:"schema"`
	Engine           string   `json:"engine"`
	MetadataLocation string   `json:"metadata_location"`
	SnapshotID       *int64   `json:"snapshot_id"`
}

// IcebergQ reads an Iceberg table independently of lakesink with deploy/local/icebergq.py
// (PyIceberg, or DuckDB's iceberg_scan on the metadata PyIceberg's catalog points at) and
// returns its summary. Data on s3:// is read from the bed's S3 server with its credentials.
// The test fails, showing the script's error, if the read fails.
func IcebergQ(t testing.TB, q IcebergQuery) IcebergSummary {
	t.Helper()
	out := RunIcebergQ(t, q.args()...)
	var s IcebergSummary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("icebergq.py output %q: %v", out, err)
	}
	return s
}

func (q IcebergQuery) args() []string {
	args := []string{"--catalog", q.Catalog, "--table", q.Table, "--id-column", q.IDColumn, "--time-column", q.TimeColumn}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	add("--catalog-name", q.CatalogName)
	add("--uri", q.URI)
	add("--warehouse", q.Warehouse)
	add("--glue-endpoint", q.GlueEndpoint)
	add("--engine", q.Engine)
	add("--filter-hour", q.FilterHour)
	return args
}

// RunIcebergQ runs deploy/local/icebergq.py with args (and --s3-endpoint and the
// credentials of the bed's S3 when it is up) and returns its stdout; the test fails on an
// error. IcebergQ is the usual way in.
func RunIcebergQ(t testing.TB, args ...string) []byte {
	t.Helper()
	v := need(t, EnvPython, EnvIcebergQ)
	env := os.Environ()
	if ep := os.Getenv(EnvS3Endpoint); ep != "" {
		args = append(args, "--s3-endpoint", ep)
		env = append(env, "AWS_ACCESS_KEY_ID="+os.Getenv(EnvS3AccessKey), "AWS_SECRET_ACCESS_KEY="+os.Getenv(EnvS3SecretKey),
			"AWS_REGION="+os.Getenv(EnvS3Region))
	}
	ctx, cancel := context.WithTimeout(context.Background(), DuckDBTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v[0], append([]string{v[1]}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("icebergq.py failed: %v\nargs: %q\n%s", err, args, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes()
}

// IDChecksum is the id checksum of icebergq.py: the SHA-256 (lowercase hex) of the ids,
// sorted bytewise, joined by "\n" (no trailing newline). Give integers in decimal.
func IDChecksum(ids []string) string {
	s := append([]string(nil), ids...)
	sort.Strings(s)
	sum := sha256.Sum256([]byte(strings.Join(s, "\n")))
	return hex.EncodeToString(sum[:])
}

// String shows a summary in test failures.
func (s IcebergSummary) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// UniqueName returns prefix-<test name>-<random> in lowercase letters, digits and '-', at
// most 100 characters: unique per test and per run, and valid as a Kafka topic, a consumer
// group and an S3 key prefix, so tests sharing the bed never see each other's data.
func UniqueName(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := sanitize(t.Name())
	if len(name) > 60 {
		name = strings.Trim(name[:60], "-")
	}
	parts := make([]string, 0, 3)
	if p := sanitize(prefix); p != "" {
		if len(p) > 30 {
			p = strings.Trim(p[:30], "-")
		}
		parts = append(parts, p)
	}
	if name != "" {
		parts = append(parts, name)
	}
	return strings.Join(append(parts, hex.EncodeToString(b[:])), "-")
}

// sanitize lowercases s and turns every run of other characters than [a-z0-9] into '-'.
func sanitize(s string) string {
	var sb strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
			dash = false
		} else if !dash {
			sb.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(sb.String(), "-")
}

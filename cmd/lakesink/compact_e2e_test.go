package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// lakeFixture is a raw zone filled once by a real sink from real Kafka; each
// compaction test copies it under a prefix of its own.
type lakeFixture struct {
	b      *bed
	src    string // prefix of the sink's raw zone
	expect expectation
}

type expectation struct {
	Count   int64            `json:"count"`
	PerHour map[string]int64 `json:"per_hour"`
	IDSum   string           `json:"id_checksum"`
}

var (
	fixtureOnce sync.Once
	fixture     *lakeFixture
	fixtureErr  string
)

// sinkFixture runs the sink once over 20,000 events spread over 4 closed hours.
func sinkFixture(t *testing.T) *lakeFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs the test bed")
	}
	// Skip (or fail under make test) here, outside the Once, when the bed is missing.
	testbed.Kafka(t)
	testbed.S3(t)
	fixtureOnce.Do(func() {
		b := newBed(t, 4)
		b.produce(20_000, 4, 7, 4)
		p := b.start(b.config("flush: {max_age: 3s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"))
		b.waitCaughtUp(90*time.Second, p)
		p.stop(t)
		f := &lakeFixture{b: b, src: b.prefix, expect: rawExpectation(t, b)}
		if f.expect.Count != 20_000 {
			fixtureErr = fmt.Sprintf("raw zone holds %d rows, want 20000", f.expect.Count)
		}
		fixture = f
	})
	if fixtureErr != "" {
		t.Fatal(fixtureErr)
	}
	if fixture == nil {
		t.Fatal("sink fixture failed in an earlier test")
	}
	return fixture
}

// rawExpectation is what the bed's raw zone holds, as DuckDB reads it: rows,
// a checksum of the event ids, and rows per hour.
func rawExpectation(t *testing.T, b *bed) expectation {
	t.Helper()
	var e expectation
	res := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), sha256(string_agg(event_id, chr(10) ORDER BY event_id)) FROM read_parquet('%s')`, b.rawGlob()))
	e.Count, e.IDSum = toInt(t, res[0][0]), res[0][1].(string)
	e.PerHour = map[string]int64{}
	for _, r := range testbed.DuckDB(t, fmt.Sprintf(`SELECT strftime(ts AT TIME ZONE 'UTC', '%%Y-%%m-%%dT%%H'), count(*) FROM read_parquet('%s') GROUP BY 1`, b.rawGlob())) {
		e.PerHour[r[0].(string)] = toInt(t, r[1])
	}
	return e
}

// lakeFor copies the fixture's raw zone under a fresh prefix and returns a
// store rooted there.
func (f *lakeFixture) lakeFor(t *testing.T) (string, store.Store) {
	t.Helper()
	prefix := testbed.UniqueName(t, "cmp") + "/"
	src := f.s3(t, f.src)
	dst := f.s3(t, prefix)
	ctx := context.Background()
	err := src.List(ctx, "raw/", func(o store.ObjectInfo) error {
		return copyObject(ctx, src, o.Key, dst, o.Key)
	})
	if err != nil {
		t.Fatal(err)
	}
	return prefix, dst
}

func (f *lakeFixture) s3(t *testing.T, prefix string) store.Store {
	t.Helper()
	c := f.b.s3
	st, err := store.NewS3(context.Background(), store.S3Config{Bucket: c.Bucket, Prefix: prefix, Region: c.Region,
		Endpoint: c.Endpoint, PathStyle: true, AccessKeyID: c.AccessKey, SecretAccessKey: c.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func copyObject(ctx context.Context, src store.Store, from string, dst store.Store, to string) error {
	obj, err := src.Open(ctx, from)
	if err != nil {
		return err
	}
	defer obj.Close()
	return dst.Create(ctx, to, obj)
}

func readObject(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// compactConfig writes a compactor config over a prefix with a catalog:
// lateness 0s, raw_grace 0s and max_wait 0s unless extra sets them.
func (f *lakeFixture) compactConfig(t *testing.T, prefix, catalog, extra string) string {
	t.Helper()
	b := f.b
	cfg := strings.Replace(readFile(t, b.config("")), "prefix: "+b.prefix, "prefix: "+prefix, 1)
	if !strings.Contains(extra, "raw_grace") {
		extra += "\n  raw_grace: 0s"
	}
	if !strings.Contains(extra, "max_wait") {
		// The wall-clock rule alone (max_wait = lateness): these tests compact
		// right after a sink whose watermarks (max_lateness 15m) would hold the
		// last hour back during the first minutes of the next.
		extra += "\n  max_wait: 0s"
	}
	cfg += fmt.Sprintf("catalog:\n%s\ncompaction:\n  lateness: 0s\n%s\n", catalog, extra)
	path := filepath.Join(t.TempDir(), "compact.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sqliteCatalog(t *testing.T, b *bed, prefix string) (yaml, uri, warehouse string) {
	db := filepath.Join(t.TempDir(), "catalog.db")
	warehouse = fmt.Sprintf("s3://%s/%swarehouse", b.s3.Bucket, prefix)
	return fmt.Sprintf("  type: sql\n  namespace: lake\n  warehouse: %s\n  sql: {driver: sqlite, dsn: %s}", warehouse, db), "sqlite:///" + db, warehouse
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compactRun runs lakesink compact and returns its exit code and output.
func (f *lakeFixture) compactRun(t *testing.T, cfg string, env ...string) (int, string) {
	t.Helper()
	cmd := f.compactCmd(cfg, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// summaryCount reads "<n> <what>" from the summary line of a compact run's output
// ("..., 2 conflicts"); 0 if absent.
func summaryCount(out, what string) int {
	re := `(\d+) ` + regexp.QuoteMeta(what)
	if regexp.MustCompile(`\w$`).MatchString(what) {
		re += `\b`
	}
	m := regexp.MustCompile(re).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// planCount sums "<n> <what>" over the table lines of a dry run's plan.
func planCount(out, what string) int {
	n := 0
	for _, m := range regexp.MustCompile(`(\d+) `+regexp.QuoteMeta(what)).FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// compactCmd builds a lakesink compact command; extra entries starting with "-"
// are flags, the others environment variables.
func (f *lakeFixture) compactCmd(cfg string, extra ...string) *exec.Cmd {
	args := []string{"compact", "-c", cfg}
	var env []string
	for _, e := range extra {
		if strings.HasPrefix(e, "-") {
			args = append(args, e)
		} else {
			env = append(env, e)
		}
	}
	cmd := exec.Command(binPath, args...)
	c := f.b.s3
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+c.AccessKey, "AWS_SECRET_ACCESS_KEY="+c.SecretKey, "AWS_REGION="+c.Region)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

type icebergRead struct {
	Engine       string           `json:"engine"`
	Count        int64            `json:"count"`
	PerHour      map[string]int64 `json:"per_hour"`
	IDSum        string           `json:"id_checksum"`
	DupKeys      int64            `json:"dup_keys"`
	Files        int64            `json:"files"`
	HourFiles    int64            `json:"hour_files"`
	FilesPerHour map[string]int64 `json:"files_per_hour"`
	Metadata     string           `json:"metadata_location"`
}

// readIceberg reads the table with PyIceberg (through the catalog) and with
// DuckDB's iceberg extension (from the metadata file PyIceberg resolves).
const readIcebergPy = `
import hashlib, json, os, sys, duckdb
from collections import Counter
args = json.loads(sys.argv[1])
props = {"uri": args["uri"], "warehouse": args["warehouse"], "s3.endpoint": args["s3"], "s3.region": os.environ["AWS_REGION"],
         "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"], "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"]}
if args["type"] == "glue":
    from pyiceberg.catalog.glue import GlueCatalog
    cat = GlueCatalog("lakesink", **{"glue.endpoint": args["glue"], "glue.region": os.environ["AWS_REGION"], **props})
elif args["type"] == "rest":
    from pyiceberg.catalog.rest import RestCatalog
    cat = RestCatalog("lakesink", **props)
else:
    from pyiceberg.catalog.sql import SqlCatalog
    cat = SqlCatalog("lakesink", **props)
t = cat.load_table(args["table"])
out = []
tab = t.scan(selected_fields=("event_id", "ts", "_kafka_topic", "_kafka_partition", "_kafka_offset")).to_arrow()
ids = sorted(tab["event_id"].to_pylist())
keys = Counter(zip(tab["_kafka_topic"].to_pylist(), tab["_kafka_partition"].to_pylist(), tab["_kafka_offset"].to_pylist()))
per = Counter(ts.strftime("%Y-%m-%dT%H") for ts in tab["ts"].to_pylist())
tasks = list(t.scan().plan_files())
fph = Counter()
for task in tasks:
    h = task.file.partition[0]
    import datetime
    fph[(datetime.datetime(1970,1,1) + datetime.timedelta(hours=h)).strftime("%Y-%m-%dT%H")] += 1
hour_files = 0
if args.get("hour"):
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    lo = args["hour"] + ":00:00+00:00"
    import datetime as d
    hi = (d.datetime.fromisoformat(lo) + d.timedelta(hours=1)).isoformat()
    hour_files = len(list(t.scan(row_filter=And(GreaterThanOrEqual("ts", lo), LessThan("ts", hi))).plan_files()))
out.append({"engine": "pyiceberg", "count": len(ids), "per_hour": dict(per), "id_checksum": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            "dup_keys": sum(c - 1 for c in keys.values()), "files": len(tasks), "hour_files": hour_files, "files_per_hour": dict(fph),
            "metadata_location": t.metadata_location})
sys.path.insert(0, os.path.dirname(os.environ["LAKESINK_TEST_DUCKQ"]))
import duckq
con = duckq.connect(args["s3"])
con.execute("SET enable_progress_bar = false")  # a bar on stdout would corrupt the JSON
con.execute("LOAD iceberg")
q = f"FROM iceberg_scan('{t.metadata_location}')"
cnt, dups, csum = con.execute(f"SELECT count(*), count(*) - count(DISTINCT (_kafka_topic, _kafka_partition, _kafka_offset)), sha256(string_agg(event_id, chr(10) ORDER BY event_id)) {q}").fetchone()
per = {h: n for h, n in con.execute(f"SELECT strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H'), count(*) {q} GROUP BY 1").fetchall()}
out.append({"engine": "duckdb", "count": cnt, "per_hour": per, "id_checksum": csum, "dup_keys": dups})
print(json.dumps(out))
`

func readIceberg(t *testing.T, f *lakeFixture, typ, uri, warehouse, table, hour string) []icebergRead {
	t.Helper()
	py := testbed.Python(t)
	args, _ := json.Marshal(map[string]string{"type": typ, "uri": uri, "warehouse": warehouse, "s3": f.b.s3.Endpoint,
		"table": table, "hour": hour, "glue": os.Getenv("LAKESINK_TEST_GLUE_ENDPOINT")})
	cmd := exec.Command(py, "-c", readIcebergPy, string(args))
	c := f.b.s3
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+c.AccessKey, "AWS_SECRET_ACCESS_KEY="+c.SecretKey, "AWS_REGION="+c.Region)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("read iceberg table: %v\n%s", err, stderr)
	}
	var res []icebergRead
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("reader output %q: %v", out, err)
	}
	return res
}

func checkExact(t *testing.T, f *lakeFixture, reads []icebergRead) {
	t.Helper()
	for _, r := range reads {
		if r.Count != f.expect.Count || r.DupKeys != 0 || r.IDSum != f.expect.IDSum {
			t.Errorf("%s: count=%d dup_keys=%d checksum=%s; want count=%d dup_keys=0 checksum=%s",
				r.Engine, r.Count, r.DupKeys, r.IDSum, f.expect.Count, f.expect.IDSum)
		}
		for h, n := range f.expect.PerHour {
			if r.PerHour[h] != n {
				t.Errorf("%s: hour %s has %d rows, want %d", r.Engine, h, r.PerHour[h], n)
			}
		}
	}
}

// TestE2ECompactSQLiteExactlyOnce: the sink's raw zone plus duplicate raw files
// planted on purpose compact into an Iceberg table that PyIceberg and DuckDB
// read back as exactly the produced events; pruning and file counts hold.
func TestE2ECompactSQLiteExactlyOnce(t *testing.T) {
	f := sinkFixture(t)
	prefix, lake := f.lakeFor(t)
	ctx := context.Background()
	// Duplicates before the first run: a copy of a raw file under another first offset.
	var keys []string
	_ = lake.List(ctx, "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if len(keys) < 8 {
		t.Fatalf("raw zone has %d files, want at least 8", len(keys))
	}
	plantDup(t, lake, keys[0], 1)
	plantDup(t, lake, keys[3], 2)
	catYAML, uri, wh := sqliteCatalog(t, f.b, prefix)
	cfg := f.compactConfig(t, prefix, catYAML, "  raw_grace: 1h")
	if code, out := f.compactRun(t, cfg, "--dry-run"); code != 4 && code != 0 {
		t.Fatalf("dry run exit %d:\n%s", code, out)
	}
	code, out := f.compactRun(t, cfg)
	if code != 0 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "duplicates dropped") {
		t.Fatalf("no summary in output:\n%s", out)
	}
	var hour string
	for h := range f.expect.PerHour {
		hour = h
		break
	}
	reads := readIceberg(t, f, "sql", uri, wh, "lake.events", hour)
	checkExact(t, f, reads)
	py := reads[0]
	for h, n := range py.FilesPerHour {
		if n > 2 {
			t.Errorf("hour %s has %d data files after compaction, want ≤ 2", h, n)
		}
	}
	if py.HourFiles != py.FilesPerHour[hour] || py.HourFiles == 0 || py.HourFiles >= py.Files {
		t.Errorf("a one-hour scan plans %d files (hour has %d, table %d): partition pruning is not working", py.HourFiles, py.FilesPerHour[hour], py.Files)
	}
	// A duplicate arriving after compaction, into an already compacted hour (a raw file
	// replayed under another first offset).
	plantDup(t, lake, keys[5], 3)
	if code, out := f.compactRun(t, cfg); code != 0 && code != 4 {
		t.Fatalf("second compact exit %d:\n%s", code, out)
	}
	reads = readIceberg(t, f, "sql", uri, wh, "lake.events", "")
	checkExact(t, f, reads)
	// Athena's engine reads the table as it is after the replay.
	trinoCheckEvents(t, f, trinoRegister(t, reads[0].Metadata))
	// Nothing left: a third run is idle (exit 4), and a CronJob can map that to 0.
	if code, out := f.compactRun(t, cfg); code != 4 {
		t.Fatalf("third compact exit %d, want 4 (idle):\n%s", code, out)
	}
}

// plantDup copies a raw file to the same directory under first offset +delta:
// the same rows under another name, as a replay could leave.
func plantDup(t *testing.T, lake store.Store, key string, delta int64) {
	t.Helper()
	dir, base := filepath.Dir(key), filepath.Base(key)
	parts := strings.Split(strings.TrimSuffix(base, ".parquet"), ".")
	var first int64
	fmt.Sscan(parts[len(parts)-1], &first)
	parts[len(parts)-1] = fmt.Sprintf("%020d", first+delta)
	if err := copyObject(context.Background(), lake, key, lake, dir+"/"+strings.Join(parts, ".")+".parquet"); err != nil {
		t.Fatal(err)
	}
}

// withRange returns the raw file data re-encoded with its footer's first and
// last offsets set to first and last (rows, schema and other footer keys kept).
func withRange(t *testing.T, data []byte, first, last int64) []byte {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var opts []parquet.WriterOption
	for _, kv := range f.Metadata().KeyValueMetadata {
		switch kv.Key {
		case rawfile.MetaFirstOffset:
			kv.Value = strconv.FormatInt(first, 10)
		case rawfile.MetaLastOffset:
			kv.Value = strconv.FormatInt(last, 10)
		}
		opts = append(opts, parquet.KeyValueMetadata(kv.Key, kv.Value))
	}
	var out bytes.Buffer
	w := parquet.NewWriter(&out, append(opts, f.Schema(), parquet.Compression(&parquet.Zstd))...)
	for _, rg := range f.RowGroups() {
		if _, err := parquet.CopyRows(w, rg.Rows()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestE2ECompactCrashKill9: the compactor is killed after writing outputs,
// after committing, during cleaning and at random moments, and rerun each time;
// the table ends with every row exactly once and every referenced file present.
func TestE2ECompactCrashKill9(t *testing.T) {
	f := sinkFixture(t)
	prefix, lake := f.lakeFor(t)
	var keys []string
	_ = lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	plantDup(t, lake, keys[1], 1)
	catYAML, uri, wh := sqliteCatalog(t, f.b, prefix)
	// One hour per commit, so that every run has work to crash in.
	cfg := f.compactConfig(t, prefix, catYAML, "  max_partitions_per_commit: 1")
	// A raw file kept aside: whenever the runs run out of work, a copy of it
	// under a fresh name lands as a late duplicate into a compacted hour, so
	// that the next run has an hour to rewrite and a raw file to clean. The
	// name's first offset lies past every offset produced: a copy named inside
	// a covered range, with its footer's last offset, is a file the table
	// already holds whole, which the planner deletes without a rewrite.
	// Its footer is rewritten to the copy's own range: a copy whose footer
	// ends before its name begins is no raw file the sink could write, and the
	// planner never counts it as merged (so a run killed after committing it
	// would leave nothing to delete).
	spare := readObject(t, lake, keys[2])
	late := int64(0)
	feed := func() {
		late++
		dir, base := filepath.Dir(keys[2]), filepath.Base(keys[2])
		parts := strings.Split(strings.TrimSuffix(base, ".parquet"), ".")
		var first int64
		fmt.Sscan(parts[len(parts)-1], &first)
		parts[len(parts)-1] = fmt.Sprintf("%020d", first+1_000_000+late)
		copyFirst := first + 1_000_000 + late
		body := withRange(t, spare, copyFirst, copyFirst)
		if err := lake.Create(context.Background(), dir+"/"+strings.Join(parts, ".")+".parquet", bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	points := []string{"after-outputs", "after-commit", "during-clean"}
	rng := rand.New(rand.NewPCG(1, 2))
	runs, kills, random, recovered := 0, 0, 0, 0
	span := 500 * time.Millisecond
	for round := 0; round < 60 && kills < 10; round++ {
		runs++
		if round%4 == 3 {
			// A kill at a random moment, on top of the ones at the hooks, in
			// a run given work first.
			feed()
			cmd := f.compactCmd(cfg)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Somewhere inside the time the last run took to reach its hook.
			time.Sleep(time.Duration(rng.Int64N(int64(span))))
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			if err != nil && cmd.ProcessState.ExitCode() == -1 {
				random++
			}
			continue
		}
		point := points[kills%len(points)]
		start := time.Now()
		code, out := f.compactRun(t, cfg, "LAKESINK_TEST_KILL_AT="+point)
		switch code {
		case -1:
			kills++
			span = time.Since(start)
			if point == "after-commit" {
				// The killed run committed and deleted nothing: the next run must see
				// its inputs as done (covered by the table) and only delete them.
				if _, plan := f.compactRun(t, cfg, "--dry-run"); planCount(plan, "raw files to delete") == 0 {
					t.Fatalf("after a kill after the commit, the plan deletes no raw file:\n%s", plan)
				} else {
					recovered++
				}
			}
		case 0, 4:
			feed() // the run never reached the hook: give the next one work
		default:
			t.Fatalf("run %d (kill at %s): exit %d, want killed:\n%s", runs, point, code, out)
		}
	}
	for i := 0; ; i++ {
		runs++
		code, out := f.compactRun(t, cfg)
		if code == 4 {
			break
		}
		if code != 0 || i == 10 {
			t.Fatalf("run %d: exit %d (still not idle after %d clean runs):\n%s", runs, code, i, out)
		}
	}
	if kills < 10 {
		t.Errorf("only %d runs were killed at a hook, want ≥ 10", kills)
	}
	if recovered == 0 {
		t.Errorf("no run was killed after its commit: the recovery of a committed, uncleaned run was not exercised")
	}
	t.Logf("%d runs, %d killed at a hook (%d after the commit, recovered), %d at a random moment, %d late duplicates fed", runs, kills, recovered, random, late)
	reads := readIceberg(t, f, "sql", uri, wh, "lake.events", "")
	checkExact(t, f, reads)
	// Athena's engine reads the table the crashed runs converged to: no file missing.
	trinoCheckEvents(t, f, trinoRegister(t, reads[0].Metadata))
}

// TestE2ECompactConcurrent: two compactors started together on one table end
// consistent (one wins, the other re-plans or finds nothing to do). Both are held
// after writing their outputs until both are there, so that their commits race:
// the test requires that a conflict happened. TestFaultThreeCompactors races three.
func TestE2ECompactConcurrent(t *testing.T) {
	f := sinkFixture(t)
	prefix, _ := f.lakeFor(t)
	catYAML, uri, wh := sqliteCatalog(t, f.b, prefix)
	cfg := f.compactConfig(t, prefix, catYAML, "")
	raceCompactors(t, 2, func(env ...string) (int, string) { return f.compactRun(t, cfg, env...) })
	checkExact(t, f, readIceberg(t, f, "sql", uri, wh, "lake.events", ""))
}

// raceCompactors starts n compactors together with run (given the environment that
// holds each after writing its outputs), releases them once all hold their outputs,
// so that their commits race, and waits for them. It fails the test unless all n
// were held together, each exited 0 or idle (4), and the losers met at least one
// commit conflict each (n-1 in all); it returns the conflicts of each.
func raceCompactors(t *testing.T, n int, run func(env ...string) (int, string)) []int {
	t.Helper()
	codes, outs, paused := lineUp(t, n, func(_ int, env ...string) (int, string) { return run(env...) })
	conflicts := make([]int, n)
	total := 0
	for i, c := range codes {
		if c != 0 && c != exitIdle {
			t.Fatalf("compactor %d: exit %d:\n%s", i, c, outs[i])
		}
		conflicts[i] = summaryCount(outs[i], "conflicts")
		total += conflicts[i]
	}
	t.Logf("%d compactors (%d held together before committing): exit codes %v, commit conflicts %v", n, paused, codes, conflicts)
	for i, out := range outs {
		if m := regexp.MustCompile(`(?m)^compaction .*$`).FindString(out); m != "" {
			t.Logf("compactor %d: %s", i, m)
		}
	}
	if paused < n {
		t.Fatalf("only %d of %d compactors held their outputs together: their commits did not race\n%s", paused, n, strings.Join(outs, "\n"))
	}
	if total < n-1 {
		t.Fatalf("%d commit conflicts among %d compactors, want at least %d (one per loser): the test did not exercise the conflict path\n%s",
			total, n, n-1, strings.Join(outs, "\n"))
	}
	return conflicts
}

// lineUp starts n compactors together with run (given its index and the
// environment that holds it after writing its outputs), releases them once all
// hold their outputs (or have finished without any), so that their commits
// race, and waits for them. It returns their exit codes and outputs, and how
// many were held together.
func lineUp(t *testing.T, n int, run func(i int, env ...string) (int, string)) ([]int, []string, int) {
	t.Helper()
	pause := t.TempDir()
	var wg sync.WaitGroup
	var finished atomic.Int32
	codes := make([]int, n)
	outs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer finished.Add(1)
			codes[i], outs[i] = run(i, "LAKESINK_TEST_PAUSE_AT=after-outputs", "LAKESINK_TEST_PAUSE_DIR="+pause)
		}()
	}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		paused, _ := filepath.Glob(filepath.Join(pause, "paused.*"))
		if len(paused)+int(finished.Load()) >= n {
			break
		}
	}
	paused, _ := filepath.Glob(filepath.Join(pause, "paused.*"))
	if err := os.WriteFile(filepath.Join(pause, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return codes, outs, len(paused)
}

// TestE2ECompactPostgresAndGlue: the same table through iceberg-go's SQL
// catalog on Postgres, its Glue catalog on moto and its REST catalog on the
// Iceberg REST fixture, read back by PyIceberg (through its own catalog of the
// same kind, on the same server) and DuckDB.
func TestE2ECompactPostgresAndGlue(t *testing.T) {
	f := sinkFixture(t)
	for _, kind := range []string{"postgres", "glue", "rest"} {
		t.Run(kind, func(t *testing.T) {
			prefix, _ := f.lakeFor(t)
			cat := f.catalog(t, kind, prefix)
			cfg := f.compactConfig(t, prefix, cat.yaml, "")
			if code, out := f.compactRun(t, cfg, cat.env...); code != 0 {
				t.Fatalf("compact exit %d:\n%s", code, out)
			}
			checkExact(t, f, readIceberg(t, f, cat.typ, cat.uri, cat.warehouse, cat.table, ""))
			if kind != "rest" {
				return
			}
			// A second run finds nothing to merge (raw files wait out their grace).
			if code, out := f.compactRun(t, cfg, cat.env...); code != 4 && code != 0 {
				t.Fatalf("second compact exit %d:\n%s", code, out)
			}
			checkExact(t, f, readIceberg(t, f, cat.typ, cat.uri, cat.warehouse, cat.table, ""))
		})
	}
}

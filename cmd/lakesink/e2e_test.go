package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/internal/testbed"
)

// The end-to-end tests run the real binary against the test bed's Kafka broker and
// S3 server, kill it, and read the result back with DuckDB.

var binPath string

func TestMain(m *testing.M) {
	code := func() int {
		flag.Parse()
		if !testing.Short() && os.Getenv("LAKESINK_TEST_KAFKA_BROKERS") != "" {
			dir, err := os.MkdirTemp("", "lakesink-e2e")
			if err != nil {
				panic(err)
			}
			defer os.RemoveAll(dir)
			binPath = filepath.Join(dir, "lakesink")
			out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build lakesink: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// bed is one test's slice of the test bed: its own topics, group and key prefix.
type bed struct {
	t       *testing.T
	brokers []string
	s3      testbed.S3Config
	topic   string
	dlq     string
	group   string
	prefix  string
	adm     *kadm.Client
	cl      *kgo.Client
	// sinkBrokers and kafkaExtra change how the sink connects (SASL tests); env is
	// added to the sink's environment.
	sinkBrokers []string
	kafkaExtra  string
	env         []string
	// tables, when set, replaces the generated events table in config's tables section.
	tables string
}

func newBed(t *testing.T, partitions int32) *bed {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs the test bed")
	}
	return newBedAt(t, testbed.Kafka(t), partitions)
}

// newBedAt is newBed on the given brokers (a test's own broker, or a fault proxy in
// front of it).
func newBedAt(t *testing.T, brokers []string, partitions int32) *bed {
	t.Helper()
	b := &bed{t: t, brokers: brokers, s3: testbed.S3(t)}
	name := testbed.UniqueName(t, "e2e")
	b.topic, b.dlq, b.group, b.prefix = name, name+"-dlq", name+"-group", name+"/"
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		t.Fatal(err)
	}
	b.cl, b.adm = cl, kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := b.adm.CreateTopic(ctx, partitions, 1, nil, b.topic); err != nil {
		t.Fatal(err)
	}
	if _, err := b.adm.CreateTopic(ctx, 1, 1, nil, b.dlq); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = b.adm.DeleteTopics(context.Background(), b.topic, b.dlq)
		_, _ = b.adm.DeleteGroup(context.Background(), b.group)
		cl.Close()
	})
	return b
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// config writes a sink config for this bed; extra YAML replaces the flush section.
func (b *bed) config(flush string) string {
	if flush == "" {
		flush = "flush: {max_age: 10s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"
	}
	tables := gen.TableYAML("events", b.topic)
	if b.tables != "" {
		tables = b.tables
	}
	brokers := b.brokers
	if b.sinkBrokers != nil {
		brokers = b.sinkBrokers
	}
	y := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  commit_interval: 1s
  session_timeout: 10s
  rebalance_timeout: 60s
%s
s3:
  bucket: %s
  prefix: %s
  region: %s
  endpoint: %s
  path_style: true
  part_size: 5MiB
dead_letter: {topic: %s}
%s
http: {listen: "127.0.0.1:0"}
log: {level: info}
tables:
%s`, strings.Join(brokers, ","), b.group, b.kafkaExtra, b.s3.Bucket, b.prefix, b.s3.Region, b.s3.Endpoint, b.dlq, flush,
		tables)
	path := filepath.Join(b.t.TempDir(), "lakesink.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// proc is a running lakesink process.
type proc struct {
	cmd    *exec.Cmd
	port   int
	log    string
	exited chan struct{} // closed when the process has exited; err is set then
	err    error
}

// exitedErr reports whether the process exited, and how.
func (p *proc) exitedErr() (bool, error) {
	select {
	case <-p.exited:
		return true, p.err
	default:
		return false, nil
	}
}

func (b *bed) start(cfg string) *proc {
	b.t.Helper()
	port := freePort(b.t)
	data, err := os.ReadFile(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	own := filepath.Join(b.t.TempDir(), "sink.yaml")
	_ = os.WriteFile(own, []byte(strings.Replace(string(data), `127.0.0.1:0`, "127.0.0.1:"+strconv.Itoa(port), 1)), 0o600)
	logPath := filepath.Join(b.t.TempDir(), "sink.log")
	lf, err := os.Create(logPath)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd := exec.Command(binPath, "sink", "-c", own)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+b.s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+b.s3.SecretKey, "AWS_REGION="+b.s3.Region)
	cmd.Env = append(cmd.Env, b.env...)
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	p := &proc{cmd: cmd, port: port, log: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.exited) }()
	b.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if b.t.Failed() {
			tail, _ := exec.Command("tail", "-n", "30", logPath).Output()
			b.t.Logf("sink log tail (%s):\n%s", logPath, tail)
		}
	})
	return p
}

func (p *proc) kill9(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if err := p.err; err != nil {
			tail, _ := exec.Command("tail", "-n", "30", p.log).Output()
			t.Fatalf("sink exited with %v after SIGTERM; log:\n%s", err, tail)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("sink did not exit within 90s of SIGTERM")
	}
}

func (p *proc) metrics(t *testing.T) map[string]float64 {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] += v
		}
	}
	return out
}

// replays sums, in a sink's metrics, the records skipped as already durable and
// the raw files found already written by an earlier run.
func replays(m map[string]float64) float64 {
	n := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "lakesink_records_skipped_total") || strings.HasPrefix(k, "lakesink_upload_conflicts_total") {
			n += v
		}
	}
	return n
}

// produceInOrder produces events i = from, from+step, ... below n of g to
// partition 0, in index order (event times follow the index), and flushes.
func (b *bed) produceInOrder(g *gen.Events, n, from, step int) {
	b.t.Helper()
	ctx := context.Background()
	for i := from; i < n; i += step {
		v, _ := g.Event(i, n)
		b.cl.Produce(ctx, &kgo.Record{Topic: b.topic, Partition: 0, Value: append([]byte(nil), v...)}, nil)
	}
	if err := b.cl.Flush(ctx); err != nil {
		b.t.Fatal(err)
	}
}

// produce writes n generated events over hours of event time, round-robin over partitions.
func (b *bed) produce(n, hours int, seed uint64, partitions int32) {
	b.t.Helper()
	g := gen.New(seed, time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours)*time.Hour), time.Duration(hours)*time.Hour)
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := range n {
		v, _ := g.Event(i, n)
		r := &kgo.Record{Topic: b.topic, Partition: int32(i) % partitions, Value: append([]byte(nil), v...)}
		b.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := b.cl.Flush(ctx); err != nil {
		b.t.Fatal(err)
	}
	select {
	case err := <-errs:
		b.t.Fatal(err)
	default:
	}
}

// caughtUp reports whether the group's committed offsets equal the end offsets.
func (b *bed) caughtUp() (bool, string) {
	ctx := context.Background()
	ends, err := b.adm.ListEndOffsets(ctx, b.topic)
	if err != nil {
		return false, err.Error()
	}
	committed, err := b.adm.FetchOffsets(ctx, b.group)
	if err != nil {
		return false, err.Error()
	}
	ok := true
	var lag []string
	ends.Each(func(e kadm.ListedOffset) {
		c, found := committed.Lookup(e.Topic, e.Partition)
		if !found || c.At != e.Offset {
			ok = false
			lag = append(lag, fmt.Sprintf("p%d: committed %d end %d", e.Partition, c.At, e.Offset))
		}
	})
	return ok, strings.Join(lag, ", ")
}

func (b *bed) waitCaughtUp(timeout time.Duration, procs ...*proc) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, lag := b.caughtUp()
		if ok {
			return
		}
		for _, p := range procs {
			if done, err := p.exitedErr(); done {
				b.t.Fatalf("sink exited early: %v", err)
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("committed offsets did not reach the end within %s: %s", timeout, lag)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (b *bed) rawGlob() string {
	return fmt.Sprintf("s3://%s/%sraw/events/**/*.parquet", b.s3.Bucket, b.prefix)
}

// lakeCounts asks DuckDB for rows, distinct Kafka coordinates, and rows outside the
// dt/hour directory of their own event time.
func (b *bed) lakeCounts() (rows, distinct, misplaced int64) {
	b.t.Helper()
	res := testbed.DuckDB(b.t, fmt.Sprintf(`SELECT count(*),
	   count(DISTINCT (_kafka_topic, _kafka_partition, _kafka_offset)),
	   count(*) FILTER (WHERE floor(epoch(ts) / 3600) <> epoch(CAST(dt AS DATE)) / 3600 + CAST(hour AS INTEGER))
	 FROM read_parquet('%s', hive_partitioning = true)`, b.rawGlob()))
	if len(res) != 1 || len(res[0]) != 3 {
		b.t.Fatalf("unexpected DuckDB result %v", res)
	}
	return toInt(b.t, res[0][0]), toInt(b.t, res[0][1]), toInt(b.t, res[0][2])
}

func toInt(t *testing.T, v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case int64:
		return x
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err == nil {
			return n
		}
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

func TestE2EExactlyOnceIntoRawZone(t *testing.T) {
	const n, hours, parts = 200_000, 6, 6
	b := newBed(t, parts)
	b.produce(n, hours, 1, parts)
	p := b.start(b.config(""))
	b.waitCaughtUp(5*time.Minute, p)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	m := p.metrics(t)
	p.stop(t)
	rows, distinct, misplaced := b.lakeCounts()
	if rows != n || distinct != n || misplaced != 0 {
		t.Fatalf("DuckDB: rows %d distinct %d misplaced %d; want %d, %d, 0", rows, distinct, misplaced, n, n)
	}
	hoursSeen := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(DISTINCT (dt, hour)) FROM read_parquet('%s', hive_partitioning = true)`, b.rawGlob()))
	if h := toInt(t, hoursSeen[0][0]); h < 5 {
		t.Fatalf("events span %d event-hours, want >= 5", h)
	}
	if got := m[`lakesink_records_decoded_total{table="events"}`]; got != n {
		t.Errorf("lakesink_records_decoded_total = %v, want %d", got, n)
	}
	if ok, lag := b.caughtUp(); !ok {
		t.Fatalf("after shutdown, committed offsets are not at the end: %s", lag)
	}
}

func TestE2ECrashKill9NoLossNoDuplicates(t *testing.T) {
	const n, hours, parts = 200_000, 6, 6
	b := newBed(t, parts)
	b.produce(n, hours, 2, parts)
	cfg := b.config("flush: {max_age: 3s, max_file_bytes: 2MiB, memory_budget: 128MiB, shutdown_timeout: 30s}")
	rng := rand.New(rand.NewPCG(7, 7))
	kills := 0
	// replayed counts, over the runs, the records skipped as already durable and
	// the raw files found already written by an earlier run: the crashes must make
	// the replay path run, or the test proves nothing about it.
	replayed := 0.0
	for kills < 5 {
		p := b.start(cfg)
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		if ok, _ := b.caughtUp(); ok {
			t.Logf("caught up before kill %d; producing more", kills+1)
		}
		replayed += replays(p.metrics(t))
		p.kill9(t)
		kills++
	}
	p := b.start(cfg)
	b.waitCaughtUp(5*time.Minute, p)
	replayed += replays(p.metrics(t))
	p.stop(t)
	rows, distinct, misplaced := b.lakeCounts()
	t.Logf("after %d kill -9: rows %d, distinct %d, duplicates %d; %.0f records or files of earlier runs skipped", kills, rows, distinct, rows-distinct, replayed)
	if replayed == 0 {
		t.Errorf("no run skipped a durable record or met a raw file an earlier run wrote: the replay path did not run")
	}
	if distinct != n {
		t.Fatalf("lost records: %d distinct of %d", distinct, n)
	}
	if misplaced != 0 {
		t.Fatalf("%d rows outside their event-time partition", misplaced)
	}
	if rows != distinct {
		t.Fatalf("%d duplicate rows in the raw zone after %d crashes", rows-distinct, kills)
	}
}

func TestE2ERebalanceThreeProcesses(t *testing.T) {
	const n, hours, parts = 200_000, 6, 6
	b := newBed(t, parts)
	b.produce(n/2, hours, 3, parts)
	cfg := b.config("flush: {max_age: 5s, max_file_bytes: 4MiB, memory_budget: 96MiB, shutdown_timeout: 30s}")
	p1, p2, p3 := b.start(cfg), b.start(cfg), b.start(cfg)
	time.Sleep(3 * time.Second)
	p2.stop(t) // graceful leave mid-run: its partitions are revoked, flushed and committed
	b.produce(n/2, hours, 4, parts)
	p4 := b.start(cfg)
	b.waitCaughtUp(5*time.Minute, p1, p3, p4)
	for _, p := range []*proc{p1, p3, p4} {
		p.stop(t)
	}
	rows, distinct, misplaced := b.lakeCounts()
	t.Logf("rebalance: rows %d, distinct %d, duplicates %d", rows, distinct, rows-distinct)
	if distinct != n || misplaced != 0 {
		t.Fatalf("distinct %d of %d, misplaced %d", distinct, n, misplaced)
	}
	if rows != distinct {
		t.Fatalf("%d duplicate rows after a rebalance", rows-distinct)
	}
}

func TestE2EBadInputGoesToDeadLetters(t *testing.T) {
	b := newBed(t, 1)
	const good = 1000
	b.produce(good, 2, 5, 1)
	now := time.Now().UTC().Format(time.RFC3339)
	bad := map[string]string{
		"malformed_json":    `{"event_id": "broken`,
		"missing_field":     `{"ts":"` + now + `","user_id":1}`,
		"wrong_type":        `{"event_id":"x","ts":"` + now + `","user_id":"one"}`,
		"bad_timestamp":     `{"event_id":"x","ts":"not a time","user_id":1}`,
		"time_out_of_range": `{"event_id":"x","ts":"1970-01-01T00:00:00Z","user_id":1}`,
		"oversized":         `{"event_id":"` + strings.Repeat("x", 100<<10) + `","ts":"` + now + `","user_id":1}`,
	}
	ctx := context.Background()
	// An explicit record timestamp an hour back: the dead letter must keep it.
	origTS := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	for reason, v := range bad {
		r := &kgo.Record{Topic: b.topic, Key: []byte(reason), Value: []byte(v), Timestamp: origTS, Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}
		if err := b.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b.produce(good, 2, 6, 1)
	p := b.start(b.config("flush: {max_age: 10s, max_record_bytes: 64KiB, shutdown_timeout: 30s}"))
	b.waitCaughtUp(2*time.Minute, p)
	m := p.metrics(t)
	p.stop(t)
	rows, distinct, _ := b.lakeCounts()
	if rows != 2*good || distinct != 2*good {
		t.Fatalf("good rows %d (distinct %d), want %d", rows, distinct, 2*good)
	}
	// Read the dead-letter topic back.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(b.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]*kgo.Record{}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(got) < len(bad) && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got[string(r.Key)] = r })
	}
	for reason, v := range bad {
		r := got[reason]
		if r == nil {
			t.Errorf("%s: not in the dead-letter topic", reason)
			continue
		}
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["lakesink.reason"] != reason || h["origin"] != "test" || h["lakesink.source.topic"] != b.topic ||
			h["lakesink.table"] != "events" || h["lakesink.error"] == "" || string(r.Value) != v {
			t.Errorf("%s: dead letter headers %v (value kept: %v)", reason, h, string(r.Value) == v)
		}
		// Key (looked up above), timestamp and the source coordinates and time are kept.
		if !r.Timestamp.Equal(origTS) {
			t.Errorf("%s: dead letter timestamp %v, want the original %v", reason, r.Timestamp, origTS)
		}
		if _, err := time.Parse(time.RFC3339Nano, h["lakesink.time"]); err != nil || h["lakesink.source.partition"] != "0" {
			t.Errorf("%s: lakesink.time %q, lakesink.source.partition %q", reason, h["lakesink.time"], h["lakesink.source.partition"])
		}
		if off, err := strconv.ParseInt(h["lakesink.source.offset"], 10, 64); err != nil || off < good || off >= good+int64(len(bad)) {
			t.Errorf("%s: lakesink.source.offset %q, want one of the bad records' offsets", reason, h["lakesink.source.offset"])
		}
		if c := m[`lakesink_records_dead_lettered_total{reason="`+reason+`",table="events"}`]; c != 1 {
			t.Errorf("metric for %s = %v, want 1", reason, c)
		}
	}
}

func TestE2EMemoryBudgetWithThousandOpenPartitions(t *testing.T) {
	const n, hours, parts = 300_000, 1000, 6
	const budget = 64 << 20
	b := newBed(t, parts)
	b.produce(n, hours, 8, parts)
	cfg := b.config("flush: {max_age: 20s, max_file_bytes: 8MiB, memory_budget: 64MiB, max_open_partitions: 10000, shutdown_timeout: 30s}")
	p := b.start(cfg)
	var maxBuffered, maxRSS, share float64
	samples := 0
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if m := p.metrics(t); m != nil {
			samples++
			maxBuffered = max(maxBuffered, m["lakesink_buffered_bytes"])
			share = m["lakesink_buffer_budget_bytes"]
			if m["lakesink_buffered_bytes"] > share {
				t.Errorf("buffered %.0f bytes, over the buffers' share %.0f of the budget", m["lakesink_buffered_bytes"], share)
			}
			maxRSS = max(maxRSS, m["process_resident_memory_bytes"])
			if maxOpen := m["lakesink_open_partitions"]; maxOpen > 0 && samples%50 == 0 {
				t.Logf("open partitions %v, buffered %.1f MiB, rss %.1f MiB", maxOpen, m["lakesink_buffered_bytes"]/(1<<20), m["process_resident_memory_bytes"]/(1<<20))
			}
		}
		if ok, _ := b.caughtUp(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not caught up in 10 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop(t)
	t.Logf("1000 open hour partitions, budget 64 MiB: peak buffered %.1f MiB, peak RSS %.1f MiB (%d samples)",
		maxBuffered/(1<<20), maxRSS/(1<<20), samples)
	if samples < 10 {
		t.Fatalf("only %d metric samples", samples)
	}
	if share <= 0 || share >= budget {
		t.Fatalf("lakesink_buffer_budget_bytes %.0f: want the buffers' share of the %d budget", share, budget)
	}
	if maxBuffered > budget {
		t.Fatalf("buffered bytes peaked at %.0f, over the %d budget", maxBuffered, budget)
	}
	// The budget covers the Go heap (sink/memory.go); the binary's pages (~64 MiB) and
	// GC timing come on top. Measured 126–139 MiB; before the whole-process accounting
	// it was 212 MiB, and with parquet-go's buffers 913 MiB.
	if maxRSS > budget+112<<20 {
		t.Fatalf("peak RSS %.1f MiB, over the 64 MiB budget + 112 MiB", maxRSS/(1<<20))
	}
	rows, distinct, misplaced := b.lakeCounts()
	if rows != n || distinct != n || misplaced != 0 {
		t.Fatalf("rows %d distinct %d misplaced %d, want %d", rows, distinct, misplaced, n)
	}
}

func TestE2ESASLSCRAM(t *testing.T) {
	b := newBed(t, 2)
	scram := testbed.KafkaSCRAM(t)
	user := testbed.UniqueName(t, "user")
	ctx := context.Background()
	res, err := b.adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "right-password"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("create SCRAM user: %v %v", err, res.Error())
	}
	t.Cleanup(func() {
		_, _ = b.adm.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: user, Mechanism: kadm.ScramSha512}}, nil)
	})
	const n = 5000
	b.produce(n, 2, 9, 2)
	b.sinkBrokers = scram
	b.kafkaExtra = fmt.Sprintf("  sasl: {mechanism: scram-sha-512, username: %s, password_env: E2E_KAFKA_PASSWORD}", user)

	// A wrong password fails at start with a clear error and exit code 2.
	b.env = []string{"E2E_KAFKA_PASSWORD=wrong-password"}
	bad := b.start(b.config(""))
	select {
	case <-bad.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("sink with a wrong SASL password did not exit")
	}
	log, _ := os.ReadFile(bad.log)
	var exitErr *exec.ExitError
	if !errors.As(bad.err, &exitErr) || exitErr.ExitCode() != 2 || !strings.Contains(strings.ToLower(string(log)), "authentication") {
		t.Fatalf("wrong password: exit %v, log:\n%s", bad.err, log)
	}
	if strings.Contains(string(log), "wrong-password") {
		t.Fatal("the password was logged")
	}

	b.env = []string{"E2E_KAFKA_PASSWORD=right-password"}
	p := b.start(b.config(""))
	b.waitCaughtUp(2*time.Minute, p)
	p.stop(t)
	rows, distinct, misplaced := b.lakeCounts()
	if rows != n || distinct != n || misplaced != 0 {
		t.Fatalf("over SCRAM: rows %d distinct %d misplaced %d, want %d", rows, distinct, misplaced, n)
	}
}

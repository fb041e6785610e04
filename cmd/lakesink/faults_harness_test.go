package main

// The fault-injection harness (issue 13 §2): a Kafka broker of the test's own (so it can
// be killed without touching the shared bed's), a TCP fault proxy in front of it, and a
// scenario that produces a mix of good and bad records, runs real sink and compactor
// processes, and always ends with the same invariant check: `lakesink audit --json`
// finds 0 lost and 0 duplicated offsets, the dead letters are exactly the bad records,
// and DuckDB reads produced-minus-dead-lettered distinct rows from the raw zone and the
// Iceberg table together.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
)

// brokerStartTimeout bounds one start of a test's own broker (a JVM: ~7 s on the bed).
const brokerStartTimeout = 2 * time.Minute

// ownBroker is a single-node KRaft Kafka broker of one test, run from the bed's Kafka
// jars (deploy/local/kafka.sh installs them) on free loopback ports, with its data in
// the test's temporary directory. It advertises the address of the fault proxy in front
// of it, so every client connection goes through the proxy.
type ownBroker struct {
	t          testing.TB
	dir, props string
	libs       string
	port       int // the broker's own PLAINTEXT listener (the proxy's target)
	cmd        *exec.Cmd
	exited     chan struct{}
	starts     int
	pids       []int
}

// kafkaLibs finds the bed's Kafka jars (.bed/cache/kafka-<version>/libs).
func kafkaLibs(t testing.TB) string {
	t.Helper()
	m, _ := filepath.Glob("../../.bed/cache/kafka-*/libs")
	if len(m) == 0 {
		if os.Getenv(testbed.EnvRequireBed) == "1" {
			t.Fatal("no Kafka jars under .bed/cache: run deploy/local/kafka.sh install")
		}
		t.Skip("no Kafka jars under .bed/cache: run deploy/local/kafka.sh install")
	}
	abs, err := filepath.Abs(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// newOwnBroker formats a broker's storage and starts it, advertising advertise
// (host:port of the proxy); it is killed when the test ends.
func newOwnBroker(t testing.TB, advertise string) *ownBroker {
	t.Helper()
	b := &ownBroker{t: t, dir: t.TempDir(), libs: kafkaLibs(t), port: freePortTB(t)}
	cport := freePortTB(t)
	b.props = filepath.Join(b.dir, "server.properties")
	props := fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://%[3]s
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[4]s/data
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
`, b.port, cport, advertise, b.dir)
	if err := os.WriteFile(b.props, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	var id [16]byte
	for {
		_, _ = rand.Read(id[:])
		if s := base64.RawURLEncoding.EncodeToString(id[:]); s[0] != '-' {
			out, err := exec.Command("java", "-Xmx256m", "-cp", b.libs+"/*", "kafka.tools.StorageTool", "format",
				"-t", s, "-c", b.props, "--standalone").CombinedOutput()
			if err != nil {
				t.Fatalf("format own broker storage: %v\n%s", err, out)
			}
			break
		}
	}
	t.Cleanup(func() {
		if b.running() {
			b.kill9()
		}
		if t.Failed() {
			tail, _ := exec.Command("tail", "-n", "20", filepath.Join(b.dir, "kafka.log")).Output()
			t.Logf("own broker log tail:\n%s", tail)
		}
	})
	b.start()
	return b
}

// start launches the broker process (on the existing data) without waiting for it.
func (b *ownBroker) start() {
	b.t.Helper()
	lf, err := os.OpenFile(filepath.Join(b.dir, "kafka.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	here, _ := filepath.Abs("../../deploy/local/kafka-log4j2.properties")
	cmd := exec.Command("java", "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Djava.net.preferIPv4Stack=true", "-Dlog4j2.configurationFile="+here, "-Dkafka.logs.dir="+b.dir,
		"-cp", b.libs+"/*", "kafka.Kafka", b.props)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, and killed with the test process should that die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	b.starts++
	b.pids = append(b.pids, cmd.Process.Pid)
	done := b.exited
	go func() { _ = cmd.Wait(); lf.Close(); close(done) }()
}

func (b *ownBroker) running() bool {
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// kill9 kills the broker with SIGKILL and waits for it to be gone.
func (b *ownBroker) kill9() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exited
}

// waitReady polls a Metadata request through addrs until the broker answers with itself.
func (b *ownBroker) waitReady(addrs []string) {
	b.t.Helper()
	deadline := time.Now().Add(brokerStartTimeout)
	for {
		if !b.running() {
			tail, _ := exec.Command("tail", "-n", "30", filepath.Join(b.dir, "kafka.log")).Output()
			b.t.Fatalf("own broker exited during start:\n%s", tail)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			bs, err := kadm.NewClient(cl).ListBrokers(ctx)
			cancel()
			cl.Close()
			if err == nil && len(bs) == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("own broker not ready within %s", brokerStartTimeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func freePortTB(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// kafkaRig is a test's own broker behind a fault proxy.
type kafkaRig struct {
	broker *ownBroker
	proxy  *tcpProxy
}

func newKafkaRig(t testing.TB) *kafkaRig {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test: needs the test bed")
	}
	testbed.Kafka(t) // skip, or fail under make test, without the bed
	p := newTCPProxy(t, true)
	b := newOwnBroker(t, p.addr())
	p.setTarget("127.0.0.1:" + strconv.Itoa(b.port))
	b.waitReady([]string{p.addr()})
	return &kafkaRig{broker: b, proxy: p}
}

// restartBroker kills the broker with SIGKILL, starts it again on its data and waits
// until it answers; it fails the test unless the pid changed.
func (r *kafkaRig) restartBroker(t testing.TB) {
	t.Helper()
	old := r.broker.cmd.Process.Pid
	r.broker.kill9()
	r.broker.start()
	r.broker.waitReady([]string{r.proxy.addr()})
	if r.broker.cmd.Process.Pid == old {
		t.Fatalf("broker pid %d unchanged after kill -9 and restart", old)
	}
}

// scenario is one fault scenario's topics, lake prefix, catalog and counts.
type scenario struct {
	*bed
	cfg       string // sink + compactor + audit config
	catURI    string
	warehouse string
	// good and bad count the records produced (acknowledged by the broker);
	// failed counts records whose produce failed: they may or may not be in the
	// log (a request can be applied and its response lost), so verify then counts
	// the log itself.
	good, bad, failed atomic.Int64
	seq               atomic.Int64 // event numbers, unique over the scenario
	compacted         bool
}

// flushFast is the flush section of the fault scenarios: small files, short ages.
const flushFast = "flush: {max_age: 2s, max_file_bytes: 4MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"

func newScenario(t *testing.T, brokers []string, partitions int32, flush string) *scenario {
	t.Helper()
	if flush == "" {
		flush = flushFast
	}
	b := newBedAt(t, brokers, partitions)
	s := &scenario{bed: b}
	db := filepath.Join(t.TempDir(), "catalog.db")
	s.warehouse = fmt.Sprintf("s3://%s/%swarehouse", b.s3.Bucket, b.prefix)
	s.catURI = "sqlite:///" + db
	cfg := readFile(t, b.config(flush))
	cfg += fmt.Sprintf("catalog:\n  type: sql\n  namespace: lake\n  warehouse: %s\n  sql: {driver: sqlite, dsn: %s}\ncompaction:\n  lateness: 0s\n  raw_grace: 0s\n", s.warehouse, db)
	s.cfg = filepath.Join(t.TempDir(), "lakesink.yaml")
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// badRecord is not JSON: it is dead-lettered as malformed_json.
var badRecord = []byte(`{"event_id": "broken`)

// produceMix produces n records round-robin over partitions with event times spread
// over the hours closed hours before the current one; every 1/badFrac-th is a bad
// record (badFrac 0: none). It returns when the broker acknowledged all (retrying
// through faults) and fails the test on a produce error.
func (s *scenario) produceMix(n, hours int, badFrac float64, partitions int32) {
	s.t.Helper()
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours) * time.Hour)
	g := gen.New(uint64(s.seq.Add(1)), start, time.Duration(hours)*time.Hour)
	g.LateFraction = 0
	if err := s.produceEvents(n, badFrac, partitions, func(i int) []byte { v, _ := g.Event(i, n); return v }); err != nil {
		s.t.Fatal(err)
	}
}

// produceEvents produces n records from event(i) (or bad records at the 1/badFrac-th
// places) round-robin over partitions, counting those the broker acknowledged.
func (s *scenario) produceEvents(n int, badFrac float64, partitions int32, event func(i int) []byte) error {
	every := 0
	if badFrac > 0 {
		every = int(1 / badFrac)
	}
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := range n {
		var v []byte
		bad := every > 0 && i%every == every-1
		if bad {
			v = badRecord
		} else {
			v = append([]byte(nil), event(i)...)
		}
		r := &kgo.Record{Topic: s.topic, Partition: int32(i) % partitions, Value: v}
		s.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			switch {
			case err != nil:
				s.failed.Add(1)
				select {
				case errs <- err:
				default:
				}
			case bad:
				s.bad.Add(1)
			default:
				s.good.Add(1)
			}
		})
	}
	if err := s.cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce: flush: %w", err)
	}
	select {
	case err := <-errs:
		return fmt.Errorf("produce: %w", err)
	default:
	}
	return nil
}

// logCounts reads the source topic from its start to its end and counts its good
// and bad records: what the sink had to land when some produces failed and their
// records may or may not have been written. The log must hold every acknowledged
// record and no more than were sent.
func (s *scenario) logCounts(ackedGood, ackedBad, failed int64) (good, bad int64) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ends, err := s.adm.ListEndOffsets(ctx, s.topic)
	if err != nil {
		s.t.Fatalf("log count: end offsets: %v", err)
	}
	starts := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			s.t.Fatalf("log count: end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			starts[o.Partition] = kgo.NewOffset().AtStart()
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: starts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			s.t.Fatalf("log count: partitions not read to their end within 5 minutes: %v", want)
		}
		fs.EachError(func(t string, p int32, err error) { s.t.Logf("log count: fetch %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if bytes.Equal(r.Value, badRecord) {
				bad++
			} else {
				good++
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	if good < ackedGood || bad < ackedBad || good+bad > ackedGood+ackedBad+failed {
		s.t.Fatalf("log count: %d good and %d bad records in the log; acknowledged %d and %d, %d failed",
			good, bad, ackedGood, ackedBad, failed)
	}
	s.t.Logf("log count: %d produces failed; the log holds %d good and %d bad records (acknowledged %d and %d)",
		failed, good, bad, ackedGood, ackedBad)
	return good, bad
}

// compact runs lakesink compact and requires exit 0 (or 4: nothing to do).
func (s *scenario) compact() {
	s.t.Helper()
	f := &lakeFixture{b: s.bed}
	code, out := f.compactRun(s.t, s.cfg)
	if code != 0 && code != exitIdle {
		s.t.Fatalf("compact exit %d:\n%s", code, out)
	}
	s.compacted = true
}

// outcome is what a scenario ends with.
type outcome struct {
	Produced, Good, Bad     int64
	Raw, Table, DeadLetters int64
	Lost, Dup               int64
}

func (o outcome) String() string {
	return fmt.Sprintf("produced %d (good %d, bad %d): raw %d, iceberg %d, dead letters %d, lost %d, duplicated %d",
		o.Produced, o.Good, o.Bad, o.Raw, o.Table, o.DeadLetters, o.Lost, o.Dup)
}

// verify is the invariant every scenario ends with: the audit finds nothing; the dead
// letters are the bad records; DuckDB reads exactly the good records, each once, from
// the raw zone and the Iceberg table together.
func (s *scenario) verify() outcome {
	s.t.Helper()
	o := outcome{Good: s.good.Load(), Bad: s.bad.Load()}
	if failed := s.failed.Load(); failed > 0 {
		o.Good, o.Bad = s.logCounts(o.Good, o.Bad, failed)
	}
	o.Produced = o.Good + o.Bad
	code, rep, out := s.runAudit(s.cfg)
	o.Lost, o.Dup = rep.Lost, rep.DupRows
	for _, p := range rep.Partitions {
		o.DeadLetters += int64(p.DeadLetters)
	}
	if code != 0 || rep.Findings() || len(rep.Partitions) == 0 {
		s.t.Fatalf("audit exit %d, want 0 and no findings:\n%s", code, out)
	}
	if o.DeadLetters != o.Bad {
		s.t.Fatalf("audit saw %d dead letters, want the %d bad records", o.DeadLetters, o.Bad)
	}
	// The raw zone (if any file is left) and the table (if compacted), read by DuckDB.
	var srcs []string
	lake := (&lakeFixture{b: s.bed}).s3(s.t, s.prefix)
	rawFiles := 0
	_ = lake.List(context.Background(), "raw/", func(store.ObjectInfo) error { rawFiles++; return nil })
	if rawFiles > 0 {
		srcs = append(srcs, fmt.Sprintf("SELECT 'raw' AS src, _kafka_partition AS p, _kafka_offset AS o FROM read_parquet('%s')", s.rawGlob()))
	}
	if s.compacted {
		sum := testbed.IcebergQ(s.t, testbed.IcebergQuery{Catalog: "sql", URI: s.catURI, Warehouse: s.warehouse,
			Table: "lake.events", IDColumn: "event_id", TimeColumn: "ts"})
		if sum.DupKeys != nil && *sum.DupKeys != 0 {
			s.t.Fatalf("PyIceberg: %d duplicate Kafka coordinates in the table", *sum.DupKeys)
		}
		srcs = append(srcs, fmt.Sprintf("SELECT 'table' AS src, _kafka_partition AS p, _kafka_offset AS o FROM iceberg_scan('%s')", sum.MetadataLocation))
	}
	if len(srcs) == 0 {
		s.t.Fatal("neither raw files nor a table to read")
	}
	res := testbed.DuckDB(s.t, fmt.Sprintf(`WITH u AS (%s)
	SELECT count(*) FILTER (WHERE src = 'raw'), count(*) FILTER (WHERE src = 'table'), count(DISTINCT (p, o)),
	       count(*) FILTER (WHERE src = 'raw') - count(DISTINCT (p, o)) FILTER (WHERE src = 'raw'),
	       count(*) FILTER (WHERE src = 'table') - count(DISTINCT (p, o)) FILTER (WHERE src = 'table')
	FROM u`, strings.Join(srcs, " UNION ALL ")))
	o.Raw, o.Table = toInt(s.t, res[0][0]), toInt(s.t, res[0][1])
	distinct, rawDup, tableDup := toInt(s.t, res[0][2]), toInt(s.t, res[0][3]), toInt(s.t, res[0][4])
	if distinct != o.Good || rawDup != 0 || tableDup != 0 {
		s.t.Fatalf("DuckDB: %d distinct rows (raw %d, table %d), %d duplicated in raw, %d in the table; want %d distinct, 0, 0",
			distinct, o.Raw, o.Table, rawDup, tableDup, o.Good)
	}
	s.t.Logf("outcome: %s", o)
	return o
}

// waitUp polls the sink's /healthz until it answers 200 (its signal handler is
// installed by then: a SIGTERM earlier ends the process with Go's default action),
// failing if the process exits or does not answer within a minute.
func waitUp(t testing.TB, p *proc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/healthz"
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited during start: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("sink's /healthz did not answer within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

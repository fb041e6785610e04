// Command bench measures lakesink's throughput and memory; `make bench` runs it
// against the test bed. It prints one table and writes bench-results/bench.json.
//
//  1. bound:   decode + Parquet encode of the same events in memory (no Kafka, no S3).
//  2. e2e:     the real `lakesink sink` process draining a pre-filled Kafka topic into
//     Parquet on the S3 server; CPU time and peak RSS come from the child's rusage.
//  3. compact: the real `lakesink compact` process merging ≥ 1,000 small raw files of
//     the same events (written to the S3 server by the sink's engine) into an Iceberg
//     table in a SQLite catalog; MB are raw-file bytes read.
//  4. merge:   at each raw file size of -merge-sizes (28KB, 1MB, 64MB), the real `lakesink
//     compact` against its own bound: the same raw files merged by the compactor's Merger
//     in this process from memory into memory (no S3, no catalog; bench/merge.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/sink"
)

// Result is one measured figure.
type Result struct {
	Name          string  `json:"name"`
	Events        int     `json:"events"`
	Bytes         int64   `json:"bytes"`
	WallSeconds   float64 `json:"wall_seconds"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	EventsPerCPUs float64 `json:"events_per_cpu_second"`
	MBPerCPUs     float64 `json:"mb_per_cpu_second"`
	EventsPerSec  float64 `json:"events_per_second_wall"`
	MBPerSec      float64 `json:"mb_per_second_wall"`
	PeakRSSMiB    float64 `json:"peak_rss_mib,omitempty"`
	Files         int     `json:"files,omitempty"`
	// ServerCPUSeconds is the CPU the bed's S3 server used meanwhile (it
	// shares the cores), when it could be read.
	ServerCPUSeconds float64 `json:"s3_server_cpu_seconds,omitempty"`
	// Groups, Conflicts and Rebased are the compactor runs' summed counts
	// (compaction measures): groups merged, commit conflicts met, and those
	// resolved by staging the same outputs again (no re-merge).
	Groups    int `json:"groups,omitempty"`
	Conflicts int `json:"conflicts,omitempty"`
	Rebased   int `json:"rebased,omitempty"`
}

func main() {
	n := flag.Int("events", 1_000_000, "events")
	bin := flag.String("bin", "bin/lakesink", "lakesink binary")
	out := flag.String("out", "bench-results/bench.json", "JSON results")
	profile := flag.String("compact-cpuprofile", "", "write a CPU profile of the compaction run here, and of each later pair of the shards measure to PATH-procsN-latXms-one (its one run) and -shardI (each shard)")
	files := flag.Int("files", 1200, "small raw files the compaction measure starts from (at least)")
	latSeconds := flag.Int("latency-seconds", 60, "how long the steady-rate latency measure produces; 0: skip")
	latRate := flag.Int("latency-rate", 5000, "events per second of the latency measure")
	hours := flag.String("partitions", "10,1000,5000", "open hour partitions of each partitions measure (bench/partitions.go); empty: skip")
	partsOnly := flag.Bool("partitions-only", false, "run only the partitions measure (into -out)")
	partsBudget := flag.Int("partitions-budget", 512, "flush.memory_budget in MiB of the partitions measure")
	tableFiles := flag.String("table-files", "100,10000", "data files of the tables the idle and one-hour compaction runs are measured on (bench/tablesize.go); empty: skip")
	tableRepeats := flag.Int("table-size-repeats", 3, "one-hour runs on each table size (each on a new hour); the median's CPU is compared")
	shardsLatency := flag.Duration("shards-s3-latency", 10*time.Millisecond, "latency a proxy adds to each S3 request of the shards measure's third pair of runs (0: skip it)")
	shards := flag.Int("shards", 2, "also compact the day of data with this many shards at once, against one (0 or 1: skip)")
	compactionOnly := flag.Bool("compaction-only", false, "run only the compaction measures: one run and -shards runs on the day of data, and the table sizes (into -out)")
	shufN := flag.Int("shuffled-events", 1_000_000, "events of the shuffled measure (bench/shuffled.go); 0: skip")
	shufHours := flag.Int("shuffled-hours", 1426, "event-time hours the shuffled measure's events span")
	shufCaps := flag.String("shuffled-caps", "2000", "max_open_partitions of the shuffled measure's capped runs (comma-separated; empty: none)")
	shufOnly := flag.Bool("shuffled-only", false, "run only the shuffled measure and the hour-vs-day measure (into -out)")
	hvdOnly := flag.Bool("hour-vs-day-only", false, "run only the hour-vs-day measure (-shuffled-events, -shuffled-hours) and print it")
	mergeSz := flag.String("merge-sizes", "28KB,1MB,64MB,64MB-ordered", "raw file sizes of the merge measure (compactor vs its in-memory bound, bench/merge.go); empty: skip")
	mergeMB := flag.Int("merge-mb", 64, "MB of raw files the merge measure merges at each size")
	mergeLatency := flag.Duration("merge-s3-latency", 10*time.Millisecond, "latency a proxy adds to each S3 request of the merge measure's compactor (S3's first-byte latency)")
	mergeProfile := flag.String("merge-cpuprofile", "", "write a CPU profile of each merge measure's compactor run to this path + -SIZE")
	mergeOnly := flag.Bool("merge-only", false, "run only the merge measure and print it (into -out)")
	flag.Parse()
	if *mergeOnly {
		ms, err := mergeSizes(*bin, *mergeSz, *mergeMB, *mergeLatency, *mergeProfile)
		check(err)
		for _, t := range printMerge(ms) {
			fmt.Printf("%s: want %s %s, measured %s: %s\n", t.Name, t.Op, num(t.Want), num(t.Measured), t.Status)
		}
		check(mergeResults(*out, "merge", ms))
		return
	}
	counts, err := parseCounts(*tableFiles)
	check(err)
	if *compactionOnly {
		check(compactionMeasures(*n, *bin, *files, *profile, *shards, *shardsLatency, counts, *tableRepeats, *out))
		return
	}
	if *hvdOnly {
		r, err := hourVsDay(*bin, *shufN, *shufHours)
		check(err)
		t := hourVsDayTarget(r)
		fmt.Printf("%s: want %s %s, measured %s: %s\n", t.Name, t.Op, num(t.Want), num(t.Measured), t.Status)
		return
	}
	if *shufOnly {
		check(shuffledOnly(*bin, *shufN, *shufHours, *shufCaps, *out))
		return
	}
	if *partsOnly {
		check(partitionsOnly(*bin, *hours, *partsBudget, *out))
		return
	}
	events := make([][]byte, *n)
	var total int64
	g := gen.New(99, time.Now().UTC().Truncate(time.Hour).Add(-6*time.Hour), 6*time.Hour)
	for i := range events {
		v, _ := g.Event(i, *n)
		events[i] = append([]byte(nil), v...)
		total += int64(len(v))
	}
	fmt.Fprintf(os.Stderr, "bench: %d events, %.1f MB, avg %d bytes\n", *n, float64(total)/1e6, total/int64(*n))
	var results []Result
	bound, err := encodeOnly(events, total)
	check(err)
	results = append(results, bound)
	e2e, err := endToEnd(events, total, *bin)
	check(err)
	results = append(results, e2e)
	// The compaction measure's events span a day of event time (24 hour partitions), so
	// that its one-hour scan has something to prune; the same count and generator.
	dayStart := time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	g = gen.New(99, dayStart, 24*time.Hour)
	for i := range events {
		v, _ := g.Event(i, *n)
		events[i] = append(events[i][:0], v...)
	}
	sh, err := shardMeasures(events, *bin, *files, *profile, dayStart.Add(12*time.Hour), *shards, *shardsLatency)
	check(err)
	comp, sc := sh.Pairs[0].One, sh.Scan
	results = append(results, sh.Results()...)
	sizes, err := tableSizes(*bin, counts, *tableRepeats)
	check(err)
	var lat *Latency
	if *latSeconds > 0 {
		l, err := latency(*bin, *latRate, *latSeconds)
		check(err)
		lat = &l
	}
	parts, err := runPartitions(*bin, *hours, *partsBudget)
	check(err)
	var shuf []ShuffledResult
	if *shufN > 0 {
		caps, err := parseHours(*shufCaps)
		check(err)
		shuf, err = shuffled(*bin, *shufN, *shufHours, caps)
		check(err)
	}
	var hvd *HourVsDay
	if *shufN > 0 {
		r, err := hourVsDay(*bin, *shufN, *shufHours)
		check(err)
		hvd = &r
	}
	merges, err := mergeSizes(*bin, *mergeSz, *mergeMB, *mergeLatency, *mergeProfile)
	check(err)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tevents\tfiles\tevents/CPU-s\tMB/CPU-s\tevents/s wall\tMB/s wall\tpeak RSS MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.1f\t%.0f\t%.1f\t%.0f\t\n", r.Name, r.Events, r.Files, r.EventsPerCPUs, r.MBPerCPUs, r.EventsPerSec, r.MBPerSec, r.PeakRSSMiB)
	}
	tw.Flush()
	fmt.Printf("end-to-end / bound (events per CPU-second): %.0f%%\n\n", 100*e2e.EventsPerCPUs/bound.EventsPerCPUs)
	targets := []Target{
		atLeast("sink events per CPU-second", 200_000, e2e.EventsPerCPUs),
		atLeast("end to end / bound", 0.60, e2e.EventsPerCPUs/bound.EventsPerCPUs),
		atMost("sink peak RSS MiB (budget 1GiB + 64MiB)", 1024+64, e2e.PeakRSSMiB),
		atLeast("compactor MB per CPU-second", 100, comp.MBPerCPUs),
		atMost("compactor peak RSS MiB (budget 512MiB + 64MiB)", 512+64, comp.PeakRSSMiB),
	}
	targets = append(targets, atMost(fmt.Sprintf("one-hour scan / full scan, data-file bytes (%d of %d files)", sc.FilesPlanned, sc.FilesTotal),
		0.05, sc.Ratio))
	if lat != nil {
		limit := lat.MaxAgeSeconds + 5
		targets = append(targets,
			atMost(fmt.Sprintf("p99 s produce → visible in S3 at %d/s (max_age + 5 s)", lat.Rate), limit, lat.VisibleP99),
			atMost(fmt.Sprintf("p99 s produce → committed at %d/s (max_age + 5 s)", lat.Rate), limit, lat.CommitP99))
	}
	for _, p := range parts {
		targets = append(targets, atMost(fmt.Sprintf("sink peak RSS MiB, %d open hours (budget %dMiB + 64MiB)", p.Hours, p.BudgetMiB),
			float64(p.BudgetMiB+64), p.PeakRSSMiB))
		if p.Hours != parts[0].Hours {
			targets = append(targets, atLeast(fmt.Sprintf("sink events/CPU-s, %d open hours / %d", p.Hours, parts[0].Hours),
				0.90, p.ThroughputRel))
		}
	}
	if sh.N > 1 {
		for _, p := range sh.Pairs {
			targets = append(targets, atMost(fmt.Sprintf("compaction wall, %d shards / 1, GOMAXPROCS=%d each, S3 +%gms (CPU %.1f s / %.1f s; 2 cores shared with the S3 server)",
				sh.N, p.GOMAXPROCS, p.S3LatencyMs, p.Many.CPUSeconds, p.One.CPUSeconds), 0.6, p.Ratio()))
		}
	}
	if len(sizes) > 0 {
		printTableSizes(sizes)
		big, small := sizes[len(sizes)-1], sizes[0]
		targets = append(targets, atMost(fmt.Sprintf("idle compaction run CPU-s, %d-file table", big.Files), 2, big.Idle.CPUSeconds))
		if len(sizes) > 1 {
			targets = append(targets, atMost(fmt.Sprintf("one-hour compaction run CPU-s, %d-file table / %d-file (medians of %d runs)", big.Files, small.Files, len(big.OneHourRuns)),
				1.2, big.OneHour.CPUSeconds/small.OneHour.CPUSeconds))
		}
	}
	targets = append(targets, shuffledTargets(shuf)...)
	if hvd != nil {
		targets = append(targets, hourVsDayTarget(*hvd))
	}
	targets = append(targets, printMerge(merges)...)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\twant\tmeasured\tratio\tstatus\t")
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%.2f\t%s\t\n", t.Name, t.Op, num(t.Want), num(t.Measured), t.Ratio, t.Status)
	}
	tw.Flush()
	if len(parts) > 0 {
		printPartitions(parts)
	}
	if len(shuf) > 0 {
		printShuffled(shuf)
	}
	check(os.MkdirAll(filepath.Dir(*out), 0o755))
	data, _ := json.MarshalIndent(map[string]any{"results": results, "targets": targets, "partitions": parts, "shuffled": shuf, "hour_vs_day": hvd, "latency": lat, "scan": sc,
		"table_sizes": sizes, "merge": merges,
		"ratio_e2e_to_bound": e2e.EventsPerCPUs / bound.EventsPerCPUs}, "", "  ")
	check(os.WriteFile(*out, data, 0o644))
}

// Target is one figure of the performance issue against what was measured;
// Ratio > 1 is better than wanted. A figure that was not measured (zero: a peak RSS
// never sampled, a measure that did not run) is StatusNotMeasured, never met.
type Target struct {
	Name     string  `json:"name"`
	Op       string  `json:"op"`
	Want     float64 `json:"want"`
	Measured float64 `json:"measured"`
	Ratio    float64 `json:"ratio"`
	Met      bool    `json:"met"`
	Status   string  `json:"status"` // StatusMet, StatusNotMet or StatusNotMeasured
}

// Target statuses.
const (
	StatusMet         = "met"
	StatusNotMet      = "not met"
	StatusNotMeasured = "not measured"
)

func atLeast(name string, want, got float64) Target {
	return newTarget(Target{Name: name, Op: "≥", Want: want, Measured: got, Ratio: got / want}, got >= want)
}

func atMost(name string, want, got float64) Target {
	return newTarget(Target{Name: name, Op: "≤", Want: want, Measured: got, Ratio: want / got}, got <= want)
}

// newTarget sets t's status: not measured when t.Measured is zero or not a number.
func newTarget(t Target, met bool) Target {
	switch {
	case t.Measured <= 0 || math.IsNaN(t.Measured):
		t.Status, t.Ratio = StatusNotMeasured, 0
	case met:
		t.Met, t.Status = true, StatusMet
	default:
		t.Status = StatusNotMet
	}
	return t
}

func num(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func tableConfig(extra string) (*config.Config, error) {
	return config.Parse([]byte(`kafka: {brokers: ["127.0.0.1:1"]}
local_dir: /tmp/unused
dead_letter: {topic: dlq}
tables:
`+gen.TableYAML("events", "bench")+extra), nil)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// encodeOnly decodes every event into the sink's column store and encodes Parquet to
// io.Discard with the sink's own code (sink.Batch), a file every 128 MiB of buffered
// data: the sink without Kafka, S3 and its engine.
func encodeOnly(events [][]byte, total int64) (Result, error) {
	cfg, err := tableConfig("")
	if err != nil {
		return Result{}, err
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		return Result{}, err
	}
	dec := decode.NewDecoder(s, &cfg.Tables[0], 1<<20)
	batch := sink.NewBatch(s, "bench")
	now := time.Now()
	rec := &decode.Record{Topic: "bench", Timestamp: now}
	startCPU, start := cpuTime(), time.Now()
	for i, v := range events {
		rec.Offset, rec.Value = int64(i), v
		if _, err := dec.Decode(rec, now); err != nil {
			return Result{}, fmt.Errorf("event %d: %w", i, err)
		}
		batch.Add(dec.Row(), rec.Offset)
		if batch.Size() >= 128<<20 {
			if err := batch.Flush(io.Discard); err != nil {
				return Result{}, err
			}
		}
	}
	if err := batch.Flush(io.Discard); err != nil {
		return Result{}, err
	}
	return result("bound: decode+encode, 1 core", len(events), total, time.Since(start), cpuTime()-startCPU, 0), nil
}

func result(name string, n int, bytes int64, wall, cpu time.Duration, rssKiB int64) Result {
	return Result{Name: name, Events: n, Bytes: bytes, WallSeconds: wall.Seconds(), CPUSeconds: cpu.Seconds(),
		EventsPerCPUs: float64(n) / cpu.Seconds(), MBPerCPUs: float64(bytes) / 1e6 / cpu.Seconds(),
		EventsPerSec: float64(n) / wall.Seconds(), MBPerSec: float64(bytes) / 1e6 / wall.Seconds(),
		PeakRSSMiB: float64(rssKiB) / 1024}
}

func env(k string) string {
	v := os.Getenv(k)
	if v == "" {
		check(fmt.Errorf("%s is unset: run through `make bench` (it starts the test bed)", k))
	}
	return v
}

func endToEnd(events [][]byte, total int64, bin string) (Result, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	const parts = 6
	cl, adm, done, err := benchTopic(ctx, name, parts, map[string]*string{"retention.ms": ptr("-1")}, bulkProducer...)
	if err != nil {
		return Result{}, err
	}
	defer done()
	fmt.Fprintf(os.Stderr, "bench: pre-filling topic %s\n", name)
	for i, v := range events {
		cl.Produce(ctx, &kgo.Record{Topic: name, Partition: int32(i % parts), Value: v}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: draining %d events with %s\n", len(events), bin)
	sk, err := startSink(bin, name, "{max_file_bytes: 128MiB, memory_budget: 1GiB, max_age: 5m}")
	if err != nil {
		return Result{}, err
	}
	defer sk.stop()
	wall, cpu, rss, err := sk.drain(ctx, adm, name, len(events), nil)
	if err != nil {
		return Result{}, err
	}
	return result("e2e: Kafka → Parquet on S3, 2 cores", len(events), total, wall, cpu, rss), nil
}

func ptr(s string) *string { return &s }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func scrape(port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// decoded reads lakesink_records_decoded_total from a metrics page.
func decoded(page string) float64 {
	return metric(page, `lakesink_records_decoded_total{table="events"} `)
}

// metric reads one sample (prefix: name and labels and a space) from a metrics page.
func metric(page, prefix string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// watchRSS samples a child's high-water RSS (VmHWM in /proc/PID/status) until
// stop is called and returns the last value in KiB. The child's rusage
// ru_maxrss cannot be used: it counts the parent's memory the child inherited
// before exec, and this process holds every event in memory.
func watchRSS(pid int) (stop func() int64) {
	var hwm atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	read := func() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if kib > hwm.Load() {
					hwm.Store(kib)
				}
			}
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(done); <-finished })
		return hwm.Load()
	}
}

// printMerge prints the merge measure (compactor and bound at each raw file
// size) and returns its targets.
func printMerge(ms []MergeSize) []Target {
	if len(ms) == 0 {
		return nil
	}
	var targets []Target
	fmt.Printf("merge: the compactor (its S3 requests +%gms) against its in-memory bound\n", ms[0].S3LatencyMs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "raw file size\tfiles\tMB\trows\tcompact MB/CPU-s\tbound MB/CPU-s\tcompact / bound\tcompact rows/CPU-s\tcompact MB/s wall\tpeak RSS MiB\t")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%.1f\t%.1f\t%.0f%%\t%.0f\t%.1f\t%.0f\t\n", m.Label, m.Files, float64(m.Compact.Bytes)/1e6, m.Compact.Events,
			m.Compact.MBPerCPUs, m.Bound.MBPerCPUs, 100*m.Ratio, m.Compact.EventsPerCPUs, m.Compact.MBPerSec, m.Compact.PeakRSSMiB)
		targets = append(targets, atLeast(fmt.Sprintf("compactor / its bound, MB per CPU-second, %s raw files", m.Label), 0.70, m.Ratio))
	}
	tw.Flush()
	for _, m := range ms {
		if m.Reencode != nil {
			fmt.Printf("%s files in the table's order: %d row groups copied, %.1f MB/CPU-s (%.1f CPU-s); every row re-encoded (copy_row_groups: false) %.1f MB/CPU-s (%.1f CPU-s): %.1f×\n",
				m.Label, m.RowGroupsCopied, m.Compact.MBPerCPUs, m.Compact.CPUSeconds, m.Reencode.MBPerCPUs, m.Reencode.CPUSeconds, m.Compact.MBPerCPUs/m.Reencode.MBPerCPUs)
		}
	}
	fmt.Println()
	return targets
}

package main

// The compaction cost against table size (issue 16 §1): an idle run and a
// one-hour run on a table of many small hours, measured through a proxy that
// counts every S3 request of the compactor (raw zone, warehouse, and
// iceberg-go's reads of metadata, manifest lists and manifests).

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

// RunCost is what one `lakesink compact` run cost.
type RunCost struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
	Requests    int64   `json:"s3_requests"`
}

// TableSize is the cost of an idle run and of a one-hour run (1,000 new events
// in one closed hour) on a table of Files data files, one per hour, built by
// lakesink compact itself from one raw file per hour
// (compaction.max_partitions_per_commit hours per commit, so Files/200
// manifests). The one-hour run is repeated (OneHourRuns, each on a new
// hour, so the table grows by one file each time); OneHour is the run of
// median CPU.
type TableSize struct {
	Files        int       `json:"files"`
	BuildSeconds float64   `json:"build_seconds"`
	Idle         RunCost   `json:"idle"`
	OneHour      RunCost   `json:"one_hour"`
	OneHourRuns  []RunCost `json:"one_hour_runs"`
}

// countingProxy is a reverse proxy to the S3 server on loopback that counts
// the requests it forwards.
type countingProxy struct {
	url string
	n   atomic.Int64
	srv *http.Server
}

func newCountingProxy(target string) (*countingProxy, error) { return newSlowProxy(target, 0) }

// newSlowProxy is a counting proxy that holds every request for delay before
// forwarding it (S3's first-byte latency, which the bed's loopback S3 lacks).
func newSlowProxy(target string, delay time.Duration) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{url: "http://" + ln.Addr().String()}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // SigV4 signs the host the client used
	}}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.n.Add(1)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// tableSizes measures TableSize for each count of files, with repeats
// one-hour runs each.
func tableSizes(bin string, counts []int, repeats int) ([]TableSize, error) {
	var out []TableSize
	for _, n := range counts {
		ts, err := tableSize(bin, n, max(1, repeats))
		if err != nil {
			return nil, fmt.Errorf("table of %d files: %w", n, err)
		}
		out = append(out, ts)
	}
	return out, nil
}

func tableSize(bin string, files, repeats int) (TableSize, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-tablesize-%d-%d", files, time.Now().UnixNano())
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return TableSize{}, err
	}
	defer os.RemoveAll(dir)
	s3cfg := benchS3(name + "/")
	proxy, err := newCountingProxy(s3cfg.Endpoint)
	if err != nil {
		return TableSize{}, err
	}
	defer proxy.srv.Close()
	st, err := store.NewS3(ctx, s3cfg)
	if err != nil {
		return TableSize{}, err
	}
	cfg, cfgPath, err := compactConfig(name, dir, s3cfg, proxy.url, "{lateness: 0s, raw_grace: 0s}")
	if err != nil {
		return TableSize{}, err
	}
	// One event an hour for files hours ending repeats+2 hours ago, then
	// each one-hour run's 1,000 events in one of the closed hours after them.
	now := time.Now().UTC().Truncate(time.Hour)
	first := now.Add(-time.Duration(files+repeats+2) * time.Hour)
	fmt.Fprintf(os.Stderr, "bench: table size %d: writing one raw file an hour\n", files)
	if err := writeHours(ctx, cfg, st, first, files, files, 0); err != nil {
		return TableSize{}, err
	}
	ts := TableSize{Files: files}
	start := time.Now()
	for i := 0; ; i++ { // build, then delete the merged raw files (raw_grace 0)
		r := runCompact(bin, s3cfg, "compact", "-c", cfgPath)
		if r.err != nil {
			return ts, r.err
		}
		if regexp.MustCompile(`: idle in`).MatchString(r.out) {
			break
		}
		if i == 3 {
			return ts, fmt.Errorf("still not idle after %d runs:\n%s", i+1, r.out)
		}
	}
	ts.BuildSeconds = time.Since(start).Seconds()
	measure := func(what string) (RunCost, string, error) {
		proxy.n.Store(0)
		args := []string{"compact", "-c", cfgPath}
		if dir := os.Getenv("BENCH_TABLESIZE_PROFILES"); dir != "" {
			args = append(args, "--cpuprofile", filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", what, files)))
		}
		r := runCompact(bin, s3cfg, args...)
		return RunCost{CPUSeconds: r.cpu.Seconds(), WallSeconds: r.wall.Seconds(), Requests: proxy.n.Load()}, r.out, r.err
	}
	if ts.Idle, _, err = measure("idle"); err != nil {
		return ts, err
	}
	for k := range repeats {
		hour := now.Add(-time.Duration(repeats+1-k) * time.Hour)
		if err := writeHours(ctx, cfg, st, hour, 1, 1000, files+1000*k); err != nil {
			return ts, err
		}
		what := "one-hour"
		if k > 0 {
			what = fmt.Sprintf("one-hour-%d", k+1)
		}
		r, out, err := measure(what)
		if err != nil {
			return ts, err
		}
		if m := regexp.MustCompile(`(\d+) rows,`).FindStringSubmatch(out); m == nil || m[1] != "1000" {
			return ts, fmt.Errorf("the one-hour run did not merge 1000 rows:\n%s", out)
		}
		ts.OneHourRuns = append(ts.OneHourRuns, r)
	}
	byCPU := slices.Clone(ts.OneHourRuns)
	slices.SortFunc(byCPU, func(a, b RunCost) int { return cmp.Compare(a.CPUSeconds, b.CPUSeconds) })
	ts.OneHour = byCPU[len(byCPU)/2]
	fmt.Fprintf(os.Stderr, "bench: table size %d (built in %.0f s): idle %.2f CPU-s %d requests; one hour %s CPU-s (median %.3f) %d requests\n",
		files, ts.BuildSeconds, ts.Idle.CPUSeconds, ts.Idle.Requests, cpuList(ts.OneHourRuns), ts.OneHour.CPUSeconds, ts.OneHour.Requests)
	return ts, nil
}

// cpuList renders the CPU seconds of runs, comma-separated.
func cpuList(runs []RunCost) string {
	var b strings.Builder
	for i, r := range runs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.3f", r.CPUSeconds)
	}
	return b.String()
}

// writeHours writes n events (offsets from offset0 on, Kafka partition 0)
// spread evenly over hours hours from first, through the sink's engine: one raw
// file per hour.
func writeHours(ctx context.Context, cfg *config.Config, st store.Store, first time.Time, hours, n, offset0 int) error {
	e, err := sink.NewEngine(cfg, st, sink.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.Start(ectx)
	defer e.Close()
	e.Assign("bench", 0, int64(offset0), "")
	g := gen.New(7, first, time.Duration(hours)*time.Hour)
	g.LateFraction = 0
	rec := &decode.Record{Topic: "bench", Timestamp: time.Now()}
	for i := range n {
		v, _ := g.Event(i, n)
		rec.Offset, rec.Value = int64(offset0+i), v
		if out, err := e.Process(ctx, rec, 0); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		} else if out != sink.Buffered {
			return fmt.Errorf("event %d was not buffered (outcome %v)", i, out)
		}
	}
	e.SealPartitions(nil, "bench")
	return e.WaitDurable(ctx, nil)
}

// parseCounts reads a comma-separated list of positive integers.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range regexp.MustCompile(`\s*,\s*`).Split(s, -1) {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// printTableSizes prints the table-size measures.
func printTableSizes(sizes []TableSize) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "table files\tbuild s\tidle CPU-s\tidle wall s\tidle S3 requests\tone hour CPU-s (median)\tone hour CPU-s (each run)\tone hour wall s\tone hour S3 requests\t")
	for _, t := range sizes {
		fmt.Fprintf(tw, "%d\t%.0f\t%.3f\t%.2f\t%d\t%.3f\t%s\t%.2f\t%d\t\n", t.Files, t.BuildSeconds, t.Idle.CPUSeconds, t.Idle.WallSeconds, t.Idle.Requests,
			t.OneHour.CPUSeconds, cpuList(t.OneHourRuns), t.OneHour.WallSeconds, t.OneHour.Requests)
	}
	tw.Flush()
	fmt.Println()
}

// compactionMeasures runs only the compaction measures (go run ./bench
// -compaction-only): the day of data compacted by one run and by shards runs
// at once, and the idle and one-hour runs against table size; it prints them
// and writes them to out.
func compactionMeasures(n int, bin string, files int, profile string, shards int, latency time.Duration, counts []int, repeats int, out string) error {
	events := make([][]byte, n)
	dayStart := time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	g := gen.New(99, dayStart, 24*time.Hour)
	for i := range events {
		v, _ := g.Event(i, n)
		events[i] = append([]byte(nil), v...)
	}
	sh, err := shardMeasures(events, bin, files, profile, dayStart.Add(12*time.Hour), shards, latency)
	if err != nil {
		return err
	}
	results := sh.Results()
	sizes, err := tableSizes(bin, counts, repeats)
	if err != nil {
		return err
	}
	printTableSizes(sizes)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(map[string]any{"results": results, "table_sizes": sizes}, "", "  ")
	return os.WriteFile(out, data, 0o644)
}

// Shards is the shards measure: the day of data compacted by one run and by
// N runs at once, in pairs: with each process free to use both cores
// (GOMAXPROCS=2: one run already overlaps fetching, merging and uploading),
// with one core per process (GOMAXPROCS=1: a shard per core, as pods with a
// one-CPU limit), and, when a latency is set, GOMAXPROCS=2 with the
// compactors' S3 requests held that long each (S3's first-byte latency).
type Shards struct {
	N     int
	Pairs []ShardPair
	Scan  *Scan // of the first one-run table
}

// ShardPair is one run against N shards at once, in one setting.
type ShardPair struct {
	GOMAXPROCS  int     `json:"gomaxprocs"`
	S3LatencyMs float64 `json:"s3_latency_ms"`
	One         Result  `json:"one"`
	Many        Result  `json:"many"`
}

// Ratio is the shards' wall time over the one run's.
func (p ShardPair) Ratio() float64 { return p.Many.WallSeconds / p.One.WallSeconds }

// Results lists the runs.
func (s *Shards) Results() []Result {
	var out []Result
	for _, p := range s.Pairs {
		out = append(out, p.One)
		if s.N > 1 {
			out = append(out, p.Many)
		}
	}
	return out
}

// shardMeasures runs the shards measure (only the first one run when shards
// < 2) and prints it.
func shardMeasures(events [][]byte, bin string, files int, profile string, hour time.Time, shards int, latency time.Duration) (*Shards, error) {
	s := &Shards{N: shards}
	one, sc, err := compact(events, bin, files, profile, hour, 1, 2, 0)
	if err != nil {
		return nil, err
	}
	s.Scan = sc
	s.Pairs = []ShardPair{{GOMAXPROCS: 2, One: one}}
	if shards < 2 {
		return s, nil
	}
	s.Pairs = append(s.Pairs, ShardPair{GOMAXPROCS: 1})
	if latency > 0 {
		s.Pairs = append(s.Pairs, ShardPair{GOMAXPROCS: 2, S3LatencyMs: float64(latency) / 1e6})
	}
	for i := range s.Pairs {
		p := &s.Pairs[i]
		lat := time.Duration(p.S3LatencyMs * 1e6)
		prof := ""
		if profile != "" {
			prof = fmt.Sprintf("%s-procs%d-lat%gms", profile, p.GOMAXPROCS, p.S3LatencyMs)
		}
		if i > 0 {
			one := ""
			if prof != "" {
				one = prof + "-one" // the first pair's one run writes profile itself
			}
			if p.One, _, err = compact(events, bin, files, one, hour, 1, p.GOMAXPROCS, lat); err != nil {
				return nil, err
			}
		}
		if p.Many, _, err = compact(events, bin, files, prof, hour, shards, p.GOMAXPROCS, lat); err != nil {
			return nil, err
		}
		fmt.Printf("compaction of the day (S3 requests +%gms), GOMAXPROCS=%d per process: 1 run %.1f s wall, %.2f CPU-s (S3 server %.1f CPU-s, %.2f cores busy); "+
			"%d shards %.1f s wall (%.2f of 1), %.2f CPU-s (%.2f of 1; S3 server %.1f CPU-s, %.2f cores busy); groups %d and %d, shard conflicts %d (%d rebased)\n",
			p.S3LatencyMs, p.GOMAXPROCS, p.One.WallSeconds, p.One.CPUSeconds, p.One.ServerCPUSeconds, (p.One.CPUSeconds+p.One.ServerCPUSeconds)/p.One.WallSeconds,
			shards, p.Many.WallSeconds, p.Ratio(), p.Many.CPUSeconds, p.Many.CPUSeconds/p.One.CPUSeconds, p.Many.ServerCPUSeconds,
			(p.Many.CPUSeconds+p.Many.ServerCPUSeconds)/p.Many.WallSeconds, p.One.Groups, p.Many.Groups, p.Many.Conflicts, p.Many.Rebased)
		if p.Many.Groups != p.One.Groups || p.Many.Conflicts != p.Many.Rebased {
			return nil, fmt.Errorf("%d shards merged %d groups against one run's %d, with %d conflicts of which %d rebased: a shard merged again",
				shards, p.Many.Groups, p.One.Groups, p.Many.Conflicts, p.Many.Rebased)
		}
	}
	return s, nil
}

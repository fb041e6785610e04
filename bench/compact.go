package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

const benchPartitions = 4

// compact fills a raw zone on the S3 server with at least minFiles small files
// of the events (the sink's own engine writes them, sealing every buffer often),
// then times `lakesink compact` over it into a SQLite-catalog Iceberg table: one
// run, or shards runs at once (--shard I/N; wall from the first start to the
// last exit, CPU summed).
//
// It then measures pruning (Scan): the data-file bytes PyIceberg plans for a one-hour
// predicate against those of a full scan of the compacted table.
func compact(events [][]byte, bin string, minFiles int, profile string, hour time.Time, shards, procs int, latency time.Duration) (Result, *Scan, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-compact-%d", time.Now().UnixNano())
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return Result{}, nil, err
	}
	defer os.RemoveAll(dir)
	s3cfg := benchS3(name + "/")
	st, err := store.NewS3(ctx, s3cfg)
	if err != nil {
		return Result{}, nil, err
	}
	endpoint := s3cfg.Endpoint
	if latency > 0 {
		// The compactor reaches S3 through a proxy that holds each request (S3's
		// first-byte latency); the sink writing the raw files does not.
		proxy, err := newSlowProxy(s3cfg.Endpoint, latency)
		if err != nil {
			return Result{}, nil, err
		}
		defer proxy.srv.Close()
		endpoint = proxy.url
	}
	cfg, cfgPath, err := compactConfig(name, dir, s3cfg, endpoint, "{lateness: 0s}")
	if err != nil {
		return Result{}, nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: writing ≥ %d small raw files under s3://%s/%s/\n", minFiles, s3cfg.Bucket, name)
	if err := writeSmallFiles(ctx, cfg, st, events, minFiles); err != nil {
		return Result{}, nil, err
	}
	var files int
	var size int64
	if err := st.List(ctx, "raw/", func(o store.ObjectInfo) error { files++; size += o.Size; return nil }); err != nil {
		return Result{}, nil, err
	}
	if files < minFiles {
		return Result{}, nil, fmt.Errorf("the raw zone holds %d files, want ≥ %d", files, minFiles)
	}
	fmt.Fprintf(os.Stderr, "bench: compacting %d raw files (%.1f MB) with %s, %d shard(s)\n", files, float64(size)/1e6, bin, shards)
	args := []string{"compact", "-c", cfgPath}
	if profile != "" && shards == 1 {
		args = append(args, "--cpuprofile", profile)
	}
	if shards > 1 {
		// Shards starting at once on a fresh SQLite catalog file have met
		// SQLITE_BUSY opening it (seen once here, not reproduced since): a dry run
		// creates it first (a real deployment of shards has a server catalog).
		if r := runCompact(bin, s3cfg, "compact", "-c", cfgPath, "--dry-run"); r.err != nil {
			return Result{}, nil, r.err
		}
	}
	runs := make([]compactRun, shards)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range runs {
		a := args
		if shards > 1 {
			a = append(slices.Clip(args), fmt.Sprintf("--shard=%d/%d", i, shards))
			if profile != "" {
				a = append(a, "--cpuprofile", fmt.Sprintf("%s-shard%d", profile, i))
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); runs[i] = runCompactProcs(bin, s3cfg, procs, a...) }()
	}
	server0, serverOK := s3ServerCPU()
	wg.Wait()
	wall := time.Since(start)
	server1, _ := s3ServerCPU()
	var cpu time.Duration
	var rss int64
	rows, groups, conflicts, rebased := 0, 0, 0, 0
	for _, r := range runs {
		if r.err != nil {
			return Result{}, nil, r.err
		}
		// The runs must have merged every event: the summary line counts the rows.
		m := regexp.MustCompile(`(\d+) rows, (\d+) duplicates dropped`).FindStringSubmatch(r.out)
		if m == nil {
			return Result{}, nil, fmt.Errorf("no summary in the compactor's output:\n%s", r.out)
		}
		n, _ := strconv.Atoi(m[1])
		rows += n
		if m := regexp.MustCompile(`(\d+) group\(s\).* (\d+) conflicts \((\d+) rebased\)`).FindStringSubmatch(r.out); m != nil {
			g, _ := strconv.Atoi(m[1])
			c, _ := strconv.Atoi(m[2])
			rb, _ := strconv.Atoi(m[3])
			groups, conflicts, rebased = groups+g, conflicts+c, rebased+rb
		}
		cpu += r.cpu
		rss = max(rss, r.rssKiB)
	}
	if rows != len(events) {
		return Result{}, nil, fmt.Errorf("the compactor merged %d rows, want %d", rows, len(events))
	}
	label := fmt.Sprintf("compact: raw files → Iceberg, 2 cores, GOMAXPROCS=%d", procs)
	if shards > 1 {
		label = fmt.Sprintf("compact: %d shards at once, 2 cores, GOMAXPROCS=%d each", shards, procs)
	}
	r := result(label, len(events), size, wall, cpu, rss)
	r.Files = files
	r.Groups, r.Conflicts, r.Rebased = groups, conflicts, rebased
	if serverOK {
		r.ServerCPUSeconds = (server1 - server0).Seconds()
	}
	sc, err := scan(s3cfg, "sqlite:///"+filepath.Join(dir, "catalog.db"), fmt.Sprintf("s3://%s/%s/warehouse", s3cfg.Bucket, name), hour)
	if err != nil {
		return Result{}, nil, err
	}
	return r, sc, nil
}

// compactConfig writes the config of a compaction measure named name (its S3
// prefix; the compactor reaches S3 at endpoint; compaction is the YAML of its
// compaction section) with its SQLite catalog in dir, and returns it parsed and
// its path.
func compactConfig(name, dir string, s3cfg store.S3Config, endpoint, compaction string) (*config.Config, string, error) {
	y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
s3: {bucket: %s, prefix: %s/, region: %s, endpoint: %s, path_style: true}
dead_letter: {topic: dlq}
log: {level: warn}
flush: {max_file_bytes: 1GiB, memory_budget: 1GiB, max_age: 1h}
catalog:
  type: sql
  namespace: bench
  warehouse: s3://%s/%s/warehouse
  sql: {driver: sqlite, dsn: %s}
compaction: %s
tables:
%s`, s3cfg.Bucket, name, s3cfg.Region, endpoint, s3cfg.Bucket, name, filepath.Join(dir, "catalog.db"), compaction, gen.TableYAML("events", "bench"))
	cfgPath := filepath.Join(dir, "lakesink.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		return nil, "", err
	}
	cfg, err := config.Parse([]byte(y), nil)
	return cfg, cfgPath, err
}

// compactRun is one finished `lakesink compact` child: its output, CPU
// (rusage), wall time and peak RSS.
type compactRun struct {
	out    string
	cpu    time.Duration
	wall   time.Duration
	rssKiB int64
	err    error
}

// runCompact runs `lakesink <args>` (GOMAXPROCS=2, the bed's S3 credentials)
// and measures it; a non-zero exit other than 4 (idle) is an error.
func runCompact(bin string, s3cfg store.S3Config, args ...string) compactRun {
	return runCompactProcs(bin, s3cfg, 2, args...)
}

// runCompactProcs is runCompact with GOMAXPROCS=procs.
func runCompactProcs(bin string, s3cfg store.S3Config, procs int, args ...string) compactRun {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+s3cfg.SecretAccessKey,
		"AWS_REGION="+s3cfg.Region, fmt.Sprintf("GOMAXPROCS=%d", procs))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return compactRun{err: err}
	}
	stopRSS := watchRSS(cmd.Process.Pid)
	err := cmd.Wait()
	r := compactRun{out: out.String(), wall: time.Since(start), rssKiB: stopRSS()}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 4 {
		err = nil
	}
	if err != nil {
		r.err = fmt.Errorf("lakesink %s: %w\n%s", strings.Join(args, " "), err, r.out)
		return r
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return r
}

// s3ServerCPU is the CPU time the bed's S3 server (versitygw, whose pid file
// sits beside its data directory, LAKESINK_TEST_S3_DIR) has used so far: it
// shares the machine's cores with what a measure runs. ok is false when it
// cannot be read (another S3 endpoint).
func s3ServerCPU() (cpu time.Duration, ok bool) {
	dir := os.Getenv("LAKESINK_TEST_S3_DIR")
	if dir == "" {
		return 0, false
	}
	pid, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "versitygw.pid"))
	if err != nil {
		return 0, false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "stat"))
	if err != nil {
		return 0, false
	}
	// Fields after the command's closing parenthesis: utime and stime are
	// the 12th and 13th, in clock ticks (100 a second on Linux).
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// Scan is the pruning measure: what a one-hour predicate on the event time plans
// to read from the compacted table, against a full scan, as PyIceberg plans it
// (deploy/local/icebergq.py: an independent reader, not lakesink's code).
type Scan struct {
	Hour         string  `json:"hour"`
	FilesPlanned int64   `json:"files_planned"`
	FilesTotal   int64   `json:"files_total"`
	BytesPlanned int64   `json:"bytes_planned"`
	BytesTotal   int64   `json:"bytes_total"`
	Ratio        float64 `json:"bytes_ratio"`
}

func scan(s3cfg store.S3Config, uri, warehouse string, hour time.Time) (*Scan, error) {
	h := hour.UTC().Format("2006-01-02T15")
	cmd := exec.Command(env("LAKESINK_TEST_PYTHON"), env("LAKESINK_TEST_ICEBERGQ"), "--catalog", "sql", "--uri", uri,
		"--warehouse", warehouse, "--table", "bench.events", "--id-column", "event_id", "--time-column", "ts",
		"--filter-hour", h, "--s3-endpoint", s3cfg.Endpoint)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+s3cfg.SecretAccessKey,
		"AWS_REGION="+s3cfg.Region)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("icebergq.py: %w\n%s", err, stderr.String())
	}
	var q struct {
		Count        int64 `json:"count"`
		FilesPlanned int64 `json:"files_planned"`
		FilesTotal   int64 `json:"files_total"`
		BytesPlanned int64 `json:"bytes_planned"`
		BytesTotal   int64 `json:"bytes_total"`
	}
	if err := json.Unmarshal(out, &q); err != nil {
		return nil, fmt.Errorf("icebergq.py output %q: %w", out, err)
	}
	if q.Count == 0 || q.BytesTotal == 0 {
		return nil, fmt.Errorf("hour %s of the compacted table read %d rows of %d bytes: nothing to measure", h, q.Count, q.BytesTotal)
	}
	fmt.Fprintf(os.Stderr, "bench: one-hour scan (%s) plans %d of %d files, %d of %d bytes\n", h, q.FilesPlanned, q.FilesTotal, q.BytesPlanned, q.BytesTotal)
	return &Scan{Hour: h, FilesPlanned: q.FilesPlanned, FilesTotal: q.FilesTotal, BytesPlanned: q.BytesPlanned,
		BytesTotal: q.BytesTotal, Ratio: float64(q.BytesPlanned) / float64(q.BytesTotal)}, nil
}

// writeSmallFiles runs the events through the sink's engine over benchPartitions
// Kafka partitions and seals every open buffer often enough to leave at least
// minFiles raw files (a buffer is one partition's rows of one hour).
func writeSmallFiles(ctx context.Context, cfg *config.Config, st store.Store, events [][]byte, minFiles int) error {
	// The generator's events move through the hours in order (a few arrive
	// late): each seal leaves about one file per Kafka partition.
	seals := minFiles/benchPartitions + minFiles/(10*benchPartitions) + 1
	every := max(1, len(events)/seals)
	return writeRaw(ctx, cfg, st, len(events), benchPartitions, every, func(i int) []byte { return events[i] })
}

// writeRaw runs n events (event(i) is the i-th) through the sink's engine over
// parts Kafka partitions into st's raw zone, sealing every open buffer after
// every every events.
func writeRaw(ctx context.Context, cfg *config.Config, st store.Store, n, parts, every int, event func(int) []byte) error {
	e, err := sink.NewEngine(cfg, st, sink.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.Start(ectx)
	defer e.Close()
	for p := range int32(parts) {
		e.Assign("bench", p, -1, "")
	}
	now := time.Now()
	rec := &decode.Record{Topic: "bench", Timestamp: now}
	for i := range n {
		rec.Partition, rec.Offset, rec.Value = int32(i%parts), int64(i/parts), event(i)
		if out, err := e.Process(ctx, rec, 0); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		} else if out != sink.Buffered {
			return fmt.Errorf("event %d was not buffered (outcome %v)", i, out)
		}
		if (i+1)%every == 0 {
			e.SealPartitions(nil, "bench")
		}
	}
	e.SealPartitions(nil, "bench")
	return e.WaitDurable(ctx, nil)
}

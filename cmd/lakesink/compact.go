package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/store"
)

// Exit codes of lakesink compact (beyond exitOK, exitError = retryable, exitConfig).
const (
	exitHalted = 3
	exitIdle   = 4
)

// compactResult carries compact's exit code through run's error handling.
type compactResult struct{ code int }

func (r *compactResult) Error() string { return fmt.Sprintf("exit %d", r.code) }

func cmdCompact(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compact", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "print the plan (partitions, inputs, planned outputs) and change nothing")
	only := fs.String("table", "", "compact only this table")
	metricsFile := fs.String("metrics-file", "", "write the run's metrics here (Prometheus text format) at exit")
	idleCode := fs.Int("idle-exit-code", exitIdle, "exit code when there was nothing to do (0 for a CronJob that treats idle as success)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run here (go tool pprof)")
	maxDuration := fs.Duration("max-duration", 0, "start no new commit after this long: the run stops between commits, exits 0 and reports \"more to do\" (0: compaction.max_duration of the config, whose default 0 runs until nothing is due; set it below a CronJob's activeDeadlineSeconds)")
	shardFlag := fs.String("shard", "", "compact only the partitions of shard I out of N (I/N, e.g. 0/4): a hash of table and partition; shard 0 also runs snapshot expiry and the orphan sweep")
	shards := fs.Int("shards", 0, "split the work into N shards, this one's index taken from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); instead of --shard")
	maintOnly := fs.Bool("maintenance-only", false, "only merge manifests, expire snapshots and sweep orphan files (no merge of data, no raw deletion)")
	noMaint := fs.Bool("no-maintenance", false, "merge and clean raw files only, never expire snapshots or sweep orphans (maintenance runs elsewhere)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	shard, err := shardOf(*shardFlag, *shards, os.Getenv("JOB_COMPLETION_INDEX"))
	if err != nil {
		return &configError{err}
	}
	maint := compaction.MaintainAuto
	switch {
	case *maintOnly && *noMaint:
		return &configError{errors.New("--maintenance-only and --no-maintenance exclude each other")}
	case *maintOnly && shard.Sharded():
		return &configError{errors.New("--maintenance-only runs once per table: it takes no --shard or --shards")}
	case *maintOnly:
		maint = compaction.MaintainOnly
	case *noMaint:
		maint = compaction.MaintainSkip
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := cfg.ValidateCompaction(); err != nil {
		return &configError{err}
	}
	log := newLogger(stderr, cfg.Log.Level)
	setMemoryLimit(int64(cfg.Compaction.MemoryBudget), log)
	reg := prometheus.NewRegistry()
	m := compaction.NewMetrics(reg)
	for _, t := range cfg.Tables {
		if *only == "" || *only == t.Name {
			m.Touch(t.Name)
		}
	}
	start := time.Now()

	if *maxDuration < 0 {
		return &configError{fmt.Errorf("--max-duration %s is negative", *maxDuration)}
	}
	if *maxDuration == 0 {
		*maxDuration = cfg.Compaction.MaxDuration
	}
	var deadline time.Time
	if *maxDuration > 0 {
		deadline = start.Add(*maxDuration)
	}
	run := compactOpts{dry: *dry, only: *only, deadline: deadline, shard: shard, maint: maint}
	code, sum, runErr := compactRun(ctx, cfg, m, run, stderr)
	result := map[int]string{exitOK: "success", exitError: "retryable", exitHalted: "halted", exitIdle: "idle"}[code]
	if sum.MoreToDo {
		m.MoreToDo.Set(1)
	}
	if code == exitOK && sum.Idle() && !sum.MoreToDo {
		code, result = *idleCode, "idle"
	}
	if code == exitConfig {
		result = "halted"
	}
	m.Runs.WithLabelValues(result).Inc()
	m.Duration.Set(time.Since(start).Seconds())
	if result == "halted" {
		m.Halted.Set(1)
	}
	if result == "success" || result == "idle" {
		for _, t := range cfg.Tables {
			if *only == "" || *only == t.Name {
				m.LastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
			}
		}
	}
	if !*dry {
		more := ""
		if sum.MoreToDo {
			more = " — more to do (stopped at --max-duration between commits; the next run goes on)"
		}
		who := ""
		if shard.Sharded() {
			who = " (shard " + shard.String() + ")"
		}
		fmt.Fprintf(stdout, "compaction %s%s: %s in %s — %d table(s), %d partition(s) in %d commit(s), %d group(s), %d files (%s) in → %d files (%s) out, %d rows, %d duplicates dropped, %d row groups copied, %d raw files deleted, %d manifests merged, %d snapshots expired, %d orphans deleted, %d conflicts (%d rebased)%s\n",
			sum.Job, who, result, time.Since(start).Round(time.Millisecond), sum.Tables, sum.Partitions, sum.Commits, sum.Groups, sum.FilesIn, humanBytes(sum.BytesIn),
			sum.FilesOut, humanBytes(sum.BytesOut), sum.RowsOut, sum.Dups, sum.RowGroupsCopied, sum.RawDeleted, sum.ManifestsMerged, sum.SnapshotsExpired, sum.OrphansDeleted, sum.Conflicts, sum.Rebased, more)
		for _, ch := range sum.Changes {
			fmt.Fprintf(stdout, "  %s\n", ch)
		}
	}
	if *metricsFile != "" {
		if err := prometheus.WriteToTextfile(*metricsFile, reg); err != nil {
			log.Error("write metrics file", "err", err)
		}
	}
	if u := cfg.Compaction.PushgatewayURL; u != "" && !*dry {
		pusher := push.New(u, "lakesink_compact").Gatherer(reg)
		if shard.Sharded() {
			// One group per shard: the shards of a run push at once, and a
			// push replaces its whole group.
			pusher = pusher.Grouping("shard", strconv.Itoa(shard.Index))
		}
		if err := pusher.Push(); err != nil {
			log.Error("push metrics", "err", err)
		}
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "lakesink compact: %s: %v\n", result, runErr)
	}
	if code == exitOK {
		return nil
	}
	return &compactResult{code}
}

// compactOpts are the flags of one lakesink compact run.
type compactOpts struct {
	dry      bool
	only     string
	deadline time.Time
	shard    compaction.Shard
	maint    compaction.Maintenance
}

// shardOf is the run's shard from --shard I/N, or from --shards N with the
// index in $JOB_COMPLETION_INDEX (jobIndex); neither: unsharded.
func shardOf(flag string, n int, jobIndex string) (compaction.Shard, error) {
	switch {
	case flag != "" && n != 0:
		return compaction.Shard{}, errors.New("--shard and --shards exclude each other")
	case flag != "":
		sh, err := compaction.ParseShard(flag)
		if err != nil {
			return sh, fmt.Errorf("--shard: %w", err)
		}
		return sh, nil
	case n < 0:
		return compaction.Shard{}, fmt.Errorf("--shards %d: must be at least 1", n)
	case n == 0:
		return compaction.Shard{}, nil
	case jobIndex == "":
		return compaction.Shard{}, fmt.Errorf("--shards %d: JOB_COMPLETION_INDEX is not set (run as a Kubernetes Indexed Job, or use --shard I/N)", n)
	}
	i, err := strconv.Atoi(jobIndex)
	if err != nil {
		return compaction.Shard{}, fmt.Errorf("--shards %d: JOB_COMPLETION_INDEX %q is not an integer", n, jobIndex)
	}
	sh := compaction.Shard{Index: i, Count: n}
	if err := sh.Validate(); err != nil {
		return sh, fmt.Errorf("--shards %d with JOB_COMPLETION_INDEX %s: %w", n, jobIndex, err)
	}
	return sh, nil
}

func compactRun(ctx context.Context, cfg *config.Config, m *compaction.Metrics, o compactOpts, stderr io.Writer) (int, compaction.Summary, error) {
	log := newLogger(stderr, cfg.Log.Level)
	lake, err := openStore(ctx, cfg, nil, m.S3Stalls.Inc)
	if err != nil {
		return exitConfig, compaction.Summary{}, err
	}
	wh, err := openWarehouse(ctx, cfg, m.S3Stalls.Inc)
	if err != nil {
		return exitConfig, compaction.Summary{}, err
	}
	cat, err := icetable.OpenWith(ctx, cfg, icetable.Options{OnS3Stall: m.S3Stalls.Inc})
	if err != nil {
		return exitError, compaction.Summary{}, err
	}
	defer cat.Close()
	c := &compaction.Compactor{Cfg: cfg, Cat: cat, Lake: lake, Warehouse: wh, Log: log, Metrics: m,
		Progress: stderr, DryRun: o.dry, Now: time.Now, Hook: killHook(), Deadline: o.deadline, Shard: o.shard, Maintenance: o.maint}
	sum, err := c.Run(ctx, o.only)
	switch {
	case err == nil:
		return exitOK, sum, nil
	case errors.Is(err, compaction.ErrHalt):
		return exitHalted, sum, err
	}
	return exitError, sum, err
}

// killHook lets the end-to-end tests act at a named point of a run
// (after-outputs, after-conflict, after-commit, during-clean; dlq-before-commit,
// dlq-after-commit):
// LAKESINK_TEST_KILL_AT=<point> SIGKILLs the process there (the crash tests);
// LAKESINK_TEST_PAUSE_AT=<point> with LAKESINK_TEST_PAUSE_DIR=<dir> creates
// <dir>/paused.<pid> there and waits, at most two minutes, for <dir>/go (the
// concurrent-compactors test lines two runs up before their commits).
func killHook() func(string) {
	at := os.Getenv("LAKESINK_TEST_KILL_AT")
	pauseAt, pauseDir := os.Getenv("LAKESINK_TEST_PAUSE_AT"), os.Getenv("LAKESINK_TEST_PAUSE_DIR")
	if at == "" && (pauseAt == "" || pauseDir == "") {
		return nil
	}
	return func(point string) {
		if point == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		if point == pauseAt && pauseDir != "" {
			_ = os.WriteFile(filepath.Join(pauseDir, fmt.Sprintf("paused.%d", os.Getpid())), nil, 0o644)
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(pauseDir, "go")); err == nil {
					return
				}
			}
		}
	}
}

// openWarehouse opens an object store rooted at catalog.warehouse, where the
// compactor writes table data files (file:// or s3://, with the lake's S3 settings).
// onStall, if set, counts S3 attempts abandoned for s3.request_timeout.
func openWarehouse(ctx context.Context, cfg *config.Config, onStall func()) (store.Store, error) {
	u, err := url.Parse(cfg.Catalog.Warehouse)
	if err != nil {
		return nil, &configError{fmt.Errorf("catalog.warehouse: %w", err)}
	}
	switch u.Scheme {
	case "file":
		dir := filepath.FromSlash(u.Path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create warehouse dir: %w", err)
		}
		return store.NewLocal(dir)
	case "s3", "s3a":
		s := cfg.S3
		if s == nil {
			return nil, &configError{errors.New("catalog.warehouse is on S3 but the config has no s3 section for its settings")}
		}
		sse := s.SSE
		if sse == "none" {
			sse = ""
		}
		prefix := strings.TrimPrefix(u.Path, "/")
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		return store.NewS3(ctx, store.S3Config{
			Bucket: u.Host, Prefix: prefix, Region: s.Region, Endpoint: s.Endpoint, PathStyle: s.PathStyle,
			SSE: sse, KMSKeyID: s.KMSKeyID, PartSize: int64(s.PartSize), Concurrency: s.UploadConcurrency,
			MaxAttempts: s.MaxAttempts, RequestTimeout: s.RequestTimeout, OnStall: onStall,
		})
	}
	return nil, &configError{fmt.Errorf("catalog.warehouse %q: unsupported scheme", cfg.Catalog.Warehouse)}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// startCPUProfile profiles the process into path until the returned stop is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

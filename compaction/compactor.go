// Package compaction merges the raw zone's small files of closed partitions
// into large sorted Parquet files and commits them to an Iceberg table. Each
// part has its file: the planner (plan.go: pure, files in, groups out), the
// merger (merge.go: dedupe, sort, write), the coverage index (index.go: which
// raw files the table holds, one object per commit named by a table
// property), the committer (commit.go: one Iceberg transaction per table and
// batch, lineage in the snapshot summary, the index pointer, clean
// conflicts re-planned, unknown outcomes reconciled by job id), the cleaner
// (clean.go: raw files after a grace period, snapshot expiry, orphan files),
// progress and plan printing (progress.go), and the run loop that drives them
// (compactor.go).
package compaction

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// ErrHalt marks failures a retry cannot fix: a human must look (bad input
// file, incompatible schema, a table outside the warehouse).
var ErrHalt = errors.New("halted")

// Compactor runs compaction for the tables of a config.
type Compactor struct {
	Cfg       *config.Config
	Cat       *icetable.Catalog
	Lake      store.Store
	Warehouse store.Store
	Log       *slog.Logger
	Metrics   *Metrics
	// Progress receives human-readable progress lines (stderr).
	Progress io.Writer
	// DryRun plans and prints the plan to Progress, changing nothing.
	DryRun bool
	// Now is the clock (tests move it).
	Now func() time.Time
	// Hook, when set, is called at named points (after-outputs, after-conflict
	// before a rebase, after-commit, during-clean, before-manifest-merge's
	// commit); the crash tests kill the process there.
	Hook func(point string)
	// Deadline, when not zero, is the wall-clock time after which the run
	// starts no new commit: it stops between commits with Summary.MoreToDo
	// set (lakesink compact --max-duration). The first batch of a run always
	// runs, so every run makes progress.
	Deadline time.Time
	// Shard, when set, restricts the run to the partitions it owns (planning,
	// merging, commits and raw deletion); the zero Shard owns them all.
	Shard Shard
	// Maintenance says whether the run merges manifests, expires snapshots
	// and sweeps orphans.
	Maintenance Maintenance
}

// Maintenance is what a run does about manifest merging, snapshot expiry and
// the orphan sweep, the table-wide chores that must run once per table, never
// concurrently with themselves. Raw deletion is not one of them: each shard deletes the raw
// files of its own partitions once the table covers them.
type Maintenance int

const (
	// MaintainAuto: merge, then maintain when unsharded or shard 0.
	MaintainAuto Maintenance = iota
	// MaintainOnly: maintain only (lakesink compact --maintenance-only); no
	// merge, no raw deletion, no table creation.
	MaintainOnly
	// MaintainSkip: merge only (--no-maintenance), for a deployment that runs
	// maintenance separately.
	MaintainSkip
)

// Summary is what a run did, over all tables.
type Summary struct {
	Job                   string
	Tables, Groups        int
	FilesIn, FilesOut     int
	BytesIn, BytesOut     int64
	RowsIn, RowsOut, Dups int64
	// RowGroupsCopied counts input row groups written into outputs without
	// re-encoding (Merger.CopyRowGroups).
	RowGroupsCopied  int
	RawDeleted       int
	SnapshotsExpired int
	// ManifestsMerged counts the data manifests that maintenance merged away
	// (compaction.max_manifests): those replaced minus those written.
	ManifestsMerged int
	OrphansDeleted  int
	Conflicts       int
	// Rebased counts the conflicts resolved by staging the same outputs again
	// on the new snapshot (another shard's commit won the race); the others
	// were planned again.
	Rebased int
	// Commits counts the Iceberg commits of the run (one per batch of at most
	// max_partitions_per_commit partitions).
	Commits int
	// Partitions counts the partitions merged.
	Partitions int
	// MoreToDo is set when the run stopped at its deadline (or on a batch that
	// committed nothing) with partitions still due: the next run goes on.
	MoreToDo bool
	Changes  []string
	Elapsed  time.Duration
}

// Idle reports whether the run found nothing to merge and nothing to clean.
func (s Summary) Idle() bool {
	return s.Groups == 0 && s.RawDeleted == 0 && s.SnapshotsExpired == 0 && s.ManifestsMerged == 0 && s.OrphansDeleted == 0 && len(s.Changes) == 0
}

// NewJobID returns a fresh, time-ordered job id.
func NewJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// pastDeadline reports whether the run's Deadline has passed.
func (c *Compactor) pastDeadline() bool {
	return !c.Deadline.IsZero() && !time.Now().Before(c.Deadline)
}

func (c *Compactor) hook(point string) {
	if c.Hook != nil {
		c.Hook(point)
	}
}

// Run compacts every table (or only the one named) once.
func (c *Compactor) Run(ctx context.Context, only string) (Summary, error) {
	// iceberg-go's own S3 requests (metadata, manifests) bounded as the store's.
	ctx = c.Cat.WithIO(ctx)
	start := c.Now()
	sum := Summary{Job: NewJobID(start)}
	for i := range c.Cfg.Tables {
		t := &c.Cfg.Tables[i]
		if only != "" && t.Name != only {
			continue
		}
		if sum.Tables > 0 && c.pastDeadline() {
			// Tables not started count as more to do (they may be idle).
			c.Log.Info("max duration reached; leaving the next tables for the next run", "table", t.Name)
			sum.MoreToDo = true
			break
		}
		sum.Tables++
		run := c.table
		if c.Maintenance == MaintainOnly {
			run = c.maintainOnly
		}
		if err := run(ctx, t, &sum); err != nil {
			sum.Elapsed = c.Now().Sub(start)
			return sum, fmt.Errorf("table %s: %w", t.Name, err)
		}
	}
	if only != "" && sum.Tables == 0 {
		return sum, fmt.Errorf("no table %q in the config: %w", only, ErrHalt)
	}
	sum.Elapsed = c.Now().Sub(start)
	return sum, nil
}

// state is what a run knows about one table at one moment.
type state struct {
	tbl   *table.Table
	files []TableFile
	dfs   map[string]iceberg.DataFile
	raw   []RawFile
	plan  Plan
	// held is what the table holds of the raw zone (its coverage index;
	// read only when there are closed raw files to place). migrate is set
	// when it came from footers (the table has no index yet): the run
	// writes the index, with its commit or alone.
	held    Held
	migrate bool
	// root is the coverage index's root object the run read (nil: none, or a
	// whole-table object); months are the months of held it read.
	root   *indexRoot
	months map[string]bool
	// attempt numbers the commit attempts of a run for the table (from 1),
	// over all its batches: outputs of each attempt get names of their own,
	// and reconciling an unknown outcome looks for the job and attempt, so a
	// batch is never taken for an earlier one of the same run.
	attempt int
	// committed is set once the batch's commit is in the table; after is
	// the table as that commit (or the index's alone, commitIndex) left it.
	committed bool
	after     *table.Table
	// fin is what the watermarks said when the batch was planned (final.go).
	fin finality
	// othersFrom is the earliest period with raw files another shard owns.
	othersFrom *layout.Period
}

func (c *Compactor) table(ctx context.Context, t *config.Table, sum *Summary) error {
	g, err := layout.ParseGranularity(t.EventTime.Granularity)
	if err != nil {
		return err
	}
	var tbl *table.Table
	if c.DryRun {
		tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name))
		if err != nil {
			c.printf("table %s: not in the catalog yet (a run would create it)", t.Name)
		}
	} else {
		var changes []string
		tbl, changes, err = c.Cat.Ensure(ctx, t, &c.Cfg.Compaction)
		if errors.Is(err, icetable.ErrIncompatibleSchema) {
			return fmt.Errorf("%w: %w", ErrHalt, err)
		}
		if err != nil {
			return err
		}
		for _, ch := range changes {
			c.Log.Info("table changed", "table", t.Name, "change", ch)
			sum.Changes = append(sum.Changes, t.Name+": "+ch)
		}
	}
	// Every due partition in one run: batches of at most
	// max_partitions_per_commit partitions, each its own commit, until the
	// plan defers nothing (or the deadline passes between two commits).
	attempts := c.Cfg.Compaction.CommitAttempts
	var prog *batchProgress
	var last *state
	lasts := lastOffsets{}
	for attempt, tries := 1, 1; ; attempt++ {
		st, err := c.load(ctx, t, g, tbl, lasts)
		if err != nil {
			return err
		}
		last = st
		if c.DryRun {
			c.printPlan(t, g, st)
			c.reportFinality(t, g, st, tbl)
			return nil
		}
		if prog == nil {
			prog = newBatchProgress(c, t.Name, st.plan)
			c.reportFinality(t, g, st, tbl)
		}
		st.attempt = attempt
		err = c.compactOnce(ctx, t, g, st, sum)
		var replan *replanError
		if errors.As(err, &replan) {
			if replan.clean {
				sum.Conflicts++
				c.Metrics.conflict(t.Name)
			}
			if tries >= attempts {
				return fmt.Errorf("gave up after %d commit attempts: %w", tries, replan)
			}
			tries++
			c.Log.Warn("commit not applied, planning again", "table", t.Name, "attempt", attempt, "err", replan)
			if tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name)); err != nil {
				return fmt.Errorf("reload table: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		tries = 1
		prog.batch(st)
		sum.Partitions += partitions(st.plan)
		if st.plan.Deferred == 0 {
			break
		}
		if !st.committed {
			// Nothing reached the table (every group came out empty): planning
			// again would pick the same partitions. Leave them to the next run.
			c.Log.Warn("a batch committed nothing; leaving the rest for the next run", "table", t.Name, "deferred", st.plan.Deferred)
			sum.MoreToDo = true
			break
		}
		if c.pastDeadline() {
			c.Log.Info("max duration reached; stopping between commits", "table", t.Name, "deferred", st.plan.Deferred)
			sum.MoreToDo = true
			break
		}
		if tbl, err = c.current(ctx, t, st); err != nil {
			return err
		}
	}
	if tbl, err = c.current(ctx, t, last); err != nil {
		return err
	}
	tbl = c.advanceFinal(ctx, t, g, last, tbl) // every shard: its raw files bound it
	if c.Maintenance == MaintainSkip || !c.Shard.First() {
		return nil
	}
	return c.maintain(ctx, t, tbl, sum)
}

// current returns the table a run goes on with after the batch of st: the
// one the batch's commit returned, or, when it committed nothing, the one it
// planned from. A sharded run loads it again instead (other shards commit
// meanwhile: the next batch, the final-through time and maintenance then
// start from theirs too). Each load reads the table's metadata file, which
// grows with its snapshots: an unsharded run reads it only to start and, in
// the catalog, to commit.
func (c *Compactor) current(ctx context.Context, t *config.Table, st *state) (*table.Table, error) {
	if !c.Shard.Sharded() {
		if st.after != nil {
			return st.after, nil
		}
		return st.tbl, nil
	}
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name))
	if err != nil {
		return nil, fmt.Errorf("reload table: %w", err)
	}
	return tbl, nil
}

// maintainOnly runs only a table's maintenance (MaintainOnly); a table not in
// the catalog yet has none to do.
func (c *Compactor) maintainOnly(ctx context.Context, t *config.Table, sum *Summary) error {
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name))
	if errors.Is(err, catalog.ErrNoSuchTable) {
		c.Log.Info("no table yet; nothing to maintain", "table", t.Name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("load table: %w", err)
	}
	if c.DryRun {
		c.printf("table %s: maintenance only (manifest merge, snapshot expiry, orphan sweep); a dry run changes nothing", t.Name)
		return nil
	}
	return c.maintain(ctx, t, tbl, sum)
}

// load lists the raw zone and the table's live files and plans; lasts holds
// the raw files' last offsets the run has read so far (readLastOffsets).
func (c *Compactor) load(ctx context.Context, t *config.Table, g layout.Granularity, tbl *table.Table, lasts lastOffsets) (*state, error) {
	st := &state{tbl: tbl, dfs: map[string]iceberg.DataFile{}}
	err := c.Lake.List(ctx, "raw/"+t.Name+"/", func(o store.ObjectInfo) error {
		if !strings.HasSuffix(o.Key, ".parquet") {
			return nil
		}
		k, err := layout.ParseRawKey(g, o.Key)
		if err != nil {
			c.Log.Warn("skipping a file the sink did not name", "table", t.Name, "file", o.Key, "err", err)
			return nil
		}
		if !c.Shard.Owns(t.Name, k.Period) {
			// Another shard's partition; the earliest bounds what this
			// shard may call final (final.go).
			if st.othersFrom == nil || k.Period < *st.othersFrom {
				per := k.Period
				st.othersFrom = &per
			}
			return nil
		}
		st.raw = append(st.raw, RawFile{Key: o.Key, Topic: k.Topic, Partition: k.Partition, First: k.FirstOffset,
			Last: LastUnknown, Size: o.Size, Modified: o.Modified, Period: k.Period})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list raw zone: %w", err)
	}
	now := c.Now()
	if st.fin, err = c.finality(ctx, t, now); err != nil {
		return nil, err
	}
	p := c.params(t, g, now)
	p.Through = st.fin.through
	rawPeriods := map[layout.Period]bool{}
	for _, r := range st.raw {
		if p.Closed(r.Period) {
			rawPeriods[r.Period] = true
		}
	}
	st.held = Held{}
	st.months = map[string]bool{}
	for per := range rawPeriods {
		st.months[monthName(per, g)] = true
	}
	if len(rawPeriods) > 0 {
		indexed := false
		if st.held, st.root, indexed, err = c.readHeld(ctx, t.Name, g, tbl, st.months); err != nil {
			return nil, err
		}
		st.migrate = !indexed && tbl != nil && tbl.CurrentSnapshot() != nil
	}
	if err := c.readLastOffsets(ctx, t, p, st, lasts); err != nil {
		return nil, err
	}
	// Cost that follows new data: only the partitions with closed raw files
	// the table does not hold yet are planned, so only their table files are
	// listed (the scan's partition filter skips every manifest whose
	// partition range misses them); what the table holds comes from the
	// coverage index, so no table file is read. A run with nothing new reads
	// no manifest at all. Other partitions are not looked at: their small
	// table files are merged when new rows arrive.
	due := map[layout.Period]bool{}
	for _, r := range st.raw {
		if !p.Closed(r.Period) {
			continue
		}
		if _, ok := covered(st.held[r.Period][r.Topic][r.Partition], r); !ok {
			due[r.Period] = true
		}
	}
	if tbl != nil && tbl.CurrentSnapshot() != nil && len(due) > 0 {
		scan, err := periodScan(tbl, g, due)
		if err != nil {
			return nil, err
		}
		tasks, err := scan.PlanFiles(ctx)
		if err != nil {
			return nil, fmt.Errorf("list table files: %w", err)
		}
		for _, task := range tasks {
			df := task.File
			per, err := PeriodOf(df)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", df.FilePath(), err)
			}
			if !due[per] {
				continue // inside the scanned range, but nothing new to place
			}
			tf := TableFile{Path: df.FilePath(), Period: per, Size: df.FileSizeBytes(), Rows: df.Count()}
			st.files = append(st.files, tf)
			st.dfs[tf.Path] = df
		}
	}
	st.plan = Build(p, st.raw, st.files, st.held)
	return st, nil
}

// periodScan is a scan of tbl's files in the span of periods (from the
// earliest to the end of the latest): a filter on the partition source column
// that Iceberg projects onto the hour()/day() partition, so manifests whose
// partition bounds (in the manifest list) miss the span are never read.
func periodScan(tbl *table.Table, g layout.Granularity, periods map[layout.Period]bool) (*table.Scan, error) {
	spec := tbl.Spec()
	if spec.NumFields() == 0 {
		return nil, fmt.Errorf("%w: table %s is not partitioned", ErrHalt, tbl.Identifier())
	}
	col, ok := tbl.Schema().FindColumnName(spec.Field(0).SourceID())
	if !ok {
		return nil, fmt.Errorf("%w: partition source field %d not in the schema", ErrHalt, spec.Field(0).SourceID())
	}
	lo, hi := layout.Period(math.MaxInt64), layout.Period(math.MinInt64)
	for per := range periods {
		lo, hi = min(lo, per), max(hi, per)
	}
	from := lo.Start(g).UnixMicro()
	to := (hi + 1).Start(g).UnixMicro()
	filter := iceberg.NewAnd(iceberg.GreaterThanEqual(iceberg.Reference(col), iceberg.Timestamp(from)),
		iceberg.LessThan(iceberg.Reference(col), iceberg.Timestamp(to)))
	return tbl.Scan(table.WithRowFilter(filter)), nil
}

// footerReaders bounds the raw footers read at once.
const footerReaders = 8

// rawVersion names one version of a raw file: its key, size and time as
// listed. A sink that replays from an old commit writes a key again, with
// other rows; the listing then shows another size or time.
type rawVersion struct {
	key      string
	size     int64
	modified time.Time
}

// lastOffsets are the last offsets a run has read from raw files' footers,
// by version: each batch of a run lists the raw zone again and plans with
// the last offsets of every raw file the table holds, most of which (the
// files earlier batches merged, kept for raw_grace) it read before.
type lastOffsets map[rawVersion]int64

// readLastOffsets reads the last offset from the footer of the raw files the
// planner could take as already in the table: those of closed periods whose
// first offset lies in a range the table holds for the period. Only the
// whole range decides (a sink that replayed from an old commit rewrites a key
// with more rows); the others stay LastUnknown, which the planner merges
// anyway. A file gone meanwhile (another compactor cleaned it) is dropped.
// A file whose version (key, size, time) is in lasts is not read again; the
// offsets read are added to lasts.
func (c *Compactor) readLastOffsets(ctx context.Context, t *config.Table, p Params, st *state, lasts lastOffsets) error {
	var todo []int
	for i, r := range st.raw {
		if !p.Closed(r.Period) || !st.held.holds(r.Period, r.Topic, r.Partition, r.First) {
			continue
		}
		if last, ok := lasts[rawVersion{r.Key, r.Size, r.Modified}]; ok {
			st.raw[i].Last = last
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return nil
	}
	gone := make([]bool, len(st.raw))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(footerReaders)
	for _, i := range todo {
		g.Go(func() error {
			key := st.raw[i].Key
			f, _, obj, err := openParquet(gctx, c.Lake, key, c.Cfg.Compaction.ReadTimeout, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
			switch {
			case store.IsNotFound(err):
				gone[i] = true
				return nil
			case err != nil:
				return fmt.Errorf("read the last offset of raw file: %w", err)
			}
			defer obj.Close()
			last, ok, err := rawfile.LastOffset(f)
			switch {
			case err != nil:
				return fmt.Errorf("raw file %s: %w: %w", c.Lake.URI(key), ErrBadInput, err)
			case !ok:
				return fmt.Errorf("raw file %s: %w: no %s footer key", c.Lake.URI(key), ErrBadInput, rawfile.MetaLastOffset)
			}
			st.raw[i].Last = last
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, ErrBadInput) {
			return fmt.Errorf("%w: %w", ErrHalt, err)
		}
		return err
	}
	for _, i := range todo {
		if !gone[i] {
			r := st.raw[i]
			lasts[rawVersion{r.Key, r.Size, r.Modified}] = r.Last
		}
	}
	kept := st.raw[:0]
	for i, r := range st.raw {
		if gone[i] {
			c.Log.Info("raw file gone while planning", "table", t.Name, "file", r.Key)
			continue
		}
		kept = append(kept, r)
	}
	st.raw = kept
	return nil
}

func (c *Compactor) params(t *config.Table, g layout.Granularity, now time.Time) Params {
	cc := c.Cfg.Compaction
	return Params{Now: now, Granularity: g, Lateness: cc.Lateness, Target: int64(t.TargetFileSize),
		SmallRatio: cc.SmallFileRatio, Grace: cc.RawGrace, MaxPeriods: cc.MaxPartitionsPerCommit}
}

// PeriodOf reads a data file's partition value (hours or days since the epoch).
func PeriodOf(df iceberg.DataFile) (layout.Period, error) {
	for _, v := range df.Partition() {
		switch x := v.(type) {
		case int32:
			return layout.Period(x), nil
		case int64:
			return layout.Period(x), nil
		case int:
			return layout.Period(x), nil
		case iceberg.Date:
			return layout.Period(x), nil
		}
		return 0, fmt.Errorf("partition value %v (%T) is not an hour or day ordinal", v, v)
	}
	return 0, errors.New("data file has no partition value")
}

// footer reads a table file's job id and coverage. Files written by something
// else have neither: their rows cannot be matched to raw files.
func (c *Compactor) footer(ctx context.Context, path string) (string, Coverage, error) {
	key, err := relKey(c.Warehouse, path)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrHalt, err)
	}
	f, _, obj, err := openParquet(ctx, c.Warehouse, key, c.Cfg.Compaction.ReadTimeout, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if errors.Is(err, ErrBadInput) {
		return "", nil, fmt.Errorf("%w: read the footer of table file: %w", ErrHalt, err)
	}
	if err != nil {
		return "", nil, fmt.Errorf("read the footer of table file: %w", err)
	}
	defer obj.Close()
	job, _ := f.Lookup(JobKey)
	v, ok := f.Lookup(CoverageKey)
	if !ok {
		return job, nil, nil
	}
	var cov Coverage
	if err := json.Unmarshal([]byte(v), &cov); err != nil {
		return "", nil, fmt.Errorf("%w: coverage in footer of %s: %w", ErrHalt, path, err)
	}
	return job, cov, nil
}

func (c *Compactor) compactOnce(ctx context.Context, t *config.Table, g layout.Granularity, st *state, sum *Summary) error {
	p := st.plan
	if len(p.Groups) > 0 {
		if err := c.merge(ctx, t, g, st, sum); err != nil {
			return err
		}
	}
	if !st.committed && st.migrate {
		if err := c.commitIndex(ctx, t.Name, g, st, sum); err != nil {
			return err
		}
	}
	return c.cleanRaw(ctx, t, st, sum)
}

func (c *Compactor) merge(ctx context.Context, t *config.Table, g layout.Granularity, st *state, sum *Summary) error {
	tbl := st.tbl
	out, err := icetable.OutputSchema(tbl, t)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHalt, err)
	}
	loc := strings.TrimSuffix(tbl.Location(), "/")
	base, err := relKey(c.Warehouse, loc+"/")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHalt, err)
	}
	var total int64
	for _, gr := range st.plan.Groups {
		total += gr.Bytes
	}
	prog := newProgress(c, t.Name, total)
	m := &Merger{Schema: out, SortBy: icetable.SortColumns(t), Lake: c.Lake, Warehouse: c.Warehouse,
		Budget: int64(c.Cfg.Compaction.MemoryBudget) / 2, RowGroupSize: int64(c.Cfg.Compaction.RowGroupSize),
		Target: int64(t.TargetFileSize), TempDir: c.Cfg.Compaction.TempDir, Job: sum.Job, Attempt: st.attempt, ReadTimeout: c.Cfg.Compaction.ReadTimeout, Progress: prog.add,
		Codec: ZstdCodec(c.Cfg.Compaction.ZstdLevel), CopyRowGroups: c.Cfg.Compaction.CopyRowGroups}
	defer m.Close()
	filters := map[layout.Period]Coverage{}
	for _, gr := range st.plan.Groups {
		if filters[gr.Period] == nil {
			filters[gr.Period] = st.held.Coverage(gr.Period)
		}
	}
	type rawCov struct {
		per layout.Period
		cov Coverage
	}
	var merged []rawCov
	var outputs []Output
	var deletes []iceberg.DataFile
	var inputs []string
	all := Coverage{}
	var empty []RawFile
	for gi, gr := range st.plan.Groups {
		dir := base + "data/" + icetable.PartitionFieldName(out) + "=" + partitionValue(g, gr.Period)
		m.Next = nil
		if gi+1 < len(st.plan.Groups) {
			m.Next = &st.plan.Groups[gi+1]
		}
		res, err := m.Merge(ctx, gr, gi, dir, filters[gr.Period])
		if err != nil {
			c.deleteOutputs(ctx, outputs)
			if errors.Is(err, ErrBadInput) {
				return fmt.Errorf("%w: %w", ErrHalt, err)
			}
			return err
		}
		outputs = append(outputs, res.Outputs...)
		for _, f := range gr.Table {
			deletes = append(deletes, st.dfs[f.Path])
			inputs = append(inputs, f.Path)
		}
		for _, r := range gr.Raw {
			inputs = append(inputs, c.Lake.URI(r.Key))
		}
		for _, o := range res.Outputs {
			all.Merge(o.Coverage)
			sum.FilesOut++
			sum.BytesOut += o.Size
			sum.RowsOut += o.Rows
		}
		empty = append(empty, res.Empty...)
		merged = append(merged, rawCov{gr.Period, res.Raw})
		sum.Groups++
		sum.FilesIn += len(gr.Raw) + len(gr.Table)
		sum.BytesIn += res.BytesIn
		sum.RowsIn += res.RowsIn
		sum.Dups += res.Duplicates
		sum.RowGroupsCopied += res.RowGroupsCopied
		c.Metrics.group(t.Name, len(gr.Raw)+len(gr.Table), len(res.Outputs), res.BytesIn, res, res.Outputs)
	}
	prog.done()
	c.hook("after-outputs")
	if len(outputs) == 0 && len(deletes) == 0 {
		st.plan.Delete = append(st.plan.Delete, c.pastGrace(empty)...)
		return nil
	}
	props := withFinalThrough(lineage(sum.Job, st.attempt, inputs, all), finalThrough(g, st, tbl))
	if c.Shard.Sharded() {
		props[SummaryShard] = c.Shard.String()
	}
	periods := map[layout.Period]bool{}
	for _, gr := range st.plan.Groups {
		periods[gr.Period] = true
	}
	// The index: what the table held when planned (or, on a rebase, what
	// the table the commit is rebased on holds), and the raw files merged
	// now (those whose rows all were there already included).
	now := c.Now()
	index := func(on *table.Table, rebase int) (string, error) {
		held, root := st.held, st.root
		if rebase > 0 {
			want := maps.Clone(st.months)
			for _, m := range merged {
				want[monthName(m.per, g)] = true
			}
			h, r, _, err := c.readHeld(ctx, t.Name, g, on, want)
			if err != nil {
				return "", err
			}
			held, root = h, r
		}
		for _, m := range merged {
			held.AddCoverage(m.per, m.cov, now)
		}
		return c.writeIndex(ctx, on, g, held, root, sum.Job, st.attempt, rebase)
	}
	rebased, after, err := c.commit(ctx, t, tbl, deletes, outputs, props, periods, index)
	sum.Conflicts += rebased
	sum.Rebased += rebased
	if err != nil {
		return err
	}
	st.committed, st.after = true, after
	sum.Commits++
	c.Metrics.committed(t.Name)
	c.Log.Info("committed", "table", t.Name, "job", sum.Job, "attempt", st.attempt, "outputs", len(outputs), "replaced", len(deletes))
	c.hook("after-commit")
	st.plan.Delete = append(st.plan.Delete, c.pastGrace(empty)...)
	return nil
}

func partitionValue(g layout.Granularity, p layout.Period) string {
	if g == layout.Day {
		return p.Start(g).Format("2006-01-02")
	}
	return p.Start(g).Format("2006-01-02-15")
}

// ZstdCodec is the codec of compaction.zstd_level (config.ZstdFastest,
// ZstdDefault or ZstdBetter; anything else: default).
func ZstdCodec(level string) compress.Codec {
	switch level {
	case config.ZstdFastest:
		return &zstd.Codec{Level: zstd.SpeedFastest}
	case config.ZstdBetter:
		return &zstd.Codec{Level: zstd.SpeedBetterCompression}
	}
	return &zstd.Codec{Level: zstd.SpeedDefault}
}

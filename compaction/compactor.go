// Package compaction merges the raw zone's small files of closed partitions
// into large sorted Parquet files and commits them to an Iceberg table: the
// planner (pure: files in, groups out), the merger (dedupe, sort, write), the
// committer (one Iceberg transaction per table and batch, lineage in the
// snapshot summary, clean conflicts re-planned, unknown outcomes reconciled by
// job id) and the cleaner (raw files after a grace period, snapshot expiry,
// orphan files).
package compaction

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// Snapshot summary keys of a compaction commit (lineage).
const (
	SummaryJob     = "lakesink.job-id"
	SummaryInputs  = "lakesink.inputs-sha256"
	SummaryOffsets = "lakesink.kafka-offsets"
	SummaryFiles   = "lakesink.input-files"
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
	// Hook, when set, is called at named points (after-outputs, after-commit,
	// during-clean); the crash tests kill the process there.
	Hook func(point string)
}

// Summary is what a run did, over all tables.
type Summary struct {
	Job                   string
	Tables, Groups        int
	FilesIn, FilesOut     int
	BytesIn, BytesOut     int64
	RowsIn, RowsOut, Dups int64
	RawDeleted            int
	SnapshotsExpired      int
	OrphansDeleted        int
	Conflicts             int
	Changes               []string
	Elapsed               time.Duration
}

// Idle reports whether the run found nothing to merge and nothing to clean.
func (s Summary) Idle() bool {
	return s.Groups == 0 && s.RawDeleted == 0 && s.SnapshotsExpired == 0 && s.OrphansDeleted == 0 && len(s.Changes) == 0
}

// NewJobID returns a fresh, time-ordered job id.
func NewJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func (c *Compactor) hook(point string) {
	if c.Hook != nil {
		c.Hook(point)
	}
}

func (c *Compactor) printf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// Run compacts every table (or only the one named) once.
func (c *Compactor) Run(ctx context.Context, only string) (Summary, error) {
	start := c.Now()
	sum := Summary{Job: NewJobID(start)}
	for i := range c.Cfg.Tables {
		t := &c.Cfg.Tables[i]
		if only != "" && t.Name != only {
			continue
		}
		sum.Tables++
		if err := c.table(ctx, t, &sum); err != nil {
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
	attempts := c.Cfg.Compaction.CommitAttempts
	for attempt := 1; ; attempt++ {
		st, err := c.load(ctx, t, g, tbl)
		if err != nil {
			return err
		}
		if c.DryRun {
			c.printPlan(t, g, st)
			return nil
		}
		err = c.compactOnce(ctx, t, g, st, sum)
		var conflict *conflictError
		if !errors.As(err, &conflict) {
			if err != nil {
				return err
			}
			break
		}
		sum.Conflicts++
		c.Metrics.conflict(t.Name)
		if attempt >= attempts {
			return fmt.Errorf("gave up after %d commit conflicts: %w", attempt, conflict.err)
		}
		c.Log.Warn("commit conflict, planning again", "table", t.Name, "attempt", attempt, "err", conflict.err)
		if tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name)); err != nil {
			return fmt.Errorf("reload table: %w", err)
		}
	}
	tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name))
	if err != nil {
		return fmt.Errorf("reload table: %w", err)
	}
	return c.maintain(ctx, t, tbl, sum)
}

// load lists the raw zone and the table's live files and plans.
func (c *Compactor) load(ctx context.Context, t *config.Table, g layout.Granularity, tbl *table.Table) (*state, error) {
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
		st.raw = append(st.raw, RawFile{Key: o.Key, Topic: k.Topic, Partition: k.Partition, First: k.FirstOffset,
			Size: o.Size, Modified: o.Modified, Period: k.Period})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list raw zone: %w", err)
	}
	now := c.Now()
	p := c.params(t, g, now)
	if tbl != nil && tbl.CurrentSnapshot() != nil {
		tasks, err := tbl.Scan().PlanFiles(ctx)
		if err != nil {
			return nil, fmt.Errorf("list table files: %w", err)
		}
		rawPeriods := map[layout.Period]bool{}
		for _, r := range st.raw {
			if p.Closed(r.Period) {
				rawPeriods[r.Period] = true
			}
		}
		commits := jobCommits(tbl)
		for _, task := range tasks {
			df := task.File
			per, err := periodOf(df)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", df.FilePath(), err)
			}
			tf := TableFile{Path: df.FilePath(), Period: per, Size: df.FileSizeBytes(), Rows: df.Count()}
			if rawPeriods[per] {
				job, cov, err := c.footer(ctx, df.FilePath())
				if err != nil {
					return nil, err
				}
				tf.Coverage, tf.Committed = cov, commits[job]
			}
			st.files = append(st.files, tf)
			st.dfs[tf.Path] = df
		}
	}
	st.plan = Build(p, st.raw, st.files)
	return st, nil
}

func (c *Compactor) params(t *config.Table, g layout.Granularity, now time.Time) Params {
	cc := c.Cfg.Compaction
	return Params{Now: now, Granularity: g, Lateness: cc.Lateness, Target: int64(t.TargetFileSize),
		SmallRatio: cc.SmallFileRatio, Grace: cc.RawGrace, MaxPeriods: cc.MaxPartitionsPerCommit}
}

// jobCommits maps compaction job ids to the time their snapshot was committed.
func jobCommits(tbl *table.Table) map[string]time.Time {
	out := map[string]time.Time{}
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary != nil {
			if job := s.Summary.Properties[SummaryJob]; job != "" {
				out[job] = time.UnixMilli(s.TimestampMs)
			}
		}
	}
	return out
}

// periodOf reads a data file's partition value (hours or days since the epoch).
func periodOf(df iceberg.DataFile) (layout.Period, error) {
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
	obj, err := c.Warehouse.Open(ctx, key)
	if err != nil {
		return "", nil, fmt.Errorf("open table file %s: %w", path, err)
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return "", nil, fmt.Errorf("read footer of %s: %w", path, err)
	}
	job, _ := f.Lookup(JobKey)
	v, ok := f.Lookup(CoverageKey)
	if !ok {
		return job, nil, nil
	}
	var cov Coverage
	if err := json.Unmarshal([]byte(v), &cov); err != nil {
		return "", nil, fmt.Errorf("%w: coverage in footer of %s: %v", ErrHalt, path, err)
	}
	return job, cov, nil
}

func (c *Compactor) printPlan(t *config.Table, g layout.Granularity, st *state) {
	p := st.plan
	var in int64
	for _, gr := range p.Groups {
		in += gr.Bytes
	}
	c.printf("table %s: %d groups, %s of input; %d raw files to delete, %d covered within grace, %d in open partitions, %d partitions with nothing to gain",
		t.Name, len(p.Groups), human(in), len(p.Delete), p.Covered, p.Open, p.Skipped)
	for _, gr := range p.Groups {
		outs := max(1, (gr.Bytes+int64(t.TargetFileSize)-1)/int64(t.TargetFileSize))
		c.printf("  %s: %d raw + %d table files, %s -> ~%d output(s)", layout.Dir(g, gr.Period), len(gr.Raw), len(gr.Table), human(gr.Bytes), outs)
		for _, r := range gr.Raw {
			c.printf("    raw   %s (%s)", r.Key, human(r.Size))
		}
		for _, f := range gr.Table {
			c.printf("    table %s (%s)", f.Path, human(f.Size))
		}
	}
	for _, r := range p.Delete {
		c.printf("  delete %s", r.Key)
	}
}

// conflictError is a clean commit conflict: nothing was committed.
type conflictError struct{ err error }

func (e *conflictError) Error() string { return "commit conflict: " + e.err.Error() }
func (e *conflictError) Unwrap() error { return e.err }

func isConflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "has changed") ||
		strings.Contains(err.Error(), "requirement failed")
}

func (c *Compactor) compactOnce(ctx context.Context, t *config.Table, g layout.Granularity, st *state, sum *Summary) error {
	p := st.plan
	if len(p.Groups) > 0 {
		if err := c.merge(ctx, t, g, st, sum); err != nil {
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
		Target: int64(t.TargetFileSize), TempDir: c.Cfg.Compaction.TempDir, Job: sum.Job, Progress: prog.add,
		Codec: ZstdCodec(c.Cfg.Compaction.ZstdLevel)}
	filters := map[layout.Period]Coverage{}
	for _, f := range st.files {
		cov := filters[f.Period]
		if cov == nil {
			cov = Coverage{}
			filters[f.Period] = cov
		}
		cov.Merge(f.Coverage)
	}
	var outputs []Output
	var deletes []iceberg.DataFile
	var inputs []string
	all := Coverage{}
	var empty []RawFile
	for gi, gr := range st.plan.Groups {
		dir := base + "data/" + icetable.PartitionFieldName(out) + "=" + partitionValue(g, gr.Period)
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
		sum.Groups++
		sum.FilesIn += len(gr.Raw) + len(gr.Table)
		sum.BytesIn += res.BytesIn
		sum.RowsIn += res.RowsIn
		sum.Dups += res.Duplicates
		c.Metrics.group(t.Name, len(gr.Raw)+len(gr.Table), len(res.Outputs), res.BytesIn, res, res.Outputs)
	}
	prog.done()
	c.hook("after-outputs")
	if len(outputs) == 0 && len(deletes) == 0 {
		st.plan.Delete = append(st.plan.Delete, c.pastGrace(empty)...)
		return nil
	}
	slices.Sort(inputs)
	h := sha256.Sum256([]byte(strings.Join(inputs, "\n")))
	offs, _ := json.Marshal(all.Offsets())
	props := iceberg.Properties{SummaryJob: sum.Job, SummaryInputs: hex.EncodeToString(h[:]),
		SummaryOffsets: string(offs), SummaryFiles: strconv.Itoa(len(inputs))}
	if err := c.commit(ctx, t, tbl, deletes, outputs, props); err != nil {
		return err
	}
	c.Log.Info("committed", "table", t.Name, "job", sum.Job, "outputs", len(outputs), "replaced", len(deletes))
	c.hook("after-commit")
	st.plan.Delete = append(st.plan.Delete, c.pastGrace(empty)...)
	return nil
}

// pastGrace keeps the all-duplicate raw files old enough to delete.
func (c *Compactor) pastGrace(rs []RawFile) []RawFile {
	var out []RawFile
	for _, r := range rs {
		if !r.Modified.Add(c.Cfg.Compaction.RawGrace).After(c.Now()) {
			out = append(out, r)
		}
	}
	return out
}

func partitionValue(g layout.Granularity, p layout.Period) string {
	if g == layout.Day {
		return p.Start(g).Format("2006-01-02")
	}
	return p.Start(g).Format("2006-01-02-15")
}

func (c *Compactor) commit(ctx context.Context, t *config.Table, tbl *table.Table, deletes []iceberg.DataFile, outputs []Output, props iceberg.Properties) error {
	fs, err := tbl.FS(ctx)
	if err != nil {
		return fmt.Errorf("table file io: %w", err)
	}
	order := tbl.SortOrder().OrderID()
	var adds []iceberg.DataFile
	for _, o := range outputs {
		df, err := table.FileToDataFile(ctx, fs, c.Warehouse.URI(o.Key), tbl.Schema(), tbl.Spec(), order, tbl.Properties())
		if err != nil {
			c.deleteOutputs(ctx, outputs)
			return fmt.Errorf("%w: register %s: %w", ErrHalt, o.Key, err)
		}
		adds = append(adds, df)
	}
	tx := tbl.NewTransaction()
	if err := tx.ReplaceDataFilesWithDataFiles(ctx, deletes, adds, props); err != nil {
		c.deleteOutputs(ctx, outputs)
		return fmt.Errorf("stage commit: %w", err)
	}
	_, err = tx.Commit(ctx)
	if err == nil {
		return nil
	}
	if isConflict(err) {
		// Nothing was committed: the outputs are ours alone.
		c.deleteOutputs(ctx, outputs)
		return &conflictError{err}
	}
	// Unknown outcome: look for the job in the table before anything else.
	fresh, lerr := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name))
	if lerr == nil {
		if _, ok := jobCommits(fresh)[props[SummaryJob]]; ok {
			c.Log.Warn("commit reported an error but the job is in the table", "table", t.Name, "job", props[SummaryJob], "err", err)
			return nil
		}
	}
	// Not visible (or unknowable): leave the outputs to orphan cleanup, never
	// delete what a late commit could still reference.
	return fmt.Errorf("commit with unknown outcome (outputs left for orphan cleanup): %w", err)
}

func (c *Compactor) deleteOutputs(ctx context.Context, outs []Output) {
	keys := make([]string, 0, len(outs))
	for _, o := range outs {
		keys = append(keys, o.Key)
	}
	if len(keys) == 0 {
		return
	}
	if err := c.Warehouse.Delete(context.WithoutCancel(ctx), keys...); err != nil {
		c.Log.Warn("could not delete uncommitted outputs; orphan cleanup will", "err", err)
	}
}

func (c *Compactor) cleanRaw(ctx context.Context, t *config.Table, st *state, sum *Summary) error {
	if len(st.plan.Delete) == 0 {
		return nil
	}
	keys := make([]string, 0, len(st.plan.Delete))
	for _, r := range st.plan.Delete {
		keys = append(keys, r.Key)
	}
	half := (len(keys) + 1) / 2
	if err := c.Lake.Delete(ctx, keys[:half]...); err != nil {
		return fmt.Errorf("delete committed raw files: %w", err)
	}
	c.hook("during-clean")
	if err := c.Lake.Delete(ctx, keys[half:]...); err != nil {
		return fmt.Errorf("delete committed raw files: %w", err)
	}
	sum.RawDeleted += len(keys)
	c.Metrics.rawDeleted(t.Name, len(keys))
	c.Log.Info("deleted committed raw files", "table", t.Name, "files", len(keys))
	return nil
}

// maintain expires snapshots and removes orphan files (both idempotent).
func (c *Compactor) maintain(ctx context.Context, t *config.Table, tbl *table.Table, sum *Summary) error {
	cc := c.Cfg.Compaction
	if tbl.CurrentSnapshot() == nil {
		return nil
	}
	before := len(tbl.Metadata().Snapshots())
	cutoff := c.Now().Add(-cc.SnapshotMaxAge)
	expirable := 0
	for _, s := range tbl.Metadata().Snapshots() {
		if time.UnixMilli(s.TimestampMs).Before(cutoff) {
			expirable++
		}
	}
	if expirable > 0 && before > cc.SnapshotRetainLast {
		tx := tbl.NewTransaction()
		if err := tx.ExpireSnapshots(table.WithRetainLast(cc.SnapshotRetainLast), table.WithOlderThan(cc.SnapshotMaxAge)); err != nil {
			return fmt.Errorf("expire snapshots: %w", err)
		}
		next, err := tx.Commit(ctx)
		switch {
		case err != nil && isConflict(err):
			c.Log.Warn("snapshot expiry lost a race; the next run retries", "table", t.Name)
		case err != nil:
			return fmt.Errorf("expire snapshots: %w", err)
		default:
			n := before - len(next.Metadata().Snapshots())
			sum.SnapshotsExpired += n
			tbl = next
		}
	}
	res, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(cc.OrphanMinAge))
	if err != nil {
		return fmt.Errorf("delete orphan files: %w", err)
	}
	sum.OrphansDeleted += len(res.DeletedFiles)
	if len(res.DeletedFiles) > 0 {
		c.Log.Info("deleted orphan files", "table", t.Name, "files", len(res.DeletedFiles))
	}
	return nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// progress prints files/bytes done, rate and ETA at most every few seconds.
type progress struct {
	c           *Compactor
	table       string
	total       int64
	doneBytes   int64
	files       int
	start, last time.Time
}

func newProgress(c *Compactor, table string, total int64) *progress {
	now := time.Now()
	return &progress{c: c, table: table, total: total, start: now, last: now}
}

func (p *progress) add(n int64) {
	p.doneBytes += n
	p.files++
	if time.Since(p.last) >= 2*time.Second {
		p.print()
	}
}

func (p *progress) print() {
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	rate := float64(p.doneBytes) / max(el, 1e-3)
	eta := "?"
	if rate > 0 && p.total >= p.doneBytes {
		eta = time.Duration(float64(p.total-p.doneBytes) / rate * float64(time.Second)).Round(time.Second).String()
	}
	p.c.printf("progress table=%s files=%d bytes=%s/%s rate=%s/s eta=%s", p.table, p.files, human(p.doneBytes), human(p.total), human(int64(rate)), eta)
}

func (p *progress) done() {
	if p.files > 0 {
		p.print()
	}
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

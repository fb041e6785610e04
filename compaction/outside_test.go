package compaction_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

// readLog is a store recording the keys it was asked to read.
type readLog struct {
	store.Store
	mu   sync.Mutex
	keys []string
}

func (s *readLog) log(key string) {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
}
func (s *readLog) Open(ctx context.Context, key string) (store.Object, error) {
	s.log(key)
	return s.Store.Open(ctx, key)
}
func (s *readLog) Get(ctx context.Context, key string) ([]byte, error) {
	s.log(key)
	return s.Store.Get(ctx, key)
}
func (s *readLog) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	s.log(key)
	return s.Store.Stat(ctx, key)
}

// dataReads returns the keys read that are table data files (a /data/ directory).
func (s *readLog) dataReads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.keys {
		if strings.Contains("/"+k, "/data/") {
			out = append(out, k)
		}
	}
	return out
}

// liveFiles loads the table and plans a scan of all its files.
func liveFiles(t *testing.T, c *compaction.Compactor) (*table.Table, []table.FileScanTask) {
	t.Helper()
	ctx := context.Background()
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tbl, tasks
}

// rewriteOutside rewrites every partition of the table with more than one
// file into one file, as another engine's maintenance does (iceberg-go's own
// RewriteDataFiles: its outputs carry no lakesink footer), and returns the
// files before and after.
func rewriteOutside(t *testing.T, c *compaction.Compactor) (before, after int) {
	t.Helper()
	ctx := context.Background()
	tbl, tasks := liveFiles(t, c)
	by := map[string][]table.FileScanTask{}
	for _, task := range tasks {
		per, err := compaction.PeriodOf(task.File)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprint(per)
		by[k] = append(by[k], task)
	}
	var groups []table.CompactionTaskGroup
	for k, ts := range by {
		if len(ts) < 2 {
			continue
		}
		g := table.CompactionTaskGroup{PartitionKey: k, Tasks: ts}
		for _, task := range ts {
			g.TotalSizeBytes += task.File.FileSizeBytes()
		}
		groups = append(groups, g)
	}
	if len(groups) == 0 {
		t.Fatal("no partition with two files to rewrite")
	}
	res, err := tbl.RewriteDataFiles(ctx, groups, table.RewriteDataFilesOptions{})
	if err != nil {
		t.Fatalf("outside rewrite: %v", err)
	}
	return len(tasks), len(tasks) - res.RemovedDataFiles + res.AddedDataFiles
}

// idleRun runs c, which must be idle: nothing merged or committed, no table
// data file read, the snapshot and the index pointer unchanged.
func idleRun(t *testing.T, c *compaction.Compactor, what string) {
	t.Helper()
	snap, index := snapshotID(t, c), indexURI(t, c)
	wh := &readLog{Store: c.Warehouse}
	c.Warehouse = wh
	sum, err := c.Run(context.Background(), "")
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !sum.Idle() || sum.Commits != 0 {
		t.Errorf("%s: %d groups, %d files in, %d rows, %d duplicates, %d commits; want idle", what, sum.Groups, sum.FilesIn, sum.RowsIn, sum.Dups, sum.Commits)
	}
	if r := wh.dataReads(); len(r) > 0 {
		t.Errorf("%s read %d table data files: %q", what, len(r), r)
	}
	if got := snapshotID(t, c); got != snap {
		t.Errorf("%s: snapshot %d after, want %d", what, got, snap)
	}
	if got := indexURI(t, c); got != index {
		t.Errorf("%s: index %s after, want %s", what, got, index)
	}
}

// snapshotID is the table's current snapshot id.
func snapshotID(t *testing.T, c *compaction.Compactor) int64 {
	t.Helper()
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	return tbl.CurrentSnapshot().SnapshotID
}

// outsideConfig is the lab's config for the outside-rewrite cases: raw files
// stay an hour after their rows are committed (they are still there, already
// merged, when the other engine rewrites), and no table file counts as small
// (each run adds files next to the last run's, so that the other engine has
// something to rewrite).
func outsideConfig(t *testing.T, l *lab) *config.Config {
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.RawGrace = time.Hour
	cfg.Compaction.SmallFileRatio = 1e-9
	return cfg
}

// TestOutsideRewriteLeavesCompactIdle: after another engine rewrote the
// table's files (dropping lakesink's coverage footers) while the merged raw
// files are still inside raw_grace, a run is idle: it commits nothing and
// reads no table data file. Late rows for a rewritten hour are then merged
// once, and rows a sink replays into raw files already merged and deleted are
// dropped as duplicates, not added twice.
func TestOutsideRewriteLeavesCompactIdle(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	cfg := outsideConfig(t, l)
	hours := 3
	at := func(i int) int { return -3600*(i%hours) + i%60 }
	l.write(t, cfg, 0, 300, at, "")
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	l.write(t, cfg, 300, 600, at, "")
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	c := l.compactor(t, cfg)
	if indexURI(t, c) == "" {
		t.Fatalf("no table property %s after two commits", compaction.IndexProperty)
	}
	before, after := rewriteOutside(t, c)
	if before != 2*hours || after != hours {
		t.Fatalf("outside rewrite: %d files → %d, want %d → %d", before, after, 2*hours, hours)
	}
	exact(t, c, 600)

	// Idle: nothing committed, no table data file read, the index kept.
	idleRun(t, l.compactor(t, cfg), "the run after the outside rewrite")
	exact(t, c, 600)

	// Late rows for a rewritten hour: merged once, alone.
	l.write(t, cfg, 600, 650, func(i int) int { return i % 60 }, "")
	c = l.compactor(t, cfg)
	sum, err := c.Run(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 1 || sum.RowsIn != 50 || sum.Dups != 0 || sum.RowsOut != 50 {
		t.Errorf("late rows: %d commits, %d rows in, %d duplicates, %d out; want 1, 50, 0, 50", sum.Commits, sum.RowsIn, sum.Dups, sum.RowsOut)
	}
	exact(t, c, 650)
	if sum, err = l.compactor(t, cfg).Run(ctx, ""); err != nil || !sum.Idle() {
		t.Errorf("run after the late rows: %+v, %v; want idle", sum, err)
	}

	// A sink that replays rows already merged (their raw files long
	// deleted) from offset 250 writes files spanning both earlier runs'
	// files of each hour (and the gap between them, offsets of the other
	// hours): not covered as a whole, they are merged, and every row is
	// dropped as a duplicate by what the index holds.
	var keys []string
	if err := l.lake.List(ctx, "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.lake.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	l.write(t, cfg, 250, 350, at, "")
	c = l.compactor(t, cfg)
	if sum, err = c.Run(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if sum.Groups != hours || sum.RowsIn != 100 || sum.Dups != 100 || sum.RowsOut != 0 {
		t.Errorf("replayed rows: %d groups, %d in, %d duplicates, %d out; want %d, 100, 100, 0", sum.Groups, sum.RowsIn, sum.Dups, sum.RowsOut, hours)
	}
	exact(t, c, 650)
}

// indexURI is the table's coverage index property ("" when unset).
func indexURI(t *testing.T, c *compaction.Compactor) string {
	t.Helper()
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	return tbl.Properties()[compaction.IndexProperty]
}

// TestCoverageIndexFromFooters: a table written before the coverage index
// existed (no property) gets one built from its files' coverage footers on
// the next run, committed alone when the run merges nothing; the run after
// reads no table file and is idle, and late rows still merge exactly once.
func TestCoverageIndexFromFooters(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	cfg := outsideConfig(t, l)
	l.backfill(t, cfg, 300, 3)
	c := l.compactor(t, cfg)
	if _, err := c.Run(ctx, ""); err != nil {
		t.Fatal(err)
	}
	first := indexURI(t, c)
	if first == "" {
		t.Fatalf("no table property %s after a commit", compaction.IndexProperty)
	}
	// Back to a table of before the index: no property, no index object.
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	tx := tbl.NewTransaction()
	if err := tx.RemoveProperties([]string{compaction.IndexProperty}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var idx []string
	if err := c.Warehouse.List(ctx, ".lakesink/coverage/", func(o store.ObjectInfo) error { idx = append(idx, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if roots := indexRoots(idx); len(roots) != 1 || c.Warehouse.URI(roots[0]) != first || len(idx) != 2 {
		t.Fatalf("index objects %q, want the root of the property %s and its month", idx, first)
	}
	if err := c.Warehouse.Delete(ctx, idx...); err != nil {
		t.Fatal(err)
	}
	snap := snapshotID(t, c)

	c = l.compactor(t, cfg)
	wh := &readLog{Store: c.Warehouse}
	c.Warehouse = wh
	sum, err := c.Run(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Groups != 0 || len(sum.Changes) != 1 || !strings.Contains(sum.Changes[0], "coverage index created") {
		t.Errorf("first run without an index: %d groups, changes %q; want none merged and the index created", sum.Groups, sum.Changes)
	}
	if r := wh.dataReads(); len(r) != 3 {
		t.Errorf("building the index read %d table files' footers, want 3: %q", len(r), r)
	}
	if got := snapshotID(t, c); got != snap {
		t.Errorf("snapshot %d after creating the index, want %d (a property change only)", got, snap)
	}
	if indexURI(t, c) == "" {
		t.Fatalf("no table property %s after the run", compaction.IndexProperty)
	}

	c = l.compactor(t, cfg)
	wh = &readLog{Store: c.Warehouse}
	c.Warehouse = wh
	if sum, err = c.Run(ctx, ""); err != nil || !sum.Idle() {
		t.Errorf("run with the index: %+v, %v; want idle", sum, err)
	}
	if r := wh.dataReads(); len(r) > 0 {
		t.Errorf("the run with the index read table data files: %q", r)
	}
	l.write(t, cfg, 300, 320, func(i int) int { return i % 60 }, "")
	if sum, err = l.compactor(t, cfg).Run(ctx, ""); err != nil || sum.RowsOut != 20 || sum.Dups != 0 {
		t.Errorf("late rows: %+v, %v; want 20 rows out, no duplicates", sum, err)
	}
	exact(t, c, 320)
}

// TestRollbackRebuildsCoverageIndex: the table rolled back (by another
// engine) to before a lakesink commit keeps the table property, so the index
// names rows the table no longer holds; the next run sees that the commit
// which wrote the index is not in the table's history any more, rebuilds the
// index from the footers of the files the table holds, and merges the rows
// the rollback undid again from their raw files (still inside raw_grace).
func TestRollbackRebuildsCoverageIndex(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	cfg := outsideConfig(t, l)
	l.sink(t, cfg, 0, 100, "")
	c := l.compactor(t, cfg)
	if _, err := c.Run(ctx, ""); err != nil {
		t.Fatal(err)
	}
	first := snapshotID(t, c)
	l.sink(t, cfg, 100, 150, "")
	if sum, err := l.compactor(t, cfg).Run(ctx, ""); err != nil || sum.RowsOut != 50 {
		t.Fatalf("second run: %+v, %v; want 50 rows out", sum, err)
	}
	exact(t, c, 150)
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	tx := tbl.NewTransaction()
	if err := tx.RollbackToSnapshot(first); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	exact(t, c, 100)
	sum, err := l.compactor(t, cfg).Run(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 1 || sum.RowsOut < 50 {
		t.Errorf("run after the rollback: %d commits, %d rows out; want the 50 undone rows merged again", sum.Commits, sum.RowsOut)
	}
	exact(t, c, 150)
}

// TestSupersededIndexesSwept: each commit writes an index object of its own;
// the orphan sweep deletes those the property no longer names once they are
// older than orphan_min_age, and keeps the current one.
func TestSupersededIndexesSwept(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	cfg := outsideConfig(t, l)
	for k := range 3 {
		l.sink(t, cfg, 10*k, 10*k+10, "")
		if _, _, err := l.compact(t, cfg); err != nil {
			t.Fatal(err)
		}
	}
	c := l.compactor(t, cfg)
	indexes := func() []string {
		var keys []string
		if err := c.Warehouse.List(ctx, ".lakesink/coverage/", func(o store.ObjectInfo) error {
			keys = append(keys, c.Warehouse.URI(o.Key))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if got := indexes(); len(indexRoots(got)) != 3 || len(got) != 6 {
		t.Fatalf("index objects after 3 commits: %q, want 3 roots and their months", got)
	}
	current := indexURI(t, c)
	// A sweep orphan_min_age and a day later.
	later := time.Now().Add(cfg.Compaction.OrphanMinAge + 24*time.Hour)
	c.Now = func() time.Time { return later }
	sum, err := c.Run(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := indexes(); len(got) != 2 || indexRoots(got)[0] != current || sum.OrphansDeleted != 4 {
		t.Errorf("after the sweep: index objects %q, %d orphans deleted; want only %s and its month, 4 deleted", got, sum.OrphansDeleted, current)
	}
	exact(t, c, 30)
}

// TestCoverageIndexReadsTheMonthsTouched: the coverage index is one object
// per month of partitions under a root; a run placing raw files of one month
// reads the root and that month's object, not the others', and its commit
// keeps the other months' objects as they were (a run of the other month
// later still finds its rows held: nothing merged twice).
func TestCoverageIndexReadsTheMonthsTouched(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	ctx := context.Background()
	old := l.hour.AddDate(0, 0, -40) // another month
	none := func(int) string { return "" }
	l.writeEvents(t, cfg, 0, 10, func(int) time.Time { return old }, none)
	l.writeEvents(t, cfg, 10, 20, func(int) time.Time { return l.hour }, none)
	for range 2 { // the second run deletes the merged raw files
		if _, _, err := l.compact(t, cfg); err != nil {
			t.Fatal(err)
		}
	}
	oldMonth, newMonth := old.Format("2006-01"), l.hour.Format("2006-01")
	l.writeEvents(t, cfg, 20, 30, func(int) time.Time { return l.hour.Add(time.Minute) }, none)
	c := l.compactor(t, cfg)
	wh := &readLog{Store: c.Warehouse}
	c.Warehouse = wh
	if _, err := c.Run(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var months []string
	for _, k := range wh.keys {
		if i := strings.Index(k, ".m"); strings.Contains(k, ".lakesink/coverage/") && i >= 0 {
			months = append(months, k[i+2:i+9])
		}
	}
	if !slices.Equal(months, []string{newMonth}) {
		t.Fatalf("the run read the index objects of months %q, want only %s (not %s)", months, newMonth, oldMonth)
	}
	// A replay of the old month's raw file: its rows are still held.
	l.writeEvents(t, cfg, 0, 10, func(int) time.Time { return old }, none)
	sum, _, err := l.compact(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.RowsOut != 0 {
		t.Fatalf("a replay of the old month merged %d rows (%d duplicates); want none: its rows are held", sum.RowsOut, sum.Dups)
	}
	exact(t, l.compactor(t, cfg), 30)
}

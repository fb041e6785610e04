package compaction

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

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

// cleanRaw deletes the raw files the plan found committed and past their grace, in
// two halves (the crash tests kill the process between them).
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

// maintain merges manifests, expires snapshots and removes orphan files (all
// idempotent).
func (c *Compactor) maintain(ctx context.Context, t *config.Table, tbl *table.Table, sum *Summary) error {
	cc := c.Cfg.Compaction
	if tbl.CurrentSnapshot() == nil {
		return nil
	}
	g, err := layout.ParseGranularity(t.EventTime.Granularity)
	if err != nil {
		return err
	}
	// Merge manifests before expiry, so that the snapshots holding the small
	// ones can go as soon as they are old enough.
	tbl, err = c.raced(ctx, t, tbl, "manifest merge", func(tbl *table.Table) (*table.Table, error) {
		next, n, err := c.mergeManifests(ctx, t, g, tbl)
		sum.ManifestsMerged += n
		c.Metrics.manifestsMerged(t.Name, n)
		return next, err
	})
	if err != nil {
		return err
	}
	tbl, err = c.raced(ctx, t, tbl, "snapshot expiry", func(tbl *table.Table) (*table.Table, error) {
		next, n, err := c.expire(ctx, tbl)
		sum.SnapshotsExpired += n
		return next, err
	})
	if err != nil {
		return err
	}
	key := orphanSweepKey(tbl)
	due, err := c.orphanSweepDue(ctx, key)
	if err != nil || !due {
		return err
	}
	res, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(cc.OrphanMinAge))
	if err != nil {
		return fmt.Errorf("delete orphan files: %w", err)
	}
	sum.OrphansDeleted += len(res.DeletedFiles)
	if len(res.DeletedFiles) > 0 {
		c.Log.Info("deleted orphan files", "table", t.Name, "files", len(res.DeletedFiles))
	}
	// The coverage index objects live outside the table location (orphan
	// cleanup, ours or another engine's, would take them for orphans):
	// superseded ones are swept here, on the same cadence.
	n, err := c.sweepIndexes(ctx, tbl, g)
	if err != nil {
		return err
	}
	sum.OrphansDeleted += n
	if n > 0 {
		c.Log.Info("deleted superseded coverage indexes", "table", t.Name, "files", n)
	}
	return c.markOrphanSweep(ctx, key)
}

// raced runs one maintenance commit, what, on tbl and returns the table
// after it. Shards commit while shard 0 maintains: a commit that loses the
// race to one of theirs (a clean conflict) is tried again on the reloaded
// table, up to compaction.commit_attempts times; then the next run retries.
func (c *Compactor) raced(ctx context.Context, t *config.Table, tbl *table.Table, what string, commit func(*table.Table) (*table.Table, error)) (*table.Table, error) {
	for try := 1; ; try++ {
		next, err := commit(tbl)
		if err == nil {
			return next, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if try >= c.Cfg.Compaction.CommitAttempts {
			c.Log.Warn(what+" lost every race; the next run retries", "table", t.Name, "attempts", try)
			return tbl, nil
		}
		if tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name)); err != nil {
			return nil, fmt.Errorf("reload table: %w", err)
		}
	}
}

// mergeManifests rewrites the unsettled data manifests of tbl's current
// snapshot (unsettledManifests) into one per month of partitions (cut at the
// table's commit.manifest.target-size-bytes, 8 MiB by default) once more
// than compaction.max_manifests would go, in a metadata-only commit (a
// "replace" snapshot that adds and removes no data file). It returns the
// table after and the manifests merged away.
//
// Every commit adds a manifest and iceberg-go's appends never merge them
// (commit.manifest-merge.enabled is off by default, and its overwrite, which
// a commit that replaces files is, never merges): a table of hourly commits
// would hold 8,760 a year, and a commit that replaces files reads them all
// (ReplaceDataFilesWithDataFiles walks every data file of the snapshot, then
// the overwrite producer scans every manifest again).
//
// Shards commit meanwhile: the merge is pinned to the snapshot it was built
// from (compare-and-swap, never replayed on a newer one), so it cannot drop
// a file a rival's commit added; a rival's commit that loses to it rebases
// (the merge changed no partition: its entries are all EXISTING).
func (c *Compactor) mergeManifests(ctx context.Context, t *config.Table, g layout.Granularity, tbl *table.Table) (*table.Table, int, error) {
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return tbl, 0, nil
	}
	if n, ok := manifestBound(tbl); ok && n <= c.Cfg.Compaction.MaxManifests {
		return tbl, 0, nil // no need to read the manifest list (an idle run's GET)
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("table file io: %w", err)
	}
	mfs, err := snap.Manifests(fs)
	if err != nil {
		return nil, 0, fmt.Errorf("read the manifest list of snapshot %d: %w", snap.SnapshotID, err)
	}
	target := int64(tbl.Metadata().Properties().GetInt(table.ManifestTargetSizeBytesKey, table.ManifestTargetSizeBytesDefault))
	unsettled, excess := unsettledManifests(mfs, g, target)
	if excess <= c.Cfg.Compaction.MaxManifests {
		return tbl, 0, nil
	}
	tx := tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return nil, 0, err
	}
	res, err := tx.RewriteManifests(ctx,
		table.WithRewriteManifestPredicate(func(m iceberg.ManifestFile) bool { return unsettled[m.FilePath()] }),
		table.WithRewriteManifestClusterBy(func(df iceberg.DataFile) any {
			p, err := PeriodOf(df)
			if err != nil {
				return -1
			}
			return monthOf(p, g)
		}))
	if err != nil {
		return nil, 0, err
	}
	if res.IsNoOp() {
		return tbl, 0, nil
	}
	c.hook("before-manifest-merge")
	next, err := tx.Commit(ctx)
	if err != nil {
		return nil, 0, err
	}
	merged := len(res.RewrittenManifests) - len(res.AddedManifests)
	c.Log.Info("merged manifests", "table", t.Name, "manifests", len(mfs), "replaced", len(res.RewrittenManifests), "written", len(res.AddedManifests))
	return next, merged, nil
}

// monthOf is the calendar month (UTC) a partition period starts in, as
// months since year 0: the unit manifests are clustered by.
func monthOf(p layout.Period, g layout.Granularity) int {
	t := p.Start(g)
	return t.Year()*12 + int(t.Month()) - 1
}

// unsettledManifests returns the data manifests a merge rewrites: those whose
// partitions span more than one month (or whose bounds are unknown), the
// small ones (below half the target size) of a month that has more than one,
// and the small ones of a month a spanning manifest's entries go to (so that
// every month is left with one small manifest at most). Full manifests, and a
// month's only small one, are left as they are, so a merge touches what the
// commits since the last one added (and their month's manifest), never the
// whole history again. excess counts the manifests a merge would remove: the
// spanning ones, and each month's small ones beyond the first.
//
// Clustering by month keeps the planner's manifest pruning: a run that
// merges one hour reads the manifests whose partition bounds hold it, one
// month of entries, not the whole table's.
func unsettledManifests(mfs []iceberg.ManifestFile, g layout.Granularity, target int64) (rewrite map[string]bool, excess int) {
	type small struct {
		m     iceberg.ManifestFile
		month int
	}
	var smalls []small
	perMonth := map[int]int{}
	rewrite = map[string]bool{}
	type span struct{ lo, hi int }
	var spans []span
	for _, m := range mfs {
		if m.ManifestContent() != iceberg.ManifestContentData {
			continue
		}
		lo, hi, ok := manifestPeriods(m)
		switch {
		case !ok:
			spans = append(spans, span{math.MinInt, math.MaxInt})
		case monthOf(lo, g) != monthOf(hi, g):
			spans = append(spans, span{monthOf(lo, g), monthOf(hi, g)})
		default:
			if m.Length() < target/2 {
				mo := monthOf(lo, g)
				perMonth[mo]++
				smalls = append(smalls, small{m, mo})
			}
			continue
		}
		rewrite[m.FilePath()] = true
		excess++
	}
	for _, n := range perMonth {
		excess += n - 1
	}
	for _, sm := range smalls {
		spanned := slices.ContainsFunc(spans, func(s span) bool { return s.lo <= sm.month && sm.month <= s.hi })
		if perMonth[sm.month] > 1 || spanned {
			rewrite[sm.m.FilePath()] = true
		}
	}
	return rewrite, excess
}

// manifestPeriods reads the lowest and highest partition periods of a
// manifest of a table partitioned by one hour() or day() field, from the
// manifest list's partition summary.
func manifestPeriods(m iceberg.ManifestFile) (lo, hi layout.Period, ok bool) {
	ps := m.Partitions()
	if len(ps) != 1 || ps[0].LowerBound == nil || ps[0].UpperBound == nil {
		return 0, 0, false
	}
	l, h := *ps[0].LowerBound, *ps[0].UpperBound
	if len(l) != 4 || len(h) != 4 {
		return 0, 0, false
	}
	return layout.Period(int32(binary.LittleEndian.Uint32(l))), layout.Period(int32(binary.LittleEndian.Uint32(h))), true
}

// Snapshot summary keys of iceberg-go's rewrite-manifests (Java's too).
const (
	summaryManifestsCreated = "manifests-created"
	summaryManifestsKept    = "manifests-kept"
)

// manifestBound bounds the excess data manifests of tbl's current snapshot
// (unsettledManifests) from the table's history alone, without reading its
// manifest list: a manifest merge leaves none (it rewrites every unsettled
// one, and leaves each month one small manifest at most); each lakesink
// commit since added one (its files'; a replace also rewrites the manifest
// that listed the files it replaced, which stays one manifest of the same
// month); and at most one more holds tombstones (the files the last
// overwrite replaced: iceberg-go's next overwrite drops every manifest of
// deleted entries only, and a merge too). With no merge in the history,
// each commit added one manifest, plus the tombstones'.
func manifestBound(tbl *table.Table) (n int, ok bool) {
	for s := tbl.CurrentSnapshot(); s != nil; {
		if s.Summary == nil {
			return 0, false
		}
		p := s.Summary.Properties
		_, err1 := strconv.Atoi(p[summaryManifestsCreated])
		_, err2 := strconv.Atoi(p[summaryManifestsKept])
		switch {
		case s.Summary.Operation == table.OpReplace && err1 == nil && err2 == nil:
			// A merge of another engine's (Trino's optimize_manifests) may leave
			// manifests this one would rewrite: they wait until the commits since
			// reach the threshold, then the manifest list is read.
			return n + 1, true
		case p[SummaryJob] == "":
			return 0, false
		}
		n++
		if s.ParentSnapshotID == nil {
			return n + 1, true
		}
		s = tbl.SnapshotByID(*s.ParentSnapshotID)
	}
	return 0, false // a parent expired
}

// expire expires the snapshots past compaction.snapshot_max_age beyond the
// last snapshot_retain_last, returning the table after and how many went.
func (c *Compactor) expire(ctx context.Context, tbl *table.Table) (*table.Table, int, error) {
	cc := c.Cfg.Compaction
	before := len(tbl.Metadata().Snapshots())
	cutoff := c.Now().Add(-cc.SnapshotMaxAge)
	expirable := 0
	for _, s := range tbl.Metadata().Snapshots() {
		if time.UnixMilli(s.TimestampMs).Before(cutoff) {
			expirable++
		}
	}
	if expirable == 0 || before <= cc.SnapshotRetainLast {
		return tbl, 0, nil
	}
	tx := tbl.NewTransaction()
	if err := tx.ExpireSnapshots(table.WithRetainLast(cc.SnapshotRetainLast), table.WithOlderThan(cc.SnapshotMaxAge)); err != nil {
		return nil, 0, err
	}
	next, err := tx.Commit(ctx)
	if err != nil {
		return nil, 0, err
	}
	return next, before - len(next.Metadata().Snapshots()), nil
}

// Orphan cleanup lists the whole table location and reads every manifest of
// every snapshot: its cost follows the table's size, not the new data. It
// therefore runs at most once per orphanSweepEvery (or orphan_min_age, if
// shorter) per table, and the time of the last sweep is kept in a small
// object of the warehouse, outside every table location (orphan cleanup
// would take it for an orphan inside one): an idle run pays one GET for it.
// An orphan (the outputs of a crashed or unknown-outcome commit) is thus
// deleted at most orphan_min_age + the sweep interval after it was written.
const orphanSweepEvery = 24 * time.Hour

// orphanSweepKey is the warehouse key recording a table's last orphan sweep.
func orphanSweepKey(tbl *table.Table) string {
	return ".lakesink/orphan-sweep/" + strings.Join(tbl.Identifier(), ".")
}

// orphanSweepDue reports whether the last orphan sweep recorded under key is
// older than the sweep interval (or absent or unreadable).
func (c *Compactor) orphanSweepDue(ctx context.Context, key string) (bool, error) {
	b, err := c.Warehouse.Get(ctx, key)
	switch {
	case store.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read the last orphan sweep: %w", err)
	}
	last, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		c.Log.Warn("unreadable orphan sweep marker; sweeping", "file", key, "err", err)
		return true, nil
	}
	every := min(orphanSweepEvery, c.Cfg.Compaction.OrphanMinAge)
	return !c.Now().Before(last.Add(every)), nil
}

// markOrphanSweep records now as the last orphan sweep under key (store
// objects are never overwritten: delete, then create; a crash in between
// only makes the next run sweep again).
func (c *Compactor) markOrphanSweep(ctx context.Context, key string) error {
	if err := c.Warehouse.Delete(ctx, key); err != nil && !store.IsNotFound(err) {
		return fmt.Errorf("record the orphan sweep: %w", err)
	}
	err := c.Warehouse.Create(ctx, key, strings.NewReader(c.Now().UTC().Format(time.RFC3339Nano)+"\n"))
	if err != nil && !store.IsExists(err) { // a rival compactor recorded its sweep
		return fmt.Errorf("record the orphan sweep: %w", err)
	}
	return nil
}

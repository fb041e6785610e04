package compaction

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
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

// maintain expires snapshots and removes orphan files (both idempotent).
func (c *Compactor) maintain(ctx context.Context, t *config.Table, tbl *table.Table, sum *Summary) error {
	cc := c.Cfg.Compaction
	if tbl.CurrentSnapshot() == nil {
		return nil
	}
	// Shards commit while shard 0 maintains: an expiry that loses the race
	// to one of their commits is tried again on the reloaded table.
	for try := 1; ; try++ {
		next, n, err := c.expire(ctx, tbl)
		if err == nil {
			sum.SnapshotsExpired += n
			tbl = next
			break
		}
		if !isConflict(err) {
			return fmt.Errorf("expire snapshots: %w", err)
		}
		if try >= cc.CommitAttempts {
			c.Log.Warn("snapshot expiry lost every race; the next run retries", "table", t.Name, "attempts", try)
			break
		}
		if tbl, err = c.Cat.Cat.LoadTable(ctx, c.Cat.Ident(t.Name)); err != nil {
			return fmt.Errorf("reload table: %w", err)
		}
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
	n, err := c.sweepIndexes(ctx, tbl)
	if err != nil {
		return err
	}
	sum.OrphansDeleted += n
	if n > 0 {
		c.Log.Info("deleted superseded coverage indexes", "table", t.Name, "files", n)
	}
	return c.markOrphanSweep(ctx, key)
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

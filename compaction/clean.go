package compaction

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
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

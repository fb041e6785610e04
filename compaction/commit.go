package compaction

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"golang.org/x/sync/errgroup"

	"github.com/lakesink/lakesink/internal/wait"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
)

// Snapshot summary keys of a compaction commit (lineage).
const (
	SummaryJob     = "lakesink.job-id"
	SummaryInputs  = "lakesink.inputs-sha256"
	SummaryOffsets = "lakesink.kafka-offsets"
	SummaryFiles   = "lakesink.input-files"
	// SummaryAttempt numbers a job's commit attempts (1, 2, ...): each attempt
	// writes outputs of its own, and reconciling an unknown outcome looks for
	// the attempt, not only the job.
	SummaryAttempt = "lakesink.attempt"
)

// lineage is the snapshot summary of a commit: the job id and attempt, a hash and
// the count of its inputs (table file paths and raw file URIs; sorted here), and
// the Kafka offsets its outputs cover.
func lineage(job string, attempt int, inputs []string, covered Coverage) iceberg.Properties {
	slices.Sort(inputs)
	h := sha256.Sum256([]byte(strings.Join(inputs, "\n")))
	offs, _ := json.Marshal(covered.Offsets())
	return iceberg.Properties{SummaryJob: job, SummaryAttempt: strconv.Itoa(attempt), SummaryInputs: hex.EncodeToString(h[:]),
		SummaryOffsets: string(offs), SummaryFiles: strconv.Itoa(len(inputs))}
}

// ErrCommitUnknown marks a commit whose outcome could not be established: the
// catalog reported an error that could hide a success and the table could not
// be read to tell. The outputs stay (orphan cleanup collects them if unused);
// the run fails retryable.
var ErrCommitUnknown = errors.New("commit outcome unknown")

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

// hasAttempt reports whether a snapshot of the table carries the job and
// attempt of props (a commit without an attempt key matches on the job alone).
func hasAttempt(tbl *table.Table, props iceberg.Properties) bool {
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary == nil || s.Summary.Properties[SummaryJob] != props[SummaryJob] {
			continue
		}
		if a, ok := s.Summary.Properties[SummaryAttempt]; !ok || a == props[SummaryAttempt] {
			return true
		}
	}
	return false
}

// replanError is a commit proven not applied (a clean conflict, or an error
// whose job the table does not hold): the run plans again from a fresh table.
type replanError struct {
	err error
	// clean is true for a conflict; false for an error of unknown outcome
	// that reconciling found not applied (its outputs were kept).
	clean bool
}

func (e *replanError) Error() string {
	if e.clean {
		return "commit conflict: " + e.err.Error()
	}
	return "commit not applied: " + e.err.Error()
}
func (e *replanError) Unwrap() error { return e.err }

// isConflict reports whether a failed commit committed nothing and may be re-planned:
// iceberg-go's table.ErrCommitFailed (REST, and the SQL catalog when the metadata
// location moved), or the plain text its SQL and Glue catalogs return for a stale
// transaction, `requirement failed: branch "main" has changed`, which wraps no
// sentinel. This is the one place that matches that text;
// TestConcurrentCompactorsConflict pins it. A conflict is proven clean only once
// reconcile has not found the attempt in the table (a Glue UpdateTable retried
// by the SDK after a lost answer is refused as a conflict although applied).
func isConflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "has changed") ||
		strings.Contains(err.Error(), "requirement failed")
}

// reconcileAttempts and reconcileTimeout bound looking for a job in the table
// after a commit error (the catalog may be failing for a while).
const (
	reconcileAttempts = 5
	reconcileTimeout  = time.Minute
)

// commit replaces deletes with outputs in one Iceberg transaction, with props (the
// lineage) in the snapshot summary, pinned to the snapshot tbl is at. After any
// error the attempt is looked for in the reloaded table before anything is
// deleted (reconcile): found, the commit happened; absent after a conflict,
// the same outputs are staged again on the new snapshot when no commit since
// touched the partitions of periods (rebaseCheck: another shard's commit, a
// snapshot expiry), else the outputs are deleted and a *replanError re-plans;
// absent after another error, the outputs are left to orphan cleanup (a late
// request could still apply) and the run re-plans; the table unreadable,
// ErrCommitUnknown. It returns the conflicts resolved by rebasing and the
// table after the commit.
//
// Each attempt also sets the table property IndexProperty to a coverage
// index object that index writes for the table the attempt is pinned to (a
// rebase's holds what the rival's commit added too); an attempt proven not
// applied deletes its object with the outputs.
func (c *Compactor) commit(ctx context.Context, t *config.Table, tbl *table.Table, deletes []iceberg.DataFile, outputs []Output, props iceberg.Properties, periods map[layout.Period]bool, index func(on *table.Table, rebase int) (string, error)) (int, *table.Table, error) {
	var key string // the current attempt's index object
	// What an attempt proven not applied leaves behind: its outputs and index.
	discard := func() {
		c.deleteOutputs(ctx, outputs)
		if key != "" {
			c.dropIndex(ctx, key)
		}
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		discard()
		return 0, nil, fmt.Errorf("table file io: %w", err)
	}
	order := tbl.SortOrder().OrderID()
	adds, err := inOrder(ctx, len(outputs), registerReaders, func(ctx context.Context, i int) (iceberg.DataFile, error) {
		df, err := table.FileToDataFile(ctx, fs, c.Warehouse.URI(outputs[i].Key), tbl.Schema(), tbl.Spec(), order, tbl.Properties())
		if err != nil {
			return nil, fmt.Errorf("register %s: %w", outputs[i].Key, err)
		}
		return df, nil
	})
	if err != nil {
		discard()
		if Transient(err) {
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("%w: %w", ErrHalt, err)
	}
	log := c.Log.With("table", t.Name, "job", props[SummaryJob], "attempt", props[SummaryAttempt])
	// Rebases are cheap (no merge): allow one per other shard on top of the
	// configured attempts, so N shards committing at once all get through.
	maxRebases := c.Cfg.Compaction.CommitAttempts + c.Shard.Count
	for rebases := 0; ; rebases++ {
		if key, err = index(tbl, rebases); err != nil {
			key = ""
			discard()
			return rebases, nil, err
		}
		next, err := c.commitTx(ctx, tbl, deletes, adds, props, key)
		if errors.Is(err, errStage) {
			discard()
			return rebases, nil, err
		}
		if err == nil {
			return rebases, next, nil
		}
		// Any error may hide a success (a response lost after the catalog applied
		// the commit, a Glue UpdateTable retried by the SDK and refused as a
		// conflict): look for the attempt in the table before anything else.
		cur, applied, rerr := c.reconcile(ctx, t, props)
		switch {
		case rerr != nil:
			c.Metrics.reconciled(t.Name, "unknown")
			log.Error("commit outcome unknown; outputs left for orphan cleanup", "err", err, "reconcile_err", rerr)
			return rebases, nil, fmt.Errorf("%w: commit: %w; looking for the job in the table: %w", ErrCommitUnknown, err, rerr)
		case applied:
			c.Metrics.reconciled(t.Name, "applied")
			log.Warn("commit reported an error but the job is in the table", "err", err)
			return rebases, cur, nil
		}
		c.Metrics.reconciled(t.Name, "absent")
		if !isConflict(err) {
			// Not applied now, but a request still in flight could apply later: never
			// delete what a late commit could reference (orphan cleanup will).
			log.Warn("commit failed and the job is not in the table; planning again", "err", err)
			return rebases, nil, &replanError{err: err}
		}
		// Proven clean: nothing was committed, the outputs are ours alone.
		why := fmt.Sprintf("%d rebases already", rebases)
		if rebases < maxRebases {
			why = rebaseCheck(ctx, tbl, cur, periods)
		}
		if why != "" {
			log.Warn("commit conflict with a change to our partitions; planning again", "reason", why)
			discard()
			return rebases, nil, &replanError{err: fmt.Errorf("%w (%s)", err, why), clean: true}
		}
		c.Metrics.conflict(t.Name)
		c.Metrics.rebased(t.Name)
		log.Info("commit conflict on the table pointer only; rebasing the same outputs on the new snapshot", "rebases", rebases+1)
		c.hook("after-conflict")
		// This attempt's index is proven unused; the next is written for cur.
		c.dropIndex(ctx, key)
		key = ""
		if err := wait.Sleep(ctx, rebaseWait(rebases)); err != nil {
			discard()
			return rebases, nil, err
		}
		tbl = cur
	}
}

// errStage marks a transaction that could not be staged (nothing was sent to
// the catalog).
var errStage = errors.New("stage commit")

// commitTx stages and commits one transaction on tbl: deletes replaced by
// adds, props in the snapshot summary, the table property IndexProperty
// naming the coverage index object index (the pointer moves in the same
// commit as the data it describes).
func (c *Compactor) commitTx(ctx context.Context, tbl *table.Table, deletes, adds []iceberg.DataFile, props iceberg.Properties, index string) (*table.Table, error) {
	tx := tbl.NewTransaction()
	// Compare-and-swap on the snapshot we planned from: iceberg-go replays a
	// conflicting commit on the new head when the table's
	// commit.retry.num-retries is above 0 (any writer can set it), which would
	// add our outputs on top of a rival's holding the same rows. A pinned ref
	// is never replayed; a conflict comes back to us and we decide (rebase
	// or plan again).
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return nil, fmt.Errorf("%w: %w", errStage, err)
	}
	// The coverage index (index.go) and the final-through time (final.go) as
	// table properties, in the same commit; the final-through never behind
	// the table's (another shard's commit may have moved it since we planned).
	props = keepFinalThrough(tbl, props)
	tprops := c.indexProps(index)
	if ft := props[SummaryFinalThrough]; ft != "" {
		tprops[PropFinalThrough] = ft
	}
	if err := tx.SetProperties(tprops); err != nil {
		return nil, fmt.Errorf("%w: %w", errStage, err)
	}
	// Outputs get fresh names (job, attempt, uuid) and are never in the table:
	// iceberg-go's check that they are not (a read of every manifest, which
	// made an append's commit grow with the table) is skipped.
	if err := tx.ReplaceDataFilesWithDataFiles(ctx, deletes, adds, props, table.WithoutDuplicateCheck()); err != nil {
		return nil, fmt.Errorf("%w: %w", errStage, err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.Cfg.Compaction.CommitTimeout)
	defer cancel()
	return tx.Commit(cctx)
}

// reconcile reloads the table and reports whether the commit of props is in
// it, with the table it read. It uses a context of its own: the commit's may
// be what timed out, and a cancelled run must still learn whether its
// outputs are referenced.
func (c *Compactor) reconcile(ctx context.Context, t *config.Table, props iceberg.Properties) (*table.Table, bool, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reconcileTimeout)
	defer cancel()
	wait := 200 * time.Millisecond
	var err error
	for i := range reconcileAttempts {
		if i > 0 {
			select {
			case <-rctx.Done():
				return nil, false, fmt.Errorf("reload table %s: %w (last error: %w)", t.Name, rctx.Err(), err)
			case <-time.After(wait):
			}
			wait *= 2
		}
		var tbl *table.Table
		if tbl, err = c.Cat.Cat.LoadTable(rctx, c.Cat.Ident(t.Name)); err == nil {
			return tbl, hasAttempt(tbl, props), nil
		}
		c.Log.Warn("reloading the table to reconcile a commit", "table", t.Name, "job", props[SummaryJob], "err", err)
	}
	return nil, false, fmt.Errorf("reload table %s (%d attempts): %w", t.Name, reconcileAttempts, err)
}

// deleteOutputs deletes outputs that no commit references (best effort: orphan
// cleanup collects what is left).
func (c *Compactor) deleteOutputs(ctx context.Context, outs []Output) {
	keys := make([]string, 0, len(outs))
	for _, o := range outs {
		keys = append(keys, o.Key)
	}
	c.deleteKeys(ctx, keys...)
}

// deleteKeys deletes warehouse objects that no commit references (best
// effort: orphan cleanup and the index sweep collect what is left).
func (c *Compactor) deleteKeys(ctx context.Context, keys ...string) {
	if len(keys) == 0 {
		return
	}
	if err := c.Warehouse.Delete(context.WithoutCancel(ctx), keys...); err != nil {
		c.Log.Warn("could not delete uncommitted outputs; orphan cleanup will", "err", err)
	}
}

// registerReaders bounds the outputs registered at once: iceberg-go builds an
// output's data file from its footer, which it reads back from the warehouse
// (a HEAD and two ranged GETs on S3), so with S3's latency a batch's commit
// waited ~30 ms per output, one after the other.
const registerReaders = 16

// inOrder calls f for 0..n-1, at most limit at once, and returns the results
// in order; the error is the lowest i's that failed (all calls run).
func inOrder[T any](ctx context.Context, n, limit int, f func(ctx context.Context, i int) (T, error)) ([]T, error) {
	out, errs := make([]T, n), make([]error, n)
	var g errgroup.Group
	g.SetLimit(limit)
	for i := range n {
		g.Go(func() error {
			out[i], errs[i] = f(ctx, i)
			return nil
		})
	}
	_ = g.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

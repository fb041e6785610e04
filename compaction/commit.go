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

	"github.com/lakesink/lakesink/lake/config"
)

// Snapshot summary keys of a compaction commit (lineage).
const (
	SummaryJob     = "lakesink.job-id"
	SummaryInputs  = "lakesink.inputs-sha256"
	SummaryOffsets = "lakesink.kafka-offsets"
	SummaryFiles   = "lakesink.input-files"
)

// lineage is the snapshot summary of a commit: the job id, a hash and the count of
// its inputs (table file paths and raw file URIs; sorted here), and the Kafka
// offsets its outputs cover.
func lineage(job string, inputs []string, covered Coverage) iceberg.Properties {
	slices.Sort(inputs)
	h := sha256.Sum256([]byte(strings.Join(inputs, "\n")))
	offs, _ := json.Marshal(covered.Offsets())
	return iceberg.Properties{SummaryJob: job, SummaryInputs: hex.EncodeToString(h[:]),
		SummaryOffsets: string(offs), SummaryFiles: strconv.Itoa(len(inputs))}
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

// conflictError is a clean commit conflict: nothing was committed.
type conflictError struct{ err error }

func (e *conflictError) Error() string { return "commit conflict: " + e.err.Error() }
func (e *conflictError) Unwrap() error { return e.err }

// isConflict reports whether a failed commit committed nothing and may be re-planned:
// iceberg-go's table.ErrCommitFailed (REST, and the SQL catalog when the metadata
// location moved), or the plain text its SQL and Glue catalogs return for a stale
// transaction, `requirement failed: branch "main" has changed`, which wraps no
// sentinel. This is the one place that matches that text;
// TestConcurrentCompactorsConflict pins it.
func isConflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "has changed") ||
		strings.Contains(err.Error(), "requirement failed")
}

// commit replaces deletes with outputs in one Iceberg transaction, with props (the
// lineage) in the snapshot summary. A clean conflict deletes the outputs (nothing
// referenced them) and returns a *conflictError, which re-plans; any other failure
// leaves the outcome unknown: the job id is looked for in the reloaded table (found:
// committed after all) before anything is deleted, and otherwise the outputs are
// left to orphan cleanup, since a late commit could still reference them.
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
			if Transient(err) {
				return fmt.Errorf("register %s: %w", o.Key, err)
			}
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

// deleteOutputs deletes outputs that no commit references (best effort: orphan
// cleanup collects what is left).
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

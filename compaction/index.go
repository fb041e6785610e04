package compaction

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// The coverage index is the record of which raw files a table holds, owned by
// lakesink: one small object per commit (zstd-compressed JSON) in the
// warehouse, outside every table location, named by the table property
// IndexProperty, which is set in the same Iceberg commit as the data change.
// The pointer therefore moves atomically with the data; another engine's
// rewrite (Trino optimize, Athena OPTIMIZE, Spark rewrite_data_files) or
// snapshot expiry keeps table properties, and no engine's orphan-file removal
// looks outside the table location. Reading it costs one GET per table and
// run, whatever the number of table files; the footers of table files
// (CoverageKey) are still written, but only read once, to build the index of
// a table written before it existed.

// IndexProperty is the table property holding the URI of the table's current
// coverage index object.
const IndexProperty = "lakesink.coverage-index"

// indexDir is the warehouse key prefix of the coverage index objects.
const indexDir = ".lakesink/coverage/"

// indexVersion is the version of the index format written.
const indexVersion = 1

// Span is a range of a raw file's offsets the table holds, and when the commit
// that added it was made (zero: unknown, long ago).
type Span struct {
	Range
	Committed time.Time
}

// Held is what a table holds of the raw zone, the content of its coverage
// index: for each period, Kafka topic and partition, the offset spans of the
// raw files merged into it. A span of a period means every record of that
// period between its offsets is in the table (records of other periods in the
// same offsets are not). Spans are never dropped: a sink replaying from an old
// commit can write rows again long after their raw files were deleted, and
// they must be recognised as duplicates.
type Held map[layout.Period]map[string]map[int32][]Span

// Add records that the table holds the records of period per in r.
func (h Held) Add(per layout.Period, topic string, part int32, r Range, committed time.Time) {
	ts := h[per]
	if ts == nil {
		ts = map[string]map[int32][]Span{}
		h[per] = ts
	}
	ps := ts[topic]
	if ps == nil {
		ps = map[int32][]Span{}
		ts[topic] = ps
	}
	ps[part] = append(ps[part], Span{r, committed})
}

// AddCoverage records every range of cov for period per.
func (h Held) AddCoverage(per layout.Period, cov Coverage, committed time.Time) {
	for topic, ps := range cov {
		for part, rs := range ps {
			for _, r := range rs {
				h.Add(per, topic, part, r, committed)
			}
		}
	}
}

// Coverage returns the ranges held for period per (the merge's filter of
// rows already in the table).
func (h Held) Coverage(per layout.Period) Coverage {
	cov := Coverage{}
	for topic, ps := range h[per] {
		for part, spans := range ps {
			for _, s := range spans {
				cov.Add(topic, part, s.Range)
			}
		}
	}
	return cov
}

// holds reports whether offset of the topic and partition is held for per.
func (h Held) holds(per layout.Period, topic string, part int32, offset int64) bool {
	for _, s := range h[per][topic][part] {
		if offset >= s.First && offset <= s.Last {
			return true
		}
	}
	return false
}

// Spans counts the spans held.
func (h Held) Spans() int {
	n := 0
	for _, ts := range h {
		for _, ps := range ts {
			for _, spans := range ps {
				n += len(spans)
			}
		}
	}
	return n
}

// Coalesce merges overlapping and adjacent spans of each period, topic and
// partition (the later commit time is kept, which can only make a raw file
// wait longer for deletion), so the index grows with the gaps between raw
// files, not with their number. Spans separated by a gap stay apart: a raw
// file of the period may still arrive there.
func (h Held) Coalesce() {
	for _, ts := range h {
		for _, ps := range ts {
			for part, spans := range ps {
				if len(spans) < 2 {
					continue
				}
				slices.SortFunc(spans, func(a, b Span) int {
					return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Last, b.Last))
				})
				out := spans[:1]
				for _, s := range spans[1:] {
					cur := &out[len(out)-1]
					if s.First > cur.Last && s.First-cur.Last > 1 {
						out = append(out, s)
						continue
					}
					cur.Last = max(cur.Last, s.Last)
					if s.Committed.After(cur.Committed) {
						cur.Committed = s.Committed
					}
				}
				ps[part] = slices.Clip(out)
			}
		}
	}
}

// indexFile is the index object's JSON: periods (ordinals of the table's
// granularity) → topic → Kafka partition → [first, last, committed] triples,
// committed in Unix seconds (0: unknown).
type indexFile struct {
	Version     int    `json:"version"`
	TableUUID   string `json:"table-uuid"`
	Granularity string `json:"granularity"`
	// Job and Attempt name the commit the index was written for (its
	// snapshot summary's lakesink.job-id and lakesink.attempt).
	Job     string                                      `json:"job"`
	Attempt int                                         `json:"attempt"`
	Periods map[string]map[string]map[string][][3]int64 `json:"periods"`
}

// indexMeta is what an index object says about itself.
type indexMeta struct {
	TableUUID   string
	Granularity layout.Granularity
	Job         string
	Attempt     int
}

// encodeIndex renders h as an index object.
func encodeIndex(h Held, m indexMeta) ([]byte, error) {
	f := indexFile{Version: indexVersion, TableUUID: m.TableUUID, Granularity: granularityName(m.Granularity),
		Job: m.Job, Attempt: m.Attempt, Periods: map[string]map[string]map[string][][3]int64{}}
	for per, ts := range h {
		pm := map[string]map[string][][3]int64{}
		for topic, ps := range ts {
			tm := map[string][][3]int64{}
			for part, spans := range ps {
				out := make([][3]int64, 0, len(spans))
				for _, s := range spans {
					var at int64
					if !s.Committed.IsZero() {
						at = s.Committed.Unix()
					}
					out = append(out, [3]int64{s.First, s.Last, at})
				}
				tm[strconv.Itoa(int(part))] = out
			}
			pm[topic] = tm
		}
		f.Periods[strconv.FormatInt(int64(per), 10)] = pm
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return (&zstd.Codec{Level: zstd.SpeedDefault}).Encode(nil, b)
}

// decodeIndex reads an index object written for the table tableUUID of
// granularity g, and returns the job and attempt it was written for.
func decodeIndex(b []byte, tableUUID string, g layout.Granularity) (Held, indexMeta, error) {
	var m indexMeta
	raw, err := (&zstd.Codec{}).Decode(nil, b)
	if err != nil {
		return nil, m, fmt.Errorf("decompress: %w", err)
	}
	var f indexFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, m, err
	}
	switch {
	case f.Version != indexVersion:
		return nil, m, fmt.Errorf("version %d, want %d", f.Version, indexVersion)
	case f.TableUUID != tableUUID:
		return nil, m, fmt.Errorf("written for table %s, not this table (%s)", f.TableUUID, tableUUID)
	case f.Granularity != granularityName(g):
		return nil, m, fmt.Errorf("written for %s periods, the table's are %s", f.Granularity, granularityName(g))
	}
	m = indexMeta{TableUUID: f.TableUUID, Granularity: g, Job: f.Job, Attempt: f.Attempt}
	h := Held{}
	for ps, topics := range f.Periods {
		per, err := strconv.ParseInt(ps, 10, 64)
		if err != nil {
			return nil, m, fmt.Errorf("period %q: %w", ps, err)
		}
		for topic, parts := range topics {
			for pn, spans := range parts {
				part, err := strconv.ParseInt(pn, 10, 32)
				if err != nil {
					return nil, m, fmt.Errorf("partition %q: %w", pn, err)
				}
				for _, s := range spans {
					if s[0] > s[1] {
						return nil, m, fmt.Errorf("%s/%s range [%d,%d] is reversed", topic, pn, s[0], s[1])
					}
					var at time.Time
					if s[2] != 0 {
						at = time.Unix(s[2], 0)
					}
					h.Add(layout.Period(per), topic, int32(part), Range{s[0], s[1]}, at)
				}
			}
		}
	}
	return h, m, nil
}

// granularityName is the config's name of g.
func granularityName(g layout.Granularity) string {
	if g == layout.Day {
		return "day"
	}
	return "hour"
}

// indexPrefix is the warehouse prefix of tbl's index objects.
func indexPrefix(tbl *table.Table) string {
	return indexDir + strings.Join(tbl.Identifier(), ".") + "/"
}

// readHeld returns what tbl holds: from its coverage index, or, when the
// table has none yet (written before the index existed) or it cannot be read,
// from the coverage footers of all its live files, once (indexed false: the
// run's commit writes the index).
func (c *Compactor) readHeld(ctx context.Context, tname string, g layout.Granularity, tbl *table.Table) (held Held, indexed bool, err error) {
	if tbl == nil {
		return Held{}, false, nil
	}
	uri, ok := tbl.Properties()[IndexProperty]
	if !ok {
		if tbl.CurrentSnapshot() == nil {
			return Held{}, false, nil
		}
		c.Log.Info("no coverage index yet; reading the coverage footers of every table file once", "table", tname)
		held, err := c.heldFromFooters(ctx, tbl)
		return held, false, err
	}
	key, err := relKey(c.Warehouse, uri)
	if err != nil {
		return nil, false, fmt.Errorf("%w: table property %s: %w", ErrHalt, IndexProperty, err)
	}
	b, err := c.Warehouse.Get(ctx, key)
	if err == nil {
		var m indexMeta
		held, m, err = decodeIndex(b, tbl.Metadata().TableUUID().String(), g)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %w", ErrBadInput, err)
		case rolledBack(tbl, m.Job, m.Attempt):
			err = fmt.Errorf("%w: the table was rolled back to before the commit of job %s attempt %d, which wrote it", ErrBadInput, m.Job, m.Attempt)
		default:
			return held, true, nil
		}
	}
	if !store.IsNotFound(err) && !errors.Is(err, ErrBadInput) {
		return nil, false, fmt.Errorf("read the coverage index %s: %w", uri, err)
	}
	// Deleted, damaged or rolled back: the footers are what is left.
	c.Log.Warn("coverage index unusable; rebuilding it from the coverage footers of every table file", "table", tname, "file", uri, "err", err)
	held, err = c.heldFromFooters(ctx, tbl)
	return held, false, err
}

// rolledBack reports whether the snapshot of the commit of job and attempt
// is in tbl but not an ancestor of its current snapshot: the table was
// rolled back to before it (table properties do not roll back). A snapshot
// expired since cannot tell, and counts as not rolled back.
func rolledBack(tbl *table.Table, job string, attempt int) bool {
	want := strconv.Itoa(attempt)
	var ours *table.Snapshot
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary != nil && s.Summary.Properties[SummaryJob] == job && s.Summary.Properties[SummaryAttempt] == want {
			ours = &s
			break
		}
	}
	if job == "" || ours == nil {
		return false
	}
	seen := map[int64]bool{}
	for s := tbl.CurrentSnapshot(); s != nil && !seen[s.SnapshotID]; {
		if s.SnapshotID == ours.SnapshotID {
			return false
		}
		seen[s.SnapshotID] = true
		if s.ParentSnapshotID == nil {
			break
		}
		s = tbl.SnapshotByID(*s.ParentSnapshotID)
	}
	return true
}

// heldFromFooters builds Held from the coverage footers of every live file of
// tbl (files other engines wrote or rewrote have none).
func (c *Compactor) heldFromFooters(ctx context.Context, tbl *table.Table) (Held, error) {
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list table files: %w", err)
	}
	type found struct {
		per layout.Period
		job string
		cov Coverage
	}
	got := make([]found, len(tasks))
	eg, gctx := errgroup.WithContext(ctx)
	eg.SetLimit(footerReaders)
	for i, task := range tasks {
		eg.Go(func() error {
			per, err := PeriodOf(task.File)
			if err != nil {
				return fmt.Errorf("%s: %w", task.File.FilePath(), err)
			}
			job, cov, err := c.footer(gctx, task.File.FilePath())
			got[i] = found{per, job, cov}
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	commits := jobCommits(tbl)
	held := Held{}
	for _, f := range got {
		held.AddCoverage(f.per, f.cov, commits[f.job])
	}
	held.Coalesce()
	return held, nil
}

// writeIndex writes held as a new index object of tbl for the commit of job
// and attempt (rebased rebase times) and returns its key.
func (c *Compactor) writeIndex(ctx context.Context, tbl *table.Table, g layout.Granularity, held Held, job string, attempt, rebase int) (string, error) {
	held.Coalesce()
	b, err := encodeIndex(held, indexMeta{TableUUID: tbl.Metadata().TableUUID().String(), Granularity: g, Job: job, Attempt: attempt})
	if err != nil {
		return "", fmt.Errorf("encode the coverage index: %w", err)
	}
	key := fmt.Sprintf("%s%s-a%d.json.zst", indexPrefix(tbl), job, attempt)
	if rebase > 0 {
		key = fmt.Sprintf("%s%s-a%d-r%d.json.zst", indexPrefix(tbl), job, attempt, rebase)
	}
	if err := c.Warehouse.Create(ctx, key, strings.NewReader(string(b))); err != nil {
		return "", fmt.Errorf("write the coverage index: %w", err)
	}
	return key, nil
}

// indexProps is the table property pointing at the index object key.
func (c *Compactor) indexProps(key string) iceberg.Properties {
	return iceberg.Properties{IndexProperty: c.Warehouse.URI(key)}
}

// commitIndex commits the index alone (a table written before the index
// existed, on a run that merged nothing): a property change pinned to the
// snapshot planned from. It is best effort: on any failure the next run
// builds it again.
func (c *Compactor) commitIndex(ctx context.Context, tname string, g layout.Granularity, st *state, sum *Summary) error {
	key, err := c.writeIndex(ctx, st.tbl, g, st.held, sum.Job, st.attempt, 0)
	if err != nil {
		return err
	}
	tx := st.tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		c.deleteKeys(ctx, key)
		return fmt.Errorf("stage the coverage index: %w", err)
	}
	if err := tx.SetProperties(c.indexProps(key)); err != nil {
		c.deleteKeys(ctx, key)
		return fmt.Errorf("stage the coverage index: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.Cfg.Compaction.CommitTimeout)
	_, err = tx.Commit(cctx)
	cancel()
	if err != nil {
		// Not proven either way: the object stays for the index sweep.
		c.Log.Warn("could not record the coverage index; the next run builds it again", "table", tname, "err", err)
		return nil
	}
	c.Log.Info("coverage index created", "table", tname, "file", c.Warehouse.URI(key), "spans", st.held.Spans())
	sum.Changes = append(sum.Changes, tname+": coverage index created")
	return nil
}

// sweepIndexes deletes tbl's index objects other than the current one that
// are older than orphan_min_age: those of earlier commits, and those of
// commits that failed (no reader still planning from one is that old).
func (c *Compactor) sweepIndexes(ctx context.Context, tbl *table.Table) (int, error) {
	current := tbl.Properties()[IndexProperty]
	cutoff := c.Now().Add(-c.Cfg.Compaction.OrphanMinAge)
	var old []string
	err := c.Warehouse.List(ctx, indexPrefix(tbl), func(o store.ObjectInfo) error {
		if c.Warehouse.URI(o.Key) != current && o.Modified.Before(cutoff) {
			old = append(old, o.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list coverage indexes: %w", err)
	}
	if len(old) == 0 {
		return 0, nil
	}
	if err := c.Warehouse.Delete(ctx, old...); err != nil {
		return 0, fmt.Errorf("delete old coverage indexes: %w", err)
	}
	return len(old), nil
}

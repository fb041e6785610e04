package compaction

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// indexVersion is the version of the index format of one month's object (and
// of the whole-table objects written before the index was split by month).
const indexVersion = 1

// rootVersion is the version of the root object: a table's index is one
// object per month of partitions (the indexVersion format, restricted to the
// month's periods), named by a root object that the table property points
// at. A run reads the root and the months of the raw files it places, and a
// commit writes the months it changed and a new root naming the others'
// objects as they were: its cost follows the new data, not the table's
// history (one object of every span made each commit decode and encode
// 10,000 spans on a 10,000-hour table: 35 ms, 1.6× the one-hour run's CPU).
const rootVersion = 2

// indexRoot is the root object's JSON: month ("2006-01") → the warehouse key of
// that month's index object.
type indexRoot struct {
	Version     int               `json:"version"`
	TableUUID   string            `json:"table-uuid"`
	Granularity string            `json:"granularity"`
	Job         string            `json:"job"`
	Attempt     int               `json:"attempt"`
	Months      map[string]string `json:"months"`
}

// monthName is the month of period per, the unit the index is split by.
func monthName(per layout.Period, g layout.Granularity) string {
	return per.Start(g).Format("2006-01")
}

// months returns the months of h's periods.
func (h Held) months(g layout.Granularity) map[string]bool {
	out := map[string]bool{}
	for per := range h {
		out[monthName(per, g)] = true
	}
	return out
}

// month returns the periods of h in month m (sharing h's maps).
func (h Held) month(m string, g layout.Granularity) Held {
	out := Held{}
	for per, ts := range h {
		if monthName(per, g) == m {
			out[per] = ts
		}
	}
	return out
}

// packJSON renders v as zstd-compressed JSON, the form of every index object.
func packJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return (&zstd.Codec{Level: zstd.SpeedDefault}).Encode(nil, b)
}

// unpack decompresses an index object.
func unpack(b []byte) ([]byte, error) {
	raw, err := (&zstd.Codec{}).Decode(nil, b)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return raw, nil
}

// checkOwner verifies that an index object was written for the table
// tableUUID of granularity g.
func checkOwner(uuid, granularity, tableUUID string, g layout.Granularity) error {
	switch {
	case uuid != tableUUID:
		return fmt.Errorf("written for table %s, not this table (%s)", uuid, tableUUID)
	case granularity != granularityName(g):
		return fmt.Errorf("written for %s periods, the table's are %s", granularity, granularityName(g))
	}
	return nil
}

// indexObject reads an index object: a root (root set), or a whole-table
// object of before the split (held set).
func indexObject(b []byte, tableUUID string, g layout.Granularity) (root *indexRoot, held Held, m indexMeta, err error) {
	raw, err := unpack(b)
	if err != nil {
		return nil, nil, m, err
	}
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, nil, m, err
	}
	if v.Version != rootVersion {
		held, m, err = decodeIndexJSON(raw, tableUUID, g)
		return nil, held, m, err
	}
	var r indexRoot
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, nil, m, err
	}
	if err := checkOwner(r.TableUUID, r.Granularity, tableUUID, g); err != nil {
		return nil, nil, m, err
	}
	return &r, nil, indexMeta{TableUUID: r.TableUUID, Granularity: g, Job: r.Job, Attempt: r.Attempt}, nil
}

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
	return packJSON(f)
}

// decodeIndex reads an index object written for the table tableUUID of
// granularity g, and returns the job and attempt it was written for.
func decodeIndex(b []byte, tableUUID string, g layout.Granularity) (Held, indexMeta, error) {
	raw, err := unpack(b)
	if err != nil {
		return nil, indexMeta{}, err
	}
	return decodeIndexJSON(raw, tableUUID, g)
}

// decodeIndexJSON is decodeIndex on the decompressed object.
func decodeIndexJSON(raw []byte, tableUUID string, g layout.Granularity) (Held, indexMeta, error) {
	var m indexMeta
	var f indexFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, m, err
	}
	if f.Version != indexVersion {
		return nil, m, fmt.Errorf("version %d, want %d", f.Version, indexVersion)
	}
	if err := checkOwner(f.TableUUID, f.Granularity, tableUUID, g); err != nil {
		return nil, m, err
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

// readHeld returns what tbl holds of the months want (at least: a table
// whose index predates the split by month, or has none, is read whole): from
// its coverage index, or, when the table has none yet (written before the
// index existed) or it cannot be read, from the coverage footers of all its
// live files, once (indexed false: the run's commit writes the index). root is
// the index's root object (nil: none, or whole), whose other months a commit
// keeps.
func (c *Compactor) readHeld(ctx context.Context, tname string, g layout.Granularity, tbl *table.Table, want map[string]bool) (held Held, root *indexRoot, indexed bool, err error) {
	if tbl == nil {
		return Held{}, nil, false, nil
	}
	uri, ok := tbl.Properties()[IndexProperty]
	if !ok {
		if tbl.CurrentSnapshot() == nil {
			return Held{}, nil, false, nil
		}
		c.Log.Info("no coverage index yet; reading the coverage footers of every table file once", "table", tname)
		held, err := c.heldFromFooters(ctx, tbl)
		return held, nil, false, err
	}
	key, err := relKey(c.Warehouse, uri)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: table property %s: %w", ErrHalt, IndexProperty, err)
	}
	uuid := tbl.Metadata().TableUUID().String()
	b, err := c.Warehouse.Get(ctx, key)
	if err == nil {
		var m indexMeta
		root, held, m, err = indexObject(b, uuid, g)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %w", ErrBadInput, err)
		case rolledBack(tbl, m.Job, m.Attempt):
			err = fmt.Errorf("%w: the table was rolled back to before the commit of job %s attempt %d, which wrote it", ErrBadInput, m.Job, m.Attempt)
		case root == nil:
			return held, nil, true, nil
		default:
			if held, err = c.readMonths(ctx, root, uuid, g, want); err == nil {
				return held, root, true, nil
			}
		}
	}
	if !store.IsNotFound(err) && !errors.Is(err, ErrBadInput) {
		return nil, nil, false, fmt.Errorf("read the coverage index %s: %w", uri, err)
	}
	// Deleted, damaged or rolled back: the footers are what is left.
	c.Log.Warn("coverage index unusable; rebuilding it from the coverage footers of every table file", "table", tname, "file", uri, "err", err)
	held, err = c.heldFromFooters(ctx, tbl)
	return held, nil, false, err
}

// readMonths reads the index objects of the months want that root names.
func (c *Compactor) readMonths(ctx context.Context, root *indexRoot, uuid string, g layout.Granularity, want map[string]bool) (Held, error) {
	held := Held{}
	for m := range want {
		key, ok := root.Months[m]
		if !ok {
			continue
		}
		b, err := c.Warehouse.Get(ctx, key)
		if store.IsNotFound(err) {
			return nil, fmt.Errorf("%w: month %s: %w", ErrBadInput, m, err)
		}
		if err != nil {
			return nil, err
		}
		h, _, err := decodeIndex(b, uuid, g)
		if err != nil {
			return nil, fmt.Errorf("%w: month %s (%s): %w", ErrBadInput, m, key, err)
		}
		for per, ts := range h {
			if monthName(per, g) != m {
				return nil, fmt.Errorf("%w: month %s (%s) holds period %d", ErrBadInput, m, key, per)
			}
			held[per] = ts
		}
	}
	return held, nil
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

// writeIndex writes the months of held as new index objects of tbl for the
// commit of job and attempt (rebased rebase times), and a root naming them
// and root's other months' objects (root nil: held is the whole table), and
// returns the root's key. The months' keys are the root's base name, ".m"
// and the month, so dropIndex finds them.
func (c *Compactor) writeIndex(ctx context.Context, tbl *table.Table, g layout.Granularity, held Held, root *indexRoot, job string, attempt, rebase int) (string, error) {
	held.Coalesce()
	base := fmt.Sprintf("%s%s-a%d", indexPrefix(tbl), job, attempt)
	if rebase > 0 {
		base = fmt.Sprintf("%s-r%d", base, rebase)
	}
	r := indexRoot{Version: rootVersion, TableUUID: tbl.Metadata().TableUUID().String(), Granularity: granularityName(g),
		Job: job, Attempt: attempt, Months: map[string]string{}}
	if root != nil {
		maps.Copy(r.Months, root.Months)
	}
	meta := indexMeta{TableUUID: r.TableUUID, Granularity: g, Job: job, Attempt: attempt}
	for m := range held.months(g) {
		b, err := encodeIndex(held.month(m, g), meta)
		if err != nil {
			return "", fmt.Errorf("encode the coverage index of %s: %w", m, err)
		}
		key := base + ".m" + m + ".json.zst"
		if err := c.Warehouse.Create(ctx, key, bytes.NewReader(b)); err != nil {
			return "", fmt.Errorf("write the coverage index of %s: %w", m, err)
		}
		r.Months[m] = key
	}
	b, err := packJSON(r)
	if err != nil {
		return "", fmt.Errorf("encode the coverage index: %w", err)
	}
	key := base + ".json.zst"
	if err := c.Warehouse.Create(ctx, key, bytes.NewReader(b)); err != nil {
		return "", fmt.Errorf("write the coverage index: %w", err)
	}
	return key, nil
}

// dropIndex deletes an index root no commit references and the month objects
// written with it (best effort: the index sweep takes what is left).
func (c *Compactor) dropIndex(ctx context.Context, key string) {
	keys := []string{key}
	_ = c.Warehouse.List(ctx, strings.TrimSuffix(key, ".json.zst")+".m", func(o store.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	c.deleteKeys(ctx, keys...)
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
	key, err := c.writeIndex(ctx, st.tbl, g, st.held, st.root, sum.Job, st.attempt, 0)
	if err != nil {
		return err
	}
	tx := st.tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		c.dropIndex(ctx, key)
		return fmt.Errorf("stage the coverage index: %w", err)
	}
	if err := tx.SetProperties(c.indexProps(key)); err != nil {
		c.dropIndex(ctx, key)
		return fmt.Errorf("stage the coverage index: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, c.Cfg.Compaction.CommitTimeout)
	next, err := tx.Commit(cctx)
	cancel()
	if err != nil {
		// Not proven either way: the object stays for the index sweep.
		c.Log.Warn("could not record the coverage index; the next run builds it again", "table", tname, "err", err)
		return nil
	}
	st.after = next
	c.Log.Info("coverage index created", "table", tname, "file", c.Warehouse.URI(key), "spans", st.held.Spans())
	sum.Changes = append(sum.Changes, tname+": coverage index created")
	return nil
}

// sweepIndexes deletes tbl's index objects other than the current root and
// the month objects it names that are older than orphan_min_age: those of
// earlier commits, and those of commits that failed (no reader still planning
// from one is that old). A current root that cannot be read leaves everything.
func (c *Compactor) sweepIndexes(ctx context.Context, tbl *table.Table, g layout.Granularity) (int, error) {
	current := tbl.Properties()[IndexProperty]
	keep := map[string]bool{current: true}
	if current != "" {
		key, err := relKey(c.Warehouse, current)
		if err != nil {
			return 0, err
		}
		b, err := c.Warehouse.Get(ctx, key)
		switch {
		case store.IsNotFound(err):
		case err != nil:
			return 0, fmt.Errorf("read the coverage index %s: %w", current, err)
		default:
			// A whole-table object names no other; a root names its months.
			root, _, _, err := indexObject(b, tbl.Metadata().TableUUID().String(), g)
			if err != nil {
				return 0, fmt.Errorf("read the coverage index %s: %w", current, err)
			}
			if root != nil {
				for _, k := range root.Months {
					keep[c.Warehouse.URI(k)] = true
				}
			}
		}
	}
	cutoff := c.Now().Add(-c.Cfg.Compaction.OrphanMinAge)
	var old []string
	err := c.Warehouse.List(ctx, indexPrefix(tbl), func(o store.ObjectInfo) error {
		if !keep[c.Warehouse.URI(o.Key)] && o.Modified.Before(cutoff) {
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

package compaction

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/layout"
)

// Shard is one worker's share of a compaction (lakesink compact --shard I/N,
// or --shards N with the index of a Kubernetes Indexed Job): it plans, merges,
// commits and cleans only the partitions it owns. The zero Shard (and 0/1)
// owns everything.
//
// A partition (table, period) belongs to shard (fnv32a(table) + period) mod N:
// a hash of the table name picks where a table's periods start, and
// consecutive periods then go round the shards, so any run of N hours of a
// table is spread over all N shards (a day of backfill splits evenly) and two
// shards never own the same partition. The rule depends only on the table
// name, the period and N: every shard of a run agrees, and so do the runs of
// the next day.
type Shard struct {
	Index, Count int
}

// ParseShard reads "I/N" (0 ≤ I < N).
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want I/N (e.g. 0/4)", s)
	}
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want I/N with integers (e.g. 0/4)", s)
	}
	sh := Shard{Index: idx, Count: cnt}
	if cnt < 1 {
		return Shard{}, fmt.Errorf("shard %q: the shard count must be at least 1", s)
	}
	if err := sh.Validate(); err != nil {
		return Shard{}, fmt.Errorf("shard %q: %w", s, err)
	}
	return sh, nil
}

// Validate checks 0 ≤ Index < Count (the zero Shard is valid: unsharded).
func (s Shard) Validate() error {
	switch {
	case s == Shard{}:
		return nil
	case s.Count < 1:
		return errors.New("the shard count must be at least 1")
	case s.Index < 0 || s.Index >= s.Count:
		return fmt.Errorf("the index must be in [0, %d)", s.Count)
	}
	return nil
}

// Sharded reports whether the work is split (more than one shard).
func (s Shard) Sharded() bool { return s.Count > 1 }

// First reports whether s is the shard that runs table maintenance (shard 0,
// or the only one).
func (s Shard) First() bool { return s.Index == 0 }

// String is "I/N" ("0/1" for the zero Shard).
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, max(s.Count, 1)) }

// Owner returns the index of the shard, out of n, that owns the partition
// (table, period).
func Owner(tableName string, p layout.Period, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(tableName))
	r := (int64(h.Sum32()) + int64(p)) % int64(n)
	if r < 0 {
		r += int64(n)
	}
	return int(r)
}

// Owns reports whether the partition (table, period) is s's.
func (s Shard) Owns(tableName string, p layout.Period) bool {
	return !s.Sharded() || Owner(tableName, p, s.Count) == s.Index
}

// SummaryShard is the snapshot summary key naming the shard ("I/N") whose
// commit it is (sharded runs only): the lineage a reader (or the shard tests)
// uses to tell which worker merged which partition.
const SummaryShard = "lakesink.shard"

// rebaseCheck decides whether a commit planned on base, proven not applied
// after a clean conflict, may be staged again unchanged on cur (the table as
// it is now): the same outputs replacing the same files, with no re-merge.
// That holds when every commit since base left the partitions of periods
// alone — it added and removed no file there, so the raw files we merged are
// still not in the table and the table files we replace are still live — and
// the table's identity, schema, partition spec and sort order (which the
// outputs' registrations were built from) are unchanged. Commits of other
// shards touch only their own partitions, so they pass; a rival compactor
// that merged one of our partitions does not (we plan again). It returns ""
// when a rebase is safe, or why not (also when the history could not be
// read: planning again is always safe).
func rebaseCheck(ctx context.Context, base, cur *table.Table, periods map[layout.Period]bool) string {
	bm, cm := base.Metadata(), cur.Metadata()
	switch {
	case bm.TableUUID() != cm.TableUUID():
		return "the table was replaced"
	case base.Schema().ID != cur.Schema().ID:
		return "the schema changed"
	case bm.DefaultPartitionSpec() != cm.DefaultPartitionSpec():
		return "the partition spec changed"
	case bm.DefaultSortOrder() != cm.DefaultSortOrder():
		return "the sort order changed"
	}
	curHead, baseHead := cur.CurrentSnapshot(), base.CurrentSnapshot()
	var between []table.Snapshot
	switch {
	case curHead == nil && baseHead == nil:
		return "" // a metadata-only rival commit (expiry, properties)
	case curHead == nil:
		return "the table lost its current snapshot"
	case baseHead == nil:
		var complete bool
		if between, complete = table.AncestorsOfChecked(curHead.SnapshotID, cm.SnapshotByID); !complete {
			return "the table's history is incomplete"
		}
	default:
		var found bool
		if between, found = table.AncestorsBetween(curHead.SnapshotID, baseHead.SnapshotID, cm.SnapshotByID); !found {
			return fmt.Sprintf("snapshot %d is no longer an ancestor of the current one", baseHead.SnapshotID)
		}
	}
	if len(between) == 0 {
		return ""
	}
	fs, err := cur.FS(ctx)
	if err != nil {
		return "table file io: " + err.Error()
	}
	for _, s := range between {
		changed, err := ChangedPeriods(fs, s)
		if err != nil {
			return err.Error()
		}
		for per := range changed {
			if periods[per] {
				return fmt.Sprintf("snapshot %d changed partition %d, one of ours", s.SnapshotID, per)
			}
		}
	}
	return ""
}

// ChangedPeriods returns the partitions in which snapshot s added or removed
// a file: the entries of its own manifests (those it wrote) that carry its id.
func ChangedPeriods(fs iceio.IO, s table.Snapshot) (map[layout.Period]bool, error) {
	mfs, err := s.Manifests(fs)
	if err != nil {
		return nil, fmt.Errorf("read the manifest list of snapshot %d: %w", s.SnapshotID, err)
	}
	out := map[layout.Period]bool{}
	for _, mf := range mfs {
		if mf.SnapshotID() != s.SnapshotID {
			continue
		}
		for e, err := range mf.Entries(fs, false) {
			if err != nil {
				return nil, fmt.Errorf("read manifest %s: %w", mf.FilePath(), err)
			}
			if e.Status() == iceberg.EntryStatusEXISTING || e.SnapshotID() != s.SnapshotID {
				continue
			}
			per, err := PeriodOf(e.DataFile())
			if err != nil {
				return nil, fmt.Errorf("snapshot %d changed %s: %w", s.SnapshotID, e.DataFile().FilePath(), err)
			}
			out[per] = true
		}
	}
	return out, nil
}

// rebaseWait is how long a shard waits before rebasing after a conflict: a
// jittered pause growing with the rebases already made, so that N shards
// committing at once spread out instead of colliding again.
func rebaseWait(rebases int) time.Duration {
	return time.Duration(rand.Int64N(int64(50*time.Millisecond) * int64(rebases+1)))
}

// CheckShardLineage verifies, from the table's history, that every commit of
// a shard (a snapshot whose summary names it under SummaryShard) added and
// removed files only in partitions that shard owns. It returns how many such
// commits it checked, or an error naming the first one that changed another
// shard's partition. Snapshots already expired are not seen.
func CheckShardLineage(ctx context.Context, tbl *table.Table) (int, error) {
	fs, err := tbl.FS(ctx)
	if err != nil {
		return 0, fmt.Errorf("table file io: %w", err)
	}
	id := tbl.Identifier()
	name := id[len(id)-1]
	n := 0
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary == nil || s.Summary.Properties[SummaryShard] == "" {
			continue
		}
		sh, err := ParseShard(s.Summary.Properties[SummaryShard])
		if err != nil {
			return n, fmt.Errorf("snapshot %d: %w", s.SnapshotID, err)
		}
		changed, err := ChangedPeriods(fs, s)
		if err != nil {
			return n, err
		}
		for per := range changed {
			if !sh.Owns(name, per) {
				return n, fmt.Errorf("snapshot %d of shard %s changed partition %d of table %s, owned by shard %d",
					s.SnapshotID, sh, per, name, Owner(name, per, sh.Count))
			}
		}
		n++
	}
	return n, nil
}

package compaction_test

import (
	"context"
	"io"
	iofs "io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	iceio "github.com/apache/iceberg-go/io"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

// countingStore counts the requests made through a store.Store.
type countingStore struct {
	store.Store
	n *atomic.Int64
}

func (s countingStore) Create(ctx context.Context, key string, body io.Reader) error {
	s.n.Add(1)
	return s.Store.Create(ctx, key, body)
}
func (s countingStore) Open(ctx context.Context, key string) (store.Object, error) {
	s.n.Add(1)
	return s.Store.Open(ctx, key)
}
func (s countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.n.Add(1)
	return s.Store.Get(ctx, key)
}
func (s countingStore) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	s.n.Add(1)
	return s.Store.Stat(ctx, key)
}
func (s countingStore) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	s.n.Add(1)
	return s.Store.List(ctx, prefix, func(o store.ObjectInfo) error {
		return fn(o)
	})
}
func (s countingStore) Delete(ctx context.Context, keys ...string) error {
	s.n.Add(1)
	return s.Store.Delete(ctx, keys...)
}

// countingFS is iceberg-go's local file IO counting opens, reads and
// directory entries walked: the manifest lists, manifests and metadata files
// iceberg-go reads, and orphan cleanup's listing.
type countingFS struct {
	iceio.LocalFS
	n *atomic.Int64
}

func (f countingFS) Open(name string) (iceio.File, error) {
	f.n.Add(1)
	return f.LocalFS.Open(name)
}
func (f countingFS) ReadFile(name string) ([]byte, error) {
	f.n.Add(1)
	return f.LocalFS.ReadFile(name)
}
func (f countingFS) WalkDir(root string, fn iofs.WalkDirFunc) error {
	return f.LocalFS.WalkDir(root, func(path string, d iofs.DirEntry, err error) error {
		f.n.Add(1)
		return fn(path, d, err)
	})
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var swapFileIO sync.Mutex

// countFileIO makes iceberg-go's file:// IO count into n until the test ends.
func countFileIO(t *testing.T, n *atomic.Int64) {
	t.Helper()
	swapFileIO.Lock()
	factory := func(fs iceio.IO) iceio.SchemeFactory {
		return func(context.Context, *url.URL, map[string]string) (iceio.IO, error) { return fs, nil }
	}
	iceio.Unregister("file")
	iceio.Register("file", factory(countingFS{n: n}))
	t.Cleanup(func() {
		iceio.Unregister("file")
		iceio.Register("file", factory(iceio.LocalFS{}))
		swapFileIO.Unlock()
	})
}

// requests compacts a table of hours closed hours (one commit per hour, so
// one manifest each), runs twice more so that the raw files are gone and
// orphans swept, and returns the requests (store calls and iceberg-go file
// reads) of a further idle run, and of a run with new rows in one hour: up to
// its commit (planning and merge: oneHour) and in all (oneHourAll), and of a
// run whose new rows open a new hour (an append: newHourAll).
func requests(t *testing.T, hours int) (idle, oneHour, oneHourAll, newHourAll int64) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.MaxPartitionsPerCommit = 1
	l.backfill(t, cfg, hours*10, hours)
	for i := range 2 {
		if _, _, err := l.compact(t, cfg); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	var n atomic.Int64
	countFileIO(t, &n)
	run := func(what string) (int64, int64) {
		c := l.compactor(t, cfg)
		c.Lake = countingStore{c.Lake, &n}
		c.Warehouse = countingStore{c.Warehouse, &n}
		var planned int64
		c.Hook = func(p string) {
			if p == "after-outputs" {
				planned = n.Load()
			}
		}
		n.Store(0)
		cpu0, wall0 := cpuTime(), time.Now()
		sum, err := c.Run(context.Background(), "")
		t.Logf("%s run on %d files: %d requests, %.3f CPU-s, %s wall", what, hours, n.Load(), (cpuTime() - cpu0).Seconds(), time.Since(wall0).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%s run: %v", what, err)
		}
		if what == "idle" && !sum.Idle() {
			t.Fatalf("idle run did something: %+v", sum)
		}
		if what == "one-hour" && sum.Partitions != 1 {
			t.Fatalf("one-hour run merged %d partitions, want 1", sum.Partitions)
		}
		return planned, n.Load()
	}
	_, idle = run("idle")
	l.write(t, cfg, hours*10, hours*10+5, func(i int) int { return i % 60 }, "") // new rows in the lab's hour
	oneHour, oneHourAll = run("one-hour")
	exact(t, l.compactor(t, cfg), hours*10+5)
	// The bound compaction reads from the history holds after a replace...
	dataManifests(t, l.compactor(t, cfg))
	l.write(t, cfg, hours*10+5, hours*10+10, func(i int) int { return 3600 + i%60 }, "") // the hour after the lab's: not in the table
	_, newHourAll = run("one-hour")
	exact(t, l.compactor(t, cfg), hours*10+10)
	// ... and after an append that keeps the replace's tombstones.
	dataManifests(t, l.compactor(t, cfg))
	return idle, oneHour, oneHourAll, newHourAll
}

// TestRunCostFollowsNewData: the requests of an idle run, and those of a run
// with new rows in one hour up to its commit (listing, planning, footers,
// merge), do not grow with the number of files in the table (3 vs 30 hourly
// files, each added by its own commit, so one manifest each). Before the
// planner scanned only the partitions with raw files and orphan cleanup ran
// on a cadence, both grew with every file and manifest of the table. A run
// whose new rows open a new hour (an append) stays flat through its commit
// too: its outputs have fresh names, so iceberg-go's check that they are not
// in the table already (a read of every manifest) is skipped. A commit that
// replaces files (new rows in an hour the table has) still reads every
// manifest of the current snapshot, but their count is bounded: maintenance
// merges them once there are more than compaction.max_manifests, so that
// commit costs at most 1.2 × the small table's plus two reads per manifest
// up to that count (75 vs 21 requests on 30 files before; see
// docs/performance.md).
func TestRunCostFollowsNewData(t *testing.T) {
	var smallIdle, smallHour, smallAll, smallNew, bigIdle, bigHour, bigAll, bigNew int64
	t.Run("3", func(t *testing.T) { smallIdle, smallHour, smallAll, smallNew = requests(t, 3) })
	big := 30
	if v := os.Getenv("LAKESINK_COST_HOURS"); v != "" { // a bigger table for docs/performance.md
		var err error
		if big, err = strconv.Atoi(v); err != nil {
			t.Fatalf("LAKESINK_COST_HOURS: %v", err)
		}
	}
	t.Run("big", func(t *testing.T) { bigIdle, bigHour, bigAll, bigNew = requests(t, big) })
	t.Logf("requests: idle %d (3 files) vs %d (%d files); one-hour up to the commit %d vs %d, with the commit %d vs %d; new hour with the commit %d vs %d",
		smallIdle, bigIdle, big, smallHour, bigHour, smallAll, bigAll, smallNew, bigNew)
	if bigNew > smallNew {
		t.Errorf("new-hour run: %d requests on %d files, %d on 3: the commit grows with the table", bigNew, big, smallNew)
	}
	if bigIdle > smallIdle {
		t.Errorf("idle run: %d requests on %d files, %d on 3: grows with the table", bigIdle, big, smallIdle)
	}
	if bigHour > smallHour {
		t.Errorf("one-hour run: %d requests on %d files, %d on 3: grows with the table", bigHour, big, smallHour)
	}
	// The late-data commit replaces a file: iceberg-go reads every manifest
	// of the current snapshot twice (ReplaceDataFilesWithDataFiles' walk of
	// the data files, then the overwrite producer's scan). Bounded because
	// maintenance merges the manifests past compaction.max_manifests: at
	// most two reads per manifest up to that count more than the small
	// table's, whatever the big table's history (before, 75 vs 21 on 30 files).
	manifestSlack := int64(2 * config.Default().Compaction.MaxManifests)
	if limit := smallAll*6/5 + manifestSlack; bigAll > limit {
		t.Errorf("one-hour run with its replace commit: %d requests on %d files, %d on 3 (limit %d): the commit grows with the table's manifests", bigAll, big, smallAll, limit)
	}
}

// idleRequests builds a table of 2n files: n closed hours of one file each,
// and n files in the lab's hour, added by n runs; the raw files of the last
// run are still inside raw_grace (already merged), the others are gone. It
// returns the requests of a run then (idle: nothing to merge or delete).
func idleRequests(t *testing.T, n int) int64 {
	ctx := context.Background()
	l := newLab(t)
	cfg := outsideConfig(t, l)
	l.write(t, cfg, 0, n, func(i int) int { return -3600 * (i + 1) }, "")
	for k := range n {
		if k > 0 {
			var keys []string
			if err := l.lake.List(ctx, "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := l.lake.Delete(ctx, keys...); err != nil {
				t.Fatal(err)
			}
		}
		l.write(t, cfg, n+10*k, n+10*k+10, func(i int) int { return i % 60 }, "")
		if _, _, err := l.compact(t, cfg); err != nil {
			t.Fatal(err)
		}
	}
	var reqs atomic.Int64
	countFileIO(t, &reqs)
	c := l.compactor(t, cfg)
	c.Lake = countingStore{c.Lake, &reqs}
	c.Warehouse = countingStore{c.Warehouse, &reqs}
	_, tasks := liveFiles(t, c)
	files := len(tasks)
	if files != 2*n {
		t.Fatalf("table has %d files, want %d", files, 2*n)
	}
	reqs.Store(0)
	sum, err := c.Run(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Idle() {
		t.Fatalf("run on %d files: %+v, want idle", files, sum)
	}
	got := reqs.Load()
	t.Logf("idle run on %d table files (%d in the hour with raw files in grace): %d requests", files, n, got)
	exact(t, c, 11*n)
	return got
}

// TestIdlePlanningCostFollowsPartitionsTouched: a run whose raw files are
// all already merged (inside raw_grace) costs the same requests on a table of
// 6 files as on one of 60, 30 of them in the hour those raw files belong to:
// what the table holds comes from the coverage index (one GET), not from a
// footer per table file of the partitions touched.
func TestIdlePlanningCostFollowsPartitionsTouched(t *testing.T) {
	var small, big int64
	t.Run("3", func(t *testing.T) { small = idleRequests(t, 3) })
	t.Run("30", func(t *testing.T) { big = idleRequests(t, 30) })
	if big > small {
		t.Errorf("idle run: %d requests on 60 files, %d on 6: grows with the files of the partitions touched", big, small)
	}
}

// metadataFS is iceberg-go's local file IO counting the reads of table
// metadata files (*.metadata.json) into n.
type metadataFS struct {
	iceio.LocalFS
	n *atomic.Int64
}

func (f metadataFS) count(name string) {
	if strings.HasSuffix(name, ".metadata.json") {
		f.n.Add(1)
	}
}
func (f metadataFS) Open(name string) (iceio.File, error) {
	f.count(name)
	return f.LocalFS.Open(name)
}
func (f metadataFS) ReadFile(name string) ([]byte, error) {
	f.count(name)
	return f.LocalFS.ReadFile(name)
}

// TestRunReadsTableMetadataTwice: a run that merges one hour and commits
// reads the table's metadata file twice: when it loads the table, and when
// the catalog checks the commit against the current metadata. The table the
// commit returns is the one the rest of the run goes on with (maintenance,
// the final-through time), not a third load: the metadata grows with the
// table's snapshots (67 KB with 52 of them, 2.9 ms to parse and write
// again, against 0.4 ms for 6 KB), the one cost of a one-hour run that
// followed the table's history.
func TestRunReadsTableMetadataTwice(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.write(t, cfg, 0, 10, func(i int) int { return i % 60 }, "")
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	l.write(t, cfg, 10, 20, func(i int) int { return 3600 + i%60 }, "") // the next hour
	var n atomic.Int64
	swapFileIO.Lock()
	factory := func(fs iceio.IO) iceio.SchemeFactory {
		return func(context.Context, *url.URL, map[string]string) (iceio.IO, error) { return fs, nil }
	}
	iceio.Unregister("file")
	iceio.Register("file", factory(metadataFS{n: &n}))
	t.Cleanup(func() {
		iceio.Unregister("file")
		iceio.Register("file", factory(iceio.LocalFS{}))
		swapFileIO.Unlock()
	})
	sum, err := l.compactor(t, cfg).Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 1 || sum.Partitions != 1 {
		t.Fatalf("run made %d commits of %d partitions, want 1 of 1", sum.Commits, sum.Partitions)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("run read the table's metadata file %d times, want 2 (load, commit)", got)
	}
	exact(t, l.compactor(t, cfg), 20)
}

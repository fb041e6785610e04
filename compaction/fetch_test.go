package compaction_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// gateStore holds the Get of one key until the Get of another has started
// (the merge fetched ahead while the first was in flight), and tracks the
// bytes fetched but not yet merged (Gets returned minus the merger's Progress).
type gateStore struct {
	store.Store
	hold, until string
	started     chan struct{}
	once        sync.Once

	mu               sync.Mutex
	ahead, maxAhead  int64
	overlapped, gets int
}

func (g *gateStore) Get(ctx context.Context, key string) ([]byte, error) {
	if key == g.until {
		g.once.Do(func() { close(g.started) })
	}
	if key == g.hold {
		select {
		case <-g.started:
			g.mu.Lock()
			g.overlapped++
			g.mu.Unlock()
		case <-time.After(30 * time.Second):
			// Only a failure waits this long: a merge that fetches ahead
			// starts the other Get at once.
			return nil, errors.New("no other input was fetched while this one was in flight")
		}
	}
	data, err := g.Store.Get(ctx, key)
	g.mu.Lock()
	g.gets++
	g.ahead += int64(len(data))
	g.maxAhead = max(g.maxAhead, g.ahead)
	g.mu.Unlock()
	return data, err
}

func (g *gateStore) merged(n int64) {
	g.mu.Lock()
	g.ahead -= n
	g.mu.Unlock()
}

// TestMergeFetchesAhead: the merger fetches the next inputs while one is in
// flight (the first input's Get is held until the second's has started), and
// the bytes fetched ahead stay within an eighth of the budget (or one file).
func TestMergeFetchesAhead(t *testing.T) {
	lake, cfg, groups := benchLake(t, 6000, 60)
	var period layout.Period
	for p, g := range groups {
		if len(g) > len(groups[period]) {
			period = p
		}
	}
	raw := groups[period]
	if len(raw) < 4 {
		t.Fatalf("the largest group has %d raw files, want ≥ 4", len(raw))
	}
	var total, largest int64
	for _, f := range raw {
		total += f.Size
		largest = max(largest, f.Size)
	}
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	// A window (budget / 8) of about two files of the group.
	budget := 16 * largest
	gs := &gateStore{Store: lake, hold: raw[0].Key, until: raw[1].Key, started: make(chan struct{})}
	m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
		Lake: gs, Warehouse: lake, Budget: budget, RowGroupSize: 1 << 20, Target: 1 << 30,
		TempDir: t.TempDir(), Job: "ahead", Progress: gs.merged}
	res, err := m.Merge(context.Background(), compaction.Group{Period: period, Raw: raw}, 0, "out", compaction.Coverage{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BytesIn != total || gs.gets != len(raw) {
		t.Fatalf("%d bytes in of %d, %d Gets of %d files", res.BytesIn, total, gs.gets, len(raw))
	}
	if gs.overlapped != 1 {
		t.Fatalf("the first input's Get overlapped another %d times, want 1", gs.overlapped)
	}
	if window := max(budget/8, largest); gs.maxAhead > window+largest {
		t.Fatalf("%d bytes fetched ahead of the merge, want ≤ %d (the window and the file being merged)", gs.maxAhead, window+largest)
	}
	t.Logf("at most %d bytes fetched ahead (files of at most %d bytes, %d files)", gs.maxAhead, largest, len(raw))
}

// nextGate makes the Creates of a group's outputs (keys under dir) wait
// until the Get of another group's first input (first) has started, and
// counts the Gets of every key.
type nextGate struct {
	dir, first string
	started    chan struct{}
	once       sync.Once
	mu         sync.Mutex
	gets       map[string]int
}

// gateLake is the lake side of a nextGate.
type gateLake struct {
	store.Store
	g *nextGate
}

func (l gateLake) Get(ctx context.Context, key string) ([]byte, error) {
	l.g.mu.Lock()
	l.g.gets[key]++
	l.g.mu.Unlock()
	if key == l.g.first {
		l.g.once.Do(func() { close(l.g.started) })
	}
	return l.Store.Get(ctx, key)
}

// gateWarehouse is the warehouse side of a nextGate.
type gateWarehouse struct {
	store.Store
	g *nextGate
}

func (w gateWarehouse) Create(ctx context.Context, key string, body io.Reader) error {
	if strings.HasPrefix(key, w.g.dir) {
		select {
		case <-w.g.started:
		case <-time.After(30 * time.Second):
			// Only a failure waits this long: the next group's fetch starts
			// before the first output is written.
			return errors.New("the next group's inputs were not fetched while this group wrote its outputs")
		}
	}
	return w.Store.Create(ctx, key, body)
}

// TestMergeFetchesTheNextGroupWhileWriting: with Next set, the merger
// fetches the next group's inputs while the group sorts and writes (its
// outputs' Creates are held until the next group's first Get has started),
// and the next Merge takes those fetches: each input is fetched once.
func TestMergeFetchesTheNextGroupWhileWriting(t *testing.T) {
	lake, cfg, groups := benchLake(t, 6000, 60)
	var periods []layout.Period
	for p := range groups {
		periods = append(periods, p)
	}
	slices.Sort(periods)
	if len(periods) < 2 {
		t.Fatalf("%d groups, want 2", len(periods))
	}
	g0 := compaction.Group{Period: periods[0], Raw: groups[periods[0]]}
	g1 := compaction.Group{Period: periods[1], Raw: groups[periods[1]]}
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	ng := &nextGate{dir: "out0/", first: g1.Raw[0].Key, started: make(chan struct{}), gets: map[string]int{}}
	m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
		Lake: gateLake{lake, ng}, Warehouse: gateWarehouse{lake, ng}, Budget: 256 << 20, RowGroupSize: 1 << 20, Target: 1 << 30,
		TempDir: t.TempDir(), Job: "next"}
	defer m.Close()
	m.Next = &g1
	if _, err := m.Merge(context.Background(), g0, 0, "out0", compaction.Coverage{}); err != nil {
		t.Fatal(err)
	}
	m.Next = nil
	res, err := m.Merge(context.Background(), g1, 1, "out1", compaction.Coverage{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) == 0 {
		t.Fatal("the second group wrote no output")
	}
	for _, f := range append(g0.Raw, g1.Raw...) {
		if n := ng.gets[f.Key]; n != 1 {
			t.Errorf("input %s fetched %d times, want once", f.Key, n)
		}
	}
}

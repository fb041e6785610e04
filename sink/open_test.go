package sink

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/decode"
)

// feed processes events[from:to) as offsets of partition 0 of topic t.
func feed(t *testing.T, e *Engine, ev [][]byte, from, to int) {
	t.Helper()
	now := time.Now()
	for i := from; i < to; i++ {
		if _, err := e.Process(context.Background(), &decode.Record{Topic: "t", Partition: 0, Offset: int64(i), Timestamp: now, Value: ev[i]}, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDefaultConfigDoesNotCapOpenPartitions: with the default flush settings, 3,000
// hours of events that fit in the memory budget stay in 3,000 open buffers; nothing
// is sealed because of their number (issue 18: the old default cap of 2,000 made
// 6.7× the files of shuffled events that fit in memory).
func TestDefaultConfigDoesNotCapOpenPartitions(t *testing.T) {
	const hours = 3000
	ev := events(2*hours, hours)
	e := newTestEngine(t, t.TempDir(), "", nil)
	e.Assign("t", 0, -1, "")
	feed(t, e, ev, 0, len(ev))
	if got := testutil.ToFloat64(e.m.Flushes.WithLabelValues("open_partitions")); got != 0 {
		t.Errorf("%v buffers sealed for their number, want 0", got)
	}
	if st := e.Stats(); st.Open < hours-hours/10 || st.Queued != 0 {
		t.Errorf("open %d, queued %d; want about %d open (one per hour) and none queued", st.Open, st.Queued, hours)
	}
}

// TestOpenPartitionsCapSealsLeastRecentlyWritten: over flush.max_open_partitions, the
// buffer sealed is the one written least recently, neither the oldest nor the largest:
// the sink consumes a fetch of one Kafka partition at a time, so the buffers being
// filled are the recent ones, and sealing the largest (the ones being filled) made a
// file of every few records of shuffled events under a cap.
func TestOpenPartitionsCapSealsLeastRecentlyWritten(t *testing.T) {
	ev := events(300, 3) // hours 0, 1, 2: offsets 0-99, 100-199, 200-299 (a few late)
	e := newTestEngine(t, t.TempDir(), "flush: {max_open_partitions: 2}", nil)
	e.Assign("t", 0, -1, "")
	// Hour 0 opens first and gets the most records, written last; hour 1 gets one,
	// written before: hour 2 is one too many.
	order := []int{0, 100}
	for i := 1; i < 60; i++ {
		order = append(order, i)
	}
	order = append(order, 250)
	now := time.Now()
	for off, i := range order {
		if _, err := e.Process(context.Background(), &decode.Record{Topic: "t", Partition: 0, Offset: int64(off), Timestamp: now, Value: ev[i]}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.queue) != 1 {
		t.Fatalf("%d buffers sealed, want 1", len(e.queue))
	}
	if b := e.queue[0]; b.first != 1 {
		t.Errorf("sealed the buffer of %d records from offset %d, want hour 1's (offset 1, written least recently)", b.n, b.first)
	}
}

// TestOpenBufferOverheadCounted: what an open buffer costs the heap besides its rows
// (buffer and row store structs, its map entries) is within what the budget counts
// for it (bufferOverhead): 20,000 buffers of one record each.
func TestOpenBufferOverheadCounted(t *testing.T) {
	const n = 20000
	ev := events(n, n)
	e := newTestEngine(t, t.TempDir(), "flush: {memory_budget: 2GiB}", nil)
	e.Assign("t", 0, -1, "")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	counted := e.buffered
	feed(t, e, ev, 0, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	counted = e.buffered - counted
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d open buffers: heap %d B per buffer, counted %d B", len(e.open), heap/int64(len(e.open)), counted/int64(len(e.open)))
	if heap > counted {
		t.Errorf("open buffers hold %d B of heap, the budget counts %d B", heap, counted)
	}
	runtime.KeepAlive(ev)
}

// TestMemoryPressureSealsLargestNotHalf: over the budget, the largest open buffers are
// sealed until what is on its way out covers the excess and an eighth of the budget,
// not until half the budget is free: every buffer sealed early costs a file more.
func TestMemoryPressureSealsLargestNotHalf(t *testing.T) {
	const hours = 2000
	ev := events(8*hours, hours)
	e := newTestEngine(t, t.TempDir(), "flush: {memory_budget: 2GiB}", nil)
	e.Assign("t", 0, -1, "")
	feed(t, e, ev, 0, len(ev))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bufferBudget = e.buffered // full: the next reservation is over
	const need = 1000
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // return instead of waiting for uploads (no workers run)
	_ = e.reserve(ctx, need)
	largestOpen := int64(0)
	for _, b := range e.open {
		largestOpen = max(largestOpen, b.bytes)
	}
	smallestSealed := int64(-1)
	for _, b := range e.queue {
		if smallestSealed < 0 || b.bytes < smallestSealed {
			smallestSealed = b.bytes
		}
	}
	t.Logf("budget %d, sealed %d B in %d buffers of %d", e.bufferBudget, e.sealed, len(e.queue), len(e.queue)+len(e.open))
	if e.sealed < need {
		t.Fatalf("sealed %d B, want at least the %d B asked for", e.sealed, need)
	}
	if limit := need + e.bufferBudget/8 + largestOpen; e.sealed > limit {
		t.Errorf("sealed %d B in %d buffers, want at most %d (the excess and an eighth of the budget)", e.sealed, len(e.queue), limit)
	}
	if smallestSealed < largestOpen {
		t.Errorf("sealed a buffer of %d B while one of %d B stays open: want the largest first", smallestSealed, largestOpen)
	}
}

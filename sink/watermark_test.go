package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/lake/watermark"
)

// The committed maximum only counts records below the committed offset, and
// never more than a checkpoint below it: it may lag, never lead.
func TestEventTimesCommittedPrefix(t *testing.T) {
	var ev eventTimes
	// Offsets 0..999 with event time = offset, except offset 500 far ahead.
	for off := int64(0); off < 1000; off++ {
		et := off
		if off == 500 {
			et = 1_000_000
		}
		ev.observe(off, et+1) // +1: 0 means none
	}
	ev.committed(400)
	if ev.committedMax > 400 || ev.committedMax < 400-markEvery {
		t.Fatalf("committed 400: committedMax = %d, want in [%d, 400]", ev.committedMax, 400-markEvery)
	}
	ev.committed(500) // offset 500 itself is not committed yet
	if ev.committedMax > 500 {
		t.Fatalf("committed 500: committedMax = %d includes offset 500's event time", ev.committedMax)
	}
	ev.committed(1000)
	if ev.committedMax != 1_000_001 {
		t.Fatalf("committed 1000: committedMax = %d, want 1000001 (the tail)", ev.committedMax)
	}
	if len(ev.marks) != 0 || ev.tailN != 0 {
		t.Fatalf("checkpoints left after committing everything: %d marks, tail %d", len(ev.marks), ev.tailN)
	}
}

// A partition whose commit point stays put holds at most maxMarks
// checkpoints, and the watermark stays a lower bound.
func TestEventTimesBounded(t *testing.T) {
	var ev eventTimes
	n := int64(markEvery * maxMarks * 8)
	for off := range n {
		ev.observe(off, off+1)
	}
	if len(ev.marks) > maxMarks {
		t.Fatalf("%d checkpoints held, want at most %d", len(ev.marks), maxMarks)
	}
	ev.committed(n / 2)
	if ev.committedMax > n/2 || ev.committedMax < n/2-n/maxMarks*2 {
		t.Fatalf("committedMax = %d at commit %d", ev.committedMax, n/2)
	}
}

func TestEventTimesLate(t *testing.T) {
	var ev eventTimes
	if ev.observe(0, 5) {
		t.Fatal("late before any watermark was stored")
	}
	ev.published = 10
	if !ev.observe(1, 9) || ev.observe(2, 10) {
		t.Fatal("late: want 9 < 10 late and 10 not")
	}
}

func jsonEvent(id string, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"event_id":%q,"ts":%q,"user_id":1}`, id, ts.UTC().Format(time.RFC3339Nano))
}

// The sink writes partition t/0's watermark after its commit: the latest
// committed event time less max_lateness, then, with nothing left to read,
// the time it saw the end offset less max_lateness (idle). A record later
// than that is landed (committed) and counted late, and the watermark does not
// go back.
func TestSinkWatermarks(t *testing.T) {
	c, cfg, st := sinkBed(t, ", max_age: 1s")
	lateness := cfg.MaxLateness(&cfg.Tables[0])
	cl := newClient(t, c.ListenAddrs())
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	produce(t, cl, jsonEvent("a", base), jsonEvent("b", base.Add(30*time.Minute)), jsonEvent("c", base.Add(time.Hour)))
	started := time.Now()
	r := startSink(t, cfg, st, nil)
	ctx := context.Background()
	var mark watermark.Mark
	waitFor(t, 30*time.Second, "an idle watermark of t/0 at offset 3", func() bool {
		o, err := watermark.Read(ctx, st, testGroup, "t")
		if err != nil {
			t.Fatal(err)
		}
		if o == nil {
			return false
		}
		mark = o.Marks[0]
		if o.Partitions != 1 {
			t.Fatalf("partitions = %d, want 1", o.Partitions)
		}
		return mark.Idle && mark.Offset == 3
	})
	if want := started.Add(-lateness); mark.Time.Before(want.Truncate(time.Second)) {
		t.Fatalf("idle watermark %s is before the start less lateness %s", mark.Time, want)
	}
	waitFor(t, 10*time.Second, "the watermark gauge", func() bool {
		return testutil.ToFloat64(r.m.Watermark.WithLabelValues("t", "0")) > 0
	})
	produce(t, cl, jsonEvent("late", base.Add(-time.Hour)))
	waitFor(t, 30*time.Second, "the late record committed", func() bool { return committedOffset(t, cl) == 4 })
	if n := testutil.ToFloat64(r.m.LateRecords.WithLabelValues("events")); n != 1 {
		t.Fatalf("lakesink_late_records_total = %v, want 1", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	o, err := watermark.Read(ctx, st, testGroup, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Marks[0]; got.Time.Before(mark.Time) || got.Offset != 4 {
		t.Fatalf("after the late record: %+v, want offset 4 and not before %s", got, mark.Time)
	}
}

// BenchmarkEventTimesObserve is the watermark's cost per record on the
// consumer's hot path (under the engine's lock), with a commit every 10,000
// records.
func BenchmarkEventTimesObserve(b *testing.B) {
	var ev eventTimes
	ev.published = 1
	for i := range int64(b.N) {
		ev.observe(i, 1_700_000_000_000_000+i%5000)
		if i%10_000 == 9_999 {
			ev.committed(i - 5_000)
		}
	}
}

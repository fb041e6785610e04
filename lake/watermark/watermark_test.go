package watermark_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/watermark"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func local(t *testing.T) *store.Local {
	t.Helper()
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestAdvanceNeverGoesBackwards(t *testing.T) {
	st, ctx := local(t), context.Background()
	o, wrote, err := watermark.Advance(ctx, st, "g", "events", 2, map[int32]watermark.Mark{0: {Time: at(30), Offset: 10}})
	if err != nil || !wrote {
		t.Fatalf("first advance: wrote %v, %v", wrote, err)
	}
	// A replica that computed an older value (before a rebalance) writes nothing.
	o, wrote, err = watermark.Advance(ctx, st, "g", "events", 2, map[int32]watermark.Mark{0: {Time: at(20), Offset: 5}})
	if err != nil || wrote {
		t.Fatalf("older value: wrote %v, %v; want nothing written", wrote, err)
	}
	if got := o.Marks[0]; !got.Time.Equal(at(30)) || got.Offset != 10 {
		t.Fatalf("partition 0 = %+v, want 10:30 at offset 10", got)
	}
	stored, err := watermark.Read(ctx, st, "g", "events")
	if err != nil || !stored.Marks[0].Time.Equal(at(30)) || stored.Partitions != 2 {
		t.Fatalf("stored = %+v, %v", stored, err)
	}
	if _, ok := stored.Low(); ok {
		t.Fatalf("Low with partition 1 missing reported complete")
	}
	if _, _, err := watermark.Advance(ctx, st, "g", "events", 2, map[int32]watermark.Mark{1: {Time: at(25), Idle: true}}); err != nil {
		t.Fatal(err)
	}
	stored, _ = watermark.Read(ctx, st, "g", "events")
	if low, ok := stored.Low(); !ok || !low.Equal(at(25)) {
		t.Fatalf("Low = %v, %v; want 10:25", low, ok)
	}
	if o, err := watermark.Read(ctx, st, "other", "events"); o != nil || err != nil {
		t.Fatalf("another group's watermarks: %+v, %v; want none", o, err)
	}
}

// Two writers race on one object, each advancing its own partition and one
// shared partition with increasing values: every write lands (none lost to a
// race) and the shared partition ends at the highest value written.
func TestAdvanceRacingWriters(t *testing.T) {
	st, ctx := local(t), context.Background()
	var wg sync.WaitGroup
	for w := range int32(2) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				marks := map[int32]watermark.Mark{w: {Time: at(i)}, 2: {Time: at(i*2 + int(w))}}
				if _, _, err := watermark.Advance(ctx, st, "g", "t", 3, marks); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	o, err := watermark.Read(ctx, st, "g", "t")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[int32]time.Time{0: at(19), 1: at(19), 2: at(39)} {
		if got := o.Marks[p].Time; !got.Equal(want) {
			t.Errorf("partition %d = %s, want %s", p, got, want)
		}
	}
}

func TestThrough(t *testing.T) {
	now := at(600) // 20:00
	for _, tc := range []struct {
		name     string
		low      time.Time
		known    bool
		lateness time.Duration
		maxWait  time.Duration
		want     time.Time
	}{
		{"no watermarks: wall clock", time.Time{}, false, 15 * time.Minute, 6 * time.Hour, at(585)},
		{"watermark behind: waits for it", at(300), true, 15 * time.Minute, 6 * time.Hour, at(285)},
		{"watermark far behind: max_wait bounds", at(0), true, 15 * time.Minute, 6 * time.Hour, at(240)},
		{"a partition without watermark: max_wait", time.Time{}, true, 15 * time.Minute, 6 * time.Hour, at(240)},
		{"watermark ahead of the clock: wall clock bounds", at(700), true, 15 * time.Minute, 6 * time.Hour, at(585)},
		{"max_wait = lateness: watermarks off", at(0), true, 15 * time.Minute, 15 * time.Minute, at(585)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := watermark.Through(now, tc.lateness, tc.maxWait, tc.low, tc.known); !got.Equal(tc.want) {
				t.Errorf("Through = %s, want %s", got.Format(time.RFC3339), tc.want.Format(time.RFC3339))
			}
		})
	}
}

func TestBehind(t *testing.T) {
	st, ctx := local(t), context.Background()
	if _, _, err := watermark.Advance(ctx, st, "g", "a", 3, map[int32]watermark.Mark{0: {Time: at(50)}, 1: {Time: at(10), Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	tbl, err := watermark.Load(ctx, st, "g", []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if !tbl.Known() {
		t.Fatal("Known = false with an object for a")
	}
	if _, ok := tbl.Low(); ok {
		t.Fatal("Low complete with topic b missing")
	}
	got := fmt.Sprint(tbl.Behind(at(30)))
	want := "[a/2 (no watermark) b (no watermarks for the topic) a/1 (watermark 2026-12-03T10:10:00Z, offset 7)]"
	if got != want {
		t.Errorf("Behind = %s\nwant     %s", got, want)
	}
	if s := watermark.Join(tbl.Behind(at(30)), 1); s != "a/2 (no watermark), and 2 more" {
		t.Errorf("Join = %q", s)
	}
}

package compaction_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/watermark"
)

// lastFinal returns the final-through of the table's last snapshot and its property.
func lastFinal(t *testing.T, c *compaction.Compactor) (summary, prop string, snaps int) {
	t.Helper()
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if s := tbl.CurrentSnapshot(); s != nil && s.Summary != nil {
		summary = s.Summary.Properties[compaction.SummaryFinalThrough]
	}
	return summary, tbl.Properties()[compaction.PropFinalThrough], len(tbl.Metadata().Snapshots())
}

func setMarks(t *testing.T, l *lab, marks map[int32]watermark.Mark) {
	t.Helper()
	if _, _, err := watermark.Advance(context.Background(), l.lake.(store.Swapper), "lakesink", "events", 2, marks); err != nil {
		t.Fatal(err)
	}
}

// TestWatermarksCloseHours: with watermarks for the table's topic, an hour
// closes only when every partition's watermark is past its end + lateness (a
// partition without one holds everything back), or once compaction.max_wait
// has passed; the run says which partitions held it back, and each commit
// records the final-through time in its snapshot summary and the table
// property, which the metric mirrors.
func TestWatermarksCloseHours(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.Lateness = 10 * time.Minute
	// Hour A (l.hour) holds events 0-99, hour B (an hour later) 100-199.
	hourA, hourB := l.hour, l.hour.Add(time.Hour)
	l.writeEvents(t, cfg, 0, 200, func(i int) time.Time { return hourA.Add(time.Duration(i/100)*time.Hour + time.Duration(i)*time.Second) },
		func(int) string { return "" })
	now := time.Now()
	run := func(at time.Time) (compaction.Summary, string, *compaction.Compactor) {
		t.Helper()
		c := l.compactor(t, cfg)
		c.Now = func() time.Time { return at }
		var out bytes.Buffer
		c.Progress = &out
		sum, err := c.Run(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return sum, out.String(), c
	}

	// Partition 0 is past hour A, partition 1 has no watermark: nothing closes.
	setMarks(t, l, map[int32]watermark.Mark{0: {Time: hourB.Add(30 * time.Minute), Offset: 200}})
	sum, out, c := run(now)
	if sum.Groups != 0 {
		t.Fatalf("merged %d groups with partition 1 holding the table back:\n%s", sum.Groups, out)
	}
	if !strings.Contains(out, "waits for watermarks (due by the wall clock") || !strings.Contains(out, "; 2 partitions with raw files wait)") || !strings.Contains(out, "events/1 (no watermark)") {
		t.Fatalf("the run does not say what holds it back:\n%s", out)
	}
	if _, prop, _ := lastFinal(t, c); prop != now.Add(-cfg.Compaction.MaxWait).UTC().Truncate(time.Hour).Format(time.RFC3339) {
		t.Fatalf("final-through property %q, want the hour before max_wait (%s)", prop, now.Add(-cfg.Compaction.MaxWait))
	}

	// Partition 1 goes idle: hour A closes (partition 0's watermark is past
	// its end + lateness), hour B waits for partition 0 (30 minutes past its end).
	setMarks(t, l, map[int32]watermark.Mark{1: {Time: now.Add(-cfg.Compaction.Lateness), Idle: true}})
	sum, out, c = run(now)
	if sum.Partitions != 1 || sum.RowsOut != 100 {
		t.Fatalf("run: %d partitions, %d rows; want hour A alone (100 rows):\n%s", sum.Partitions, sum.RowsOut, out)
	}
	if !strings.Contains(out, "events/0 (watermark "+hourB.Add(30*time.Minute).Format(time.RFC3339)+", offset 200)") {
		t.Fatalf("the run does not name partition 0 as holding hour B back:\n%s", out)
	}
	wantFT := hourB.Format(time.RFC3339)
	if s, prop, _ := lastFinal(t, c); s != wantFT || prop != wantFT {
		t.Fatalf("final-through: summary %q, property %q; want %s in both", s, prop, wantFT)
	}
	if got := testutil.ToFloat64(c.Metrics.FinalThrough.WithLabelValues("events")); got != float64(hourB.Unix()) {
		t.Fatalf("lakesink_table_final_through_timestamp_seconds = %v, want %d", got, hourB.Unix())
	}
	if got := testutil.ToFloat64(c.Metrics.WatermarkHeld.WithLabelValues("events")); got != 1 {
		t.Fatalf("lakesink_compaction_watermark_held_partitions = %v, want 1", got)
	}

	// compaction.max_wait after hour B's end: it closes although partition 0
	// still holds it back, and the run says so.
	later := hourB.Add(time.Hour + cfg.Compaction.MaxWait)
	sum, out, c = run(later)
	if sum.Partitions != 1 || sum.RowsOut != 100 {
		t.Fatalf("run past max_wait: %d partitions, %d rows; want hour B (100 rows):\n%s", sum.Partitions, sum.RowsOut, out)
	}
	if !strings.Contains(out, "close by compaction.max_wait") || !strings.Contains(out, "events/0 (watermark") {
		t.Fatalf("the run past max_wait does not say what held hour B back:\n%s", out)
	}
	if s, prop, _ := lastFinal(t, c); s != prop || s != later.Add(-cfg.Compaction.MaxWait).Truncate(time.Hour).Format(time.RFC3339) {
		t.Fatalf("final-through after max_wait: summary %q, property %q", s, prop)
	}
	exact(t, c, 200)
}

// TestFinalThroughNeverGoesBack: a table whose property is ahead of what a
// run computes (a promise made earlier) keeps it.
func TestFinalThroughNeverGoesBack(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "")
	l.backfill(t, cfg, 10, 1)
	c := l.compactor(t, cfg)
	if _, err := c.Run(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	_, before, n := lastFinal(t, c)
	if before == "" {
		t.Fatal("no final-through property after a run")
	}
	c2 := l.compactor(t, cfg)
	c2.Now = func() time.Time { return time.Now().Add(-24 * time.Hour) }
	if _, err := c2.Run(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if _, after, m := lastFinal(t, c2); after != before || m != n {
		t.Fatalf("final-through %q -> %q (%d -> %d snapshots) on a run with an earlier clock; want it kept", before, after, n, m)
	}
}

// TestShardFinalThroughWaitsForOtherShards: a shard that commits its hours
// does not call final an hour whose raw files another shard owns (and has not
// merged); once every shard has run and the raw files are gone, the
// final-through passes them.
func TestShardFinalThroughWaitsForOtherShards(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.backfill(t, cfg, 40, 4) // four closed hours
	shardOf := func(i int) *compaction.Compactor {
		c := l.compactor(t, cfg)
		c.Shard = compaction.Shard{Index: i, Count: 2}
		return c
	}
	var firstOther time.Time
	s0 := compaction.Shard{Index: 0, Count: 2}
	for h := range 4 {
		hour := l.hour.Add(-time.Duration(h) * time.Hour)
		if !s0.Owns("events", layout.PeriodOf(layout.Hour, hour.UnixMicro())) &&
			(firstOther.IsZero() || hour.Before(firstOther)) {
			firstOther = hour
		}
	}
	if firstOther.IsZero() {
		t.Skip("shard 0 owns all four hours under this table's hash")
	}
	c0 := shardOf(0)
	if _, err := c0.Run(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	s, prop, _ := lastFinal(t, c0)
	if want := firstOther.Format(time.RFC3339); s != want || prop != want {
		t.Fatalf("after shard 0 alone: final-through summary %q, property %q; want %s (shard 1's first hour)", s, prop, want)
	}
	c1 := shardOf(1)
	if _, err := c1.Run(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	// raw_grace 0s: the merged raw files go on the next runs; then nothing bounds it.
	for i := range 2 {
		if _, err := shardOf(i).Run(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, prop, _ := lastFinal(t, c1); prop != time.Now().UTC().Truncate(time.Hour).Format(time.RFC3339) {
		t.Fatalf("after both shards: final-through property %q, want the current hour's start", prop)
	}
	exact(t, c1, 40)
}

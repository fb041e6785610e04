package compaction

import (
	"context"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/watermark"
)

// Finality (docs/watermarks.md): a period closes when every source partition's
// watermark is at least its end plus compaction.lateness, or when its end is
// compaction.max_wait ago (and never before its end plus lateness by the wall
// clock). A table whose topics have no watermarks at all closes by the wall
// clock alone. Each commit records the table's final-through time — the end
// of the last closed period, before any period still waiting for a commit —
// in its snapshot summary and, in the same commit, in a table property.
const (
	// SummaryFinalThrough is the snapshot summary key of the final-through time
	// (RFC 3339, UTC): every row with an earlier event time is in the table,
	// except records later than their watermark promised (counted by the sink
	// as lakesink_late_records_total) and merged by a later run.
	SummaryFinalThrough = "lakesink.final-through"
	// PropFinalThrough is the table property mirroring it.
	PropFinalThrough = "lakesink.final-through"
)

// finality is what the watermarks say about one table at one moment.
type finality struct {
	// known is set when some source topic has watermarks.
	known bool
	// through is the closing point (watermark.Through).
	through time.Time
	// byWatermarks is the closing point by watermarks alone (zero when a
	// partition has none).
	byWatermarks time.Time
	wm           *watermark.Table
}

// finality reads the watermarks of a table's topics.
func (c *Compactor) finality(ctx context.Context, t *config.Table, now time.Time) (finality, error) {
	wm, err := watermark.Load(ctx, c.Lake, c.Cfg.Kafka.Group, t.Topics)
	if err != nil {
		return finality{}, err
	}
	cc := c.Cfg.Compaction
	f := finality{known: wm.Known(), wm: wm}
	low, ok := wm.Low()
	if !ok {
		low = time.Time{}
	} else {
		f.byWatermarks = low.Add(-cc.Lateness)
	}
	f.through = watermark.Through(now, cc.Lateness, cc.MaxWait, low, f.known)
	return f, nil
}

// finalThrough is the final-through time a commit of st records: the end of
// the last closed period, but no later than the first period deferred to a
// later commit, and never earlier than the table's current value (a promise
// stays made: rows arriving after it are late).
func finalThrough(g layout.Granularity, st *state, tbl *table.Table) time.Time {
	ft := layout.PeriodOf(g, st.fin.through.UnixMicro()).Start(g)
	if st.plan.Deferred > 0 {
		if d := st.plan.FirstDeferred.Start(g); d.Before(ft) {
			ft = d
		}
	}
	if st.othersFrom != nil {
		// With shards, another shard's raw files may still wait for its
		// merge (or its grace period: the cap is conservative).
		if d := st.othersFrom.Start(g); d.Before(ft) {
			ft = d
		}
	}
	if cur, ok := tableFinalThrough(tbl); ok && cur.After(ft) {
		ft = cur
	}
	return ft.UTC()
}

// tableFinalThrough reads the table's final-through property.
func tableFinalThrough(tbl *table.Table) (time.Time, bool) {
	if tbl == nil {
		return time.Time{}, false
	}
	v, ok := tbl.Properties()[PropFinalThrough]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// keepFinalThrough returns props with its final-through raised to tbl's
// property when that is later (a copy; props itself is unchanged).
func keepFinalThrough(tbl *table.Table, props iceberg.Properties) iceberg.Properties {
	ft, err := time.Parse(time.RFC3339, props[SummaryFinalThrough])
	if err != nil {
		return props
	}
	if cur, ok := tableFinalThrough(tbl); ok && cur.After(ft) {
		out := make(iceberg.Properties, len(props))
		for k, v := range props {
			out[k] = v
		}
		return withFinalThrough(out, cur)
	}
	return props
}

// withFinalThrough adds the final-through time to a commit's summary.
func withFinalThrough(props iceberg.Properties, ft time.Time) iceberg.Properties {
	props[SummaryFinalThrough] = ft.UTC().Format(time.RFC3339)
	return props
}

// advanceFinal moves the table's final-through property forward when the run
// committed no data that did (an idle table, or periods closed with nothing
// to merge): a metadata-only commit, at most once per period. A failure is
// logged, not returned: the next run tries again.
func (c *Compactor) advanceFinal(ctx context.Context, t *config.Table, g layout.Granularity, st *state, tbl *table.Table) *table.Table {
	if st == nil {
		return tbl
	}
	ft := finalThrough(g, st, tbl)
	if cur, ok := tableFinalThrough(tbl); ok && !ft.After(cur) {
		c.Metrics.finalThrough(t.Name, cur)
		return tbl
	}
	tx := tbl.NewTransaction()
	err := tx.SetProperties(iceberg.Properties{PropFinalThrough: ft.Format(time.RFC3339)})
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, c.Cfg.Compaction.CommitTimeout)
		var nt *table.Table
		nt, err = tx.Commit(cctx)
		cancel()
		if err == nil {
			tbl = nt
		}
	}
	if err != nil {
		c.Log.Warn("could not advance the table's final-through property; the next run will", "table", t.Name, "final_through", ft, "err", err)
		if cur, ok := tableFinalThrough(tbl); ok {
			c.Metrics.finalThrough(t.Name, cur)
		}
		return tbl
	}
	c.Metrics.finalThrough(t.Name, ft)
	return tbl
}

// reportFinality logs and prints, for a run or a dry run, the table's
// final-through time and what holds the next period back: when that period
// is due by the wall clock (its end + lateness has passed) but not closed, the
// source partitions whose watermarks are behind it — whether or not it has raw
// files yet (a stopped sink's backlog is still in Kafka). It also says which
// periods with raw files close only because compaction.max_wait passed.
func (c *Compactor) reportFinality(t *config.Table, g layout.Granularity, st *state, tbl *table.Table) {
	f := st.fin
	cc := c.Cfg.Compaction
	now := c.Now()
	ft := finalThrough(g, st, tbl)
	rule := "wall clock (no watermarks for its topics)"
	if f.known {
		rule = "watermarks"
		if low, ok := f.wm.Low(); ok {
			rule += ", lowest " + low.UTC().Format(time.RFC3339)
		}
	}
	c.printf("table %s: final through %s (closing rule: %s)", t.Name, ft.Format(time.RFC3339), rule)
	held := 0
	next := layout.PeriodOf(g, ft.UnixMicro())
	if end := (next + 1).Start(g); f.known && !end.Add(cc.Lateness).After(now) && end.After(f.through) {
		waiting := 0
		seen := map[layout.Period]bool{}
		for _, r := range st.raw {
			if !seen[r.Period] && r.Period >= next && !(r.Period + 1).Start(g).Add(cc.Lateness).After(now) && (r.Period + 1).Start(g).After(f.through) {
				waiting++
			}
			seen[r.Period] = true
		}
		hs := f.wm.Behind(end.Add(cc.Lateness))
		held = len(hs)
		c.printf("  %s waits for watermarks (due by the wall clock; closes by compaction.max_wait at %s; %d partitions with raw files wait); held back by %s",
			layout.Dir(g, next), end.Add(cc.MaxWait).UTC().Format(time.RFC3339), waiting, watermark.Join(hs, 10))
		c.Log.Info("partitions wait for watermarks", "table", t.Name, "next", layout.Dir(g, next), "waiting", waiting, "held_by", watermark.Join(hs, 10))
	}
	var forced []layout.Period
	seen := map[layout.Period]bool{}
	for _, r := range st.raw {
		if seen[r.Period] {
			continue
		}
		seen[r.Period] = true
		end := (r.Period + 1).Start(g)
		if !end.Add(cc.Lateness).After(now) && !end.After(f.through) && f.known && (f.byWatermarks.IsZero() || end.After(f.byWatermarks)) {
			forced = append(forced, r.Period)
		}
	}
	if len(forced) > 0 {
		first := minPeriod(forced)
		hs := f.wm.Behind((first + 1).Start(g).Add(cc.Lateness))
		c.printf("  %d partitions close by compaction.max_wait (%s) although watermarks hold them back (the first %s); held back by %s",
			len(forced), cc.MaxWait, layout.Dir(g, first), watermark.Join(hs, 10))
		c.Log.Warn("closing partitions past compaction.max_wait although watermarks hold them back", "table", t.Name,
			"forced", len(forced), "first", layout.Dir(g, first), "held_by", watermark.Join(hs, 10))
	}
	c.Metrics.held(t.Name, held)
}

func minPeriod(ps []layout.Period) layout.Period {
	m := ps[0]
	for _, p := range ps[1:] {
		m = min(m, p)
	}
	return m
}

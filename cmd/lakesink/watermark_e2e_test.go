package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/watermark"
)

// wmEvent is an event of gen.TableYAML's table with the given id and event time.
func wmEvent(id string, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"event_id":%q,"ts":%q,"user_id":1}`, id, ts.UTC().Format(time.RFC3339Nano))
}

// produceAt produces n events to one partition, event i at at(i), ids prefix-i.
func (b *bed) produceAt(partition int32, prefix string, n int, at func(i int) time.Time) {
	b.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range n {
		recs[i] = &kgo.Record{Topic: b.topic, Partition: partition, Value: wmEvent(fmt.Sprintf("%s-%d", prefix, i), at(i))}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.t.Fatal(err)
	}
}

// committedTo waits until the group's committed offsets of the given
// partitions reach their end offsets.
func (b *bed) committedTo(timeout time.Duration, parts []int32, procs ...*proc) {
	b.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		ends, err1 := b.adm.ListEndOffsets(ctx, b.topic)
		committed, err2 := b.adm.FetchOffsets(ctx, b.group)
		ok, lag := err1 == nil && err2 == nil, ""
		for _, p := range parts {
			e, _ := ends.Lookup(b.topic, p)
			c, found := committed.Lookup(b.topic, p)
			if !found || c.At != e.Offset {
				ok = false
				lag += fmt.Sprintf(" p%d: committed %d end %d", p, c.At, e.Offset)
			}
		}
		if ok {
			return
		}
		for _, p := range procs {
			if done, err := p.exitedErr(); done {
				b.t.Fatalf("sink exited early: %v", err)
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("committed offsets did not reach the end within %s:%s %v %v", timeout, lag, err1, err2)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// watermarks reads the bed's stored watermarks (nil when none yet).
func (b *bed) watermarks(st store.Store) *watermark.Object {
	b.t.Helper()
	o, err := watermark.Read(context.Background(), st, b.group, b.topic)
	if err != nil {
		b.t.Fatal(err)
	}
	return o
}

// waitMarks polls the stored watermarks until cond holds.
func (b *bed) waitMarks(st store.Store, timeout time.Duration, what string, cond func(*watermark.Object) bool) *watermark.Object {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if o := b.watermarks(st); o != nil && cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("stored watermarks: timed out after %s waiting for %s; have %+v", timeout, what, b.watermarks(st))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// low is the earliest mark of partitions 0..n-1 (zero if one is missing).
func low(o *watermark.Object, n int32) time.Time {
	var l time.Time
	for p := range n {
		m, ok := o.Marks[p]
		if !ok {
			return time.Time{}
		}
		if l.IsZero() || m.Time.Before(l) {
			l = m.Time
		}
	}
	return l
}

var finalThroughLine = regexp.MustCompile(`final through (\S+) `)

// TestE2EWatermarkBacklog: a sink stopped with a backlog holds back the hour
// the backlog covers (the compactor says which partitions hold it, and
// merges the hour before); once the sink has caught up the hour closes and the
// table holds every row once. Partition 2 never receives a record and holds
// nothing back (it is idle from the start). A record later than its watermark
// promised is landed, counted in lakesink_late_records_total and merged into
// the hour already compacted.
//
// The clock: hour B is the last full hour, ending at endB. The sink's
// max_lateness is set so that its idle watermark (now less max_lateness)
// reaches endB `margin` after the test starts: before, with the sink stopped,
// hour B waits; after, with the sink caught up, it closes.
func TestE2EWatermarkBacklog(t *testing.T) {
	// Most of its time is spent waiting out a fault window or a clock margin, so it
	// runs beside the package's other such tests (after the serial ones).
	t.Parallel()
	const parts, margin = 3, 90 * time.Second
	b := newBed(t, parts)
	start := time.Now()
	endB := start.UTC().Truncate(time.Hour)
	hourB, hourA := endB.Add(-time.Hour), endB.Add(-2*time.Hour)
	maxLateness := start.Sub(endB) + margin
	b.tables = strings.Replace(gen.TableYAML("events", b.topic), "granularity: hour}",
		fmt.Sprintf("granularity: hour, max_lateness: %s}", maxLateness.Round(time.Second)), 1)
	sinkCfg := b.config("flush: {max_age: 1s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}")
	f := &lakeFixture{b: b, src: b.prefix}
	lake := f.s3(t, b.prefix)
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	compactCfg := f.compactConfig(t, b.prefix, catYAML, "  max_wait: 24h")
	compact := func(what string, args ...string) string {
		t.Helper()
		code, out := f.compactRun(t, compactCfg, args...)
		if code != 0 && code != 4 {
			t.Fatalf("%s: compact exited %d:\n%s", what, code, out)
		}
		t.Logf("%s:\n%s", what, out)
		return out
	}

	// 1. Hour A on partitions 0 and 1; the sink catches up and stops: every
	// partition, 2 included, has an idle watermark.
	const perPart = 100
	for p := range int32(2) {
		b.produceAt(p, fmt.Sprintf("a%d", p), perPart, func(i int) time.Time { return hourA.Add(time.Duration(i) * time.Second) })
	}
	sink := b.start(sinkCfg)
	b.committedTo(90*time.Second, []int32{0, 1}, sink)
	b.waitMarks(lake, 30*time.Second, "idle marks of all partitions at their end offsets", func(o *watermark.Object) bool {
		return o.Partitions == parts && o.Marks[0].Idle && o.Marks[0].Offset == perPart && o.Marks[1].Idle && o.Marks[1].Offset == perPart && o.Marks[2].Idle
	})
	sink.stop(t)
	stopped := b.watermarks(lake)
	if m := stopped.Marks[2]; m.Offset != -1 || !m.Idle {
		t.Fatalf("partition 2 (no traffic): %+v, want an idle mark without commit", m)
	}
	wStop := low(stopped, parts)
	if !wStop.Before(endB.Add(-10 * time.Second)) {
		t.Fatalf("the sink's phase took longer than the %s margin: its watermark %s is already near the end of hour B %s", margin, wStop, endB)
	}

	// 2. A backlog in hour B, above the stored watermarks (not late), while the
	// sink is stopped: hour A closes, hour B waits, and the run says why.
	from := wStop.Add(time.Second)
	if from.Before(hourB) {
		from = hourB
	}
	span := endB.Add(-time.Second).Sub(from)
	for p := range int32(2) {
		b.produceAt(p, fmt.Sprintf("b%d", p), perPart, func(i int) time.Time { return from.Add(span * time.Duration(i) / perPart) })
	}
	dry := compact("dry run with a backlog", "--dry-run")
	out := compact("run with a backlog")
	for _, o := range []string{dry, out} {
		if !strings.Contains(o, layout.Dir(layout.Hour, layout.PeriodOf(layout.Hour, hourB.UnixMicro()))+" waits for watermarks") ||
			!strings.Contains(o, fmt.Sprintf("%s/0 (watermark ", b.topic)) {
			t.Fatalf("the compactor does not say which partitions hold hour B back:\n%s", o)
		}
	}
	for _, r := range readIceberg(t, f, "sql", uri, wh, "lake.events", "") {
		if r.Count != 2*perPart || r.PerHour[hourA.Format("2006-01-02T15")] != 2*perPart || r.DupKeys != 0 {
			t.Fatalf("%s after the backlog run: %d rows %v, %d duplicate keys; want hour A's %d rows alone", r.Engine, r.Count, r.PerHour, r.DupKeys, 2*perPart)
		}
	}

	// 3. The sink catches up; its watermarks pass the end of hour B. A record
	// of hour A (compacted, far below the watermark) arrives: late, landed.
	sink = b.start(sinkCfg)
	b.committedTo(90*time.Second, []int32{0, 1}, sink)
	b.waitMarks(lake, margin+30*time.Second, "watermarks past the end of hour B", func(o *watermark.Object) bool {
		return !low(o, parts).Before(endB)
	})
	waitMetricPartitions(t, sink, 1)
	b.produceAt(0, "late", 1, func(int) time.Time { return hourA.Add(30 * time.Minute) })
	b.committedTo(60*time.Second, []int32{0}, sink)
	if late := sumMetric(sink.metrics(t), "lakesink_late_records_total"); late != 1 {
		t.Fatalf("lakesink_late_records_total = %v, want 1", late)
	}
	sink.stop(t)

	// 4. Hour B closes; the late record merges into hour A; every row once.
	out = compact("run after catching up")
	m := finalThroughLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no final-through line:\n%s", out)
	}
	if ft, err := time.Parse(time.RFC3339, m[1]); err != nil || ft.Before(endB) {
		t.Fatalf("final through %s (%v), want at least the end of hour B %s", m[1], err, endB)
	}
	for _, r := range readIceberg(t, f, "sql", uri, wh, "lake.events", "") {
		if r.Count != 4*perPart+1 || r.DupKeys != 0 || r.PerHour[hourA.Format("2006-01-02T15")] != 2*perPart+1 {
			t.Fatalf("%s: %d rows %v, %d duplicate keys; want %d rows (hour A %d with the late one), each once",
				r.Engine, r.Count, r.PerHour, r.DupKeys, 4*perPart+1, 2*perPart+1)
		}
	}
}

// sumMetric sums the samples of a metric family in a /metrics scrape.
func sumMetric(m map[string]float64, name string) float64 {
	v := 0.0
	for k, x := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			v += x
		}
	}
	return v
}

// TestE2EWatermarkTwoReplicasMonotonic: two sink replicas share a group's
// partitions, then one leaves (its partitions move to the other) while records
// with event times hours older than the stored watermarks are consumed — the
// new owner computes watermarks below the stored ones from them. Polled all
// along, no partition's stored watermark ever goes back, both replicas wrote
// watermarks, and the one left holds every partition at the end.
func TestE2EWatermarkTwoReplicasMonotonic(t *testing.T) {
	const parts = 4
	b := newBed(t, parts)
	b.tables = strings.Replace(gen.TableYAML("events", b.topic), "granularity: hour}", "granularity: hour, max_lateness: 0s}", 1)
	cfg := b.config("flush: {max_age: 1s, max_file_bytes: 1MiB, memory_budget: 96MiB, shutdown_timeout: 30s}")
	f := &lakeFixture{b: b, src: b.prefix}
	lake := f.s3(t, b.prefix)
	old := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)

	for p := range int32(parts) {
		b.produceAt(p, fmt.Sprintf("one%d", p), 500, func(i int) time.Time { return old.Add(time.Duration(i) * time.Second) })
	}
	r1, r2 := b.start(cfg), b.start(cfg)
	all := []int32{0, 1, 2, 3}
	b.committedTo(90*time.Second, all, r1, r2)
	b.waitMarks(lake, 30*time.Second, "idle marks of every partition", func(o *watermark.Object) bool {
		for p := range int32(parts) {
			if !o.Marks[p].Idle {
				return false
			}
		}
		return true
	})

	// Poll the stored marks while r1 leaves and r2 consumes old records.
	seen := map[int32]watermark.Mark{}
	checks := 0
	check := func() {
		t.Helper()
		o := b.watermarks(lake)
		if o == nil {
			return
		}
		checks++
		for p, m := range o.Marks {
			if prev, ok := seen[p]; ok && m.Time.Before(prev.Time) {
				t.Fatalf("partition %d: watermark went back from %s (offset %d) to %s (offset %d)", p, prev.Time, prev.Offset, m.Time, m.Offset)
			}
			seen[p] = m
		}
	}
	check()
	written1 := sumMetricLabel(r1.metrics(t), "lakesink_watermark_writes_total", `result="written"`)
	_ = r1.cmd.Process.Signal(syscall.SIGTERM) // a graceful leave: its partitions move to r2
	for p := range int32(parts) {
		b.produceAt(p, fmt.Sprintf("two%d", p), 20_000, func(i int) time.Time { return old.Add(time.Duration(i) * time.Millisecond) })
		check()
	}
	for stopBy := time.Now().Add(90 * time.Second); ; {
		check()
		if done, err := r1.exitedErr(); done {
			if err != nil {
				t.Fatalf("r1 exited with %v after SIGTERM", err)
			}
			break
		}
		if time.Now().After(stopBy) {
			t.Fatal("r1 did not exit within 90s of SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		check()
		ok, _ := b.caughtUp()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("r2 did not catch up within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitMetricPartitions(t, r2, parts)
	written2 := sumMetricLabel(r2.metrics(t), "lakesink_watermark_writes_total", `result="written"`)
	r2.stop(t)
	check()
	t.Logf("%d polls of the stored watermarks; writes: r1 %v, r2 %v", checks, written1, written2)
	if written1 == 0 || written2 == 0 {
		t.Fatalf("watermark writes: r1 %v, r2 %v; want both replicas to have written", written1, written2)
	}
	o := b.watermarks(lake)
	ctx := context.Background()
	ends, err := b.adm.ListEndOffsets(ctx, b.topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		if m := o.Marks[e.Partition]; m.Offset != e.Offset || !m.Idle {
			t.Errorf("partition %d: final mark %+v, want idle at end offset %d", e.Partition, m, e.Offset)
		}
	})
}

// sumMetricLabel sums the samples of a metric family whose labels contain label.
func sumMetricLabel(m map[string]float64, name, label string) float64 {
	v := 0.0
	for k, x := range m {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, label) {
			v += x
		}
	}
	return v
}

// waitMetricPartitions waits until a sink exports the watermark gauge for n partitions.
func waitMetricPartitions(t *testing.T, p *proc, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0
		for k := range p.metrics(t) {
			if strings.HasPrefix(k, "lakesink_watermark_timestamp_seconds{") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink exports watermarks of %d partitions, want %d", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package sink

import (
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/watermark"
)

// Event-time watermarks (docs/watermarks.md). Each assigned partition tracks,
// in its offset book, the highest event time consumed at a few offsets
// (checkpoints); when a commit is accepted, the checkpoints below the committed
// offset give the highest event time of committed records. Once per commit
// interval, off the consumer loop, the sink turns those into watermarks
// (latest committed event time less event_time.max_lateness; for a partition
// with nothing left to read, the time its end offset was seen less
// max_lateness) and merges them into the lake's watermark objects by
// compare-and-swap (package watermark), after the commits they describe.

// Checkpoint spacing and bound of eventTimes: a checkpoint every markEvery
// records, at most maxMarks held (then every other one is dropped and the
// spacing doubles: the watermark only gets coarser, never wrong).
const (
	markEvery = 256
	maxMarks  = 64
)

// evMark says that the records consumed below offset end have event times of
// at most max (µs).
type evMark struct{ end, max int64 }

// eventTimes tracks a partition's event times for its watermark. Times are
// Unix microseconds; 0 means none (event times before 2000 are rejected by
// default, and 1970 exactly is no real event time). Guarded by Engine.mu.
type eventTimes struct {
	max   int64    // highest event time consumed
	marks []evMark // closed checkpoints, ascending
	tail  evMark   // the open checkpoint: the last record consumed
	tailN int      // records in the open checkpoint; 0: none
	every int      // records per checkpoint (markEvery, doubled when marks fill up)
	// committedMax is the highest event time of the records below the last
	// committed offset that this replica consumed.
	committedMax int64
	// published is the partition's watermark as last stored (or read back).
	published int64
}

// observe records the event time of the record at offset and reports whether
// the record is late: below the watermark already stored for its partition.
func (ev *eventTimes) observe(offset, et int64) bool {
	late := ev.published != 0 && et < ev.published
	if et > ev.max {
		ev.max = et
	}
	if ev.every == 0 {
		ev.every = markEvery
	}
	if ev.tailN >= ev.every {
		if len(ev.marks) == maxMarks {
			// Keep every other one and space new ones twice as far: the
			// checkpoints stay evenly spread over what is not committed.
			j := 0
			for i := 1; i < len(ev.marks); i += 2 {
				ev.marks[j] = ev.marks[i]
				j++
			}
			ev.marks = ev.marks[:j]
			ev.every *= 2
		}
		ev.marks = append(ev.marks, ev.tail)
		ev.tailN = 0
	}
	ev.tail = evMark{end: offset + 1, max: ev.max}
	ev.tailN++
	return late
}

// committed folds the checkpoints below a committed offset into committedMax.
func (ev *eventTimes) committed(offset int64) {
	i := 0
	for i < len(ev.marks) && ev.marks[i].end <= offset {
		ev.committedMax = max(ev.committedMax, ev.marks[i].max)
		i++
	}
	ev.marks = slices.Delete(ev.marks, 0, i)
	if ev.tailN > 0 && ev.tail.end <= offset {
		ev.committedMax = max(ev.committedMax, ev.tail.max)
		ev.tailN = 0
	}
	if len(ev.marks) == 0 && ev.tailN == 0 {
		ev.every = markEvery // everything consumed is committed: fine-grained again
	}
}

// tpMark is what the watermark writer needs of one assigned partition.
type tpMark struct {
	topic     string
	partition int32
	// committed is the last committed offset (-1: none); committedMax the
	// highest event time below it that this replica consumed (0: none).
	committed, committedMax int64
}

// watermarkState returns the watermark inputs of every assigned partition.
func (e *Engine) watermarkState() []tpMark {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]tpMark, 0, len(e.tps))
	for _, st := range e.tps {
		out = append(out, tpMark{topic: st.topic, partition: st.partition, committed: st.committed, committedMax: st.events.committedMax})
	}
	return out
}

// setPublished records a partition's stored watermark (for counting late records).
func (e *Engine) setPublished(topic string, partition int32, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.tps[tpKey{topic, partition}]; st != nil {
		st.events.published = max(st.events.published, t.UnixMicro())
	}
}

// watermarks writes the watermarks once per commit interval until ctx ends.
func (s *Sink) watermarks(ctx context.Context, sw store.Swapper) {
	t := time.NewTicker(s.cfg.Kafka.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.writeWatermarks(ctx, sw); err != nil && ctx.Err() == nil {
				s.log.Warn("watermark update failed; will retry", "err", err)
			}
		}
	}
}

// lateness returns the event_time.max_lateness of each source topic.
func (s *Sink) lateness() map[string]time.Duration {
	out := map[string]time.Duration{}
	for i := range s.cfg.Tables {
		t := &s.cfg.Tables[i]
		for _, tp := range t.Topics {
			out[tp] = s.cfg.MaxLateness(t)
		}
	}
	return out
}

// writeWatermarks computes the watermarks of the assigned partitions from what
// is committed, and merges them into the lake's watermark objects. The
// committed offsets are read before the end offsets are asked for, so a
// partition whose committed offset has reached its end offset had nothing
// left to read at that time.
func (s *Sink) writeWatermarks(ctx context.Context, sw store.Swapper) error {
	state := s.eng.watermarkState()
	if len(state) == 0 {
		return nil
	}
	now := time.Now()
	byTopic := map[string][]tpMark{}
	for _, m := range state {
		byTopic[m.topic] = append(byTopic[m.topic], m)
	}
	topics := make([]string, 0, len(byTopic))
	for t := range byTopic {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	var starts kadm.ListedOffsets
	if slices.ContainsFunc(state, func(m tpMark) bool { return m.committed < 0 }) {
		if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
			return err
		}
	}
	late := s.lateness()
	var errs []error
	for _, topic := range topics {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		partitions := int32(0)
		for p, o := range ends[topic] {
			if o.Err == nil {
				partitions = max(partitions, p+1)
			}
		}
		marks := map[int32]watermark.Mark{}
		for _, m := range byTopic[topic] {
			if mk, ok := markOf(m, now, late[topic], ends, starts); ok {
				marks[m.partition] = mk
			}
		}
		if len(marks) == 0 && partitions == 0 {
			continue
		}
		o, wrote, err := watermark.Advance(ctx, sw, s.group, topic, partitions, marks)
		if err != nil {
			s.m.WatermarkWrites.WithLabelValues("error").Inc()
			errs = append(errs, err)
			continue
		}
		if wrote {
			s.m.WatermarkWrites.WithLabelValues("written").Inc()
		} else {
			s.m.WatermarkWrites.WithLabelValues("unchanged").Inc()
		}
		for _, m := range byTopic[topic] {
			if mk, ok := o.Marks[m.partition]; ok {
				s.eng.setPublished(topic, m.partition, mk.Time)
				s.m.Watermark.WithLabelValues(topic, strconv.Itoa(int(m.partition))).Set(float64(mk.Time.UnixMilli()) / 1e3)
			}
		}
	}
	return errors.Join(errs...)
}

// markOf is a partition's watermark at now: the later of its latest committed
// event time (never ahead of now) and, when it has nothing left to read (its
// committed offset has reached its end offset, or it has no commit and is
// empty), now itself; less the lateness. ok is false when neither is known.
func markOf(m tpMark, now time.Time, lateness time.Duration, ends, starts kadm.ListedOffsets) (watermark.Mark, bool) {
	t := int64(math.MinInt64)
	if m.committedMax != 0 {
		t = min(m.committedMax, now.UnixMicro())
	}
	idle := false
	if end, ok := ends.Lookup(m.topic, m.partition); ok && end.Err == nil && end.Offset >= 0 {
		switch {
		case m.committed >= 0:
			idle = m.committed >= end.Offset
		default:
			start, ok := starts.Lookup(m.topic, m.partition)
			idle = ok && start.Err == nil && start.Offset == end.Offset
		}
	}
	if idle {
		t = now.UnixMicro()
	}
	if t == math.MinInt64 {
		return watermark.Mark{}, false
	}
	return watermark.Mark{Time: time.UnixMicro(t).Add(-lateness).UTC(), Offset: m.committed, Idle: idle, Written: now.UTC()}, true
}

// startWatermarks starts the watermark writer (when the store can swap) and
// returns the function that stops it and waits for it.
func (s *Sink) startWatermarks(ctx context.Context) (stop func()) {
	sw, ok := s.st.(store.Swapper)
	if !ok {
		s.log.Warn("the lake's store cannot compare-and-swap: no watermarks are written; the compactor closes partitions by the wall clock")
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.watermarks(wctx, sw)
	}()
	return sync.OnceFunc(func() {
		cancel()
		<-done
	})
}

// finalWatermarks writes the watermarks once more after the final commit of a
// clean shutdown, so that they describe everything this replica committed.
func (s *Sink) finalWatermarks(ctx context.Context) {
	sw, ok := s.st.(store.Swapper)
	if !ok {
		return
	}
	if err := s.writeWatermarks(ctx, sw); err != nil {
		s.log.Warn("final watermark update failed", "err", err)
	}
}

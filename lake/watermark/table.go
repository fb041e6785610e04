package watermark

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lakesink/lakesink/lake/store"
)

// Table is what the watermarks say about the source topics of one table.
type Table struct {
	// Topics are the table's source topics, in config order.
	Topics []string
	// Objects holds each topic's stored watermarks; a topic without any is absent.
	Objects map[string]*Object
}

// Load reads the watermarks of a group's topics.
func Load(ctx context.Context, st store.Store, group string, topics []string) (*Table, error) {
	t := &Table{Topics: topics, Objects: map[string]*Object{}}
	for _, topic := range topics {
		o, err := Read(ctx, st, group, topic)
		if err != nil {
			return nil, err
		}
		if o != nil {
			t.Objects[topic] = o
		}
	}
	return t, nil
}

// Known reports whether any source topic has watermarks. A table without any
// (no sink with watermarks ever committed for it) closes by the wall clock.
func (t *Table) Known() bool { return len(t.Objects) > 0 }

// Low returns the earliest watermark over every partition of every source
// topic, and false when a topic or a partition has none.
func (t *Table) Low() (time.Time, bool) {
	var low time.Time
	for _, topic := range t.Topics {
		o := t.Objects[topic]
		if o == nil {
			return time.Time{}, false
		}
		l, ok := o.Low()
		if !ok {
			return time.Time{}, false
		}
		if low.IsZero() || l.Before(low) {
			low = l
		}
	}
	return low, !low.IsZero()
}

// Holder is a source partition whose watermark is behind a time, or a topic
// (Partition -1) without watermarks at all.
type Holder struct {
	Topic     string
	Partition int32
	// Mark is the partition's watermark; nil when it has none.
	Mark *Mark
}

// String renders a holder for logs and the dry run: "events/3 (watermark
// 2026-12-03T09:20:00Z, offset 1200)", "events/4 (no watermark)" or "events (no
// watermarks for the topic)".
func (h Holder) String() string {
	switch {
	case h.Partition < 0:
		return h.Topic + " (no watermarks for the topic)"
	case h.Mark == nil:
		return fmt.Sprintf("%s/%d (no watermark)", h.Topic, h.Partition)
	}
	return fmt.Sprintf("%s/%d (watermark %s, offset %d)", h.Topic, h.Partition, h.Mark.Time.UTC().Format(time.RFC3339), h.Mark.Offset)
}

// Behind returns the partitions whose watermark is before through (or
// missing), earliest first.
func (t *Table) Behind(through time.Time) []Holder {
	var out []Holder
	for _, topic := range t.Topics {
		o := t.Objects[topic]
		if o == nil {
			out = append(out, Holder{Topic: topic, Partition: -1})
			continue
		}
		for p := range o.Partitions {
			m, ok := o.Marks[p]
			switch {
			case !ok:
				out = append(out, Holder{Topic: topic, Partition: p})
			case m.Time.Before(through):
				out = append(out, Holder{Topic: topic, Partition: p, Mark: &m})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Holder) int {
		switch {
		case a.Mark == nil && b.Mark == nil:
			return 0
		case a.Mark == nil:
			return -1
		case b.Mark == nil:
			return 1
		}
		return a.Mark.Time.Compare(b.Mark.Time)
	})
	return out
}

// Join renders up to max holders, then how many more there are.
func Join(hs []Holder, max int) string {
	parts := make([]string, 0, min(len(hs), max)+1)
	for i, h := range hs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(hs)-max))
			break
		}
		parts = append(parts, h.String())
	}
	return strings.Join(parts, ", ")
}

// Through is the closing rule of a table: a period (hour or day) ending at e
// may close when e <= Through(...) — and e + lateness <= now, the wall-clock
// rule, which Through never exceeds. With watermarks known, that is when
// every source partition's watermark is at least e + lateness, or when e is
// maxWait ago (the upper bound: a partition that holds the table back longer is
// passed over). Without watermarks (known false) it is the wall-clock rule.
func Through(now time.Time, lateness, maxWait time.Duration, low time.Time, known bool) time.Time {
	wall := now.Add(-lateness)
	if !known {
		return wall
	}
	t := now.Add(-maxWait)
	if !low.IsZero() && low.Add(-lateness).After(t) {
		t = low.Add(-lateness)
	}
	if t.After(wall) {
		t = wall
	}
	return t.UTC()
}

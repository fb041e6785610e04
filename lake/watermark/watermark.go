// Package watermark is the sink's event-time watermarks as the lake stores
// them: one small JSON object per (consumer group, source topic) under
// watermarks/, updated by compare-and-swap (store.Swapper), read by the
// compactor without Kafka access (docs/watermarks.md).
//
// A partition's watermark is a promise: no further record of the partition is
// expected with an event time below it. It is computed from records whose
// offsets are committed (the latest committed event time less
// event_time.max_lateness), or, for a partition with nothing left to read,
// from the time its end offset was seen (less max_lateness). A promise stays
// true once made, so values are merged by taking the later: a watermark never
// goes backwards, whichever replica writes, in whatever order.
package watermark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/lakesink/lakesink/internal/wait"
	"github.com/lakesink/lakesink/lake/store"
)

// Prefix is where the watermark objects live in the lake.
const Prefix = "watermarks/"

// formatVersion is Object.Version of the objects this package writes.
const formatVersion = 1

// Key is the object of a group's watermarks for one topic:
// watermarks/<group, path-escaped>/<topic>.json.
func Key(group, topic string) string {
	return Prefix + url.PathEscape(group) + "/" + topic + ".json"
}

// Object is the stored watermarks of one topic for one consumer group.
type Object struct {
	Version int    `json:"version"`
	Group   string `json:"group"`
	Topic   string `json:"topic"`
	// Partitions is the topic's partition count as the sink last saw it: the
	// compactor expects a watermark for each of partitions 0..Partitions-1.
	Partitions int32 `json:"partitions"`
	// Marks are the partitions' watermarks.
	Marks map[int32]Mark `json:"marks"`
}

// Mark is one partition's watermark.
type Mark struct {
	// Time is the watermark: no record with an earlier event time is expected.
	Time time.Time `json:"time"`
	// Offset is the committed offset the mark describes (every record below it
	// is durable); -1 when the partition never had a commit.
	Offset int64 `json:"offset"`
	// Idle is set when the partition had nothing left to read (its end offset
	// was reached) when the mark was computed.
	Idle bool `json:"idle,omitempty"`
	// Written is when the mark was computed.
	Written time.Time `json:"written"`
}

// Merge folds marks and a partition count into o: each partition keeps the
// later of its two watermarks, Partitions the larger count. It reports whether
// o changed.
func (o *Object) Merge(partitions int32, marks map[int32]Mark) bool {
	changed := false
	if partitions > o.Partitions {
		o.Partitions, changed = partitions, true
	}
	if o.Marks == nil {
		o.Marks = map[int32]Mark{}
	}
	for p, m := range marks {
		if cur, ok := o.Marks[p]; !ok || m.Time.After(cur.Time) {
			m.Time, m.Written = m.Time.UTC(), m.Written.UTC()
			o.Marks[p] = m
			changed = true
		}
	}
	return changed
}

// Low returns the earliest watermark of partitions 0..Partitions-1 and
// whether every one of them has a mark.
func (o *Object) Low() (time.Time, bool) {
	var low time.Time
	for p := range o.Partitions {
		m, ok := o.Marks[p]
		if !ok {
			return time.Time{}, false
		}
		if low.IsZero() || m.Time.Before(low) {
			low = m.Time
		}
	}
	return low, o.Partitions > 0
}

func decode(key string, b []byte) (*Object, error) {
	var o Object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("watermark object %s: %w", key, err)
	}
	if o.Version != formatVersion {
		return nil, fmt.Errorf("watermark object %s: version %d, this lakesink reads %d", key, o.Version, formatVersion)
	}
	if o.Marks == nil {
		o.Marks = map[int32]Mark{}
	}
	return &o, nil
}

// Read returns the stored watermarks of a group's topic, nil when there are none.
func Read(ctx context.Context, st store.Store, group, topic string) (*Object, error) {
	key := Key(group, topic)
	b, err := st.Get(ctx, key)
	if store.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read watermarks: %w", err)
	}
	return decode(key, b)
}

// swapAttempts bounds the read-merge-swap loop of Advance; each lost race means
// another writer stored its marks meanwhile. Writers that keep colliding in
// lockstep are pulled apart by a random wait before each retry.
const swapAttempts = 20

// ErrContended is returned by Advance when every attempt lost a race.
var ErrContended = errors.New("watermark object contended")

// Advance merges marks (and the partition count) into the stored object of a
// group's topic by compare-and-swap, reading and merging again when another
// writer got in between, and returns the object as stored afterwards and
// whether this call wrote it. Nothing is written when the merge changes
// nothing, so a stored watermark never goes backwards and an unchanged one
// costs one GET.
func Advance(ctx context.Context, sw store.Swapper, group, topic string, partitions int32, marks map[int32]Mark) (*Object, bool, error) {
	key := Key(group, topic)
	for attempt := range swapAttempts {
		b, version, err := sw.GetVersion(ctx, key)
		var o *Object
		switch {
		case store.IsNotFound(err):
			o, version = &Object{Version: formatVersion, Group: group, Topic: topic, Marks: map[int32]Mark{}}, ""
		case err != nil:
			return nil, false, fmt.Errorf("read watermarks: %w", err)
		default:
			if o, err = decode(key, b); err != nil {
				return nil, false, err
			}
		}
		if !o.Merge(partitions, marks) {
			return o, false, nil
		}
		body, err := json.Marshal(o)
		if err != nil {
			return nil, false, fmt.Errorf("encode watermarks of %s: %w", topic, err)
		}
		_, err = sw.Swap(ctx, key, body, version)
		if store.IsChanged(err) {
			// A random wait of up to (attempt+1) × 10 ms pulls lockstep writers apart.
			if err := wait.Sleep(ctx, rand.N(time.Duration(attempt+1)*10*time.Millisecond)); err != nil {
				return nil, false, err
			}
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("write watermarks: %w", err)
		}
		return o, true, nil
	}
	return nil, false, fmt.Errorf("%w: %s lost %d races in a row", ErrContended, key, swapAttempts)
}

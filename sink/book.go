package sink

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// span is a durable range: every record of one topic-partition at offsets
// first..last that routes to (table, period) is in an uploaded object.
type span struct {
	table  string
	period int64
	first  int64
	last   int64
}

// tpState is the offset book of one assigned topic-partition.
type tpState struct {
	topic     string
	topicB    []byte
	partition int32
	epoch     int32
	// next is the offset after the last record consumed, -1 before the first record.
	next int64
	// live holds the buffers (open, sealed or uploading) with records of this partition.
	live map[*buffer]struct{}
	// rejected holds the offsets of rejected records whose dead letter the dead-letter
	// topic has not acknowledged yet, ascending: like a buffered record, each holds
	// the commit point back until it is somewhere durable.
	rejected []int64
	// durable lists uploaded ranges that may lie above the commit point.
	durable []span
	maxLast int64 // highest last offset in durable, for a fast skip check
	// committed is the last offset and durable ranges committed (or fetched at
	// assignment), the ranges as encodeRanges writes them, inline in the commit
	// metadata or in the checkpoint object checkpoint.
	committed     int64
	committedMeta string
	checkpoint    string
	// events tracks event times for the partition's watermark (watermark.go).
	events eventTimes
}

func newTPState(topic string, partition int32) *tpState {
	return &tpState{topic: topic, topicB: []byte(topic), partition: partition, next: -1, committed: -1,
		live: map[*buffer]struct{}{}, maxLast: -1}
}

// commitPoint is the lowest offset still held in any buffer or waiting for its dead
// letter to be acknowledged, or the next offset to consume when nothing is held; -1
// when nothing was consumed yet.
func (st *tpState) commitPoint() int64 {
	cp := st.next
	for b := range st.live {
		if cp < 0 || b.first < cp {
			cp = b.first
		}
	}
	if len(st.rejected) > 0 && (cp < 0 || st.rejected[0] < cp) {
		cp = st.rejected[0]
	}
	return cp
}

// deadLettered releases a rejected record whose dead letter was acknowledged.
func (st *tpState) deadLettered(offset int64) {
	if i, ok := slices.BinarySearch(st.rejected, offset); ok {
		st.rejected = slices.Delete(st.rejected, i, i+1)
	}
}

// skip reports whether the record at offset for (table, period) is already durable.
func (st *tpState) skip(table string, period, offset int64) bool {
	if offset > st.maxLast {
		return false
	}
	for _, s := range st.durable {
		if s.period == period && offset >= s.first && offset <= s.last && s.table == table {
			return true
		}
	}
	return false
}

func (st *tpState) addDurable(s span) {
	st.durable = append(st.durable, s)
	if s.last > st.maxLast {
		st.maxLast = s.last
	}
}

// prune drops durable ranges wholly below the commit point.
func (st *tpState) prune(cp int64) {
	out := st.durable[:0]
	st.maxLast = -1
	for _, s := range st.durable {
		if s.last >= cp {
			out = append(out, s)
			if s.last > st.maxLast {
				st.maxLast = s.last
			}
		}
	}
	st.durable = out
}

// overlapping returns the durable ranges of (table, period) that intersect first..last.
func (st *tpState) overlapping(table string, period, first, last int64) []span {
	var out []span
	for _, s := range st.durable {
		if s.table == table && s.period == period && s.last >= first && s.first <= last {
			out = append(out, s)
		}
	}
	return out
}

// Commit metadata: "ls1" then one "|table:period:first:last" per durable range at or
// above the commit point. A replay after a crash reads it back and skips those records,
// so a file flushed before the commit is never written twice.
const metaVersion = "ls1"

// MaxMetadata is the largest commit metadata written; Kafka's default
// offset.metadata.max.bytes is 4096. Ranges that do not fit go to a checkpoint
// object, which the metadata names (checkpoint.go).
const MaxMetadata = 4000

// encodeMeta returns the commit metadata of the ranges at or above cp, and false when
// it would be longer than MaxMetadata.
func encodeMeta(spans []span, cp int64) (string, bool) {
	m := encodeRanges(spans, cp)
	if len(m) > MaxMetadata {
		return "", false
	}
	return m, true
}

// encodeRanges writes the ranges at or above cp in the commit metadata's format,
// whatever their length.
func encodeRanges(spans []span, cp int64) string {
	var b strings.Builder
	b.WriteString(metaVersion)
	for _, s := range spans {
		if s.last < cp {
			continue
		}
		b.WriteByte('|')
		b.WriteString(s.table)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(s.period, 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(s.first, 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(s.last, 10))
	}
	return b.String()
}

func decodeMeta(m string) ([]span, error) {
	if m == "" || !strings.HasPrefix(m, metaVersion) {
		return nil, nil // not ours (or empty): nothing to skip
	}
	var out []span
	for _, part := range strings.Split(m, "|")[1:] {
		f := strings.Split(part, ":")
		if len(f) != 4 {
			return nil, fmt.Errorf("commit metadata entry %q: want table:period:first:last", part)
		}
		var nums [3]int64
		for i := range nums {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("commit metadata entry %q: %w", part, err)
			}
			nums[i] = n
		}
		out = append(out, span{table: f[0], period: nums[0], first: nums[1], last: nums[2]})
	}
	return out, nil
}

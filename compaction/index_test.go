package compaction

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/layout"
)

// TestHeldCoalesce: overlapping and touching spans of one period, topic and
// partition merge (keeping the later commit time); spans with a gap between
// them, or of another period or partition, stay apart.
func TestHeldCoalesce(t *testing.T) {
	t0, t1 := time.Unix(1000, 0), time.Unix(2000, 0)
	h := Held{}
	h.Add(7, "a", 0, Range{100, 200}, t1)
	h.Add(7, "a", 0, Range{0, 99}, t0)    // touches
	h.Add(7, "a", 0, Range{150, 180}, t0) // inside
	h.Add(7, "a", 0, Range{202, 300}, t0) // gap at 201
	h.Add(7, "a", 1, Range{201, 201}, t0) // another partition
	h.Add(8, "a", 0, Range{201, 201}, t0) // another period
	h.Add(7, "a", 0, Range{250, 400}, t1) // overlaps the last
	h.Coalesce()
	if got, want := fmt.Sprint(h[7]["a"][0]), fmt.Sprint([]Span{{Range{0, 200}, t1}, {Range{202, 400}, t1}}); got != want {
		t.Errorf("period 7 a/0: %s, want %s", got, want)
	}
	if h.Spans() != 4 {
		t.Errorf("%d spans, want 4", h.Spans())
	}
	if !h.holds(7, "a", 0, 0) || h.holds(7, "a", 0, 201) || !h.holds(8, "a", 0, 201) {
		t.Error("holds disagrees with the spans")
	}
	// A raw file across the gap is not covered; one inside a span is, with
	// the span's commit time.
	if _, ok := covered(h[7]["a"][0], RawFile{First: 150, Last: 250}); ok {
		t.Error("a raw file across the gap at 201 is covered")
	}
	if at, ok := covered(h[7]["a"][0], RawFile{First: 202, Last: 260}); !ok || !at.Equal(t1) {
		t.Errorf("covered(202-260) = %v, %v; want %v, true", at, ok, t1)
	}
}

// TestIndexRoundTrip: an index reads back as written (times to the second,
// unknown times kept unknown) for its own table only, and a damaged or
// foreign one is refused with the reason.
func TestIndexRoundTrip(t *testing.T) {
	h := Held{}
	h.Add(490000, "events", 0, Range{0, 99}, time.Unix(1764000000, 0))
	h.Add(490000, "events", 3, Range{5, 5}, time.Time{})
	h.Add(490001, "other.topic", 0, Range{100, 120}, time.Unix(1764000600, 0))
	meta := indexMeta{TableUUID: "uuid-1", Granularity: layout.Hour, Job: "job-1", Attempt: 2}
	b, err := encodeIndex(h, meta)
	if err != nil {
		t.Fatal(err)
	}
	got, m, err := decodeIndex(b, "uuid-1", layout.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(h) || m != meta {
		t.Errorf("read back %v %+v, want %v %+v", got, m, h, meta)
	}
	for _, tc := range []struct {
		b    []byte
		uuid string
		g    layout.Granularity
		want string
	}{
		{b, "uuid-2", layout.Hour, "written for table uuid-1"},
		{b, "uuid-1", layout.Day, "written for hour periods"},
		{b[:len(b)/2], "uuid-1", layout.Hour, "decompress"},
	} {
		if _, _, err := decodeIndex(tc.b, tc.uuid, tc.g); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decode for %s/%v: %v, want an error with %q", tc.uuid, tc.g, err, tc.want)
		}
	}
}

// yearIndex is a year of hourly periods, 12 Kafka partitions, 12 raw files
// per partition and hour, none touching the next (the worst case for
// coalescing): 1,261,440 spans.
func yearIndex() Held {
	h := Held{}
	at := time.Unix(1764000000, 0)
	for per := range layout.Period(8760) {
		for p := range int32(12) {
			base := int64(per) * 100_000
			for f := range int64(12) {
				h.Add(per+490000, "events", p, Range{base + f*1000, base + f*1000 + 800}, at)
			}
		}
	}
	return h
}

// BenchmarkIndexYear encodes and decodes a year's index (yearIndex),
// reporting its size: what each commit writes and each run reads.
func BenchmarkIndexYear(b *testing.B) { benchIndex(b, yearIndex()) }

// benchIndex measures encoding and decoding the index of h.
func benchIndex(b *testing.B, h Held) {
	meta := indexMeta{TableUUID: "u", Granularity: layout.Hour}
	enc, err := encodeIndex(h, meta)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeIndex(h, meta); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(enc)), "bytes")
		b.ReportMetric(float64(h.Spans()), "spans")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := decodeIndex(enc, "u", layout.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(enc)), "bytes")
	})
}

// BenchmarkIndexTenThousandHours: the coverage index of a table of 10,000
// hourly files (one span each), encoded and decoded whole, as every commit
// does: the part of a one-hour run's cost that follows the table's history
// (docs/performance.md, "Compaction cost against table size").
func BenchmarkIndexTenThousandHours(b *testing.B) {
	h := Held{}
	now := time.Now()
	for p := range 10000 {
		h.Add(layout.Period(400000+p), "events", 0, Range{First: int64(p), Last: int64(p)}, now)
	}
	benchIndex(b, h)
}

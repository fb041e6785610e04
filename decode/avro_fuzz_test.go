package decode

import (
	"errors"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode/decodetest"
)

// FuzzDecodeAvro feeds arbitrary bytes to the Avro decoder, with the test writer
// schemas registered as ids 1–5: it must never panic, return a transient error
// only for an id the registry does not know (retried, never dead-lettered), and
// otherwise either reject the record with a reason or stage exactly one row.
func FuzzDecodeAvro(f *testing.F) {
	a, s, _ := testAvroDecoder(f)
	ts := time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC)
	f.Add(decodetest.Frame(f, 1, writerV1, v1Record(0)))
	f.Add(decodetest.Frame(f, 1, writerV1, v1Record(1)))
	f.Add(decodetest.Frame(f, 2, writerMicros, map[string]any{"id": "m", "ts": ts, "extra": map[string]any{"string": "x"}}))
	f.Add(decodetest.Frame(f, 3, writerBadType, map[string]any{"id": "x", "ts": ts, "n": "seven"}))
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte(`{"id":"json"}`))
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := a.Decode(&Record{Topic: "a", Offset: 1, Timestamp: now, Value: data}, now)
		if err != nil {
			if id, _ := schemaID(data); IsTransient(err) && (id < 1 || id > 5) {
				return
			}
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Reason == "" {
				t.Fatalf("error without a rejection reason: %v", err)
			}
			return
		}
		for i, vals := range stagedCols(a.d) {
			if len(vals) == 0 || vals[0].RepetitionLevel() != 0 {
				t.Fatalf("column %d staged %d values", i, len(vals))
			}
		}
		checkWriteTo(t, s, a.d.row)
	})
}

// BenchmarkDecodeAvro is the per-record CPU of the Avro decoder with a compiled
// plan (schema cached), on the mixed-type writerV1 record.
func BenchmarkDecodeAvro(b *testing.B) {
	a, _, _ := testAvroDecoder(b)
	v := decodetest.Frame(b, 1, writerV1, v1Record(0))
	rec := &Record{Topic: "a", Timestamp: now, Value: v}
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
	}
}

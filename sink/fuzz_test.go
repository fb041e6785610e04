package sink

import (
	"errors"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the JSON decoder: it must never panic, and it
// either rejects the record with a reason or stages exactly one row.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a","ts":"2026-11-24T13:05:00Z","n":7,"price":"12.30","huge":"-1e5","day":"2026-11-24","raw":"aGk=",
		  "meta":{"nested":{"b":"x","a":[1,2,3]}},"tags":["p"],"attrs":{"k":1},"lines":[{"sku":"s","qty":1},null]}`,
		`{"id":"b","ts":1764000000000}`, `{"id":null}`, `[]`, `{`, `{"ts":"2026-11-24T13:05:00.123456789+14:00","id":"x"}`,
		`{"id":"x","ts":"2026-11-24T13:05:00Z","price":1e400}`, `{"id":"x","ts":-1e300}`,
		`{"id":"x","ts":"2026-11-24T13:05:00Z","lines":[{"qty":2147483648}]}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, s := testDecoder(t)
		_, err := d.Decode(&Record{Topic: "a", Offset: 1, Timestamp: now, Value: data}, now)
		if err != nil {
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Reason == "" {
				t.Fatalf("error without a rejection reason: %v", err)
			}
			return
		}
		cols := newColumns(s.Leaves)
		cols.appendRow(d.Cols)
		for i, vals := range d.Cols {
			if len(vals) == 0 || vals[0].RepetitionLevel() != 0 {
				t.Fatalf("column %d staged %d values, first repetition level %d", i, len(vals), vals[0].RepetitionLevel())
			}
		}
	})
}

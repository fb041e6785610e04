package decode

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/rawfile/rawfiletest"
	"github.com/lakesink/lakesink/lake/schema"
)

// FuzzDecode feeds arbitrary bytes to the JSON decoder under three contracts: the
// default one (testTable), strict with every coercion (contractTable), and the same
// without strict. It must never panic; it either rejects the record with a *Rejection
// carrying a known reason, or stages exactly one well-formed row: every leaf column
// has at least one value, levels within the schema's maxima, a value present exactly
// at the maximum definition level. A record a strict table accepts is accepted the
// same way without strict. Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a","ts":"2026-11-24T13:05:00Z","n":7,"price":"12.30","huge":"-1e5","day":"2026-11-24","raw":"aGk=",
		  "meta":{"nested":{"b":"x","a":[1,2,3]}},"tags":["p"],"attrs":{"k":1},"lines":[{"sku":"s","qty":1},null]}`,
		`{"id":"b","ts":1764000000000}`, `{"id":null}`, `[]`, `{`, `{"ts":"2026-11-24T13:05:00.123456789+14:00","id":"x"}`,
		`{"id":"x","ts":"2026-11-24T13:05:00Z","price":1e400}`, `{"id":"x","ts":-1e300}`,
		`{"id":"x","ts":"2026-11-24T13:05:00Z","lines":[{"qty":2147483648}]}`,
		`{"id":"x","ts":"1764000000000","user":{"id":"1"},"sec":"1764000000.5","b":1,"s":{"a":"2","inner":{"x":"false"}}}`,
		`{"id":"x","ts":1764000000000,"user":{"id":1},"m":{"k":{"q":"3"}},"l":[{"k":"v"}],"extra":0}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	type target struct {
		d *Decoder
		s *schema.Schema
	}
	def, defS := testDecoder(f)
	strict, strictS := contractDecoder(f, contractTable)
	lenient, lenientS := contractDecoder(f, strings.Replace(contractTable, "strict: true", "strict: false", 1))
	targets := []target{{def, defS}, {strict, strictS}, {lenient, lenientS}}
	// The same decoders without the fast path (decode_fast.go): the full path only.
	fullDef, _ := testDecoder(f)
	fullStrict, _ := contractDecoder(f, contractTable)
	fullLenient, _ := contractDecoder(f, strings.Replace(contractTable, "strict: true", "strict: false", 1))
	full := []*Decoder{fullDef, fullStrict, fullLenient}
	for i, d := range full {
		if targets[i].d.fast == nil {
			f.Fatalf("decoder %d has no fast path", i)
		}
		d.fast = nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok := make([]bool, len(targets))
		for i, tg := range targets {
			rec := &Record{Topic: "a", Offset: 1, Timestamp: now, Value: data}
			et, err := tg.d.Decode(rec, now)
			sameAsFull(t, i, tg.d, et, err, full[i], rec, now)
			if err != nil {
				rej, isRej := err.(*Rejection)
				if !isRej || !knownReason(rej.Reason) {
					t.Fatalf("decoder %d: error %T %v is not a rejection with a known reason", i, err, err)
				}
				continue
			}
			ok[i] = true
			checkRow(t, stagedCols(tg.d), tg.s)
			checkWriteTo(t, tg.s, tg.d.row)
			g := layout.Hour
			if tg.s.Granularity == "day" {
				g = layout.Day
			}
			if key := layout.RawKey(tg.s.Table, g, layout.PeriodOf(g, et), "a", 0, 1); !strings.HasPrefix(key, layout.RawPrefix(tg.s.Table)+"dt=") ||
				strings.Contains(key, "..") {
				t.Fatalf("decoder %d: event time %d gives key %q", i, et, key)
			}
		}
		if ok[1] && !ok[2] {
			t.Fatalf("strict decoder accepted what the lenient one rejected")
		}
		if ok[1] && ok[2] {
			for leaf := range stagedCols(strict) {
				a, b := stagedCols(strict)[leaf], stagedCols(lenient)[leaf]
				if len(a) != len(b) {
					t.Fatalf("leaf %d: strict staged %d values, lenient %d", leaf, len(a), len(b))
				}
				for j := range a {
					if !parquet.Equal(a[j], b[j]) || a[j].DefinitionLevel() != b[j].DefinitionLevel() || a[j].RepetitionLevel() != b[j].RepetitionLevel() {
						t.Fatalf("leaf %d value %d: strict %v, lenient %v", leaf, j, a[j], b[j])
					}
				}
			}
		}
	})
}

// checkRow checks that the staged values form exactly one Dremel-shredded row.
func checkRow(t *testing.T, cols [][]parquet.Value, s *schema.Schema) {
	t.Helper()
	if len(cols) != len(s.Leaves) {
		t.Fatalf("%d staged columns, schema has %d leaves", len(cols), len(s.Leaves))
	}
	for i, vals := range cols {
		lf := s.Leaves[i]
		if len(vals) == 0 {
			t.Fatalf("leaf %d staged no value", i)
		}
		for j, v := range vals {
			rep, def := v.RepetitionLevel(), v.DefinitionLevel()
			switch {
			case (j == 0) != (rep == 0):
				t.Fatalf("leaf %d value %d: repetition level %d (a row starts at 0, only there)", i, j, rep)
			case rep > lf.MaxRep || def > lf.MaxDef || def < 0:
				t.Fatalf("leaf %d value %d: levels r=%d d=%d beyond max r=%d d=%d", i, j, rep, def, lf.MaxRep, lf.MaxDef)
			case v.IsNull() != (def < lf.MaxDef):
				t.Fatalf("leaf %d value %d: null=%v at d=%d (max %d)", i, j, v.IsNull(), def, lf.MaxDef)
			case v.Column() != i:
				t.Fatalf("leaf %d value %d: column index %d", i, j, v.Column())
			}
		}
	}
}

func knownReason(r string) bool {
	switch r {
	case ReasonOversized, ReasonMalformed, ReasonMissingField, ReasonWrongType, ReasonBadValue,
		ReasonBadTime, ReasonTimeRange, ReasonUnknownField:
		return true
	}
	return false
}

// sameAsFull checks that d (with its fast path) decoded data as full (the full path
// alone) does with the record r: the same event time, the same error, the same staged bytes.
func sameAsFull(t *testing.T, i int, d *Decoder, et int64, err error, full *Decoder, r *Record, now time.Time) {
	t.Helper()
	fet, ferr := full.Decode(r, now)
	if (err == nil) != (ferr == nil) || err != nil && err.Error() != ferr.Error() {
		t.Fatalf("decoder %d: %v, the full path alone: %v", i, err, ferr)
	}
	if err != nil {
		return
	}
	if et != fet {
		t.Fatalf("decoder %d: event time %d, the full path alone %d", i, et, fet)
	}
	for leaf := range d.row.cols {
		if !bytes.Equal(d.row.cols[leaf], full.row.cols[leaf]) {
			t.Fatalf("decoder %d leaf %d: staged %v, the full path alone %v", i, leaf, d.Staged(leaf), full.Staged(leaf))
		}
	}
}

// checkWriteTo stores the staged record twice in a row store (so that a record
// boundary follows each) and checks WriteTo writes the same Parquet bytes as the
// staged values written with their levels.
func checkWriteTo(t *testing.T, s *schema.Schema, row *columns) {
	t.Helper()
	rs := rawfile.NewRowStore(s.Leaves)
	rs.AppendRow(row.cols)
	rs.AppendRow(row.cols)
	rawfiletest.SameFileAsValues(t, s, rs, func(i int) []parquet.Value {
		vals := row.values(i)
		return append(vals, vals...)
	})
}

// stagedCols is every leaf column's staged values after a successful Decode.
func stagedCols(d *Decoder) [][]parquet.Value {
	cols := make([][]parquet.Value, len(d.row.cols))
	for i := range cols {
		cols[i] = d.Staged(i)
	}
	return cols
}

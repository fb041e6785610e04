package decode

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// contractTable exercises every contract key: strict mode, a table-wide coerce list,
// per-column overrides of coerce and of the timestamp format.
const contractTable = `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
tables:
  - name: c
    topics: [c]
    strict: true
    coerce: [numeric_strings, bool_strings, bool_numbers]
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: sec, type: timestamp, format: epoch_seconds}
      - {name: us, type: timestamp, format: epoch_micros}
      - {name: iso, type: timestamp, format: rfc3339}
      - {name: i32, type: int32}
      - {name: i64, type: int64}
      - {name: f32, type: float32}
      - {name: f64, type: float64}
      - {name: dec, type: "decimal(9,2)"}
      - {name: b, type: bool}
      - {name: plain, type: int64, coerce: []}
      - {name: only_bools, type: bool, coerce: [bool_strings]}
      - {name: user_id, type: int64, path: user.id, required: true}
      - {name: user_name, type: string, path: user.name}
      - {name: s, type: "struct<a:int32,t:timestamp,inner:struct<x:bool>>", format: epoch_seconds}
      - {name: m, type: "map<string,struct<q:int32>>"}
      - {name: l, type: "list<struct<k:string>>"}
    event_time: {column: ts}
`

func contractDecoder(t testing.TB, doc string) (*Decoder, *schema.Schema) {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	return NewDecoder(s, &cfg.Tables[0], 1<<20), s
}

// leafOf finds the leaf column of a top-level column or of a nested struct field.
func leafOf(t *testing.T, s *schema.Schema, col string, fields ...string) int {
	t.Helper()
	n := s.Column(col)
	for _, f := range fields {
		var next *schema.Node
		for _, c := range n.Children {
			if c.Name == f {
				next = c
			}
		}
		if next == nil {
			t.Fatalf("no field %s in %s", f, col)
		}
		n = next
	}
	return n.Leaf
}

const base = `"id":"x","ts":"2026-11-24T13:00:00Z","user":{"id":1}`

func TestContractCoercions(t *testing.T) {
	d, s := contractDecoder(t, contractTable)
	ts := func(y, mo, dd, h, mi, sec, us int) int64 {
		return time.Date(y, time.Month(mo), dd, h, mi, sec, us*1000, time.UTC).UnixMicro()
	}
	for _, tc := range []struct {
		name, in string
		col      string
		fields   []string
		want     any // int32, int64, float32, float64, bool, or nil for null
	}{
		{"int32 from number", `"i32":42`, "i32", nil, int32(42)},
		{"int32 from string", `"i32":"42"`, "i32", nil, int32(42)},
		{"int32 negative string", `"i32":"-7"`, "i32", nil, int32(-7)},
		{"int64 from string", `"i64":"9007199254740993"`, "i64", nil, int64(9007199254740993)},
		{"float64 from string", `"f64":"3.5"`, "f64", nil, 3.5},
		{"float64 exponent string", `"f64":"1e3"`, "f64", nil, 1000.0},
		{"float32 from string", `"f32":"-0.25"`, "f32", nil, float32(-0.25)},
		{"decimal from string", `"dec":"12.30"`, "dec", nil, int32(1230)},
		{"decimal exponent string", `"dec":"1e3"`, "dec", nil, int32(100000)},
		{"bool from string", `"b":"true"`, "b", nil, true},
		{"bool from false string", `"b":"false"`, "b", nil, false},
		{"bool from 1", `"b":1`, "b", nil, true},
		{"bool from 0", `"b":0`, "b", nil, false},
		{"bool override string", `"only_bools":"true"`, "only_bools", nil, true},
		{"event time millis (default)", `"ts":1764000000123`, "ts", nil, int64(1764000000123000)},
		{"event time millis string", `"ts":"1764000000123"`, "ts", nil, int64(1764000000123000)},
		{"event time RFC 3339 offset to UTC", `"ts":"2026-11-24T15:00:00.5+02:00"`, "ts", nil, ts(2026, 11, 24, 13, 0, 0, 500000)},
		{"epoch seconds", `"sec":1764000000`, "sec", nil, int64(1764000000) * 1e6},
		{"epoch seconds fraction", `"sec":1764000000.25`, "sec", nil, int64(1764000000250000)},
		{"epoch seconds string", `"sec":"1764000000"`, "sec", nil, int64(1764000000) * 1e6},
		{"epoch seconds reads RFC 3339", `"sec":"2026-11-24T13:00:00Z"`, "sec", nil, ts(2026, 11, 24, 13, 0, 0, 0)},
		{"epoch micros", `"us":1764000000000001`, "us", nil, int64(1764000000000001)},
		{"rfc3339", `"iso":"2026-11-24T13:00:00.000001Z"`, "iso", nil, ts(2026, 11, 24, 13, 0, 0, 1)},
		{"nested timestamp uses column format", `"s":{"t":1764000000}`, "s", []string{"t"}, int64(1764000000) * 1e6},
		{"nested int coerced", `"s":{"a":"5"}`, "s", []string{"a"}, int32(5)},
		{"nested bool coerced", `"s":{"inner":{"x":"true"}}`, "s", []string{"inner", "x"}, true},
		{"absent optional stays null", `"i32":null`, "i32", nil, nil},
		{"nested path column", `"user":{"id":"77","name":"n"}`, "user_id", nil, int64(77)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := `{` + base + `,` + tc.in + `}`
			if tc.col == "user_id" || tc.col == "ts" {
				rec = `{"id":"x","ts":"2026-11-24T13:00:00Z","user":{"id":1},` + tc.in + `}`
				rec = dropDup(rec, tc.in)
			}
			_, err := d.Decode(&Record{Topic: "c", Timestamp: now, Value: []byte(rec)}, now)
			if err != nil {
				t.Fatalf("%s: %v", rec, err)
			}
			v := stagedCols(d)[leafOf(t, s, tc.col, tc.fields...)][0]
			var got any
			if !v.IsNull() {
				switch tc.want.(type) {
				case int32:
					got = v.Int32()
				case int64:
					got = v.Int64()
				case float32:
					got = v.Float()
				case float64:
					got = v.Double()
				case bool:
					got = v.Boolean()
				}
			}
			if got != tc.want {
				t.Fatalf("%s: stored %v (%T), want %v (%T)", rec, got, got, tc.want, tc.want)
			}
		})
	}
}

// dropDup removes the default "ts"/"user" member when the case sets its own (the last
// one would win in fastjson anyway, but strict tests read clearer without duplicates).
func dropDup(rec, in string) string {
	switch {
	case strings.HasPrefix(in, `"ts":`):
		return `{"id":"x","user":{"id":1},` + in + `}`
	case strings.HasPrefix(in, `"user":`):
		return `{"id":"x","ts":"2026-11-24T13:00:00Z",` + in + `}`
	}
	return rec
}

func TestContractRejections(t *testing.T) {
	d, _ := contractDecoder(t, contractTable)
	for _, tc := range []struct{ name, in, reason, field string }{
		{"int from non-numeric string", `"i32":"forty"`, ReasonBadValue, "i32"},
		{"int from padded string", `"i32":" 42"`, ReasonBadValue, "i32"},
		{"int from plus sign", `"i32":"+42"`, ReasonBadValue, "i32"},
		{"int from hex", `"i64":"0x10"`, ReasonBadValue, "i64"},
		{"int from fraction string", `"i32":"3.5"`, ReasonBadValue, "i32"},
		{"int from exponent string", `"i32":"1e3"`, ReasonBadValue, "i32"},
		{"int32 overflow string", `"i32":"2147483648"`, ReasonBadValue, "i32"},
		{"int64 overflow string", `"i64":"9223372036854775808"`, ReasonBadValue, "i64"},
		{"float from NaN string", `"f64":"NaN"`, ReasonBadValue, "f64"},
		{"float from Infinity string", `"f64":"Infinity"`, ReasonBadValue, "f64"},
		{"float overflow", `"f64":1e400`, ReasonBadValue, "f64"},
		{"float32 overflow", `"f32":1e39`, ReasonBadValue, "f32"},
		{"float NaN number", `"f64":NaN`, ReasonBadValue, "f64"},
		{"float from bool", `"f64":true`, ReasonWrongType, "f64"},
		{"coercion off for column", `"plain":"42"`, ReasonWrongType, "plain"},
		{"bool override refuses numbers", `"only_bools":1`, ReasonWrongType, "only_bools"},
		{"bool from other string", `"b":"yes"`, ReasonBadValue, "b"},
		{"bool from capitalised string", `"b":"True"`, ReasonBadValue, "b"},
		{"bool from 2", `"b":2`, ReasonBadValue, "b"},
		{"bool from 1.0", `"b":1.0`, ReasonBadValue, "b"},
		{"decimal double sign", `"dec":"--5"`, ReasonBadValue, "dec"},
		{"decimal huge exponent", `"dec":"1e999999999"`, ReasonBadValue, "dec"},
		{"rfc3339 refuses numbers", `"iso":1764000000`, ReasonBadTime, "iso"},
		{"rfc3339 refuses numeric strings", `"iso":"1764000000"`, ReasonBadTime, "iso"},
		{"epoch seconds overflow", `"sec":9223372036854775807`, ReasonBadTime, "sec"},
		{"epoch string not a number", `"sec":"17e"`, ReasonBadTime, "sec"},
		{"timestamp from bool", `"us":true`, ReasonBadTime, "us"},
		{"nested coercion failure", `"s":{"inner":{"x":"maybe"}}`, ReasonBadValue, "s.inner.x"},
		{"unknown top-level field", `"extra":1`, ReasonUnknownField, "extra"},
		{"unknown field on a path", `"user":{"id":1,"email":"e"}`, ReasonUnknownField, "user.email"},
		{"unknown struct field", `"s":{"a":1,"b":2}`, ReasonUnknownField, "s.b"},
		{"unknown nested struct field", `"s":{"inner":{"x":true,"y":false}}`, ReasonUnknownField, "s.inner.y"},
		{"unknown field in list element", `"l":[{"k":"a"},{"k":"b","z":0}]`, ReasonUnknownField, "l[1].z"},
		{"unknown field in map value", `"m":{"k1":{"q":1,"r":2}}`, ReasonUnknownField, "m.k1.r"},
		{"missing required path column", `"user":{"name":"n"}`, ReasonMissingField, "user.id"},
		{"required path column under a non-object", `"user":"n"`, ReasonMissingField, "user.id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := dropDup(`{`+base+`,`+tc.in+`}`, tc.in)
			_, err := d.Decode(&Record{Topic: "c", Timestamp: now, Value: []byte(rec)}, now)
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("%s: got %v, want a rejection", rec, err)
			}
			if rej.Reason != tc.reason || rej.Field != tc.field {
				t.Fatalf("%s: got reason %q field %q (%v), want %q %q", rec, rej.Reason, rej.Field, err, tc.reason, tc.field)
			}
		})
	}
}

// TestContractDefaults: without the new keys a table keeps the old behaviour —
// numeric strings are wrong types, extra fields are ignored, numbers are epoch millis.
func TestContractDefaults(t *testing.T) {
	d, s := testDecoder(t)
	ok := `{"id":"x","ts":1764000000000,"unknown":{"deep":[1]},"meta":{"nested":{"zzz":1}}}`
	if _, err := d.Decode(&Record{Topic: "a", Timestamp: now, Value: []byte(ok)}, now); err != nil {
		t.Fatalf("non-strict table rejected extra fields: %v", err)
	}
	if got := stagedCols(d)[s.Column("ts").Leaf][0].Int64(); got != 1764000000000*1000 {
		t.Fatalf("ts = %d", got)
	}
	for _, in := range []string{`{"id":"x","ts":1764000000000,"ok":"true"}`, `{"id":"x","ts":1764000000000,"big":"1"}`, `{"id":"x","ts":1764000000000,"ok":1}`} {
		_, err := d.Decode(&Record{Topic: "a", Timestamp: now, Value: []byte(in)}, now)
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Reason != ReasonWrongType {
			t.Errorf("%s: got %v, want wrong_type", in, err)
		}
	}
}

func TestIsJSONNumber(t *testing.T) {
	for in, want := range map[string]bool{
		"0": true, "-0": true, "42": true, "-3.5": true, "1e3": true, "1E+3": true, "2.5e-7": true,
		"": false, "-": false, "+1": false, "01": false, "1.": false, ".5": false, "1e": false, " 1": false,
		"1 ": false, "NaN": false, "Infinity": false, "0x10": false, "1_000": false, "--1": false,
	} {
		if got := isJSONNumber([]byte(in)); got != want {
			t.Errorf("isJSONNumber(%q) = %v", in, got)
		}
	}
}

func TestEpochMicros(t *testing.T) {
	for _, tc := range []struct {
		in   string
		unit int64
		want int64
		err  bool
	}{
		{"1", 1_000_000, 1_000_000, false},
		{"-1", 1_000, -1_000, false},
		{"1.5", 1_000, 1_500, false},
		{"9000000000001", 1_000_000, 0, true},
		{"9000000000000000000", 1, 9e18, false},
		{"1e300", 1, 0, true},
	} {
		got, err := epochMicros([]byte(tc.in), tc.unit)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("epochMicros(%s, %d) = %d, %v", tc.in, tc.unit, got, err)
		}
	}
}

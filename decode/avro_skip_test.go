package decode

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// extraField is a writer field the table (avroTable) does not declare.
type extraField struct {
	name, typ string
	val       any // a value that encodes to at least one byte
	null      any // the "empty" value: the null branch of a union, an empty array, ...
}

// extraFields returns a field of every Avro type and logical type, and nullable unions
// both ways round. suffix keeps the named types (record, enum, fixed) unique when the
// list is used twice in one schema.
func extraFields(suffix string) []extraField {
	rec := fmt.Sprintf(`{"type":"record","name":"XR%s","fields":[{"name":"a","type":"int"},{"name":"b","type":["null","string"]}]}`, suffix)
	ts := time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC)
	return []extraField{
		{"x_null", `"null"`, nil, nil},
		{"x_nullable", `["null","string"]`, map[string]any{"string": "n"}, nil},
		{"x_nullable_last", `["string","null"]`, map[string]any{"string": "n"}, nil},
		{"x_nullable_record", `["null",` + strings.Replace(rec, `"name":"XR`, `"namespace":"x","name":"XNR`, 1) + `]`,
			map[string]any{"x.XNR" + suffix: map[string]any{"a": 1, "b": nil}}, nil},
		{"x_boolean", `"boolean"`, true, false},
		{"x_int", `"int"`, 42, 0},
		{"x_long", `"long"`, int64(1) << 40, int64(0)},
		{"x_float", `"float"`, float32(1.5), float32(0)},
		{"x_double", `"double"`, 2.5, 0.0},
		{"x_bytes", `"bytes"`, []byte("ab"), []byte{}},
		{"x_string", `"string"`, "s", ""},
		{"x_record", rec, map[string]any{"a": 1, "b": map[string]any{"string": "x"}}, map[string]any{"a": 0, "b": nil}},
		{"x_enum", fmt.Sprintf(`{"type":"enum","name":"XE%s","symbols":["A","B"]}`, suffix), "B", "A"},
		{"x_array", `{"type":"array","items":["null","long"]}`, []any{nil, map[string]any{"long": int64(3)}}, []any{}},
		{"x_map", `{"type":"map","values":"string"}`, map[string]any{"k": "v"}, map[string]any{}},
		{"x_fixed", fmt.Sprintf(`{"type":"fixed","name":"XF%s","size":3}`, suffix), [3]byte{1, 2, 3}, [3]byte{}},
		{"x_union", `["int","string","null"]`, map[string]any{"string": "u"}, nil},
		{"x_decimal_bytes", `{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}`, big.NewRat(-1230, 100), big.NewRat(0, 1)},
		{"x_decimal_fixed", fmt.Sprintf(`{"type":"fixed","name":"XD%s","size":8,"logicalType":"decimal","precision":18,"scale":3}`, suffix),
			big.NewRat(12345, 1000), big.NewRat(0, 1)},
		{"x_uuid", `{"type":"string","logicalType":"uuid"}`, "0b6b1d7e-0000-4000-8000-000000000001", "0b6b1d7e-0000-4000-8000-000000000002"},
		{"x_date", `{"type":"int","logicalType":"date"}`, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), time.Unix(0, 0).UTC()},
		{"x_time_millis", `{"type":"int","logicalType":"time-millis"}`, 5 * time.Second, time.Duration(0)},
		{"x_time_micros", `{"type":"long","logicalType":"time-micros"}`, 5 * time.Second, time.Duration(0)},
		{"x_timestamp_millis", `{"type":"long","logicalType":"timestamp-millis"}`, ts, time.Unix(0, 0).UTC()},
		{"x_timestamp_micros", `{"type":"long","logicalType":"timestamp-micros"}`, ts, time.Unix(0, 0).UTC()},
		{"x_local_timestamp_millis", `{"type":"long","logicalType":"local-timestamp-millis"}`, ts, time.Unix(0, 0).UTC()},
		{"x_local_timestamp_micros", `{"type":"long","logicalType":"local-timestamp-micros"}`, ts, time.Unix(0, 0).UTC()},
		{"x_duration", fmt.Sprintf(`{"type":"fixed","name":"XDur%s","size":12,"logicalType":"duration"}`, suffix),
			avro.LogicalDuration{Months: 1, Days: 2, Milliseconds: 3}, avro.LogicalDuration{}},
	}
}

func fieldsJSON(fs []extraField) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf(`{"name":%q,"type":%s}`, f.name, f.typ)
	}
	return strings.Join(parts, ",")
}

// TestAvroSkipsEveryExtraType: a writer schema with, at the top level and inside a
// nested record the table declares as a struct, an extra field of every Avro type
// (null, the nullable unions ["null","T"] and ["T","null"], every primitive, record,
// enum, array, map, fixed, a three-branch union and every logical type) that the
// table lacks. Each record lands with the declared columns right and the extras
// skipped, whichever union branch the record takes; the extras are reported as
// ignored.
func TestAvroSkipsEveryExtraType(t *testing.T) {
	a, s, src := testAvroDecoder(t)
	top, nested := extraFields("T"), extraFields("N")
	writer := `{"type":"record","name":"Evolved","namespace":"t","fields":[` + fieldsJSON(top[:4]) + `,
 {"name":"id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},` + fieldsJSON(top[4:]) + `,
 {"name":"addr","type":{"type":"record","name":"Addr","fields":[` + fieldsJSON(nested[:4]) + `,
   {"name":"city","type":"string"},` + fieldsJSON(nested[4:]) + `,{"name":"zip","type":"int"}]}},
 {"name":"n","type":["null","long"]}]}`
	src.ByID[100] = writer
	ts := time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC)
	record := func(i int, useNull bool) map[string]any {
		addr := map[string]any{"city": fmt.Sprintf("c%d", i), "zip": 1000 + i}
		rec := map[string]any{"id": fmt.Sprintf("e%d", i), "ts": ts.Add(time.Duration(i) * time.Second), "addr": addr,
			"n": map[string]any{"long": int64(i)}}
		for _, fs := range []struct {
			m  map[string]any
			fs []extraField
		}{{rec, top}, {addr, nested}} {
			for _, f := range fs.fs {
				if useNull {
					fs.m[f.name] = f.null
				} else {
					fs.m[f.name] = f.val
				}
			}
		}
		return rec
	}
	var ignored []string
	a.onUnknownFields = func(_ int, fields []string) { ignored = fields }
	cols := rawfile.NewRowStore(s.Leaves)
	for i := range 4 {
		v := decodetest.Frame(t, 100, writer, record(i, i%2 == 1))
		if _, err := a.Decode(&Record{Topic: "a", Offset: int64(i), Timestamp: now, Value: v}, now); err != nil {
			t.Fatalf("record %d (null branches %v): %v", i, i%2 == 1, err)
		}
		cols.AppendRow(a.d.row.cols)
	}
	got := readBack(t, s, cols, 4)
	for i, r := range got {
		want := map[string]any{"id": fmt.Sprintf("e%d", i), "ts": ts.Add(time.Duration(i) * time.Second).UnixMicro(), "n": i,
			"addr": map[string]any{"city": fmt.Sprintf("c%d", i), "zip": int32(1000 + i)}, "extra": nil, "price": nil}
		for k, w := range want {
			if fmt.Sprint(r[k]) != fmt.Sprint(w) {
				t.Errorf("row %d %s = %#v, want %#v", i, k, r[k], w)
			}
		}
	}
	wantIgnored := make([]string, 0, len(top))
	for _, f := range top {
		wantIgnored = append(wantIgnored, f.name)
	}
	if fmt.Sprint(ignored) != fmt.Sprint(wantIgnored) {
		t.Errorf("ignored fields %v, want %v", ignored, wantIgnored)
	}
}

// TestAvroSkipErrorNamesItsField: a record cut inside a skipped field is rejected as
// malformed, naming that field (not the field decoded before it), at the top level and
// inside a nested record.
func TestAvroSkipErrorNamesItsField(t *testing.T) {
	a, _, src := testAvroDecoder(t)
	ts := time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC)
	id := 200
	for _, nested := range []bool{false, true} {
		for _, f := range extraFields("S") {
			if f.val == nil {
				continue // null encodes to no bytes: nothing to cut
			}
			id++
			var writer, want string
			rec := map[string]any{"id": "x", "ts": ts}
			if nested {
				writer = `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"addr","type":{"type":"record","name":"Addr","fields":[{"name":"city","type":"string"},` + fieldsJSON([]extraField{f}) + `]}}]}`
				rec["addr"] = map[string]any{"city": "c", f.name: f.val}
				want = "addr." + f.name
			} else {
				writer = `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},` + fieldsJSON([]extraField{f}) + `]}`
				rec[f.name] = f.val
				want = f.name
			}
			src.ByID[id] = writer
			v := decodetest.Frame(t, id, writer, rec)
			name := f.name
			if nested {
				name = "nested/" + name
			}
			t.Run(name, func(t *testing.T) {
				if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now); err != nil {
					t.Fatalf("whole record: %v", err)
				}
				_, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v[:len(v)-1]}, now)
				var rej *Rejection
				if !errors.As(err, &rej) {
					t.Fatalf("cut record: err = %v, want a rejection", err)
				}
				if rej.Reason != ReasonMalformedAvro || (rej.Field != want && !strings.HasPrefix(rej.Field, want+".")) {
					t.Errorf("cut record: %q (reason %s, field %q), want reason %s naming field %s", rej, rej.Reason, rej.Field, ReasonMalformedAvro, want)
				}
			})
		}
	}
}

// TestAvroNullTypedColumn: a writer field of type "null" for an optional column the
// table declares gives null; for a required one the record is rejected naming it.
func TestAvroNullTypedColumn(t *testing.T) {
	a, s, src := testAvroDecoder(t)
	writer := `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"extra","type":"null"}]}`
	src.ByID[300] = writer
	ts := time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC)
	cols := rawfile.NewRowStore(s.Leaves)
	if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: decodetest.Frame(t, 300, writer, map[string]any{"id": "x", "ts": ts, "extra": nil})}, now); err != nil {
		t.Fatal(err)
	}
	cols.AppendRow(a.d.row.cols)
	if got := readBack(t, s, cols, 1)[0]; got["extra"] != nil || got["id"] != "x" {
		t.Errorf("row %v, want id x and extra null", got)
	}
	writer = `{"type":"record","name":"E","fields":[{"name":"id","type":"null"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}`
	src.ByID[301] = writer
	_, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: decodetest.Frame(t, 301, writer, map[string]any{"id": nil, "ts": ts})}, now)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Field != "id" {
		t.Errorf("required column written as null: err = %v, want a rejection naming id", err)
	}
}

// TestAvroLongToFloatRoundsOnce: a long read into a float32 column is rounded once, as
// Avro's promotion (and hamba/avro) does, not through float64 first: 2^60 + 2^36 + 1
// is just above the midpoint between two floats, and float32(float64(x)) lands on the
// midpoint and rounds down to even.
func TestAvroLongToFloatRoundsOnce(t *testing.T) {
	const yaml = `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
schema_registry: {url: "http://127.0.0.1:1"}
tables:
  - name: t
    topics: [a]
    format: avro
    columns:
      - {name: ts, type: timestamp, required: true}
      - {name: f, type: float32}
    event_time: {column: ts}
`
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	writer := `{"type":"record","name":"E","fields":[{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"f","type":"long"}]}`
	a := newAvroDecoder(NewDecoder(s, &cfg.Tables[0], 1<<20), "t", newSchemaCache(&decodetest.Schemas{ByID: map[int]string{1: writer}}), nil)
	x := int64(1)<<60 + int64(1)<<36 + 1
	v := decodetest.Frame(t, 1, writer, map[string]any{"ts": time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC), "f": x})
	if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now); err != nil {
		t.Fatal(err)
	}
	cols := rawfile.NewRowStore(s.Leaves)
	cols.AppendRow(a.d.row.cols)
	got := readBack(t, s, cols, 1)[0]["f"]
	if want := float32(x); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("long %d read as float32 %v, want %v (one rounding)", x, got, want)
	}
}

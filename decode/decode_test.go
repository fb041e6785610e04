package decode

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

const testTable = `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
tables:
  - name: t
    topics: [a]
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: int32}
      - {name: big, type: int64}
      - {name: price, type: "decimal(9,2)"}
      - {name: huge, type: "decimal(30,4)"}
      - {name: day, type: date}
      - {name: ok, type: bool}
      - {name: f, type: float32}
      - {name: raw, type: bytes}
      - {name: nested, type: "struct<b:string,a:list<int64>>", path: meta.nested}
      - {name: tags, type: "list<string>"}
      - {name: attrs, type: "map<string,int32>"}
      - {name: lines, type: "list<struct<sku:string,qty:int32>>"}
    event_time: {column: ts}
`

func testDecoder(t testing.TB) (*Decoder, *schema.Schema) {
	t.Helper()
	cfg, err := config.Parse([]byte(testTable), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	return NewDecoder(s, &cfg.Tables[0], 1<<20), s
}

var now = time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)

// TestDecodeRoundTrip writes decoded records through a Parquet file and reads them
// back as Go maps, which checks the definition and repetition levels of every shape.
func TestDecodeRoundTrip(t *testing.T) {
	d, s := testDecoder(t)
	recs := []string{
		`{"id":"a","ts":"2026-11-24T13:05:00.123456Z","n":7,"big":9007199254740993,"price":"12.30","huge":"123456789012345678901234.5","day":"2026-11-24","ok":true,"f":1.5,"raw":"aGk=",
		  "meta":{"nested":{"b":"x","a":[1,2,3]}},"tags":["p","q"],"attrs":{"k1":1,"k2":2},"lines":[{"sku":"s1","qty":1},{"sku":"s2"}]}`,
		`{"id":"b","ts":1764000000000,"price":-0.5,"huge":-1,"meta":{"nested":{"a":[]}},"tags":[],"attrs":{},"lines":[null]}`,
		`{"id":"c","ts":"2026-11-24T14:00:00+02:00","tags":null,"meta":null}`,
	}
	cols := rawfile.NewRowStore(s.Leaves)
	for i, r := range recs {
		if _, err := d.Decode(&Record{Topic: "a", Partition: 1, Offset: int64(i), Timestamp: now, Value: []byte(r)}, now); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		cols.AppendRow(d.row.cols)
	}
	// A dropped first row exercises the filtered path of the column store.
	cols.AppendRow(d.row.cols)
	keep := []bool{true, true, true, false}
	var out bytes.Buffer
	w := parquet.NewWriter(&out, s.WriterOptions()...)
	if _, err := cols.WriteTo(w, keep, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]parquet.Row, 4)
	rr := f.RowGroups()[0].Rows()
	n, _ := rr.ReadRows(rows)
	rr.Close()
	if n != 3 || f.NumRows() != 3 {
		t.Fatalf("read %d rows (file says %d), want 3", n, f.NumRows())
	}
	got := make([]map[string]any, 3)
	for i := range got {
		got[i] = map[string]any{}
		if err := f.Schema().Reconstruct(&got[i], rows[i]); err != nil {
			t.Fatalf("reconstruct row %d: %v", i, err)
		}
	}
	r0 := got[0]
	check := func(name string, got, want any) {
		t.Helper()
		if !equal(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("id", r0["id"], "a")
	check("n", r0["n"], int32(7))
	check("big", r0["big"], int64(9007199254740993))
	check("price", fmt.Sprint(r0["price"]), "12.3") // Reconstruct turns decimals into float64
	check("day", r0["day"], int32(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC).Unix()/86400))
	check("ok", r0["ok"], true)
	check("raw", r0["raw"], "hi")
	check("nested", r0["nested"], map[string]any{"b": "x", "a": []any{int64(1), int64(2), int64(3)}})
	check("tags", r0["tags"], []any{"p", "q"})
	attrs, _ := r0["attrs"].(map[string]any)
	if len(attrs) != 2 || *attrs["k1"].(*int32) != 1 || *attrs["k2"].(*int32) != 2 {
		t.Errorf("attrs = %#v", r0["attrs"])
	}
	check("lines", r0["lines"], []any{map[string]any{"sku": "s1", "qty": int32(1)}, map[string]any{"sku": "s2", "qty": nil}})
	check("ts0", r0["ts"], time.Date(2026, 11, 24, 13, 5, 0, 123456000, time.UTC).UnixMicro())
	check("ts1", got[1]["ts"], int64(1764000000000)*1000)
	check("ts2 (offset converted to UTC)", got[2]["ts"], time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro())
	check("price1", fmt.Sprint(got[1]["price"]), "-0.5")
	check("n1", got[1]["n"], nil)
	check("kafka offset", got[2]["_kafka_offset"], int64(2))
	check("kafka partition", got[2]["_kafka_partition"], int32(1))
	check("kafka topic", got[2]["_kafka_topic"], "a")
	if h := fmt.Sprint(r0["huge"]); h != "1.234567890123456789012345e+23" {
		t.Errorf("huge = %#v", r0["huge"])
	}
	if fmt.Sprint(got[1]["huge"]) != "-1" {
		t.Errorf("negative 16-byte decimal = %#v, want -1", got[1]["huge"])
	}
}

func equal(a, b any) bool {
	switch av := a.(type) {
	case []byte:
		bv, ok := b.([]byte)
		return ok && bytes.Equal(av, bv)
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !equal(av[k], bv[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestDecodeRejections(t *testing.T) {
	d, _ := testDecoder(t)
	d.maxBytes = 300
	for _, tc := range []struct{ name, in, reason, field string }{
		{"malformed", `{"id": "x`, ReasonMalformed, ""},
		{"not an object", `[1,2]`, ReasonMalformed, ""},
		{"missing required", `{"ts":"2026-11-24T13:00:00Z"}`, ReasonMissingField, "id"},
		{"null required", `{"id":null,"ts":"2026-11-24T13:00:00Z"}`, ReasonMissingField, "id"},
		{"missing event time", `{"id":"x"}`, ReasonMissingField, "ts"},
		{"wrong type", `{"id":"x","ts":"2026-11-24T13:00:00Z","n":"7"}`, ReasonWrongType, "n"},
		{"int32 overflow", `{"id":"x","ts":"2026-11-24T13:00:00Z","n":3000000000}`, ReasonBadValue, "n"},
		{"fraction in int", `{"id":"x","ts":"2026-11-24T13:00:00Z","big":1.5}`, ReasonBadValue, "big"},
		{"decimal rounding", `{"id":"x","ts":"2026-11-24T13:00:00Z","price":"1.234"}`, ReasonBadValue, "price"},
		{"decimal overflow", `{"id":"x","ts":"2026-11-24T13:00:00Z","price":"12345678.9"}`, ReasonBadValue, "price"},
		{"nested wrong type", `{"id":"x","ts":"2026-11-24T13:00:00Z","lines":[{"qty":"one"}]}`, ReasonWrongType, "lines[0].qty"},
		{"unparsable time", `{"id":"x","ts":"yesterday"}`, ReasonBadTime, "ts"},
		{"absurd past", `{"id":"x","ts":"1970-01-01T00:00:00Z"}`, ReasonTimeRange, "ts"},
		{"absurd future", `{"id":"x","ts":"2099-01-01T00:00:00Z"}`, ReasonTimeRange, "ts"},
		{"map value wrong type", `{"id":"x","ts":"2026-11-24T13:00:00Z","attrs":{"ok":1,"bad":"two"}}`, ReasonWrongType, "attrs.bad"},
		{"nested list in struct", `{"id":"x","ts":"2026-11-24T13:00:00Z","meta":{"nested":{"a":[1,"z"]}}}`, ReasonWrongType, "meta.nested.a[1]"},
		{"bad base64", `{"id":"x","ts":"2026-11-24T13:00:00Z","raw":"!!"}`, ReasonBadValue, "raw"},
		{"bad date", `{"id":"x","ts":"2026-11-24T13:00:00Z","day":"24/11/2026"}`, ReasonBadValue, "day"},
		{"oversized", `{"id":"` + strings.Repeat("x", 400) + `"}`, ReasonOversized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Decode(&Record{Topic: "a", Timestamp: now, Value: []byte(tc.in)}, now)
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, want a rejection", err)
			}
			if rej.Reason != tc.reason || rej.Field != tc.field {
				t.Fatalf("got reason %q field %q (%v), want %q %q", rej.Reason, rej.Field, err, tc.reason, tc.field)
			}
		})
	}
}

// TestParseDecimalFastAgrees checks the one-pass path against the general one on
// generated decimal text: whenever it accepts a value, the general path gives the same.
func TestParseDecimalFastAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const chars = "0123456789.-+e"
	accepted := 0
	for range 200_000 {
		b := make([]byte, 1+r.IntN(22))
		for i := range b {
			if r.IntN(4) == 0 {
				b[i] = chars[r.IntN(len(chars))]
			} else {
				b[i] = chars[r.IntN(10)]
			}
		}
		p := 1 + r.IntN(38)
		sc := r.IntN(p + 1)
		fast, ok := parseDecimalFast(string(b), p, sc)
		if !ok {
			continue
		}
		accepted++
		small, wide, err := parseDecimalGeneral(string(b), p, sc)
		if err != nil || wide != nil || small != fast {
			t.Fatalf("decimal(%d,%d) %q: fast %d, general %d %v %v", p, sc, b, fast, small, wide, err)
		}
	}
	if accepted < 10_000 {
		t.Fatalf("only %d generated values took the fast path", accepted)
	}
}

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct {
		in        string
		p, s      int
		want, err string
	}{
		{"12.3", 5, 2, "1230", ""},
		{"-0.01", 5, 2, "-1", ""},
		{"1e2", 5, 2, "10000", ""},
		{"1.50e-1", 5, 2, "15", ""},
		{"1.005", 5, 2, "", "fractional"},
		{"1000", 5, 2, "", "does not fit"},
		{"abc", 5, 2, "", "not a decimal"},
		{"", 5, 2, "", "not a decimal"},
		{"0e5", 5, 2, "0", ""},
		{"-999.99", 5, 2, "-99999", ""},
		{"-1000", 5, 2, "", "does not fit"},
		{"9999999999999999.99", 18, 2, "999999999999999999", ""},
		{"99999999999999999.99", 18, 2, "", "does not fit"},
		{"99999999999999999.99", 19, 2, "9999999999999999999", ""},
		{"-12345678901234567890.5", 38, 1, "-123456789012345678905", ""},
		{"1.5e17", 19, 1, "1500000000000000000", ""},
		{"123.450", 10, 2, "12345", ""},
	} {
		small, wide, err := parseDecimal(tc.in, tc.p, tc.s)
		got := wide
		if got == nil {
			got = big.NewInt(small)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseDecimal(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseDecimal(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestDecodeFastPath checks which records the fast path (decode_fast.go) stages
// itself and which it leaves to the full path, and that either way the result is the
// full path's alone.
func TestDecodeFastPath(t *testing.T) {
	type fastCase struct {
		name, rec string
		fast      bool
	}
	run := func(t *testing.T, d, full *Decoder, cases []fastCase) {
		t.Helper()
		if d.fast == nil {
			t.Fatal("the table has no fast path")
		}
		full.fast = nil
		for _, tc := range cases {
			rec := &Record{Topic: "a", Partition: 1, Offset: 5, Timestamp: now, Value: []byte(tc.rec)}
			et, err := d.Decode(rec, now)
			if d.tookFast != tc.fast {
				t.Fatalf("%s: fast path took it: %v, want %v (err %v)", tc.name, d.tookFast, tc.fast, err)
			}
			sameAsFull(t, 0, d, et, err, full, rec, now)
			if tc.fast && err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
	}
	t.Run("types", func(t *testing.T) {
		d, _ := testDecoder(t)
		full, _ := testDecoder(t)
		run(t, d, full, []fastCase{
			{"every type", `{"id":"a","ts":"2026-11-24T13:05:00.123456Z","n":7,"big":9007199254740993,"price":"12.30","huge":"123456789012345678901234.5","day":"2026-11-24","ok":true,"f":1.5,"raw":"aGk=",
			  "meta":{"nested":{"b":"x","a":[1,2,3]}},"tags":["p","q"],"attrs":{"k1":1,"k2":2},"lines":[{"sku":"s1","qty":1},{"sku":"s2"},null]}`, true},
			{"empty containers, epoch millis", `{"id":"b","ts":1764000000000,"price":-0.5,"huge":-1,"meta":{"nested":{"a":[]}},"tags":[],"attrs":{},"lines":[null]}`, true},
			{"nulls for objects", ` {"id":"c","ts":"2026-11-24T14:00:00+02:00","tags":null,"meta":null,"other":{"x":[1,"\"",{}]}} `, true},
			{"keys in another order", `{"lines":[{"qty":2,"sku":"z"}],"ts":"2026-11-24T13:05:00Z","meta":{"nested":{"a":[4],"b":"y"}},"id":"d"}`, true},
			{"escaped string", `{"id":"e\"q","ts":"2026-11-24T13:05:00Z"}`, false},
			{"repeated key", `{"id":"f","id":"g","ts":"2026-11-24T13:05:00Z"}`, false},
			{"wrong type", `{"id":"h","ts":"2026-11-24T13:05:00Z","n":"7"}`, false},
			{"missing required", `{"id":"i"}`, false},
			{"trailing bytes", `{"id":"j","ts":"2026-11-24T13:05:00Z"} x`, false},
			{"sloppy number", `{"id":"k","ts":"2026-11-24T13:05:00Z","n":07}`, false},
		})
	})
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("paths strict=%v", strict), func(t *testing.T) {
			doc := contractTable
			if !strict {
				doc = strings.Replace(doc, "strict: true", "strict: false", 1)
			}
			d, _ := contractDecoder(t, doc)
			full, _ := contractDecoder(t, doc)
			run(t, d, full, []fastCase{
				{"nested paths and structs", `{"id":"a","ts":"2026-11-24T13:05:00Z","user":{"id":1,"name":"n"},"s":{"a":1,"t":1764000000,"inner":{"x":true}},"m":{"k":{"q":3}},"l":[{"k":"v"}]}`, true},
				{"a path's object without one key", `{"id":"b","ts":"2026-11-24T13:05:00Z","user":{"id":2}}`, true},
				{"a required column under a null object", `{"id":"c","ts":"2026-11-24T13:05:00Z","user":null}`, false},
				{"a coerced value", `{"id":"d","ts":"2026-11-24T13:05:00Z","user":{"id":"3"}}`, false},
				{"an undeclared key", `{"id":"e","ts":"2026-11-24T13:05:00Z","user":{"id":4,"x":0},"zzz":1}`, !strict},
			})
		})
	}
}

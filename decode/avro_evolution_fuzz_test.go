package decode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/decode/registry"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// evoGen draws choices from the fuzzer's bytes (zeros once they run out).
type evoGen struct {
	b []byte
	i int
}

func (g *evoGen) n(k int) int {
	if g.i >= len(g.b) || k <= 1 {
		g.i++
		return 0
	}
	v := int(g.b[g.i]) % k
	g.i++
	return v
}

func (g *evoGen) i64() int64 {
	var v int64
	for range 8 {
		v = v<<8 | int64(g.n(256))
	}
	switch g.n(4) { // small values are the common case
	case 0:
		return v % 100
	case 1:
		return v % 100_000
	}
	return v
}

// evoType is a writer type and the reader (table) type it evolves into.
type evoType struct {
	w, r string              // schema JSON
	val  func(g *evoGen) any // a writer value (hamba's Go form)
}

type evoField struct {
	name       string
	w, r       string // types; w "" = the writer lacks it, r "" = the table lacks it
	val        func(g *evoGen) any
	rNullable  bool // the reader's type is a union with null
	rDefaulted bool // the writer lacks the field: the reader gives it default null
}

var evoSeq int

// evoPrimitive picks a writer type and an Avro-compatible evolution of it.
func evoPrimitive(g *evoGen) evoType {
	pick := func(opts ...string) string { return opts[g.n(len(opts))] }
	str := func(g *evoGen) string {
		return strings.Repeat(string(rune('a'+g.n(26))), g.n(5)) + fmt.Sprint(g.n(1000))
	}
	evoSeq++
	switch g.n(12) {
	case 0:
		return evoType{w: `"int"`, r: pick(`"int"`, `"long"`, `"float"`, `"double"`), val: func(g *evoGen) any { return int(int32(g.i64())) }}
	case 1:
		return evoType{w: `"long"`, r: pick(`"long"`, `"float"`, `"double"`), val: func(g *evoGen) any { return g.i64() }}
	case 2:
		return evoType{w: `"float"`, r: pick(`"float"`, `"double"`), val: func(g *evoGen) any { return float32(g.i64()) / 8 }}
	case 3:
		return evoType{w: `"double"`, r: `"double"`, val: func(g *evoGen) any { return float64(g.i64()) / 1024 }}
	case 4:
		return evoType{w: `"string"`, r: pick(`"string"`, `"bytes"`), val: func(g *evoGen) any { return str(g) }}
	case 5:
		return evoType{w: `"bytes"`, r: pick(`"bytes"`, `"string"`), val: func(g *evoGen) any { return []byte(str(g)) }}
	case 6:
		return evoType{w: `"boolean"`, r: `"boolean"`, val: func(g *evoGen) any { return g.n(2) == 1 }}
	case 7:
		name := fmt.Sprintf("En%d", evoSeq)
		w := fmt.Sprintf(`{"type":"enum","name":%q,"symbols":["A","B","C"]}`, name)
		r := pick(w, fmt.Sprintf(`{"type":"enum","name":%q,"symbols":["A","B","C","D"]}`, name), fmt.Sprintf(`{"type":"enum","name":%q,"symbols":["D","C","B","A"]}`, name))
		return evoType{w: w, r: r, val: func(g *evoGen) any { return []string{"A", "B", "C"}[g.n(3)] }}
	case 8:
		lt := pick("timestamp-micros", "timestamp-millis")
		t := fmt.Sprintf(`{"type":"long","logicalType":%q}`, lt)
		return evoType{w: t, r: t, val: func(g *evoGen) any {
			return time.UnixMilli(1_700_000_000_000 + g.i64()%10_000_000_000).UTC()
		}}
	case 9:
		t := `{"type":"int","logicalType":"date"}`
		return evoType{w: t, r: t, val: func(g *evoGen) any { return time.Unix(int64(g.n(40000))*86400, 0).UTC() }}
	case 10:
		return evoType{w: `{"type":"array","items":"int"}`, r: pick(`{"type":"array","items":"int"}`, `{"type":"array","items":"long"}`, `{"type":"array","items":"double"}`),
			val: func(g *evoGen) any {
				out := make([]any, g.n(4))
				for i := range out {
					out[i] = int(int32(g.i64()))
				}
				return out
			}}
	default:
		return evoType{w: `{"type":"map","values":"string"}`, r: pick(`{"type":"map","values":"string"}`, `{"type":"map","values":"bytes"}`),
			val: func(g *evoGen) any {
				out := map[string]any{}
				for i := range g.n(4) {
					out[fmt.Sprintf("k%d", i)] = str(g)
				}
				return out
			}}
	}
}

// evoFields generates the fields of a record pair: some the reader drops, some it adds
// (optional, default null), some made nullable or with their union reordered, and at
// the top level a nested record that evolves the same way.
func evoFields(g *evoGen, prefix string, depth int) []evoField {
	var fs []evoField
	for k := range 1 + g.n(5) {
		name := fmt.Sprintf("%s%d", prefix, k)
		var t evoType
		if depth == 0 && g.n(5) == 0 {
			inner := evoFields(g, name+"_", depth+1)
			evoSeq++
			rec := fmt.Sprintf("Rec%d", evoSeq)
			t = evoType{w: recordJSON(rec, inner, false), r: recordJSON(rec, inner, true), val: func(g *evoGen) any { return recordValue(g, inner) }}
		} else {
			t = evoPrimitive(g)
		}
		f := evoField{name: name, w: t.w, r: t.r, val: t.val}
		choice := g.n(8)
		if k == 0 && choice < 2 {
			choice = 7 // the first field is in both: no record is empty
		}
		switch choice {
		case 0: // the table lacks it
			f.r = ""
		case 1: // the writer lacks it: the table's optional column stays null
			f.w, f.r, f.rNullable, f.rDefaulted = "", nullable(f.r, true), true, true
		case 2: // optional in the writer too, either union order; the table's order may differ
			wn := g.n(2) == 0
			val := f.val
			wt := f.w
			f.w = nullable(wt, wn)
			f.r = nullable(f.r, g.n(2) == 0)
			f.rNullable = true
			f.val = func(g *evoGen) any {
				if g.n(3) == 0 {
					return nil
				}
				return map[string]any{unionName(wt): val(g)}
			}
		case 3: // made optional by the table
			f.r, f.rNullable = nullable(f.r, g.n(2) == 0), true
		}
		if f.w == "" && f.r == "" {
			continue
		}
		fs = append(fs, f)
	}
	return fs
}

func nullable(t string, nullFirst bool) string {
	if nullFirst {
		return `["null",` + t + `]`
	}
	return `[` + t + `,"null"]`
}

// unionName is the name hamba/avro expects for a union branch of type t.
func unionName(t string) string {
	s, err := registry.Parse(t)
	if err != nil {
		panic(err)
	}
	return unionNameOf(s)
}

func recordJSON(name string, fs []evoField, reader bool) string {
	var parts []string
	for _, f := range fs {
		t := f.w
		if reader {
			t = f.r
		}
		if t == "" {
			continue
		}
		d := ""
		if reader && f.rDefaulted { // the writer lacks it: the reader needs a default
			d = `,"default":null`
		}
		parts = append(parts, fmt.Sprintf(`{"name":%q,"type":%s%s}`, f.name, t, d))
	}
	return fmt.Sprintf(`{"type":"record","name":%q,"fields":[%s]}`, name, strings.Join(parts, ","))
}

func recordValue(g *evoGen, fs []evoField) map[string]any {
	out := map[string]any{}
	for _, f := range fs {
		if f.w != "" {
			out[f.name] = f.val(g)
		}
	}
	return out
}

// canonAvro renders a value read with schema s (hamba's generic form, or parquet-go's
// reconstruction of lakesink's row) in one form: timestamps in µs, dates in days,
// numbers as float64 text, bytes and strings as text, unions unwrapped.
func canonAvro(s avro.Schema, v any) string {
	if v == nil {
		return "null"
	}
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	switch x := v.(type) {
	case *int64:
		return canonAvro(s, *x)
	case *int32:
		return canonAvro(s, *x)
	case *string:
		return canonAvro(s, *x)
	case *float64:
		return canonAvro(s, *x)
	case *float32:
		return canonAvro(s, *x)
	case *bool:
		return canonAvro(s, *x)
	case *[]byte:
		return canonAvro(s, *x)
	}
	switch s := s.(type) {
	case *avro.UnionSchema:
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for _, b := range s.Types() {
				if inner, ok := m[unionNameOf(b)]; ok {
					return canonAvro(b, inner)
				}
			}
		}
		for _, b := range s.Types() {
			if b.Type() != avro.Null {
				return canonAvro(b, v)
			}
		}
	case *avro.RecordSchema:
		m, _ := v.(map[string]any)
		var parts []string
		for _, f := range s.Fields() {
			parts = append(parts, f.Name()+":"+canonAvro(f.Type(), m[f.Name()]))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case *avro.ArraySchema:
		var parts []string
		switch l := v.(type) {
		case []any:
			for _, e := range l {
				parts = append(parts, canonAvro(s.Items(), e))
			}
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *avro.MapSchema:
		m, _ := v.(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+canonAvro(s.Values(), m[k]))
		}
		return "<" + strings.Join(parts, ",") + ">"
	}
	switch x := v.(type) {
	case time.Time:
		if s.Type() == avro.Int { // date
			return fmt.Sprint(x.Unix() / 86400)
		}
		return fmt.Sprint(x.UnixMicro())
	case []byte:
		return fmt.Sprintf("%q", x)
	case string:
		return fmt.Sprintf("%q", x)
	case bool:
		return fmt.Sprint(x)
	case int:
		return canonNum(float64(x), int64(x))
	case int32:
		return canonNum(float64(x), int64(x))
	case int64:
		if s.Type() == avro.Long {
			if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil && l.Logical().Type() == avro.TimestampMillis {
				return fmt.Sprint(x) // lakesink's column holds µs already
			}
		}
		return canonNum(float64(x), x)
	case float32:
		return canonNum(float64(x), 0)
	case float64:
		return canonNum(x, 0)
	}
	return fmt.Sprintf("%T:%v", v, v)
}

func canonNum(f float64, i int64) string {
	if i != 0 && float64(i) != f {
		return fmt.Sprint(i)
	}
	if math.IsNaN(f) {
		return "NaN"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<62 {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(f)
}

func unionNameOf(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		return string(s.Type()) + "." + string(l.Logical().Type())
	}
	return string(s.Type())
}

// FuzzAvroEvolution generates a writer schema and an evolved reader schema (the
// table: fields dropped and added, Avro's promotions, enums gaining symbols, unions
// made nullable or reordered, a nested record evolving the same way), encodes a
// generated record with the writer, and checks that lakesink's decoded row equals
// hamba/avro's own schema-resolution decode (SchemaCompatibility.Resolve) of the same
// bytes, field by field.
func FuzzAvroEvolution(f *testing.F) {
	for _, seed := range [][]byte{
		{0}, {1, 2, 3, 4, 5, 6, 7, 8}, []byte("lakesink evolution seed"),
		bytes.Repeat([]byte{3}, 64), bytes.Repeat([]byte{200, 17, 5}, 40), {5, 0, 0, 0, 9, 9, 9, 2, 2, 2, 1, 1},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &evoGen{b: data}
		fs := evoFields(g, "f", 0)
		evoSeq++
		name := fmt.Sprintf("Ev%d", evoSeq)
		head := []evoField{
			{name: "id", w: `"string"`, r: `"string"`, val: func(*evoGen) any { return "id" }},
			{name: "ts", w: `{"type":"long","logicalType":"timestamp-micros"}`, r: `{"type":"long","logicalType":"timestamp-micros"}`,
				val: func(*evoGen) any { return time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC) }},
		}
		fs = append(head, fs...)
		writerText, readerText := recordJSON(name, fs, false), recordJSON(name, fs, true)
		writer, err := registry.Parse(writerText)
		if err != nil {
			t.Fatalf("writer %s: %v", writerText, err)
		}
		reader, err := registry.Parse(readerText)
		if err != nil {
			t.Fatalf("reader %s: %v", readerText, err)
		}
		body, err := avro.Marshal(writer, recordValue(g, fs))
		if err != nil {
			t.Fatalf("encode with %s: %v", writerText, err)
		}
		resolved, err := avro.NewSchemaCompatibility().Resolve(reader, writer)
		if err != nil {
			t.Fatalf("hamba/avro cannot resolve\nwriter %s\nreader %s: %v", writerText, readerText, err)
		}
		var want map[string]any
		if err := avro.Unmarshal(resolved, body, &want); err != nil {
			t.Fatalf("hamba/avro decode: %v\nwriter %s\nreader %s", err, writerText, readerText)
		}

		// The table: the reader's fields as columns (all optional but id and ts).
		var cols strings.Builder
		for _, fl := range reader.(*avro.RecordSchema).Fields() {
			typ, _, err := registry.ColumnType(fl.Type())
			if err != nil {
				t.Fatalf("column type of %s: %v", fl.Name(), err)
			}
			req := fl.Name() == "id" || fl.Name() == "ts"
			fmt.Fprintf(&cols, "      - {name: %s, type: %q, required: %v}\n", fl.Name(), typ, req)
		}
		y := "kafka: {brokers: [\"b:9092\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: dlq}\nschema_registry: {url: \"http://127.0.0.1:1\"}\n" +
			"tables:\n  - name: t\n    topics: [a]\n    format: avro\n    event_time: {column: ts}\n    columns:\n" + cols.String()
		cfg, err := config.Parse([]byte(y), nil)
		if err != nil {
			t.Fatalf("config: %v\n%s", err, y)
		}
		s, err := schema.Compile(&cfg.Tables[0])
		if err != nil {
			t.Fatal(err)
		}
		a := newAvroDecoder(NewDecoder(s, &cfg.Tables[0], 1<<20), "t", newSchemaCache(&decodetest.Schemas{ByID: map[int]string{1: writerText}}), nil)
		v := append([]byte{0, 0, 0, 0, 0}, body...)
		binary.BigEndian.PutUint32(v[1:5], 1)
		if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now); err != nil {
			t.Fatalf("lakesink rejects a record hamba/avro resolves: %v\nwriter %s\nreader %s", err, writerText, readerText)
		}
		cols2 := rawfile.NewRowStore(s.Leaves)
		cols2.AppendRow(a.d.row.cols)
		got := readBack(t, s, cols2, 1)[0]
		for _, fl := range reader.(*avro.RecordSchema).Fields() {
			g, w := canonAvro(fl.Type(), got[fl.Name()]), canonAvro(fl.Type(), want[fl.Name()])
			if g != w {
				t.Errorf("field %s: lakesink %s, hamba/avro %s\nwriter %s\nreader %s", fl.Name(), g, w, writerText, readerText)
			}
		}
	})
}

package decode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// avroTable is the Avro table of the decoder tests (decodetest.AvroTable).
const avroTable = decodetest.AvroTable

// writerV1 covers the logical types, unions, nesting, a field the table lacks
// (ignored) and lacks the table's column "extra" (null).
const writerV1 = `{"type":"record","name":"Event","namespace":"t","fields":[
 {"name":"id","type":"string"},
 {"name":"ignored","type":{"type":"array","items":{"type":"map","values":"long"}}},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"n","type":["null","int"],"default":null},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"huge","type":{"type":"fixed","name":"Huge","size":12,"logicalType":"decimal","precision":25,"scale":3}},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"u","type":{"type":"string","logicalType":"uuid"}},
 {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
 {"name":"f","type":"float"},
 {"name":"addr","type":["null",{"type":"record","name":"Addr","fields":[{"name":"zip","type":"int"},{"name":"street","type":"string"},{"name":"city","type":"string"}]}]},
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"attrs","type":{"type":"map","values":"int"}}
]}`

const writerMicros = decodetest.WriterMicros

const writerBadType = `{"type":"record","name":"E","fields":[
 {"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"n","type":"string"}]}`

const writerNoID = `{"type":"record","name":"E","fields":[{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}`

func testAvroDecoder(t testing.TB) (*avroDecoder, *schema.Schema, *decodetest.Schemas) {
	t.Helper()
	cfg, err := config.Parse([]byte(avroTable), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	src := &decodetest.Schemas{ByID: map[int]string{1: writerV1, 2: writerMicros, 3: writerBadType, 4: writerNoID, 5: `"string"`}}
	a := newAvroDecoder(NewDecoder(s, &cfg.Tables[0], 1<<20), "t", newSchemaCache(src), nil)
	return a, s, src
}

func v1Record(i int) map[string]any {
	ts := time.Date(2026, 11, 24, 13, 5, 0, 123_000_000, time.UTC)
	var n any
	if i%2 == 0 {
		n = map[string]any{"int": int(7 + i)}
	}
	var addr any
	if i == 0 {
		addr = map[string]any{"t.Addr": map[string]any{"zip": 75001, "street": "x", "city": "Paris"}}
	}
	return map[string]any{
		"id": fmt.Sprintf("e%d", i), "ignored": []map[string]int64{{"k": 1}}, "ts": ts, "n": n,
		"price": big.NewRat(-1230, 100), "huge": big.NewRat(123456789012345, 1000), "day": time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		"u": "0b6b1d7e-0000-4000-8000-000000000001", "color": "GREEN", "f": float32(1.5), "addr": addr,
		"tags": []string{"p", "q"}, "attrs": map[string]int{"k": 2},
	}
}

func TestAvroDecodeRoundTrip(t *testing.T) {
	a, s, src := testAvroDecoder(t)
	cols := rawfile.NewRowStore(s.Leaves)
	var hugeStaged string
	recs := [][]byte{
		decodetest.Frame(t, 1, writerV1, v1Record(0)),
		decodetest.Frame(t, 1, writerV1, v1Record(1)),
		decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "m", "ts": time.Date(2026, 11, 24, 14, 0, 0, 5000, time.UTC), "extra": map[string]any{"string": "x"}}),
	}
	for i, v := range recs {
		et, err := a.Decode(&Record{Topic: "a", Partition: 1, Offset: int64(i), Timestamp: now, Value: v}, now)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if i == 0 && et != time.Date(2026, 11, 24, 13, 5, 0, 123_000_000, time.UTC).UnixMicro() {
			t.Errorf("event time %d", et)
		}
		if i == 0 {
			hugeStaged = new(big.Int).SetBytes(stagedCols(a.d)[s.Column("huge").Leaf][0].ByteArray()).String()
		}
		cols.AppendRow(a.d.row.cols)
	}
	if src.Calls.Load() != 2 {
		t.Errorf("%d registry fetches, want 2 (one per id)", src.Calls.Load())
	}
	got := readBack(t, s, cols, len(recs))
	check := func(row int, name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("row %d %s = %#v, want %#v", row, name, got, want)
		}
	}
	r0 := got[0]
	check(0, "id", r0["id"], "e0")
	check(0, "ts", r0["ts"], time.Date(2026, 11, 24, 13, 5, 0, 123_000_000, time.UTC).UnixMicro())
	check(0, "n", r0["n"], 7)
	check(0, "price", r0["price"], -12.3)
	check(0, "day", r0["day"], time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC).Unix()/86400)
	check(0, "u", r0["u"], "0b6b1d7e-0000-4000-8000-000000000001")
	check(0, "color", r0["color"], "GREEN")
	check(0, "f", r0["f"], 1.5)
	check(0, "addr", r0["addr"], map[string]any{"city": "Paris", "zip": int32(75001)})
	check(0, "tags", r0["tags"], []any{"p", "q"})
	if p, ok := r0["attrs"].(map[string]any)["k"].(*int64); !ok || *p != 2 {
		t.Errorf("attrs = %#v", r0["attrs"])
	}
	check(0, "extra", r0["extra"], nil)
	// huge: writer scale 3 → column scale 4: 123456789012.345 → unscaled 1234567890123450
	// huge: writer scale 3 → column scale 4: 123456789012.345 → unscaled 1234567890123450
	if hugeStaged != "1234567890123450" {
		t.Errorf("huge unscaled = %s", hugeStaged)
	}
	check(1, "n", got[1]["n"], nil)
	check(1, "addr", got[1]["addr"], nil)
	check(2, "ts", got[2]["ts"], time.Date(2026, 11, 24, 14, 0, 0, 5000, time.UTC).UnixMicro())
	check(2, "extra", got[2]["extra"], "x")
	check(2, "price", got[2]["price"], nil)
	check(2, "_kafka_offset", got[2]["_kafka_offset"], 2)
}

func readBack(t *testing.T, s *schema.Schema, cols *rawfile.RowStore, n int) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	w := parquet.NewWriter(&out, s.WriterOptions()...)
	if _, err := cols.WriteTo(w, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]parquet.Row, n)
	rr := f.RowGroups()[0].Rows()
	k, _ := rr.ReadRows(rows)
	rr.Close()
	if k != n {
		t.Fatalf("read %d rows, want %d", k, n)
	}
	got := make([]map[string]any, n)
	for i := range got {
		got[i] = map[string]any{}
		if err := f.Schema().Reconstruct(&got[i], rows[i]); err != nil {
			t.Fatalf("reconstruct row %d: %v", i, err)
		}
	}
	return got
}

func TestAvroRejections(t *testing.T) {
	a, _, src := testAvroDecoder(t)
	good := decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "m", "ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), "extra": nil})
	for _, tc := range []struct {
		name, reason, field, detail string
		value                       []byte
	}{
		{"json", ReasonBadFraming, "", "magic byte is 0x7b", []byte(`{"id":"x"}`)},
		{"short", ReasonBadFraming, "", "too short", []byte{0, 0, 1}},
		{"not a record", ReasonUnknownSchema, "", "want a record", append([]byte{0, 0, 0, 0, 5}, good[5:]...)},
		{"type change", ReasonWrongType, "n", "writer type string cannot be written to a int64 column",
			decodetest.Frame(t, 3, writerBadType, map[string]any{"id": "x", "ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), "n": "seven"})},
		{"required missing", ReasonMissingField, "id", "not in writer schema id 4",
			decodetest.Frame(t, 4, writerNoID, map[string]any{"ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)})},
		{"truncated", ReasonMalformedAvro, "ts", "truncated integer", good[:len(good)-3]},
		{"trailing", ReasonMalformedAvro, "", "bytes left after the record", append(append([]byte{}, good...), 0)},
		{"too old", ReasonTimeRange, "ts", "before event_time.not_before",
			decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "x", "ts": time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), "extra": nil})},
		{"too late", ReasonTimeRange, "ts", "max_future",
			decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "x", "ts": now.Add(3 * time.Hour), "extra": nil})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: tc.value}, now)
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want a rejection", err)
			}
			if rej.Reason != tc.reason || rej.Field != tc.field || !strings.Contains(rej.Error(), tc.detail) {
				t.Errorf("rejection = %q (reason %s field %q), want reason %s field %q containing %q", rej, rej.Reason, rej.Field, tc.reason, tc.field, tc.detail)
			}
		})
	}
	if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: good}, now); err != nil {
		t.Fatalf("good record after rejections: %v", err)
	}
	_ = src
}

// A schema id the registry does not know is not a rejection either (a lagging
// replica, the wrong registry): transient, not cached, and the record decodes once
// the id is registered.
func TestAvroUnknownSchemaIDIsTransient(t *testing.T) {
	a, _, src := testAvroDecoder(t)
	good := decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "m", "ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), "extra": nil})
	v := append([]byte{0, 0, 0, 0, 99}, good[5:]...)
	_, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now)
	var rej *Rejection
	if err == nil || errors.As(err, &rej) || !IsTransient(err) || !strings.Contains(err.Error(), "schema id 99 is unknown") {
		t.Fatalf("err = %v, want a transient non-rejection naming schema id 99", err)
	}
	src.ByID[99] = writerMicros
	if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now); err != nil {
		t.Fatalf("after id 99 was registered: %v", err)
	}
}

// A registry outage is not a rejection: the record must neither land nor be
// dead-lettered, and the failure is not cached.
func TestAvroRegistryOutageIsTransient(t *testing.T) {
	a, _, src := testAvroDecoder(t)
	src.Failing.Store(true)
	v := decodetest.Frame(t, 2, writerMicros, map[string]any{"id": "m", "ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), "extra": nil})
	_, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now)
	var rej *Rejection
	if err == nil || errors.As(err, &rej) || !IsTransient(err) {
		t.Fatalf("err = %v, want a transient non-rejection", err)
	}
	src.Failing.Store(false)
	if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: v}, now); err != nil {
		t.Fatalf("after the registry came back: %v", err)
	}
}

// Many goroutines asking for the same id cause one fetch.
func TestSchemaCacheOneFetchPerID(t *testing.T) {
	src := &decodetest.Schemas{ByID: map[int]string{1: writerMicros, 2: writerV1}}
	c := newSchemaCache(src)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.get(context.Background(), 1+i%2); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range 2 {
		if _, err := c.get(context.Background(), 7); err == nil || !IsTransient(err) {
			t.Fatalf("unknown id: err = %v, want a transient error", err)
		}
	}
	if n := src.Calls.Load(); n != 4 {
		t.Errorf("%d fetches, want 4 (ids 1 and 2 once, the unknown 7 each time: it is not cached)", n)
	}
}

// Writer fields the table lacks are reported once per schema id.
func TestAvroUnknownFieldsReportedOncePerID(t *testing.T) {
	a, _, _ := testAvroDecoder(t)
	var calls []string
	a.onUnknownFields = func(id int, fields []string) { calls = append(calls, fmt.Sprint(id, fields)) }
	for i := range 3 {
		if _, err := a.Decode(&Record{Topic: "a", Timestamp: now, Value: decodetest.Frame(t, 1, writerV1, v1Record(i))}, now); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(calls) != "[1 [ignored]]" {
		t.Errorf("reports %v, want one for id 1", calls)
	}
}

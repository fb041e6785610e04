package decode

import (
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// genWriter is an Avro writer schema for the generator's events (gen.TableYAML).
const genWriter = `{"type":"record","name":"Event","fields":[
 {"name":"event_id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"user_id","type":"long"},{"name":"session_id","type":"string"},{"name":"type","type":"string"},
 {"name":"url","type":"string"},{"name":"referrer","type":"string"},
 {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
 {"name":"quantity","type":"int"},{"name":"country","type":"string"},
 {"name":"device","type":{"type":"record","name":"Device","fields":[{"name":"os","type":"string"},{"name":"version","type":"string"},{"name":"model","type":"string"}]}},
 {"name":"tags","type":{"type":"array","items":"string"}},{"name":"ok","type":"boolean"},
 {"name":"latency_ms","type":"double"},{"name":"user_agent","type":"string"}]}`

// BenchmarkDecodeAvroEvents decodes the generator's events (the input of
// BenchmarkDecode, the JSON decoder) re-encoded as Confluent-framed Avro, so the two
// decoders compare on the same rows. Missing optional JSON fields become zero values.
func BenchmarkDecodeAvroEvents(b *testing.B) {
	cfg, err := config.Parse([]byte("kafka: {brokers: [\"b:1\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: d}\nschema_registry: {url: \"http://127.0.0.1:1\"}\ntables:\n"+
		gen.TableYAML("events", "a")+"    format: avro\n"), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	g := gen.New(1, time.Now().Add(-time.Hour), time.Hour)
	evs := make([][]byte, n)
	var size int64
	for i := range evs {
		v, _ := g.Event(i, n)
		evs[i] = decodetest.Frame(b, 1, genWriter, genToAvro(b, v))
		size += int64(len(evs[i]))
	}
	a := newAvroDecoder(NewDecoder(s, &cfg.Tables[0], 1<<20), "events", newSchemaCache(&decodetest.Schemas{ByID: map[int]string{1: genWriter}}), nil)
	now := time.Now()
	rec := &Record{Topic: "a", Timestamp: now}
	b.SetBytes(size / n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec.Value = evs[i%n]
		if _, err := a.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func genToAvro(b *testing.B, v []byte) map[string]any {
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		b.Fatal(err)
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	num := func(k string) float64 { f, _ := m[k].(float64); return f }
	var ts time.Time
	switch t := m["ts"].(type) {
	case string:
		ts, _ = time.Parse(time.RFC3339Nano, t)
	case float64:
		ts = time.UnixMilli(int64(t))
	}
	amount := new(big.Rat)
	switch x := m["amount"].(type) {
	case string:
		amount.SetString(x)
	case float64:
		amount.SetFloat64(x)
	}
	dev := map[string]any{"os": "", "version": "", "model": ""}
	if d, ok := m["device"].(map[string]any); ok {
		for k := range dev {
			if s, ok := d[k].(string); ok {
				dev[k] = s
			}
		}
	}
	var tags []string
	if tl, ok := m["tags"].([]any); ok {
		for _, t := range tl {
			if s, ok := t.(string); ok {
				tags = append(tags, s)
			}
		}
	}
	ok, _ := m["ok"].(bool)
	return map[string]any{"event_id": str("event_id"), "ts": ts, "user_id": int64(num("user_id")), "session_id": str("session_id"),
		"type": str("type"), "url": str("url"), "referrer": str("referrer"), "amount": amount, "quantity": int32(num("quantity")),
		"country": str("country"), "device": dev, "tags": tags, "ok": ok, "latency_ms": num("latency_ms"), "user_agent": str("user_agent")}
}

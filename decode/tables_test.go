package decode_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/lake/config"
)

const promiseConfig = `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
schema_registry: {url: "http://127.0.0.1:1"}
tables:
  - name: j
    topics: [json]
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
    event_time: {column: ts}
  - name: v
    topics: [avro]
    format: avro
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
    event_time: {column: ts}
`

const promiseWriter = `{"type":"record","name":"E","fields":[
 {"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}`

// TestDecodePromises checks what a decoder promises, through the package's API: a
// record either decodes (its event time returned, one row staged) or is a
// *Rejection with a known reason; a topic that feeds no table is NoTable; an
// unreachable schema registry, or a schema id it does not know, is transient, never
// a rejection, and Prepare gives up on it with an error.
func TestDecodePromises(t *testing.T) {
	cfg, err := config.Parse([]byte(promiseConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := decode.Compile(cfg, decode.Options{MaxRecordBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts.All()) != 2 || ts.ForTopic("json").Config.Name != "j" || ts.ForTopic("avro").Config.Name != "v" || ts.ForTopic("x") != nil {
		t.Fatalf("tables by topic: %v", ts.All())
	}
	src := &decodetest.Schemas{ByID: map[int]string{1: promiseWriter}}
	ts.UseSchemaSource(src)
	ts.SetRegistryWait(100 * time.Millisecond)
	now := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 24, 14, 30, 0, 0, time.UTC)
	avroValue := decodetest.Frame(t, 1, promiseWriter, map[string]any{"id": "a", "ts": at})

	for _, tc := range []struct {
		name, topic string
		value       []byte
		reason      string // "": decodes
	}{
		{"json", "json", []byte(`{"id":"a","ts":"2026-11-24T14:30:00Z"}`), ""},
		{"avro", "avro", avroValue, ""},
		{"malformed json", "json", []byte(`{"id":`), decode.ReasonMalformed},
		{"missing field", "json", []byte(`{"ts":"2026-11-24T14:30:00Z"}`), decode.ReasonMissingField},
		{"oversized", "json", []byte(`{"id":"` + strings.Repeat("x", 2000) + `","ts":"2026-11-24T14:30:00Z"}`), decode.ReasonOversized},
		{"future", "json", []byte(`{"id":"a","ts":"2027-11-24T14:30:00Z"}`), decode.ReasonTimeRange},
		{"not framed", "avro", []byte(`{"id":"a"}`), decode.ReasonBadFraming},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := ts.ForTopic(tc.topic)
			r := &decode.Record{Topic: tc.topic, Offset: 7, Timestamp: now, Value: tc.value}
			if err := ts.Prepare(context.Background(), r); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			et, err := tbl.Decode(r, now)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if et != at.UnixMicro() {
					t.Errorf("event time %d, want %d", et, at.UnixMicro())
				}
				if len(tbl.Row()) != len(tbl.Schema.Leaves) {
					t.Errorf("staged %d columns, the schema has %d leaves", len(tbl.Row()), len(tbl.Schema.Leaves))
				}
				for i, col := range tbl.Row() {
					if len(col) == 0 {
						t.Errorf("leaf %d: nothing staged", i)
					}
				}
				return
			}
			var rej *decode.Rejection
			if !errors.As(err, &rej) || rej.Reason != tc.reason {
				t.Fatalf("err %v, want a rejection %s", err, tc.reason)
			}
			if decode.IsTransient(err) {
				t.Errorf("a rejection is transient: %v", err)
			}
		})
	}

	if rej := decode.NoTable("x"); rej.Reason != decode.ReasonNoTable || !strings.Contains(rej.Error(), `"x"`) {
		t.Errorf("NoTable: %v", rej)
	}

	// A schema id the registry does not know: neither decoded nor rejected.
	r := &decode.Record{Topic: "avro", Timestamp: now, Value: decodetest.Frame(t, 9, promiseWriter, map[string]any{"id": "a", "ts": at})}
	if err := ts.Prepare(context.Background(), r); err == nil || !strings.Contains(err.Error(), "schema id 9 is unknown") {
		t.Errorf("Prepare of an unknown schema id: %v", err)
	}
	if _, err := ts.ForTopic("avro").Decode(r, now); err == nil || errors.As(err, new(*decode.Rejection)) || !decode.IsTransient(err) {
		t.Errorf("Decode of an unknown schema id: %v, want a transient error and no rejection", err)
	}

	// The registry goes away: a record of a schema not yet cached is neither
	// decoded nor rejected.
	src.Failing.Store(true)
	r = &decode.Record{Topic: "avro", Timestamp: now, Value: decodetest.Frame(t, 2, promiseWriter, map[string]any{"id": "a", "ts": at})}
	if err := ts.Prepare(context.Background(), r); err == nil || !strings.Contains(err.Error(), "no answer from the schema registry") {
		t.Errorf("Prepare during an outage: %v", err)
	}
	_, err = ts.ForTopic("avro").Decode(r, now)
	var rej *decode.Rejection
	if err == nil || errors.As(err, &rej) || !decode.IsTransient(err) {
		t.Errorf("Decode during an outage: %v, want a transient error and no rejection", err)
	}
}

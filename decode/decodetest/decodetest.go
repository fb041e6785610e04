// Package decodetest holds test doubles for the decoders' collaborators: an
// in-memory schema registry and the Confluent wire format, for the tests of decode
// and of the packages that drive it (sink).
package decodetest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/lakesink/lakesink/decode/registry"
)

// Schemas is an in-memory decode.SchemaSource that counts fetches and can fail.
type Schemas struct {
	mu      sync.Mutex
	ByID    map[int]string // writer schemas by id; set before use
	Calls   atomic.Int64   // fetches made
	Failing atomic.Bool    // while set, every fetch fails as an unreachable registry does
}

// SchemaByID returns the writer schema of id, a registry.ErrUnknownID (with
// registry.ErrNotFound) for an id it does not hold, as registry.Client does, or a
// connection error while Failing.
func (f *Schemas) SchemaByID(_ context.Context, id int) (string, error) {
	f.Calls.Add(1)
	if f.Failing.Load() {
		return "", errors.New("dial tcp 127.0.0.1:1: connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.ByID[id]
	if !ok {
		return "", fmt.Errorf("schema id %d: %w: %w", id, registry.ErrUnknownID, registry.ErrNotFound)
	}
	return s, nil
}

// Frame encodes v with the writer schema and prepends the Confluent header (magic
// byte 0, big-endian schema id).
func Frame(t testing.TB, id int, writer string, v any) []byte {
	t.Helper()
	sch, err := registry.Parse(writer)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(sch, v)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...)
}

// AvroTable is a config with one Avro table, t, fed by topic a: columns of every
// logical type, nesting, and an optional column (extra) for writers that lack it.
const AvroTable = `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
schema_registry: {url: "http://127.0.0.1:1"}
tables:
  - name: t
    topics: [a]
    format: avro
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: int64}
      - {name: price, type: "decimal(9,2)"}
      - {name: huge, type: "decimal(30,4)"}
      - {name: day, type: date}
      - {name: u, type: string}
      - {name: color, type: string}
      - {name: f, type: float64}
      - {name: addr, type: "struct<city:string,zip:int32>"}
      - {name: tags, type: "list<string>"}
      - {name: attrs, type: "map<string,int64>"}
      - {name: extra, type: string}
    event_time: {column: ts}
`

// WriterMicros is a writer schema of AvroTable's id, ts (timestamp-micros) and extra.
const WriterMicros = `{"type":"record","name":"E","fields":[
 {"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"extra","type":["null","string"]}]}`

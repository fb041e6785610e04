package decode

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
)

// Table is one table of the config compiled for decoding: its Parquet schema, its
// period granularity, and its decoder (JSON, or Avro staging through the JSON
// decoder's row). It is not safe for concurrent use: the sink's engine serialises it.
type Table struct {
	Config *config.Table
	Schema *schema.Schema
	Gran   layout.Granularity
	dec    *Decoder
	avro   *avroDecoder // format: avro (avro.go); nil for JSON
	log    *slog.Logger
}

// Decode runs the table's decoder and returns the record's event time in
// microseconds; now bounds how far in the future an event time may be. A panic on
// some unforeseen input becomes a rejection (ReasonPanic), so a poison record goes
// to the dead-letter topic instead of crash-looping the sink and blocking its
// partition. Errors are *Rejection, except a transient registry error (IsTransient).
func (t *Table) Decode(r *Record, now time.Time) (et int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("decoder panic; dead-lettering the record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "panic", p)
			err = reject(ReasonPanic, "", "decoder panic: %v", p)
		}
	}()
	if t.avro != nil {
		return t.avro.Decode(r, now)
	}
	return t.dec.Decode(r, now)
}

// Row returns the record Decode staged last (Decoder.Row).
func (t *Table) Row() [][]byte { return t.dec.Row() }

// DecodedFast reports whether the JSON fast path staged the last record decoded.
func (t *Table) DecodedFast() bool { return t.avro == nil && t.dec.tookFast }

// NoTable is the rejection of a record whose topic feeds no table.
func NoTable(topic string) *Rejection {
	return reject(ReasonNoTable, "", "topic %q feeds no table", topic)
}

// Options tunes Compile.
type Options struct {
	// MaxRecordBytes is flush.max_record_bytes: larger records are rejected.
	MaxRecordBytes int
	Log            *slog.Logger
	// OnUnknownFields is called with a table's name once per writer schema id whose
	// fields the table lacks (nil: nothing).
	OnUnknownFields func(table string)
	// OnRegistryError is called for every failed attempt to reach the schema
	// registry (nil: nothing).
	OnRegistryError func()
}

// Tables is the tables of a config compiled for decoding, by source topic. The
// Avro tables share one schema cache and registry client.
type Tables struct {
	opt     Options
	byTopic map[string]*Table
	all     []*Table

	mu   sync.Mutex
	avro *avroState // nil without Avro tables (until UseSchemaSource)
}

// Compile compiles the tables of cfg.
func Compile(cfg *config.Config, opt Options) (*Tables, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.OnUnknownFields == nil {
		opt.OnUnknownFields = func(string) {}
	}
	if opt.OnRegistryError == nil {
		opt.OnRegistryError = func() {}
	}
	ts := &Tables{opt: opt, byTopic: map[string]*Table{}}
	for i := range cfg.Tables {
		tc := &cfg.Tables[i]
		s, err := schema.Compile(tc)
		if err != nil {
			return nil, err
		}
		g, err := layout.ParseGranularity(tc.EventTime.Granularity)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", tc.Name, err)
		}
		t := &Table{Config: tc, Schema: s, Gran: g, dec: NewDecoder(s, tc, opt.MaxRecordBytes), log: opt.Log}
		if err := ts.initAvro(cfg, t); err != nil {
			return nil, err
		}
		ts.all = append(ts.all, t)
		for _, topic := range tc.Topics {
			ts.byTopic[topic] = t
		}
	}
	return ts, nil
}

// ForTopic returns the table a topic feeds, or nil.
func (ts *Tables) ForTopic(topic string) *Table { return ts.byTopic[topic] }

// All returns the tables in config order.
func (ts *Tables) All() []*Table { return ts.all }

// SetRegistryWait sets how long Prepare retries an unreachable registry (default a
// minute; tests shorten it).
func (ts *Tables) SetRegistryWait(d time.Duration) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.avro == nil {
		ts.avro = &avroState{maxWait: d}
	}
	ts.avro.maxWait = d
}

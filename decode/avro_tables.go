package decode

import (
	"context"
	"fmt"
	"time"

	"github.com/lakesink/lakesink/decode/registry"
	"github.com/lakesink/lakesink/lake/config"
)

// avroState is what the Avro tables of a Tables share.
type avroState struct {
	cache *schemaCache
	// maxWait bounds how long Prepare retries an unreachable registry, or a schema id
	// it does not know, before the sink stops with an error (a restart replays from the
	// last commit): schema_registry.max_wait.
	maxWait time.Duration
}

// initAvro gives an Avro table its decoder; the registry client is created on the
// first Avro table and shared.
func (ts *Tables) initAvro(cfg *config.Config, t *Table) error {
	if t.Config.Format != "avro" {
		return nil
	}
	if ts.avro == nil {
		cl, err := registry.New(cfg.SchemaRegistry)
		if err != nil {
			return fmt.Errorf("table %s: %w", t.Config.Name, err)
		}
		wait := cfg.SchemaRegistry.MaxWait
		if wait <= 0 {
			wait = config.DefaultRegistryMaxWait
		}
		ts.avro = &avroState{cache: newSchemaCache(cl), maxWait: wait}
	}
	t.avro = newAvroDecoder(t.dec, t.Config.Name, ts.avro.cache, ts.opt.Log)
	name := t.Config.Name
	t.avro.onUnknownFields = func(int, []string) { ts.opt.OnUnknownFields(name) }
	return nil
}

// UseSchemaSource replaces the Schema Registry client of the Avro tables (tests).
func (ts *Tables) UseSchemaSource(src SchemaSource) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.avro == nil {
		ts.avro = &avroState{maxWait: time.Minute}
	}
	ts.avro.cache = newSchemaCache(src)
	for _, t := range ts.all {
		if t.avro != nil {
			t.avro.cache = ts.avro.cache
			clear(t.avro.plans)
		}
	}
}

// Prepare makes sure the writer schema an Avro record names is cached, fetching it
// without holding the engine's lock, and retrying while the registry is
// unreachable or does not know the id: a registry outage or a lagging replica delays
// records, it never dead-letters them. It gives up after schema_registry.max_wait (a
// minute) with an error that stops the sink (nothing past the record is committed, so
// a restart replays it). Call it before Decode.
func (ts *Tables) Prepare(ctx context.Context, r *Record) error {
	t := ts.byTopic[r.Topic]
	if t == nil || t.avro == nil {
		return nil
	}
	id, err := schemaID(r.Value)
	if err != nil {
		return nil // Decode rejects it
	}
	ts.mu.Lock()
	cache, maxWait := ts.avro.cache, ts.avro.maxWait
	ts.mu.Unlock()
	if cache.lookup(id) != nil {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	backoff := 200 * time.Millisecond
	for {
		_, err := cache.get(ctx, id)
		if err == nil || !IsTransient(err) {
			return nil // cached, or a permanent answer Decode turns into a rejection
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ts.opt.OnRegistryError()
		if time.Now().After(deadline) {
			return fmt.Errorf("schema id %d of %s/%d offset %d: no answer from the schema registry for %s: %w", id, r.Topic, r.Partition, r.Offset, maxWait, err)
		}
		ts.opt.Log.Warn("schema registry unreachable or schema id unknown; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "schema_id", id, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/registry"
)

// avroState is what the Avro tables of an engine share.
type avroState struct {
	cache *schemaCache
	// maxWait bounds how long Prepare retries an unreachable registry before the
	// sink stops with an error (a restart replays from the last commit).
	maxWait time.Duration
}

// initAvro gives an Avro table its decoder; the registry client is created on the
// first Avro table and shared.
func (e *Engine) initAvro(cfg *config.Config, t *table) error {
	if t.cfg.Format != "avro" {
		return nil
	}
	if e.avro == nil {
		cl, err := registry.New(cfg.SchemaRegistry)
		if err != nil {
			return fmt.Errorf("table %s: %w", t.cfg.Name, err)
		}
		e.avro = &avroState{cache: newSchemaCache(cl), maxWait: time.Minute}
	}
	t.avro = newAvroDecoder(t.dec, t.cfg.Name, e.avro.cache, e.log)
	name := t.cfg.Name
	t.avro.onUnknownFields = func(int, []string) { e.m.AvroUnknownFields.WithLabelValues(name).Inc() }
	return nil
}

// UseSchemaSource replaces the Schema Registry client of the Avro tables (tests).
func (e *Engine) UseSchemaSource(src SchemaSource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.avro == nil {
		e.avro = &avroState{maxWait: time.Minute}
	}
	e.avro.cache = newSchemaCache(src)
	for _, t := range e.byTopic {
		if t.avro != nil {
			t.avro.cache = e.avro.cache
			clear(t.avro.plans)
		}
	}
}

// Prepare makes sure the writer schema an Avro record names is cached, fetching it
// without holding the engine's lock, and retrying while the registry is
// unreachable: a registry outage delays records, it never dead-letters them. It
// gives up after a minute with an error that stops the sink (nothing past the
// record is committed, so a restart replays it). Call it before Process.
func (e *Engine) Prepare(ctx context.Context, r *Record) error {
	t := e.byTopic[r.Topic]
	if t == nil || t.avro == nil {
		return nil
	}
	id, err := schemaID(r.Value)
	if err != nil {
		return nil // Process rejects it
	}
	e.mu.Lock()
	cache, maxWait := e.avro.cache, e.avro.maxWait
	e.mu.Unlock()
	if cache.lookup(id) != nil {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	backoff := 200 * time.Millisecond
	for {
		_, err := cache.get(ctx, id)
		if err == nil || !isTransient(err) {
			return nil // cached, or a permanent answer Process turns into a rejection
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.m.RegistryErrors.Inc()
		if time.Now().After(deadline) {
			return fmt.Errorf("schema id %d of %s/%d offset %d: registry unreachable for %s: %w", id, r.Topic, r.Partition, r.Offset, maxWait, err)
		}
		e.log.Warn("schema registry unreachable; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "schema_id", id, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

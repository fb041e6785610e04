package decode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/lakesink/lakesink/decode/registry"
)

// SchemaSource fetches Avro writer schemas by their registry id. registry.Client
// implements it; an error wrapping registry.ErrNotFound is a permanent answer (the
// record is rejected), except registry.ErrUnknownID, which like any other error is
// transient (the record is retried, then the sink stops).
type SchemaSource interface {
	SchemaByID(ctx context.Context, id int) (string, error)
}

// negativeTTL is how long an unknown schema id is remembered before asking again.
const negativeTTL = 30 * time.Second

// schemaCache fetches each schema id once per process and parses it; it is safe
// for concurrent use and shared by every Avro table. Concurrent lookups of one id
// wait for a single fetch. Transient failures are not cached.
type schemaCache struct {
	src     SchemaSource
	mu      sync.Mutex
	entries map[int]*schemaEntry
	fetches atomic.Int64 // registry requests made, for tests and metrics
}

type schemaEntry struct {
	done   chan struct{}
	schema avro.Schema
	err    error // permanent: *Rejection
	at     time.Time
}

func newSchemaCache(src SchemaSource) *schemaCache {
	return &schemaCache{src: src, entries: map[int]*schemaEntry{}}
}

// lookup returns a finished entry for id without fetching, or nil.
func (c *schemaCache) lookup(id int) *schemaEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		return nil
	}
	select {
	case <-e.done:
		if e.err != nil && time.Since(e.at) > negativeTTL {
			delete(c.entries, id)
			return nil
		}
		return e
	default:
		return nil
	}
}

// get returns the parsed schema for id, fetching it if needed. A *Rejection means
// the id is unknown or its schema unusable; any other error is transient.
func (c *schemaCache) get(ctx context.Context, id int) (avro.Schema, error) {
	for {
		c.mu.Lock()
		e := c.entries[id]
		if e != nil {
			c.mu.Unlock()
			select {
			case <-e.done:
			case <-ctx.Done():
				return nil, &transientError{ctx.Err()}
			}
			if e.err == nil {
				return e.schema, nil
			}
			var rej *Rejection
			if errors.As(e.err, &rej) && time.Since(e.at) <= negativeTTL {
				return nil, e.err
			}
			c.mu.Lock()
			if c.entries[id] == e {
				delete(c.entries, id) // transient failure or expired negative: fetch again
			}
			c.mu.Unlock()
			if !errors.As(e.err, &rej) {
				return nil, e.err
			}
			continue
		}
		e = &schemaEntry{done: make(chan struct{})}
		c.entries[id] = e
		c.mu.Unlock()
		c.fetches.Add(1)
		text, err := c.src.SchemaByID(ctx, id)
		switch {
		case errors.Is(err, registry.ErrUnknownID):
			// Not the record's fault (a lagging replica, the wrong registry): never dead-letter.
			e.err = &transientError{fmt.Errorf("schema registry: schema id %d is unknown to it: %w", id, err)}
		case errors.Is(err, registry.ErrNotFound):
			e.err = reject(ReasonUnknownSchema, "", "schema id %d: %v", id, err)
		case err != nil:
			e.err = &transientError{fmt.Errorf("schema registry: %w", err)}
		default:
			s, perr := registry.Parse(text)
			if perr != nil {
				e.err = reject(ReasonUnknownSchema, "", "schema id %d does not parse as Avro: %v", id, perr)
			} else {
				e.schema = s
			}
		}
		e.at = time.Now()
		close(e.done)
		if e.err != nil {
			var rej *Rejection
			if !errors.As(e.err, &rej) {
				c.mu.Lock()
				if c.entries[id] == e {
					delete(c.entries, id)
				}
				c.mu.Unlock()
			}
			return nil, e.err
		}
		return e.schema, nil
	}
}

// transientError is a failure that says nothing about the record (the registry is
// unreachable): the engine must neither buffer nor dead-letter the record.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// IsTransient reports whether err is a failure that says nothing about the record
// (the schema registry is unreachable): retry, never dead-letter.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

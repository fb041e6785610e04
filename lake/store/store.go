// Package store is the lake's object store: a handful of methods, implemented over
// a local directory and over S3 (or any S3-compatible server).
//
// Objects are written once and never overwritten: Create fails with ErrExists when
// the key is taken, which is what makes a replayed flush idempotent.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Store is where the lake's objects live. Keys are slash-separated and relative.
type Store interface {
	// Create writes a new object with the bytes of body. It never overwrites: if key
	// exists it returns an error for which IsExists is true and the existing object is
	// unchanged. Nothing is visible under key until the whole body is durable. Bodies
	// of any size stream; memory use is bounded by the part size, not the body size.
	Create(ctx context.Context, key string, body io.Reader) error
	// Open opens an object for random-access reads.
	Open(ctx context.Context, key string) (Object, error)
	// Stat returns an object's size and modification time.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, recursively, in
	// lexical key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes objects; keys that do not exist are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Ping checks that the store is reachable (used by /readyz).
	Ping(ctx context.Context) error
	// URI returns the location of a key for humans and other engines.
	URI(key string) string
}

// Object is an open object.
type Object interface {
	io.ReaderAt
	io.Closer
	// Size is the object's length in bytes.
	Size() int64
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Sentinel errors wrapped by implementations.
var (
	ErrExists   = errors.New("object already exists")
	ErrNotFound = errors.New("object not found")
)

// IsExists reports whether err means the key was already taken.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

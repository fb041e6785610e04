// Package store is the lake's object store: a handful of methods, implemented over
// a local directory (Local) and over S3 or any S3-compatible server (S3), both held
// to one conformance suite (package storetest).
//
// Objects are written once and never overwritten: Create fails with ErrExists when
// the key is taken, which is what makes a replayed flush idempotent. Callers branch
// on IsExists and IsNotFound and never see SDK error types.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Store is where the lake's objects live. Keys are slash-separated and relative:
// they never start with "/", and have no empty, "." or ".." segments (see
// ErrInvalidKey). A key and a key below it ("a" and "a/b") cannot both exist in
// every implementation, so the lake never uses such pairs.
type Store interface {
	// Create writes a new object with the bytes of body. It never overwrites: if
	// key exists it returns an error for which IsExists is true, and the existing
	// object is unchanged. Nothing is visible under key until the whole body is
	// durable; a failed or cancelled Create leaves nothing behind. Bodies of any
	// size stream: memory use is bounded by the part size times the upload
	// concurrency, not by the body size. An error from body is returned wrapped.
	//
	// IsExists can also mean that a retried request found the object written by
	// this very call (its first response was lost), so a caller that needs to
	// know whose object it is must read it back.
	Create(ctx context.Context, key string, body io.Reader) error
	// Open opens an object for random-access reads (Parquet footers, row
	// groups). Reads through the returned Object use ctx. IsNotFound(err) when
	// the object does not exist.
	Open(ctx context.Context, key string) (Object, error)
	// Get reads a whole object into memory with one request (Open costs S3 a HEAD
	// before the reads): for objects known to be small. IsNotFound(err) when the
	// object does not exist.
	Get(ctx context.Context, key string) ([]byte, error)
	// Stat returns an object's size and modification time. IsNotFound(err) when
	// the object does not exist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, recursively,
	// in lexical (byte-wise) key order. An error from fn stops the listing and is
	// returned as it is.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes objects; keys that do not exist are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Ping checks that the store is reachable and its bucket or directory
	// exists (used by /readyz).
	Ping(ctx context.Context) error
	// URI returns the location of a key for humans and other engines:
	// "s3://bucket/prefix/key" or "file:///abs/dir/key".
	URI(key string) string
}

// Object is an open object. ReadAt may be called concurrently and does not move
// the position of Read, which reads the object sequentially from its start.
type Object interface {
	io.ReaderAt
	io.Reader
	io.Closer
	// Size is the object's length in bytes.
	Size() int64
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is the object's key, relative to the store.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// Modified is when the object was written.
	Modified time.Time
}

// Sentinel errors wrapped by implementations; test for them with errors.Is, or
// with IsExists and IsNotFound.
var (
	// ErrExists means Create found the key taken.
	ErrExists = errors.New("object already exists")
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrInvalidKey means a key is not a clean relative slash-separated path.
	ErrInvalidKey = errors.New("invalid object key")
)

// IsExists reports whether err means the key was already taken.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// checkKey rejects keys that are not clean relative paths: empty, absolute, with
// empty, "." or ".." segments (which could escape a directory root, or mean
// different objects to different engines), with backslashes or NUL bytes.
func checkKey(key string) error {
	why := ""
	switch {
	case key == "":
		why = "is empty"
	case strings.HasPrefix(key, "/"):
		why = "is absolute (starts with /)"
	case strings.HasSuffix(key, "/"):
		why = "ends with /"
	case strings.ContainsRune(key, '\\'):
		why = "contains a backslash"
	case strings.ContainsRune(key, 0):
		why = "contains a NUL byte"
	default:
		for seg := range strings.SplitSeq(key, "/") {
			if seg == "" {
				why = "has an empty segment (//)"
				break
			}
			if seg == "." || seg == ".." {
				why = fmt.Sprintf("has a %q segment", seg)
				break
			}
		}
	}
	if why != "" {
		return fmt.Errorf("key %q %s: %w", key, why, ErrInvalidKey)
	}
	return nil
}

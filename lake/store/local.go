package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Local is a Store over a directory, for demos, tests and single-machine use.
type Local struct {
	root string
}

// NewLocal returns a store rooted at dir, creating it if needed.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	return &Local{root: abs}, nil
}

const tmpMarker = ".tmp-"

func (l *Local) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, tmpMarker) {
			return "", fmt.Errorf("invalid key %q", key)
		}
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Create implements Store: write a temporary file, fsync, then link it into place
// (link fails if the key exists, so nothing is ever overwritten).
func (l *Local) Create(_ context.Context, key string, body io.Reader) (err error) {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", l.URI(key), err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := p + tmpMarker + hex.EncodeToString(rnd[:])
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", l.URI(key), err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp)
	}()
	if _, err := io.Copy(f, body); err != nil {
		return fmt.Errorf("write %s: %w", l.URI(key), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", l.URI(key), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", l.URI(key), err)
	}
	f = nil
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", l.URI(key), ErrExists)
		}
		return fmt.Errorf("publish %s: %w", l.URI(key), err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

type localObject struct {
	*os.File
	size int64
}

func (o localObject) Size() int64 { return o.size }

// Open implements Store.
func (l *Local) Open(_ context.Context, key string) (Object, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.wrap("open", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, l.wrap("stat", key, err)
	}
	return localObject{File: f, size: info.Size()}, nil
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, l.wrap("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: info.Size(), Modified: info.ModTime()}, nil
}

func (l *Local) wrap(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", op, l.URI(key), ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, l.URI(key), err)
}

// List implements Store.
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var keys []ObjectInfo
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.Contains(d.Name(), tmpMarker) {
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		keys = append(keys, ObjectInfo{Key: key, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", l.URI(prefix), err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store, pruning directories left empty.
func (l *Local) Delete(_ context.Context, keys ...string) error {
	for _, key := range keys {
		p, err := l.path(key)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", l.URI(key), err)
		}
		for dir := filepath.Dir(p); dir != l.root && strings.HasPrefix(dir, l.root); dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
	return nil
}

// Ping implements Store.
func (l *Local) Ping(context.Context) error {
	if _, err := os.Stat(l.root); err != nil {
		return fmt.Errorf("local store: %w", err)
	}
	return nil
}

// URI implements Store.
func (l *Local) URI(key string) string {
	return "file://" + filepath.ToSlash(filepath.Join(l.root, key))
}

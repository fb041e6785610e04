//go:build unix

package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

var _ Swapper = (*Local)(nil)

// localVersion is a Local object's version: the SHA-256 of its bytes (two
// objects with the same bytes are interchangeable to a compare-and-swap).
func localVersion(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// GetVersion implements Swapper; the version is the SHA-256 of the bytes.
func (l *Local) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	b, err := l.Get(ctx, key)
	if err != nil {
		return nil, "", err
	}
	return b, localVersion(b), nil
}

// Swap implements Swapper. Swaps of keys in one directory are serialised by an
// exclusive flock on the directory (across processes too); inside it the
// current version is checked, then a temporary file is written, fsynced and
// renamed over the key, and the directory fsynced.
func (l *Local) Swap(ctx context.Context, key string, body []byte, version string) (string, error) {
	if err := l.check(key); err != nil {
		return "", fmt.Errorf("local swap: %w", err)
	}
	uri := l.URI(key)
	name := filepath.FromSlash(key)
	dir := filepath.Dir(name)
	if _, err := l.mkdirs(dir); err != nil {
		return "", fmt.Errorf("local swap %s: make directory: %w", uri, err)
	}
	d, err := l.root.Open(dir)
	if err != nil {
		return "", fmt.Errorf("local swap %s: open directory: %w", uri, err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("local swap %s: lock directory: %w", uri, err)
	}
	defer func() { _ = syscall.Flock(int(d.Fd()), syscall.LOCK_UN) }()
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local swap %s: %w", uri, err)
	}
	cur, err := l.Get(ctx, key)
	switch {
	case IsNotFound(err):
		if version != "" {
			return "", fmt.Errorf("local swap %s: %w (it was deleted)", uri, ErrChanged)
		}
	case err != nil:
		return "", err
	case version == "":
		return "", fmt.Errorf("local swap %s: %w (it was created)", uri, ErrChanged)
	case localVersion(cur) != version:
		return "", fmt.Errorf("local swap %s: %w", uri, ErrChanged)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := name + tmpMarker + hex.EncodeToString(rnd[:])
	f, err := l.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("local swap %s: %w", uri, err)
	}
	_, werr := f.Write(body)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = l.root.Rename(tmp, name)
	}
	if werr != nil {
		_ = l.root.Remove(tmp)
		if errors.Is(werr, fs.ErrNotExist) {
			werr = fmt.Errorf("%w (a concurrent delete pruned its directory)", werr)
		}
		return "", fmt.Errorf("local swap %s: %w", uri, werr)
	}
	if err := d.Sync(); err != nil {
		return "", fmt.Errorf("local swap %s: sync directory: %w", uri, err)
	}
	return localVersion(body), nil
}

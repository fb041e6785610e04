package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// tmpMarker is part of the names of files being written; List skips them and keys
// may not contain it.
const tmpMarker = ".tmp-"

// Local is a Store over a directory, for demos, tests and single-machine use.
//
// All file operations go through an os.Root, so no key, and no symbolic link
// inside the directory, can reach a file outside it.
type Local struct {
	dir  string // absolute
	root *os.Root
}

var _ Store = (*Local)(nil)

// NewLocal returns a store rooted at dir, creating the directory if needed.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local store: directory is empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	return &Local{dir: abs, root: root}, nil
}

// Close releases the handle on the store's directory. The store is unusable
// afterwards. Closing is optional: the handle is also released when the store is
// garbage collected.
func (l *Local) Close() error { return l.root.Close() }

// check validates a key, also refusing the temporary-file marker.
func (l *Local) check(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if strings.Contains(key, tmpMarker) {
		return fmt.Errorf("key %q contains %q, reserved for temporary files: %w", key, tmpMarker, ErrInvalidKey)
	}
	return nil
}

// Create implements Store: it writes a temporary file beside the target, fsyncs
// it, links it into place (link fails if the key exists, so nothing is ever
// overwritten and readers never see a partial file), removes the temporary name
// and fsyncs the directories it changed.
func (l *Local) Create(ctx context.Context, key string, body io.Reader) error {
	if err := l.check(key); err != nil {
		return fmt.Errorf("local create: %w", err)
	}
	uri := l.URI(key)
	name := filepath.FromSlash(key)
	dir := filepath.Dir(name)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := name + tmpMarker + hex.EncodeToString(rnd[:])

	var (
		f       *os.File
		created string // topmost directory this call created, if any
		err     error
	)
	for attempt := 0; ; attempt++ {
		if created, err = l.mkdirs(dir); err != nil {
			return fmt.Errorf("local create %s: make directory: %w", uri, err)
		}
		f, err = l.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		// A concurrent Delete may have pruned the directory we just made.
		if !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			return fmt.Errorf("local create %s: %w", uri, err)
		}
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = l.root.Remove(tmp)
	}()
	if _, err := io.Copy(f, ctxReader{ctx: ctx, r: body}); err != nil {
		return fmt.Errorf("local create %s: write: %w", uri, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("local create %s: sync: %w", uri, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("local create %s: close: %w", uri, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local create %s: %w", uri, err)
	}
	if err := l.root.Link(tmp, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("local create %s: %w", uri, ErrExists)
		}
		return fmt.Errorf("local create %s: publish: %w", uri, err)
	}
	if err := l.root.Remove(tmp); err != nil {
		return fmt.Errorf("local create %s: remove temporary file: %w", uri, err)
	}
	// Make the new name durable: sync its directory, and the parents of every
	// directory this call created.
	stop := dir
	if created != "" {
		stop = filepath.Dir(created)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := l.syncDir(d); err != nil {
			return fmt.Errorf("local create %s: sync directory: %w", uri, err)
		}
		if d == stop || d == "." {
			break
		}
	}
	return nil
}

// mkdirs creates dir and its missing parents and returns the topmost directory it
// found missing ("" if dir existed).
func (l *Local) mkdirs(dir string) (string, error) {
	if dir == "." {
		return "", nil
	}
	created := ""
	for d := dir; d != "."; d = filepath.Dir(d) {
		if _, err := l.root.Stat(d); err == nil {
			break
		}
		created = d
	}
	if created == "" {
		return "", nil
	}
	return created, l.root.MkdirAll(dir, 0o755)
}

func (l *Local) syncDir(dir string) error {
	d, err := l.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// localObject is an open file; it hides the rest of *os.File's methods.
type localObject struct {
	f    *os.File
	size int64
}

func (o *localObject) Read(p []byte) (int, error)              { return o.f.Read(p) }
func (o *localObject) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *localObject) Close() error                            { return o.f.Close() }
func (o *localObject) Size() int64                             { return o.size }

// Open implements Store.
func (l *Local) Open(_ context.Context, key string) (Object, error) {
	if err := l.check(key); err != nil {
		return nil, fmt.Errorf("local open: %w", err)
	}
	f, err := l.root.Open(filepath.FromSlash(key))
	if err != nil {
		return nil, l.wrap("open", key, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fs.ErrNotExist // a directory is not an object
	}
	if err != nil {
		_ = f.Close()
		return nil, l.wrap("open", key, err)
	}
	return &localObject{f: f, size: info.Size()}, nil
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) ([]byte, error) {
	o, err := l.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data := make([]byte, o.Size())
	if _, err := io.ReadFull(o, data); err != nil {
		return nil, l.wrap("read", key, err)
	}
	return data, nil
}

// Stat implements Store.
func (l *Local) Stat(_ context.Context, key string) (ObjectInfo, error) {
	if err := l.check(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("local stat: %w", err)
	}
	info, err := l.root.Stat(filepath.FromSlash(key))
	if err == nil && !info.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return ObjectInfo{}, l.wrap("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: info.Size(), Modified: info.ModTime()}, nil
}

// notExist reports whether err means a path is missing, including a path that
// runs through a file ("a/b" when "a" is a file).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func (l *Local) wrap(op, key string, err error) error {
	if notExist(err) {
		return fmt.Errorf("local %s %s: %w", op, l.URI(key), ErrNotFound)
	}
	return fmt.Errorf("local %s %s: %w", op, l.URI(key), err)
}

// List implements Store. It walks the directory tree with each directory's
// entries sorted as key prefixes ("a/" for a directory), which yields exact
// lexical key order without holding the listing in memory, and descends only
// into directories that can hold keys with prefix.
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return l.walk(ctx, ".", "", prefix, fn)
}

type dirEntry struct {
	name string
	sort string // name, plus "/" for a directory
	dir  bool
	ent  fs.DirEntry
}

// walk lists dir, whose keys start with keyDir. Errors from fn are returned as
// they are, others are wrapped.
func (l *Local) walk(ctx context.Context, dir, keyDir, prefix string, fn func(ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local list %s: %w", l.URI(prefix), err)
	}
	d, err := l.root.Open(dir)
	if err != nil {
		if notExist(err) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("local list %s: %w", l.URI(prefix), err)
	}
	ents, err := d.ReadDir(-1)
	_ = d.Close()
	if err != nil && !notExist(err) {
		return fmt.Errorf("local list %s: read directory %s: %w", l.URI(prefix), l.URI(keyDir), err)
	}
	list := make([]dirEntry, 0, len(ents))
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			info, err := l.root.Stat(p) // follows the link, but only inside the root
			if err != nil {
				continue
			}
			isDir = info.IsDir()
		}
		if !isDir && strings.Contains(e.Name(), tmpMarker) {
			continue
		}
		s := e.Name()
		if isDir {
			s += "/"
		}
		list = append(list, dirEntry{name: e.Name(), sort: s, dir: isDir, ent: e})
	}
	slices.SortFunc(list, func(a, b dirEntry) int { return cmp.Compare(a.sort, b.sort) })
	for _, e := range list {
		key := keyDir + e.sort
		p := filepath.Join(dir, e.name)
		if e.dir {
			if strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key) {
				if err := l.walk(ctx, p, key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		info, err := l.root.Stat(p)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted meanwhile, or not a file
		}
		if err := fn(ObjectInfo{Key: key, Size: info.Size(), Modified: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store. It removes the directories that deleting leaves empty,
// up to (not including) the store's directory. Keys are all checked before
// anything is deleted; errors for single keys are joined.
func (l *Local) Delete(_ context.Context, keys ...string) error {
	for _, key := range keys {
		if err := l.check(key); err != nil {
			return fmt.Errorf("local delete: %w", err)
		}
	}
	var errs []error
	for _, key := range keys {
		name := filepath.FromSlash(key)
		if err := l.root.Remove(name); err != nil && !notExist(err) {
			errs = append(errs, fmt.Errorf("local delete %s: %w", l.URI(key), err))
			continue
		}
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if l.root.Remove(d) != nil { // not empty (or gone): stop pruning
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Ping implements Store: the directory must still exist and be the one the store
// was opened on.
func (l *Local) Ping(context.Context) error {
	info, err := os.Stat(l.dir)
	if err != nil {
		return fmt.Errorf("local ping %s: %w", l.dir, err)
	}
	rinfo, err := l.root.Stat(".")
	if err != nil {
		return fmt.Errorf("local ping %s: %w", l.dir, err)
	}
	if !os.SameFile(info, rinfo) {
		return fmt.Errorf("local ping %s: directory was replaced after the store was opened", l.dir)
	}
	return nil
}

// URI implements Store: "file:///abs/dir/key" (not percent-encoded).
func (l *Local) URI(key string) string {
	return "file://" + strings.TrimSuffix(filepath.ToSlash(l.dir), "/") + "/" + key
}

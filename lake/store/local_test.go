package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/store/storetest"
)

func newLocal(t *testing.T, dir string) *store.Local {
	t.Helper()
	s, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newLocal(t, t.TempDir()) })
}

// TestLocalConfinement: symbolic links inside the directory cannot lead a key
// outside it, for writes or reads.
func TestLocalConfinement(t *testing.T) {
	ctx := context.Background()
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"out": outside, "secretlink": filepath.Join(outside, "secret")} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	s := newLocal(t, dir)
	tests := []struct {
		name string
		op   func() error
	}{
		{"create through a linked directory", func() error { return s.Create(ctx, "out/new", strings.NewReader("x")) }},
		{"open through a linked directory", func() error { _, err := s.Open(ctx, "out/secret"); return err }},
		{"open a linked file", func() error { _, err := s.Open(ctx, "secretlink"); return err }},
		{"stat a linked file", func() error { _, err := s.Stat(ctx, "secretlink"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); err == nil || store.IsExists(err) {
				t.Fatalf("got %v, want an error", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file was written outside the store: %v", err)
	}
	var keys []string
	if err := s.List(ctx, "", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("listed %q through links that leave the store", keys)
	}
}

// TestLocalFiles checks what Local leaves on disk: no temporary files, forward
// slashes, empty directories pruned up to (not including) the root.
func TestLocalFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newLocal(t, dir)
	for _, k := range []string{"a/b/c/obj", "a/keep", "top"} {
		if err := s.Create(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file a crash left behind is not an object.
	if err := os.WriteFile(filepath.Join(dir, "a", "x"+".tmp-0123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		delete []string
		keys   []string
		paths  []string // every file and directory under dir
	}{
		{"as written", nil, []string{"a/b/c/obj", "a/keep", "top"},
			[]string{"a", "a/b", "a/b/c", "a/b/c/obj", "a/keep", "a/x.tmp-0123", "top"}},
		{"prunes empty directories", []string{"a/b/c/obj"}, []string{"a/keep", "top"},
			[]string{"a", "a/keep", "a/x.tmp-0123", "top"}},
		{"stops at a non-empty one", []string{"a/keep"}, []string{"top"},
			[]string{"a", "a/x.tmp-0123", "top"}},
		{"keeps the root", []string{"top"}, []string{},
			[]string{"a", "a/x.tmp-0123"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Delete(ctx, tc.delete...); err != nil {
				t.Fatal(err)
			}
			keys := []string{}
			if err := s.List(ctx, "", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, tc.keys) {
				t.Errorf("listed %q, want %q", keys, tc.keys)
			}
			var paths []string
			_ = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
				if err == nil && p != dir {
					rel, _ := filepath.Rel(dir, p)
					paths = append(paths, filepath.ToSlash(rel))
				}
				return err
			})
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("on disk %q, want %q", paths, tc.paths)
			}
		})
	}
	if err := s.Create(ctx, "a/y.tmp-1", strings.NewReader("x")); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("create of a key with the temporary marker: %v, want ErrInvalidKey", err)
	}
	if got, want := s.URI("a/b.parquet"), "file://"+filepath.ToSlash(dir)+"/a/b.parquet"; got != want {
		t.Errorf("URI = %q, want %q", got, want)
	}
}

func TestLocalPing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lake")
	s := newLocal(t, dir)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("ping of a removed directory: %v, want an error naming it", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("ping of a replaced directory succeeded")
	}
}

func TestLocalSwap(t *testing.T) {
	storetest.RunSwap(t, func(t *testing.T) store.Swapper { return newLocal(t, t.TempDir()) })
}

// Package storetest is one conformance suite run against every store.Store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lakesink/lakesink/lake/store"
)

// Run runs the suite. newStore returns an empty store (or an empty prefix of one).
func Run(t *testing.T, newStore func(t *testing.T) store.Store, partSize int) {
	ctx := context.Background()
	t.Run("create and read back", func(t *testing.T) {
		s := newStore(t)
		for _, size := range []int{0, 1, 1000, 2*partSize + 123} {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(rand.IntN(256))
			}
			key := fmt.Sprintf("a/b/obj-%d.bin", size)
			if err := s.Create(ctx, key, bytes.NewReader(body)); err != nil {
				t.Fatalf("create %d bytes: %v", size, err)
			}
			o, err := s.Open(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if o.Size() != int64(size) {
				t.Fatalf("size %d, want %d", o.Size(), size)
			}
			if size > 0 {
				for range 5 {
					off := rand.IntN(size)
					n := min(rand.IntN(4096)+1, size-off)
					got := make([]byte, n)
					if _, err := o.ReadAt(got, int64(off)); err != nil && !errors.Is(err, io.EOF) {
						t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
					}
					if !bytes.Equal(got, body[off:off+n]) {
						t.Fatalf("ReadAt(%d, %d) returned other bytes", off, n)
					}
				}
			}
			o.Close()
		}
	})
	t.Run("never overwrites", func(t *testing.T) {
		s := newStore(t)
		if err := s.Create(ctx, "k", bytes.NewReader([]byte("first"))); err != nil {
			t.Fatal(err)
		}
		err := s.Create(ctx, "k", bytes.NewReader([]byte("second")))
		if !store.IsExists(err) {
			t.Fatalf("second create: %v, want IsExists", err)
		}
		if got := read(t, s, "k"); got != "first" {
			t.Fatalf("content %q after a refused create", got)
		}
		big := bytes.Repeat([]byte("x"), partSize+1)
		if err := s.Create(ctx, "k", bytes.NewReader(big)); !store.IsExists(err) {
			t.Fatalf("multipart create over an existing key: %v, want IsExists", err)
		}
	})
	t.Run("racing creates: one winner", func(t *testing.T) {
		s := newStore(t)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Create(ctx, "race", bytes.NewReader([]byte(fmt.Sprint(i))))
				switch {
				case err == nil:
					wins.Add(1)
				case !store.IsExists(err):
					t.Errorf("create: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d creates won, want exactly 1", wins.Load())
		}
	})
	t.Run("failed body leaves nothing", func(t *testing.T) {
		s := newStore(t)
		for _, size := range []int{100, partSize + 100} {
			key := fmt.Sprintf("broken-%d", size)
			body := io.MultiReader(bytes.NewReader(make([]byte, size)), failing{})
			if err := s.Create(ctx, key, body); err == nil {
				t.Fatal("create with a failing body succeeded")
			}
			if _, err := s.Stat(ctx, key); !store.IsNotFound(err) {
				t.Fatalf("stat after failed create: %v, want IsNotFound", err)
			}
		}
		n := 0
		_ = s.List(ctx, "", func(store.ObjectInfo) error { n++; return nil })
		if n != 0 {
			t.Fatalf("%d objects listed after failed creates", n)
		}
	})
	t.Run("list, stat, delete", func(t *testing.T) {
		s := newStore(t)
		const n = 1050 // more than one S3 listing page
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := s.Create(ctx, fmt.Sprintf("p/%02d/obj-%04d", i%7, i), bytes.NewReader([]byte("v"))); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		_ = s.Create(ctx, "q/other", bytes.NewReader([]byte("v")))
		var keys []string
		if err := s.List(ctx, "p/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != n {
			t.Fatalf("listed %d keys under p/, want %d", len(keys), n)
		}
		for i := 1; i < len(keys); i++ {
			if keys[i-1] >= keys[i] {
				t.Fatalf("listing not in key order: %q then %q", keys[i-1], keys[i])
			}
		}
		info, err := s.Stat(ctx, keys[0])
		if err != nil || info.Size != 1 || info.Key != keys[0] {
			t.Fatalf("stat: %+v %v", info, err)
		}
		if err := s.Delete(ctx, append(keys, "p/never-existed")...); err != nil {
			t.Fatal(err)
		}
		left := 0
		_ = s.List(ctx, "", func(store.ObjectInfo) error { left++; return nil })
		if left != 1 {
			t.Fatalf("%d objects left after delete, want 1", left)
		}
		if _, err := s.Open(ctx, keys[0]); !store.IsNotFound(err) {
			t.Fatalf("open deleted: %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if err := newStore(t).Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func read(t *testing.T, s store.Store, key string) string {
	t.Helper()
	o, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b := make([]byte, o.Size())
	if _, err := o.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(b)
}

// Package storetest is the conformance suite that every store.Store passes: the
// local directory and the real S3 server of the test bed run the same tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lakesink/lakesink/lake/store"
)

// PartSize is the part size the suite assumes when it aims at multipart uploads:
// S3's minimum. Configure S3 stores under test with it.
const PartSize = 5 << 20

// MultipartSize is the size of the suite's large bodies: three parts of PartSize.
const MultipartSize = 2*PartSize + 1<<20 + 123

// ListObjects is how many objects the listing test writes: more than one S3
// listing page (1000 keys) and one DeleteObjects batch.
const ListObjects = 1050

// Run runs the suite. newStore is called once per subtest and returns an empty
// store (or an empty prefix of a shared one); it cleans up with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"CreateAndRead", testCreateAndRead},
		{"NeverOverwrites", testNeverOverwrites},
		{"RacingCreates", testRacingCreates},
		{"FailingBody", testFailingBody},
		{"CancelledCreate", testCancelledCreate},
		{"Missing", testMissing},
		{"List", testList},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"PingAndURI", testPingAndURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
	}
}

// data returns size pseudo-random bytes, the same for the same seed.
func data(seed uint64, size int) []byte {
	b := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 42}).Read(b)
	return b
}

// stream hides every method of a reader but Read, and returns short reads, so
// implementations cannot lean on Seek, Len or WriterTo.
func stream(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }

func create(t *testing.T, s store.Store, key string, body []byte) {
	t.Helper()
	if err := s.Create(context.Background(), key, stream(body)); err != nil {
		t.Fatalf("create %s (%d bytes): %v", key, len(body), err)
	}
}

func readAll(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	o, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if int64(len(b)) != o.Size() {
		t.Fatalf("read %d bytes of %s, Size says %d", len(b), key, o.Size())
	}
	return b
}

func listKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	if err := s.List(context.Background(), prefix, func(o store.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return keys
}

func recent(ts time.Time) bool {
	return !ts.IsZero() && time.Since(ts) < time.Hour && time.Until(ts) < time.Hour
}

func testCreateAndRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"small", 70_000},
		// The S3 store reads a body into a 256 KiB buffer first, then moves it
		// to a part buffer when it does not fit.
		{"256 KiB", 256 << 10},
		{"256 KiB and one byte", 256<<10 + 1},
		{"one MiB", 1 << 20},
		{"exactly one part", PartSize},
		{"multipart", MultipartSize},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := data(uint64(i), tc.size)
			key := fmt.Sprintf("a/b/obj-%d.bin", tc.size)
			create(t, s, key, body)

			info, err := s.Stat(ctx, key)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			if info.Key != key || info.Size != int64(tc.size) || !recent(info.Modified) {
				t.Fatalf("stat = %+v, want key %s, size %d, modified now", info, key, tc.size)
			}
			if got := readAll(t, s, key); !bytes.Equal(got, body) {
				t.Fatalf("sequential read returned other bytes")
			}
			if got, err := s.Get(ctx, key); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("get: %d bytes, %v; want the %d bytes written", len(got), err, len(body))
			}

			o, err := s.Open(ctx, key)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer o.Close()
			if o.Size() != int64(tc.size) {
				t.Fatalf("Size() = %d, want %d", o.Size(), tc.size)
			}
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for range 20 {
				if tc.size == 0 {
					break
				}
				off := rng.IntN(tc.size)
				n := min(rng.IntN(64<<10)+1, tc.size-off)
				got := make([]byte, n)
				if m, err := o.ReadAt(got, int64(off)); m != n || (err != nil && !errors.Is(err, io.EOF)) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, m, err)
				}
				if !bytes.Equal(got, body[off:off+n]) {
					t.Fatalf("ReadAt(%d bytes at %d) returned other bytes", n, off)
				}
			}
			// Reads across and at the end report io.EOF with what there was.
			tail := min(tc.size, 10)
			got := make([]byte, tail+100)
			m, err := o.ReadAt(got, int64(tc.size-tail))
			if m != tail || !errors.Is(err, io.EOF) || !bytes.Equal(got[:m], body[tc.size-tail:]) {
				t.Fatalf("ReadAt across the end = %d, %v; want %d, io.EOF", m, err, tail)
			}
			if m, err := o.ReadAt(got, int64(tc.size)); m != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", m, err)
			}
			// ReadAt does not move Read's position.
			if tc.size >= 4096 {
				head := make([]byte, 100)
				if _, err := io.ReadFull(o, head); err != nil || !bytes.Equal(head, body[:100]) {
					t.Fatalf("Read of the first 100 bytes: %v", err)
				}
				if _, err := o.ReadAt(make([]byte, 50), 2000); err != nil {
					t.Fatalf("ReadAt: %v", err)
				}
				if _, err := io.ReadFull(o, head); err != nil || !bytes.Equal(head, body[100:200]) {
					t.Fatalf("Read after ReadAt did not continue at 100: %v", err)
				}
			}
		})
	}
}

func testNeverOverwrites(t *testing.T, s store.Store) {
	ctx := context.Background()
	small, big := []byte("first"), data(1, PartSize+1000)
	tests := []struct {
		name          string
		first, second []byte
	}{
		{"small over small", small, []byte("second")},
		{"multipart over small", small, data(2, MultipartSize)},
		{"small over multipart", big, []byte("second")},
		{"multipart over multipart", big, data(3, PartSize+2000)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("k/%d", i)
			create(t, s, key, tc.first)
			err := s.Create(ctx, key, stream(tc.second))
			if !store.IsExists(err) {
				t.Fatalf("second create: %v, want IsExists", err)
			}
			if store.IsNotFound(err) {
				t.Fatalf("second create: %v is also IsNotFound", err)
			}
			if got := readAll(t, s, key); !bytes.Equal(got, tc.first) {
				t.Fatalf("content changed by a refused create")
			}
		})
	}
}

func testRacingCreates(t *testing.T, s store.Store) {
	tests := []struct {
		name    string
		writers int
		size    int
	}{
		{"small", 16, 100},
		{"multipart", 4, PartSize + 1<<20},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("race/%d", i)
			bodies := make([][]byte, tc.writers)
			for w := range bodies {
				bodies[w] = data(uint64(100*i+w), tc.size)
			}
			errs := make([]error, tc.writers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := range tc.writers {
				wg.Go(func() {
					<-start
					errs[w] = s.Create(context.Background(), key, stream(bodies[w]))
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for w, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("writers %d and %d both created %s", winner, w, key)
				case err == nil:
					winner = w
				case !store.IsExists(err):
					t.Fatalf("writer %d: %v, want success or IsExists", w, err)
				}
			}
			if winner < 0 {
				t.Fatalf("no writer created %s", key)
			}
			if got := readAll(t, s, key); !bytes.Equal(got, bodies[winner]) {
				t.Fatalf("content is not the winner's")
			}
		})
	}
}

var errBody = errors.New("body broke")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errBody }

// assertAbsent checks that key is neither stattable nor listed.
func assertAbsent(t *testing.T, s store.Store, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !store.IsNotFound(err) {
		t.Fatalf("stat %s: %v, want IsNotFound", key, err)
	}
	if keys := listKeys(t, s, ""); slices.Contains(keys, key) {
		t.Fatalf("%s is listed", key)
	}
}

func testFailingBody(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		size int // bytes before the failure
	}{
		{"at once", 0},
		{"small", 100},
		{"after a part", PartSize + 100},
		{"after parts", MultipartSize},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("broken/%d", i)
			body := io.MultiReader(stream(data(uint64(i), tc.size)), failingReader{})
			err := s.Create(context.Background(), key, body)
			if !errors.Is(err, errBody) {
				t.Fatalf("create with a failing body: %v, want the body's error", err)
			}
			if store.IsExists(err) {
				t.Fatalf("create with a failing body: %v is IsExists", err)
			}
			assertAbsent(t, s, key)
			create(t, s, key, []byte("retried")) // nothing left in the way
		})
	}
	if keys := listKeys(t, s, ""); len(keys) != len(tests) {
		t.Fatalf("listed %q, want only the retried keys", keys)
	}
}

// cancellingReader cancels a context once it has returned after bytes.
type cancellingReader struct {
	r      io.Reader
	after  int
	read   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.read >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func testCancelledCreate(t *testing.T, s store.Store) {
	tests := []struct {
		name  string
		size  int
		after int // cancel after this many bytes are read
	}{
		{"before the start", 100, 0},
		{"during a small body", PartSize - 1, 1 << 20},
		{"between parts", MultipartSize, 2*PartSize + 512<<10},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("cancelled/%d", i)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			body := &cancellingReader{r: stream(data(uint64(i), tc.size)), after: tc.after, cancel: cancel}
			err := s.Create(ctx, key, body)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled create: %v, want context.Canceled", err)
			}
			assertAbsent(t, s, key)
		})
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	create(t, s, "dir/obj", []byte("x"))
	for _, key := range []string{"missing", "dir/missing", "missing/dir/obj", "dir", "dir/obj/below"} {
		if _, err := s.Open(ctx, key); !store.IsNotFound(err) || store.IsExists(err) {
			t.Errorf("open %s: %v, want IsNotFound", key, err)
		}
		if _, err := s.Stat(ctx, key); !store.IsNotFound(err) {
			t.Errorf("stat %s: %v, want IsNotFound", key, err)
		}
		if _, err := s.Get(ctx, key); !store.IsNotFound(err) {
			t.Errorf("get %s: %v, want IsNotFound", key, err)
		}
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	var keys []string
	for i := range ListObjects {
		keys = append(keys, fmt.Sprintf("many/%02d/obj-%04d", i%7, i))
	}
	// Keys whose lexical order differs from a directory walk's: '-' and '.' sort
	// before '/', upper case before lower case, UTF-8 after ASCII.
	keys = append(keys, "order/a-c", "order/a.d", "order/a/b", "order/a/b0", "order/a0", "order/B", "order/b", "order/ä",
		"many-sibling", "manyx/y")

	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = s.Create(ctx, k, strings.NewReader(k))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("create: %v", err)
	}
	slices.Sort(keys)

	for _, prefix := range []string{"", "many/", "many", "many/0", "many/03/", "many/03/obj-00", "order/", "order/a", "order/a/", "nothing/", "many/03/obj-0003"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		var got []string
		err := s.List(ctx, prefix, func(o store.ObjectInfo) error {
			if o.Size != int64(len(o.Key)) || !recent(o.Modified) {
				return fmt.Errorf("listed %+v, want size %d and modified now", o, len(o.Key))
			}
			got = append(got, o.Key)
			return nil
		})
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list %q: got %d keys, want %d in lexical order; %s", prefix, len(got), len(want), firstDiff(got, want))
		}
	}

	// One Delete of more keys than an S3 batch holds.
	many := listKeys(t, s, "many/")
	if err := s.Delete(ctx, many...); err != nil {
		t.Fatalf("delete %d keys: %v", len(many), err)
	}
	if left := listKeys(t, s, "many/"); len(left) != 0 {
		t.Fatalf("%d keys left under many/ after deleting them", len(left))
	}
	if left := listKeys(t, s, ""); len(left) != len(keys)-ListObjects {
		t.Fatalf("%d keys left, want %d", len(left), len(keys)-ListObjects)
	}
}

// firstDiff describes where two key lists part.
func firstDiff(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("from index %d got %q, want %q", i, got[i:min(i+3, len(got))], want[i:min(i+3, len(want))])
}

func testListStops(t *testing.T, s store.Store) {
	for _, k := range []string{"s/1", "s/2", "s/3"} {
		create(t, s, k, []byte(k))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(context.Background(), "s/", func(store.ObjectInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("list stopped by fn: %v after %d calls, want fn's error after 1", err, calls)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, k := range []string{"d/1", "d/2", "d/sub/deep/3", "keep"} {
		create(t, s, k, []byte(k))
	}
	tests := []struct {
		name string
		keys []string
		left []string
	}{
		{"none", nil, []string{"d/1", "d/2", "d/sub/deep/3", "keep"}},
		{"existing and missing", []string{"d/1", "d/sub/deep/3", "d/missing", "never/existed/x"}, []string{"d/2", "keep"}},
		{"again", []string{"d/1", "d/sub/deep/3"}, []string{"d/2", "keep"}},
		{"the rest", []string{"d/2", "keep"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Delete(ctx, tc.keys...); err != nil {
				t.Fatalf("delete %q: %v", tc.keys, err)
			}
			if got := listKeys(t, s, ""); !slices.Equal(got, tc.left) {
				t.Fatalf("left %q, want %q", got, tc.left)
			}
			for _, k := range tc.keys {
				if _, err := s.Stat(ctx, k); !store.IsNotFound(err) {
					t.Fatalf("stat deleted %s: %v, want IsNotFound", k, err)
				}
			}
		})
	}
	create(t, s, "d/sub/deep/3", []byte("again")) // a deleted key can be written again
	if got := readAll(t, s, "d/sub/deep/3"); string(got) != "again" {
		t.Fatalf("recreated object holds %q", got)
	}
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	keys := []string{"", "/abs", "/", "../x", "..", ".", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/", `a\b`, `..\x`, "a\x00b"}
	for _, key := range keys {
		ops := []struct {
			name string
			err  error
		}{
			{"create", s.Create(ctx, key, strings.NewReader("x"))},
			{"open", func() error { _, err := s.Open(ctx, key); return err }()},
			{"stat", func() error { _, err := s.Stat(ctx, key); return err }()},
			{"get", func() error { _, err := s.Get(ctx, key); return err }()},
			{"delete", s.Delete(ctx, "fine", key)},
		}
		for _, op := range ops {
			if !errors.Is(op.err, store.ErrInvalidKey) || store.IsExists(op.err) || store.IsNotFound(op.err) {
				t.Errorf("%s %q: %v, want ErrInvalidKey", op.name, key, op.err)
			} else if !strings.Contains(op.err.Error(), fmt.Sprintf("%q", key)) {
				t.Errorf("%s %q: %q does not name the key", op.name, key, op.err)
			}
		}
	}
	if got := listKeys(t, s, ""); len(got) != 0 {
		t.Fatalf("invalid keys created %q", got)
	}
}

func testPingAndURI(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	u := s.URI("a/b.parquet")
	if !strings.HasSuffix(u, "/a/b.parquet") || !(strings.HasPrefix(u, "s3://") || strings.HasPrefix(u, "file:///")) {
		t.Fatalf("URI = %q, want s3://bucket/.../a/b.parquet or file:///.../a/b.parquet", u)
	}
}

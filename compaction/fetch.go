package compaction

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/store"
)

// fetchConcurrency bounds the input files fetched at once ahead of the merge.
const fetchConcurrency = 16

// inputFile is one file a merge reads: a table file from the warehouse or a raw
// file from the lake.
type inputFile struct {
	st   store.Store
	key  string
	size int64 // as listed; 0: unknown
}

// whole reports whether the file is fetched whole with one request (and so
// can be fetched ahead of the merge).
func (in inputFile) whole() bool { return in.size > 0 && in.size <= wholeFileBytes }

// fetched is an input file with its footer parsed, ready to merge.
type fetched struct {
	f    *parquet.File
	size int64
	// tracked sees the reads of a file read piecewise from the store: a
	// failure there is the store's (retryable), not the file's (a halt).
	tracked *trackedReader
	obj     io.Closer // the open object of a file read piecewise
	err     error     // classified as read would have
}

func (f *fetched) close() {
	if f.obj != nil {
		f.obj.Close()
	}
}

// open fetches an input file and parses its footer: a small file with one GET
// (Open would add a HEAD, and reading it page by page a request per page of
// every column), a larger one opened for reads in pieces through ctx.
func open(ctx context.Context, in inputFile) fetched { return openFile(ctx, in, false) }

// openFile is open; with ahead, a file read in pieces serves small reads from
// a window read ahead (copying a row group: parquet-go reads its pages in small
// sequential reads, each a request without it).
func openFile(ctx context.Context, in inputFile, ahead bool) fetched {
	opts := []parquet.FileOption{parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(readBufferBytes)}
	var ft fetched
	var src io.ReaderAt
	if in.whole() {
		data, err := in.st.Get(ctx, in.key)
		if err != nil {
			return fetched{err: fmt.Errorf("read %s: %w", in.st.URI(in.key), err)}
		}
		src, ft.size = bytes.NewReader(data), int64(len(data))
		opts = opts[:2]
	} else {
		obj, err := in.st.Open(ctx, in.key)
		if err != nil {
			return fetched{err: fmt.Errorf("open %s: %w", in.st.URI(in.key), err)}
		}
		ft.tracked, ft.obj, ft.size = &trackedReader{r: obj}, obj, obj.Size()
		src = ft.tracked
		if ahead {
			src = &readAhead{r: ft.tracked, size: ft.size}
		}
	}
	f, err := parquet.OpenFile(src, ft.size, opts...)
	if err != nil {
		ft.close()
		return fetched{err: readFailure(in.st.URI(in.key), ft.tracked, err)}
	}
	ft.f = f
	return ft
}

// prefetcher fetches a merge's small input files ahead of it, in order, at
// most fetchConcurrency at once and at most window bytes fetched but not yet
// merged (or one file, whatever its size), so that per-file latency overlaps
// the merge's CPU work. Larger files are left to the merge (slot nil).
type prefetcher struct {
	cancel context.CancelFunc
	slots  []chan fetched
	sizes  []int64
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	room    *sync.Cond
	ahead   int64
	window  int64
	stopped bool
}

// fetchAhead starts fetching the small files of ins; the caller takes each
// with take, in order, and calls stop when done.
func (m *Merger) fetchAhead(ctx context.Context, ins []inputFile) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{cancel: cancel, slots: make([]chan fetched, len(ins)), sizes: make([]int64, len(ins)),
		done: make(chan struct{}), window: m.Budget / 8}
	p.room = sync.NewCond(&p.mu)
	for i, in := range ins {
		if in.whole() {
			p.slots[i], p.sizes[i] = make(chan fetched, 1), in.size
		}
	}
	go func() {
		defer close(p.done)
		sem := make(chan struct{}, fetchConcurrency)
		for i, in := range ins {
			if p.slots[i] == nil {
				continue
			}
			if !p.reserve(in.size) {
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				fctx, cancel := ctx, context.CancelFunc(func() {})
				if m.ReadTimeout > 0 {
					fctx, cancel = context.WithTimeout(ctx, m.ReadTimeout)
				}
				ft := open(fctx, in)
				cancel()
				<-sem
				p.slots[i] <- ft
			}()
		}
	}()
	return p
}

// reserve waits for room for size more bytes ahead; false once stopped.
func (p *prefetcher) reserve(size int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.stopped && p.ahead > 0 && p.ahead+size > p.window {
		p.room.Wait()
	}
	if p.stopped {
		return false
	}
	p.ahead += size
	return true
}

// take returns input i fetched, or nil when it is the merge's to fetch.
func (p *prefetcher) take(i int) *fetched {
	if p.slots[i] == nil {
		return nil
	}
	ft := <-p.slots[i]
	return &ft
}

// release returns input i's room once it is merged.
func (p *prefetcher) release(i int) {
	if p.slots[i] == nil {
		return
	}
	p.mu.Lock()
	p.ahead -= p.sizes[i]
	p.mu.Unlock()
	p.room.Broadcast()
}

// stop ends fetching and waits for the fetches under way.
func (p *prefetcher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.room.Broadcast()
	p.cancel()
	<-p.done
	p.wg.Wait()
}

// readAhead serves reads below half a window from a window of readBufferBytes
// read with one request at the first offset it misses; larger reads go through.
type readAhead struct {
	r    io.ReaderAt
	size int64
	mu   sync.Mutex
	off  int64 // of buf in the file
	buf  []byte
}

func (a *readAhead) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= readBufferBytes/2 {
		return a.r.ReadAt(p, off)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if off < a.off || off+int64(len(p)) > a.off+int64(len(a.buf)) {
		n := min(int64(readBufferBytes), a.size-off)
		if n <= 0 {
			return 0, io.EOF
		}
		if a.buf == nil {
			a.buf = make([]byte, readBufferBytes)
		}
		m, err := a.r.ReadAt(a.buf[:n], off)
		if m < int(n) {
			a.buf = a.buf[:0]
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		a.off, a.buf = off, a.buf[:m]
	}
	k := copy(p, a.buf[off-a.off:])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

package compaction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/store"
)

// Transient reports whether err is a failure a later run can get past:
// timeouts and cancellation, broken or refused connections, and servers
// answering 5xx, 429 or 408 (S3, the catalogs). Such failures end a run as a
// retryable error, never as a halt.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{context.DeadlineExceeded, context.Canceled, io.ErrUnexpectedEOF,
		syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, target) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		code := status.HTTPStatusCode()
		return code >= 500 || code == 429 || code == 408
	}
	return false
}

// trackedReader remembers the first error (other than EOF) of the reads it
// passes on, so that a Parquet error can be told from the I/O error behind it.
type trackedReader struct {
	r   io.ReaderAt
	mu  sync.Mutex
	err error
}

func (t *trackedReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := t.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
	}
	return n, err
}

func (t *trackedReader) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// readFailure classifies an error of reading a Parquet file through r: when a
// read of the object failed, the object store is at fault (retryable, both
// errors kept); otherwise the file itself is (ErrBadInput, a halt).
func readFailure(uri string, r *trackedReader, err error) error {
	if r != nil {
		if ioErr := r.failed(); ioErr != nil {
			return fmt.Errorf("read %s: %w (parquet: %w)", uri, ioErr, err)
		}
	}
	return fmt.Errorf("%s: %w: %w", uri, ErrBadInput, err)
}

// openParquet opens key's Parquet footer through st with reads tracked, within
// timeout (0: none; the store's requests have no deadline of their own). The
// caller closes the returned object; reads past the footer are not expected.
func openParquet(ctx context.Context, st store.Store, key string, timeout time.Duration, opts ...parquet.FileOption) (*parquet.File, *trackedReader, io.Closer, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	obj, err := st.Open(ctx, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open %s: %w", st.URI(key), err)
	}
	tr := &trackedReader{r: obj}
	f, err := parquet.OpenFile(tr, obj.Size(), opts...)
	if err != nil {
		obj.Close()
		return nil, nil, nil, readFailure(st.URI(key), tr, err)
	}
	return f, tr, obj, nil
}

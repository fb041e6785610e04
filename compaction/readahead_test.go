package compaction

import (
	"bytes"
	"io"
	"testing"
)

// countingReaderAt counts the reads that reach the file.
type countingReaderAt struct {
	r     io.ReaderAt
	reads int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, off)
}

// TestReadAheadWindow: small sequential reads cost one read of the file per
// window, a read outside the window reads a new one, a large read goes
// through, and the bytes are the file's whatever the path.
func TestReadAheadWindow(t *testing.T) {
	data := make([]byte, 2*readBufferBytes+1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	src := &countingReaderAt{r: bytes.NewReader(data)}
	a := &readAhead{r: src, size: int64(len(data))}
	p := make([]byte, 64<<10)
	for off := 0; off+len(p) <= readBufferBytes; off += len(p) {
		if n, err := a.ReadAt(p, int64(off)); err != nil || n != len(p) || !bytes.Equal(p, data[off:off+len(p)]) {
			t.Fatalf("read at %d: %d, %v or wrong bytes", off, n, err)
		}
	}
	if src.reads != 1 {
		t.Fatalf("%d reads of the file for one window of small sequential reads, want 1", src.reads)
	}
	// Straddling the window's end: a new window from there.
	off := readBufferBytes - 100
	if n, err := a.ReadAt(p[:200], int64(off)); err != nil || n != 200 || !bytes.Equal(p[:200], data[off:off+200]) || src.reads != 2 {
		t.Fatalf("straddling read: %d, %v, %d reads", n, err, src.reads)
	}
	big := make([]byte, readBufferBytes)
	if n, err := a.ReadAt(big, 500); err != nil || n != len(big) || !bytes.Equal(big, data[500:500+len(big)]) || src.reads != 3 {
		t.Fatalf("large read: %d, %v, %d reads", n, err, src.reads)
	}
	// The tail: a short window, and EOF past it.
	tail := len(data) - 10
	if n, err := a.ReadAt(p[:20], int64(tail)); n != 10 || err != io.EOF || !bytes.Equal(p[:10], data[tail:]) {
		t.Fatalf("read past the end: %d, %v", n, err)
	}
	if n, err := a.ReadAt(p[:1], int64(len(data))); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
}

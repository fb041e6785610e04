package sink

import (
	"bytes"
	"testing"
)

// TestEncoderReuseSameBytes checks that a writer reset for the next file writes the
// same bytes as a new writer: files of different sizes, partitions, offsets and a
// keep mask, one after another through one encoder, each compared with a new
// encoder's file.
func TestEncoderReuseSameBytes(t *testing.T) {
	small, other, big := sampleBuffer(t, 100, 0), sampleBuffer(t, 37, 5000), sampleBuffer(t, 3000, 900)
	other.tp = &tpState{topic: "b", partition: 7}
	// All three must share one table (schema) for the writer to be reused.
	other.table, big.table = small.table, small.table
	keep := make([]bool, small.n)
	for i := range keep {
		keep[i] = i%3 != 0
	}
	files := []struct {
		name  string
		b     *buffer
		keep  []bool
		first int64
	}{
		{"small", small, nil, 0},
		{"other partition", other, nil, 5000},
		{"big", big, nil, 900},
		{"small again", small, nil, 0},
		{"keep mask", small, keep, 1},
		{"small after mask", small, nil, 0},
	}
	reused := &encoder{codec: newZstdCodec(1)}
	for i, f := range files {
		var got, want bytes.Buffer
		n, err := reused.encode(&got, f.b, f.keep, f.first)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if i > 0 && reused.pw == nil {
			t.Fatalf("%s: the encoder did not keep its writer", f.name)
		}
		wn, err := (&encoder{codec: newZstdCodec(1)}).encode(&want, f.b, f.keep, f.first)
		if err != nil {
			t.Fatalf("%s: new writer: %v", f.name, err)
		}
		if n != wn || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: reused writer wrote %d rows, %d bytes; a new one %d rows, %d bytes", f.name, n, got.Len(), wn, want.Len())
		}
	}
}

package sink

import (
	"bytes"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/lakesink/lakesink/lake/config"
)

// TestEncoderReuseSameBytes checks that a writer reset for the next file writes the
// same bytes as a new writer: files of different sizes, partitions, offsets and a
// keep mask, one after another through one encoder, each compared with a new
// encoder's file, for every flush.compression. With auto, a file's codec follows
// its buffer's size.
func TestEncoderReuseSameBytes(t *testing.T) {
	small, other, big := sampleBuffer(t, 100, 0), sampleBuffer(t, 37, 5000), sampleBuffer(t, 3000, 900)
	other.tp = &tpState{topic: "b", partition: 7}
	// All three must share one table (schema) for the writer to be reused.
	other.table, big.table = small.table, small.table
	huge := *big
	huge.bytes = int64(config.SmallFileBytes) // counted as large: auto picks zstd
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
		{"large", &huge, nil, 900},
		{"small after large", small, nil, 0},
	}
	for _, mode := range []string{config.CompressionAuto, config.CompressionZstd, config.CompressionSnappy} {
		t.Run(mode, func(t *testing.T) {
			reused := &encoder{mode: mode, zstd: newZstdCodec(1)}
			for i, f := range files {
				var got, want bytes.Buffer
				n, err := reused.encode(&got, f.b, f.keep, f.first)
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				if i > 0 && f.b != &huge && reused.pw == nil {
					t.Fatalf("%s: the encoder did not keep its writer", f.name)
				}
				wn, err := (&encoder{mode: mode, zstd: newZstdCodec(1)}).encode(&want, f.b, f.keep, f.first)
				if err != nil {
					t.Fatalf("%s: new writer: %v", f.name, err)
				}
				if n != wn || !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("%s: reused writer wrote %d rows, %d bytes; a new one %d rows, %d bytes", f.name, n, got.Len(), wn, want.Len())
				}
				wantCodec := format.Snappy
				if mode == config.CompressionZstd || mode == config.CompressionAuto && f.b == &huge {
					wantCodec = format.Zstd
				}
				pf, err := parquet.OpenFile(bytes.NewReader(got.Bytes()), int64(got.Len()))
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				if c := pf.Metadata().RowGroups[0].Columns[0].MetaData.Codec; c != wantCodec {
					t.Fatalf("%s: codec %v, want %v", f.name, c, wantCodec)
				}
				// parquet-go's own codecs read every page back.
				rows := make([]parquet.Row, 64)
				r, read := parquet.NewReader(pf), 0
				for {
					k, err := r.ReadRows(rows)
					read += k
					if err != nil {
						break
					}
				}
				if read != n {
					t.Fatalf("%s: read back %d rows of %d", f.name, read, n)
				}
			}
		})
	}
}

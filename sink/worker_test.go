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
			for _, f := range files {
				var got, want bytes.Buffer
				n, err := reused.encode(&got, f.b, f.keep, f.first)
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				if kept := reused.pw != nil; kept != (f.b.bytes < reuseBelow) {
					t.Fatalf("%s: %d bytes buffered, writer kept: %v", f.name, f.b.bytes, kept)
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

// TestColumnsGrowthIsExact checks that growth announces exactly the bytes appendRow
// then adds to size (the engine reserves the one and accounts the other), across
// chunk boundaries, and that the chunks hold every row in order.
func TestColumnsGrowthIsExact(t *testing.T) {
	src := sampleBuffer(t, 3000, 0)
	s := src.table.schema
	staged, cols := newColumns(s.Leaves), newRowStore(s.Leaves)
	byRow := make([][][]parquet.Value, len(s.Leaves)) // column, row: values
	for i := range s.Leaves {
		byRow[i] = rowsOf(src.rows.values(i))
	}
	for r := range 3000 {
		// Stage row r of src as the decoder would.
		staged.reset()
		for i := range s.Leaves {
			for _, v := range byRow[i][r] {
				staged.add(i, v, v.RepetitionLevel(), v.DefinitionLevel())
			}
		}
		before, want := cols.size(), cols.growth(staged)
		cols.appendRow(staged)
		if got := cols.size() - before; got != want {
			t.Fatalf("row %d: growth said %d bytes, size grew by %d", r, want, got)
		}
	}
	if cols.chunks() < 10 {
		t.Fatalf("%d chunk(s): the test crosses too few chunk boundaries", cols.chunks())
	}
	for i := range s.Leaves {
		a, b := cols.values(i), src.rows.values(i)
		if len(a) != len(b) {
			t.Fatalf("column %d: %d values, want %d", i, len(a), len(b))
		}
		for j := range a {
			if !parquet.Equal(a[j], b[j]) || a[j].DefinitionLevel() != b[j].DefinitionLevel() || a[j].RepetitionLevel() != b[j].RepetitionLevel() {
				t.Fatalf("column %d value %d: %v, want %v", i, j, a[j], b[j])
			}
		}
	}
}

// rowsOf splits a column's values into rows.
func rowsOf(vals []parquet.Value) [][]parquet.Value {
	var rows [][]parquet.Value
	for _, v := range vals {
		if v.RepetitionLevel() == 0 {
			rows = append(rows, nil)
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], v)
	}
	return rows
}

// TestWriteToMatchesValues checks that writeTo, which skips levels on required
// top-level columns, writes the same file as every value written with its levels.
func TestWriteToMatchesValues(t *testing.T) {
	b := sampleBuffer(t, 2000, 0)
	sameFileAsValues(t, b.table.schema, b.rows, b.rows.values)
}

package rawfile_test

import (
	"bytes"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/rawfile/rawfiletest"
)

// TestEncoderReuseSameBytes checks that a writer reset for the next file writes the
// same bytes as a new writer: files of different sizes, partitions, offsets and a
// keep mask, one after another through one encoder, each compared with a new
// encoder's file, for every flush.compression. With auto, a file's codec follows
// its buffer's size.
func TestEncoderReuseSameBytes(t *testing.T) {
	small, other, big := sampleBuffer(t, 100, 0), sampleBuffer(t, 37, 5000), sampleBuffer(t, 3000, 900)
	other.Topic, other.Partition = "b", 7
	// All three must share one table (schema) for the writer to be reused.
	other.Schema, big.Schema = small.Schema, small.Schema
	huge := *big
	huge.Bytes = int64(config.SmallFileBytes) // counted as large: auto picks zstd
	keep := make([]bool, small.N)
	for i := range keep {
		keep[i] = i%3 != 0
	}
	files := []struct {
		name  string
		b     *rawfile.File
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
			reused := rawfile.NewEncoder(mode, rawfile.NewZstdCodec(1))
			for _, f := range files {
				var got, want bytes.Buffer
				file := *f.b
				file.First = f.first
				n, err := reused.Encode(&got, &file, f.keep)
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				if kept := reused.KeptWriter(); kept != (f.b.Bytes < rawfile.ReuseBelow) {
					t.Fatalf("%s: %d bytes buffered, writer kept: %v", f.name, f.b.Bytes, kept)
				}
				wn, err := rawfile.NewEncoder(mode, rawfile.NewZstdCodec(1)).Encode(&want, &file, f.keep)
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

// TestColumnsGrowthIsExact checks that Growth announces exactly the bytes AppendRow
// then adds to Size (the engine reserves the one and accounts the other), across
// chunk boundaries, and that the chunks hold every row in order.
func TestColumnsGrowthIsExact(t *testing.T) {
	src := sampleBuffer(t, 3000, 0)
	s := src.Schema
	staged, cols := make([][]byte, len(s.Leaves)), rawfile.NewRowStore(s.Leaves)
	byRow := make([][][]parquet.Value, len(s.Leaves)) // column, row: values
	for i := range s.Leaves {
		byRow[i] = rowsOf(src.Rows.Values(i))
	}
	for r := range 3000 {
		// Stage row r of src as the decoder would.
		for i := range s.Leaves {
			staged[i] = staged[i][:0]
			for _, v := range byRow[i][r] {
				staged[i] = rawfile.AppendEntry(staged[i], &s.Leaves[i], v, v.RepetitionLevel(), v.DefinitionLevel())
			}
		}
		before, want := cols.Size(), cols.Growth(staged)
		cols.AppendRow(staged)
		if got := cols.Size() - before; got != want {
			t.Fatalf("row %d: growth said %d bytes, size grew by %d", r, want, got)
		}
	}
	if cols.Chunks() < 10 {
		t.Fatalf("%d chunk(s): the test crosses too few chunk boundaries", cols.Chunks())
	}
	for i := range s.Leaves {
		a, b := cols.Values(i), src.Rows.Values(i)
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

// TestWriteToMatchesValues checks that WriteTo, which skips levels on required
// top-level columns, writes the same file as every value written with its levels.
func TestWriteToMatchesValues(t *testing.T) {
	b := sampleBuffer(t, 2000, 0)
	rawfiletest.SameFileAsValues(t, b.Schema, b.Rows, b.Rows.Values)
}

// TestRawFileIndexAndStatistics checks what query engines prune with in every raw
// file: min/max statistics on each column chunk, a column index (per-page min/max)
// and an offset index for every column, and dictionary encoding on the strings the
// table leaves it on (country) and not on those it turns it off for (event_id).
// Pages carry no statistics of their own (DataPageStatistics(false)): the column
// index holds the same bounds, and readers use it and the chunk statistics.
func TestRawFileIndexAndStatistics(t *testing.T) {
	for _, mode := range []string{config.CompressionSnappy, config.CompressionZstd} {
		t.Run(mode, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := rawfile.NewEncoder(mode, rawfile.NewZstdCodec(1)).Encode(&out, sampleBuffer(t, 2000, 0), nil); err != nil {
				t.Fatal(err)
			}
			f, err := parquet.OpenFile(bytes.NewReader(out.Bytes()), int64(out.Len()))
			if err != nil {
				t.Fatal(err)
			}
			cis, ois := f.ColumnIndexes(), f.OffsetIndexes()
			cols := f.Metadata().RowGroups[0].Columns
			if len(cis) != len(cols) || len(ois) != len(cols) {
				t.Fatalf("%d columns, %d column indexes, %d offset indexes", len(cols), len(cis), len(ois))
			}
			for i, c := range cols {
				md := c.MetaData
				name := md.PathInSchema
				if md.Statistics.NullCount < md.NumValues && (md.Statistics.MinValue == nil || md.Statistics.MaxValue == nil) {
					t.Errorf("column %v: no min/max statistics (%d values, %d nulls)", name, md.NumValues, md.Statistics.NullCount)
				}
				if len(ois[i].PageLocations) == 0 || len(cis[i].MinValues) != len(ois[i].PageLocations) {
					t.Errorf("column %v: %d pages in the offset index, %d in the column index", name, len(ois[i].PageLocations), len(cis[i].MinValues))
				}
				dict := md.DictionaryPageOffset != 0
				switch name[0] {
				case "country":
					if !dict {
						t.Errorf("column %v: no dictionary page", name)
					}
				case "event_id":
					if dict {
						t.Errorf("column %v: a dictionary page, though the table turns it off", name)
					}
				}
			}
		})
	}
}

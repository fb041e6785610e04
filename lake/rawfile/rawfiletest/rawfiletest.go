// Package rawfiletest holds checks of the raw file format shared by the tests of
// the packages that write it (lake/rawfile, decode).
package rawfiletest

import (
	"bytes"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// SameFileAsValues checks that rs.WriteTo writes the same Parquet file as want(i),
// the values of each column i with their levels, written column by column.
func SameFileAsValues(t testing.TB, s *schema.Schema, rs *rawfile.RowStore, want func(i int) []parquet.Value) {
	t.Helper()
	var got, exp bytes.Buffer
	w := parquet.NewWriter(&got, s.WriterOptions()...)
	if _, err := rs.WriteTo(w, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = parquet.NewWriter(&exp, s.WriterOptions()...)
	for i, cw := range w.ColumnWriters() {
		if _, err := cw.WriteRowValues(want(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), exp.Bytes()) {
		t.Fatalf("WriteTo wrote %d bytes, the leveled values %d bytes, not the same", got.Len(), exp.Len())
	}
}

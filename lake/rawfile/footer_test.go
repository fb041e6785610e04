package rawfile_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// TestReadFooter: the footer of an encoded raw file reads back as its
// partition, first kept and last offset and row count; a Parquet file without
// the keys is an error naming the file and the key.
func TestReadFooter(t *testing.T) {
	ctx := context.Background()
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := sampleBuffer(t, 50, 1000)
	f.Topic, f.Partition = "orders.v1", 3
	keep := make([]bool, f.N)
	for i := range keep {
		keep[i] = i != 0 && i != 7 // the first and the eighth record are dead-lettered
	}
	f.First = 1001
	var buf bytes.Buffer
	if _, err := rawfile.NewEncoder(config.CompressionAuto, rawfile.NewZstdCodec(1)).Encode(&buf, f, keep); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, "raw/x.parquet", &buf); err != nil {
		t.Fatal(err)
	}
	got, err := rawfile.ReadFooter(ctx, st, "raw/x.parquet")
	if err != nil {
		t.Fatal(err)
	}
	want := rawfile.Footer{Topic: "orders.v1", Partition: 3, First: 1001, Last: 1049, Rows: 48}
	if got != want {
		t.Fatalf("footer %+v, want %+v", got, want)
	}

	var plain bytes.Buffer
	w := parquet.NewGenericWriter[struct{ A int64 }](&plain)
	if _, err := w.Write([]struct{ A int64 }{{1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, "raw/plain.parquet", &plain); err != nil {
		t.Fatal(err)
	}
	_, err = rawfile.ReadFooter(ctx, st, "raw/plain.parquet")
	if err == nil || !strings.Contains(err.Error(), "raw/plain.parquet") || !strings.Contains(err.Error(), rawfile.MetaTopic) {
		t.Fatalf("footer of a plain Parquet file: %v, want an error naming the file and %s", err, rawfile.MetaTopic)
	}
	if _, err := rawfile.ReadFooter(ctx, st, "raw/absent.parquet"); !store.IsNotFound(err) {
		t.Fatalf("absent file: %v, want not found", err)
	}
}

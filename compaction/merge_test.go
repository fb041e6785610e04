package compaction_test

import (
	"context"
	"io"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/format"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// TestMergeSpillsSortsAndDedupes: with a budget of a few rows the merger
// spills many sorted runs and k-way merges them; the output holds every row
// once, in sort order, whatever the budget.
func TestMergeSpillsSortsAndDedupes(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "")
	// Three raw files of one hour, event times scrambled against offsets, and
	// the middle one twice under another name.
	l.sinkScrambled(t, cfg, 0, 100)
	l.sinkScrambled(t, cfg, 100, 200)
	l.sinkScrambled(t, cfg, 200, 300)
	raw := rawFiles(t, l.lake, 3)
	dup := raw[1]
	dup.Key = layout.RawKey("events", layout.Hour, dup.Period, dup.Topic, dup.Partition, dup.First+1)
	copyKey(t, l.lake, raw[1].Key, dup.Key)
	raw = append(raw, dup)

	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	for gi, budget := range []int64{1 << 30, 4 << 10, 1} {
		m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
			Lake: l.lake, Warehouse: l.lake, Budget: budget, RowGroupSize: 1 << 20, Target: 1 << 30, TempDir: t.TempDir(), Job: "test"}
		mergeChecked(t, m, raw, 2*gi, budget, 400, 100, 0, 300)
		// The next merge reuses the table of the last: it must start empty.
		mergeChecked(t, m, raw[2:3], 2*gi+1, budget, 100, 0, 200, 300)
	}
}

// mergeChecked merges the group of raw files and checks its one output: in rows
// read, dups dropped, and every n in [lo, hi) once, in sort order.
func mergeChecked(t *testing.T, m *compaction.Merger, raw []compaction.RawFile, gi int, budget int64, in, dups, lo, hi int64) {
	t.Helper()
	res, err := m.Merge(context.Background(), compaction.Group{Period: raw[0].Period, Raw: raw}, gi, "out", compaction.Coverage{})
	if err != nil {
		t.Fatalf("budget %d: %v", budget, err)
	}
	if res.RowsIn != in || res.Duplicates != dups || len(res.Outputs) != 1 || res.Outputs[0].Rows != hi-lo {
		t.Fatalf("budget %d: %d rows in, %d duplicates, outputs %+v; want %d, %d, one of %d rows", budget, res.RowsIn, res.Duplicates, res.Outputs, in, dups, hi-lo)
	}
	ns, ts := readColumns(t, m.Warehouse, res.Outputs[0].Key)
	seen := map[int64]bool{}
	for i := range ns {
		if seen[ns[i]] || ns[i] < lo || ns[i] >= hi {
			t.Fatalf("budget %d: n=%d twice or outside [%d, %d)", budget, ns[i], lo, hi)
		}
		seen[ns[i]] = true
		if i > 0 && ts[i] < ts[i-1] {
			t.Fatalf("budget %d: row %d (ts %d) sorts before row %d (ts %d)", budget, i, ts[i], i-1, ts[i-1])
		}
	}
	if int64(len(seen)) != hi-lo {
		t.Fatalf("budget %d: %d distinct rows, want %d", budget, len(seen), hi-lo)
	}
}

// rawFiles lists the hourly raw files in the lake and checks there are want of them.
func rawFiles(t *testing.T, lake store.Store, want int) []compaction.RawFile {
	t.Helper()
	var raw []compaction.RawFile
	err := lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error {
		k, err := layout.ParseRawKey(layout.Hour, o.Key)
		if err != nil {
			return err
		}
		raw = append(raw, compaction.RawFile{Key: o.Key, Topic: k.Topic, Partition: k.Partition, First: k.FirstOffset, Size: o.Size, Period: k.Period})
		return nil
	})
	if err != nil || len(raw) != want {
		t.Fatalf("raw files %v, %v; want %d", raw, err, want)
	}
	return raw
}

func copyKey(t *testing.T, s store.Store, from, to string) {
	t.Helper()
	obj, err := s.Open(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if err := s.Create(context.Background(), to, obj); err != nil {
		t.Fatal(err)
	}
}

// readColumns reads the n and ts columns of a Parquet file in the store.
func readColumns(t *testing.T, s store.Store, key string) (ns, ts []int64) {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size())
	if err != nil {
		t.Fatal(err)
	}
	nCol, _ := f.Schema().Lookup("n")
	tsCol, _ := f.Schema().Lookup("ts")
	buf := make([]parquet.Row, 64)
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		for {
			k, err := rows.ReadRows(buf)
			for _, row := range buf[:k] {
				for _, v := range row {
					switch v.Column() {
					case nCol.ColumnIndex:
						ns = append(ns, v.Int64())
					case tsCol.ColumnIndex:
						ts = append(ts, v.Int64())
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rows.Close()
				t.Fatal(err)
			}
		}
		rows.Close()
	}
	return ns, ts
}

// TestMergeCodec: the outputs are compressed with the merger's codec (the
// lake's zstd when none), and compaction.zstd_level picks the zstd level.
func TestMergeCodec(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "")
	l.sinkScrambled(t, cfg, 0, 100)
	raw := rawFiles(t, l.lake, 1)
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	for gi, tc := range []struct {
		codec compress.Codec
		want  format.CompressionCodec
	}{{nil, format.Zstd}, {&snappy.Codec{}, format.Snappy}, {compaction.ZstdCodec(config.ZstdFastest), format.Zstd}} {
		m := &compaction.Merger{Schema: sch, SortBy: []string{"ts"}, Lake: l.lake, Warehouse: l.lake, Budget: 1 << 30,
			RowGroupSize: 1 << 20, Target: 1 << 30, TempDir: t.TempDir(), Job: "codec", Codec: tc.codec}
		res, err := m.Merge(context.Background(), compaction.Group{Period: raw[0].Period, Raw: raw}, gi, "out", compaction.Coverage{})
		if err != nil || len(res.Outputs) != 1 {
			t.Fatalf("codec %v: outputs %+v, %v", tc.codec, res.Outputs, err)
		}
		obj, err := l.lake.Open(context.Background(), res.Outputs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parquet.OpenFile(obj, obj.Size())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range f.Metadata().RowGroups[0].Columns {
			if c.MetaData.Codec != tc.want {
				t.Fatalf("codec %v: column %v written with %v, want %v", tc.codec, c.MetaData.PathInSchema, c.MetaData.Codec, tc.want)
			}
		}
		obj.Close()
	}
	for level, want := range map[string]zstd.Level{config.ZstdFastest: zstd.SpeedFastest, config.ZstdDefault: zstd.SpeedDefault, config.ZstdBetter: zstd.SpeedBetterCompression} {
		if got := compaction.ZstdCodec(level).(*zstd.Codec).Level; got != want {
			t.Fatalf("zstd_level %s: level %v, want %v", level, got, want)
		}
	}
}

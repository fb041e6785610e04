package compaction_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// TestMergeCopiesSortedRowGroups: raw files already in the table's order are
// copied into the output without re-encoding (their column chunks' compressed
// bytes are in the output as they were), and every case that must not be
// copied is merged instead: a row group whose key range holds another input's
// rows, the same record twice, rows the table already holds, an unsorted
// file, and the option turned off. Every output holds each row once, sorted.
func TestMergeCopiesSortedRowGroups(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "")
	cfg.Flush.Compression = config.CompressionZstd // the compactor's codec: copyable
	at := func(i int) time.Time { return l.hour.Add(time.Duration(i) * time.Second) }
	none := func(int) string { return "" }
	l.writeEvents(t, cfg, 0, 100, at, none)   // A: seconds 0-99, in order
	l.writeEvents(t, cfg, 100, 200, at, none) // B: seconds 100-199, in order
	// C: 10 events inside A's range (seconds 50.5, 51.5, …), in order.
	l.writeEvents(t, cfg, 200, 210, func(i int) time.Time { return at(i - 150).Add(500 * time.Millisecond) }, none)
	l.sinkScrambled(t, cfg, 210, 310) // D: event times out of offset order
	raw := rawFiles(t, l.lake, 4)
	byFirst := map[int64]compaction.RawFile{}
	for _, r := range raw {
		byFirst[r.First] = r
	}
	a, b, c, d := byFirst[0], byFirst[100], byFirst[200], byFirst[210]
	dupA := a
	dupA.Key = layout.RawKey("events", layout.Hour, a.Period, a.Topic, a.Partition, a.First+1)
	copyKey(t, l.lake, a.Key, dupA.Key)

	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	heldA := compaction.Coverage{}
	heldA.Add("events", 0, compaction.Range{First: 50, Last: 50})
	for gi, tc := range []struct {
		name               string
		raw                []compaction.RawFile
		filter             compaction.Coverage
		off                bool
		budget             int64 // 0: 1 GiB
		reqs               int64 // requests to the raw zone, when not 0
		copied, demoted    int
		rows, dups, lo, hi int64
	}{
		{name: "two sorted files", raw: []compaction.RawFile{b, a}, copied: 2, reqs: 2, rows: 200, hi: 200},
		// A budget too small to hold the files: they are opened again to copy.
		{name: "two sorted files, opened again", raw: []compaction.RawFile{a, b}, budget: 2 << 10, copied: 2, reqs: 4, rows: 200, hi: 200},
		// The sorter spills: nothing can be spliced into the k-way merge.
		{name: "spilled", raw: []compaction.RawFile{a, b, d}, budget: 4 << 10, demoted: 2, rows: 300, hi: 310},
		// C's range (chunk statistics) meets A's: C is merged at once, A demoted.
		{name: "a sorted file inside A", raw: []compaction.RawFile{a, b, c}, copied: 1, demoted: 1, rows: 210, hi: 210},
		// D comes first: A and B meet its range and are merged at once.
		{name: "unsorted rows before A and B", raw: []compaction.RawFile{d, a, b}, rows: 300, hi: 310},
		{name: "unsorted rows inside A and B", raw: []compaction.RawFile{a, b, d}, demoted: 2, rows: 300, hi: 310},
		{name: "A twice", raw: []compaction.RawFile{a, b, dupA}, copied: 1, demoted: 1, rows: 200, dups: 100, hi: 200},
		{name: "a row of A already in the table", raw: []compaction.RawFile{a, b}, filter: heldA, copied: 1, rows: 199, dups: 1, hi: 200},
		{name: "unsorted file", raw: []compaction.RawFile{d}, rows: 100, lo: 210, hi: 310},
		{name: "option off", raw: []compaction.RawFile{a, b}, off: true, rows: 200, hi: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reqs atomic.Int64
			lake := countingStore{Store: l.lake, n: &reqs}
			m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
				Lake: lake, Warehouse: l.lake, Budget: cmp.Or(tc.budget, 1<<30), RowGroupSize: 1 << 10, Target: 1 << 30, TempDir: t.TempDir(),
				Job: "copy", CopyRowGroups: !tc.off}
			filter := tc.filter
			if filter == nil {
				filter = compaction.Coverage{}
			}
			res, err := m.Merge(context.Background(), compaction.Group{Period: a.Period, Raw: tc.raw}, gi, "out", filter)
			if err != nil {
				t.Fatal(err)
			}
			if res.RowGroupsCopied != tc.copied || res.RowGroupsDemoted != tc.demoted {
				t.Fatalf("%d row groups copied, %d demoted; want %d, %d", res.RowGroupsCopied, res.RowGroupsDemoted, tc.copied, tc.demoted)
			}
			if tc.reqs != 0 && reqs.Load() != tc.reqs {
				t.Fatalf("%d requests to the raw zone, want %d", reqs.Load(), tc.reqs)
			}
			if len(res.Outputs) != 1 || res.Outputs[0].Rows != tc.rows || res.Duplicates != tc.dups {
				t.Fatalf("outputs %+v, %d duplicates; want one of %d rows, %d duplicates", res.Outputs, res.Duplicates, tc.rows, tc.dups)
			}
			ns, ts := readColumns(t, l.lake, res.Outputs[0].Key)
			seen := map[int64]bool{}
			for i := range ns {
				if seen[ns[i]] || ns[i] < tc.lo || ns[i] >= tc.hi {
					t.Fatalf("n=%d twice or outside [%d, %d)", ns[i], tc.lo, tc.hi)
				}
				seen[ns[i]] = true
				if i > 0 && ts[i] < ts[i-1] {
					t.Fatalf("row %d (ts %d) sorts before row %d (ts %d)", i, ts[i], i-1, ts[i-1])
				}
			}
			if int64(len(seen)) != tc.rows {
				t.Fatalf("%d distinct rows, want %d", len(seen), tc.rows)
			}
			if got := verbatimChunks(t, l.lake, res.Outputs[0].Key, tc.raw); got != tc.copied*len(sch.Parquet.Columns()) {
				t.Fatalf("%d column chunks of the output are byte for byte an input's, want %d (%d row groups copied)", got, tc.copied*len(sch.Parquet.Columns()), tc.copied)
			}
		})
	}
}

// verbatimChunks counts the output's column chunks whose compressed bytes
// (dictionary and data pages) are, byte for byte, a column chunk of one of the
// inputs: what copying without re-encoding leaves.
func verbatimChunks(t *testing.T, st store.Store, out string, inputs []compaction.RawFile) int {
	t.Helper()
	in := map[string]bool{}
	for _, r := range inputs {
		data, meta := fileMeta(t, st, r.Key)
		for _, rg := range meta.RowGroups {
			for _, c := range rg.Columns {
				in[string(chunkBytes(data, &c.MetaData))] = true
			}
		}
	}
	data, meta := fileMeta(t, st, out)
	n := 0
	for _, rg := range meta.RowGroups {
		for _, c := range rg.Columns {
			if in[string(chunkBytes(data, &c.MetaData))] {
				n++
			}
		}
	}
	return n
}

func fileMeta(t *testing.T, st store.Store, key string) ([]byte, *format.FileMetaData) {
	t.Helper()
	data, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", key, err))
	}
	return data, f.Metadata()
}

// chunkBytes is a column chunk's pages as stored.
func chunkBytes(data []byte, m *format.ColumnMetaData) []byte {
	start := m.DataPageOffset
	if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
		start = m.DictionaryPageOffset
	}
	return data[start : start+m.TotalCompressedSize]
}

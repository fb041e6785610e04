package rawfile_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
)

// BenchmarkEncodeSmallFile is the CPU of one raw file of 100 rows, the file a sink
// with thousands of open hour partitions writes: per-file costs (writer set-up,
// pages, footer) dominate it.
func BenchmarkEncodeSmallFile(b *testing.B) {
	for _, tc := range []struct {
		rows int
		mode string
	}{{100, "zstd"}, {100, "snappy"}, {500, "zstd"}, {500, "snappy"}, {50_000, "zstd"}, {50_000, "snappy"}} {
		rows := tc.rows
		b.Run(fmt.Sprintf("rows=%d/%s", rows, tc.mode), func(b *testing.B) {
			buf := sampleBuffer(b, rows, 0)
			enc := rawfile.NewEncoder(tc.mode, rawfile.NewZstdCodec(2))
			b.ReportAllocs()
			b.ResetTimer()
			var cw byteCounter
			for i := 0; i < b.N; i++ {
				if _, err := enc.Encode(&cw, buf, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			b.ReportMetric(float64(cw)/float64(b.N), "bytes/file")
		})
	}
}

// sampleBuffer is a raw file of n generated events of the sample table (internal/gen),
// from offset first, decoded as the sink does.
func sampleBuffer(tb testing.TB, n int, first int64) *rawfile.File {
	tb.Helper()
	t := sampleTable(tb)
	g := gen.New(uint64(first)+1, time.Now().Add(-time.Hour), time.Hour)
	now := time.Now()
	f := &rawfile.File{Schema: t.Schema, Rows: rawfile.NewRowStore(t.Schema.Leaves), Topic: "a", First: first}
	for i := range n {
		v, _ := g.Event(i, n)
		off := first + int64(i)
		if _, err := t.Decode(&decode.Record{Topic: "a", Timestamp: now, Offset: off, Value: v}, now); err != nil {
			tb.Fatal(err)
		}
		f.Rows.AppendRow(t.Row())
		f.N, f.Last = f.N+1, off
	}
	f.Bytes = f.Rows.Size()
	return f
}

// sampleTable is the sample table (internal/gen) compiled for decoding, fed by topic "a".
func sampleTable(tb testing.TB) *decode.Table {
	tb.Helper()
	cfg, err := config.Parse([]byte("kafka: {brokers: [\"b:1\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: d}\ntables:\n"+gen.TableYAML("events", "a")), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := decode.Compile(cfg, decode.Options{MaxRecordBytes: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	return ts.ForTopic("a")
}

// byteCounter counts the bytes written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

// BenchmarkAppendRow is the column store's append at 10 and 1,000 open buffers: with
// many buffers each row lands in columns that are cold in the CPU cache.
func BenchmarkAppendRow(b *testing.B) {
	t := sampleTable(b)
	s := t.Schema
	// 1,000 sample records staged as the decoder leaves them.
	g := gen.New(1, time.Now().Add(-time.Hour), time.Hour)
	now := time.Now()
	rows := make([][][]byte, 1000)
	for i := range rows {
		v, _ := g.Event(i, len(rows))
		if _, err := t.Decode(&decode.Record{Topic: "a", Timestamp: now, Offset: int64(i), Value: v}, now); err != nil {
			b.Fatal(err)
		}
		rows[i] = slices.Clone(t.Row())
		for k := range rows[i] {
			rows[i][k] = slices.Clone(rows[i][k])
		}
	}
	for _, open := range []int{10, 1000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			bufs, n := make([]*rawfile.RowStore, open), make([]int, open) // n: rows in each
			for i := range bufs {
				bufs[i] = rawfile.NewRowStore(s.Leaves)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % open
				if n[k] == 500 {
					bufs[k], n[k] = rawfile.NewRowStore(s.Leaves), 0
				}
				bufs[k].AppendRow(rows[i%len(rows)])
				n[k]++
			}
		})
	}
}

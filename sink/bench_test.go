package sink

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// BenchmarkDecodeEncode is the per-record CPU of the sink without Kafka or S3:
// decode into the column store, then encode Parquet (Batch: the upload workers' encoder,
// a file per 50,000 records). `go test -bench . ./sink -cpuprofile` shows where the time goes.
func BenchmarkDecodeEncode(b *testing.B) {
	tc, s := sampleTable(b)
	const n = 50_000
	g := gen.New(1, time.Now().Add(-time.Hour), time.Hour)
	evs := make([][]byte, n)
	var size int64
	for i := range evs {
		v, _ := g.Event(i, n)
		evs[i] = append([]byte(nil), v...)
		size += int64(len(v))
	}
	d := NewDecoder(s, tc, 1<<20)
	now := time.Now()
	rec := &Record{Topic: "a", Timestamp: now}
	b.SetBytes(size / n)
	b.ResetTimer()
	batch := NewBatch(s, "a")
	for i := 0; i < b.N; i++ {
		rec.Offset, rec.Value = int64(i), evs[i%n]
		if _, err := d.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
		batch.Add(d, rec.Offset)
		if (i+1)%n == 0 || i == b.N-1 {
			if err := batch.Flush(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// sampleTable is the bench's sample table (internal/gen) and its compiled schema.
func sampleTable(tb testing.TB) (*config.Table, *schema.Schema) {
	tb.Helper()
	cfg, err := config.Parse([]byte("kafka: {brokers: [\"b:1\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: d}\ntables:\n"+gen.TableYAML("events", "a")), nil)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		tb.Fatal(err)
	}
	return &cfg.Tables[0], s
}

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
			enc := &encoder{mode: tc.mode, zstd: newZstdCodec(2)}
			b.ReportAllocs()
			b.ResetTimer()
			cw := &countingWriter{w: io.Discard}
			for i := 0; i < b.N; i++ {
				if _, err := enc.encode(cw, buf, nil, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			b.ReportMetric(float64(cw.n)/float64(b.N), "bytes/file")
		})
	}
}

// sampleBuffer is a buffer of n generated events of the sample table, from offset first.
func sampleBuffer(tb testing.TB, n int, first int64) *buffer {
	tb.Helper()
	tc, s := sampleTable(tb)
	g := gen.New(uint64(first)+1, time.Now().Add(-time.Hour), time.Hour)
	d := NewDecoder(s, tc, 1<<20)
	now := time.Now()
	buf := &buffer{bufKey: bufKey{table: &table{schema: s}, tp: &tpState{topic: "a"}}, rows: newRowStore(s.Leaves), first: first}
	for i := range n {
		v, _ := g.Event(i, n)
		off := first + int64(i)
		if _, err := d.Decode(&Record{Topic: "a", Timestamp: now, Offset: off, Value: v}, now); err != nil {
			tb.Fatal(err)
		}
		buf.rows.appendRow(d.row)
		buf.offsets = append(buf.offsets, off)
		buf.n, buf.last = buf.n+1, off
	}
	buf.bytes = buf.rows.size()
	return buf
}

// BenchmarkAppendRow is the column store's append at 10 and 1,000 open buffers: with
// many buffers each row lands in columns that are cold in the CPU cache.
func BenchmarkAppendRow(b *testing.B) {
	tc, s := sampleTable(b)
	// 1,000 sample records staged as the decoder leaves them.
	g := gen.New(1, time.Now().Add(-time.Hour), time.Hour)
	now := time.Now()
	rows := make([]*columns, 1000)
	for i := range rows {
		d := NewDecoder(s, tc, 1<<20)
		v, _ := g.Event(i, len(rows))
		if _, err := d.Decode(&Record{Topic: "a", Timestamp: now, Offset: int64(i), Value: v}, now); err != nil {
			b.Fatal(err)
		}
		rows[i] = d.row
	}
	for _, open := range []int{10, 1000} {
		b.Run(fmt.Sprintf("open=%d", open), func(b *testing.B) {
			bufs, n := make([]*rowStore, open), make([]int, open) // n: rows in each
			for i := range bufs {
				bufs[i] = newRowStore(s.Leaves)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % open
				if n[k] == 500 {
					bufs[k], n[k] = newRowStore(s.Leaves), 0
				}
				bufs[k].appendRow(rows[i%len(rows)])
				n[k]++
			}
		})
	}
}

package sink

import (
	"io"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// BenchmarkDecodeEncode is the per-record CPU of the sink without Kafka or S3:
// decode into the column store, then encode Parquet. `go test -bench . ./sink -cpuprofile`
// shows where the time goes.
func BenchmarkDecodeEncode(b *testing.B) {
	cfg, err := config.Parse([]byte("kafka: {brokers: [\"b:1\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: d}\ntables:\n"+gen.TableYAML("events", "a")), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		b.Fatal(err)
	}
	const n = 50_000
	g := gen.New(1, time.Now().Add(-time.Hour), time.Hour)
	evs := make([][]byte, n)
	var size int64
	for i := range evs {
		v, _ := g.Event(i, n)
		evs[i] = append([]byte(nil), v...)
		size += int64(len(v))
	}
	d := NewDecoder(s, &cfg.Tables[0], 1<<20)
	now := time.Now()
	rec := &Record{Topic: "a", Timestamp: now}
	b.SetBytes(size / n)
	b.ResetTimer()
	cols := newColumns(s.Leaves)
	for i := 0; i < b.N; i++ {
		rec.Offset, rec.Value = int64(i), evs[i%n]
		if _, err := d.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
		cols.appendRow(d.Cols)
		if cols.rows == n || i == b.N-1 {
			w := parquet.NewWriter(io.Discard, s.WriterOptions()...)
			if err := cols.writeTo(w, nil); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			cols = newColumns(s.Leaves)
		}
	}
}

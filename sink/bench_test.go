package sink

import (
	"io"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode"
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
	d := decode.NewDecoder(s, tc, 1<<20)
	now := time.Now()
	rec := &decode.Record{Topic: "a", Timestamp: now}
	b.SetBytes(size / n)
	b.ResetTimer()
	batch := NewBatch(s, "a")
	for i := 0; i < b.N; i++ {
		rec.Offset, rec.Value = int64(i), evs[i%n]
		if _, err := d.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
		batch.Add(d.Row(), rec.Offset)
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

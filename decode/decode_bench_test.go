package decode

import (
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// BenchmarkDecode is the JSON decoder alone (no Parquet encoding) on the generator's
// events, with the default contract (no coercions, not strict).
func BenchmarkDecode(b *testing.B) { benchDecode(b, "") }

// BenchmarkDecodeStrictCoerce is the same with strict mode and every coercion on.
func BenchmarkDecodeStrictCoerce(b *testing.B) {
	benchDecode(b, "    strict: true\n    coerce: [numeric_strings, bool_strings, bool_numbers]\n")
}

func benchDecode(b *testing.B, extra string) {
	cfg, err := config.Parse([]byte("kafka: {brokers: [\"b:1\"]}\nlocal_dir: /tmp/x\ndead_letter: {topic: d}\ntables:\n"+gen.TableYAML("events", "a")+extra), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
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
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec.Offset, rec.Value = int64(i), evs[i%n]
		if _, err := d.Decode(rec, now); err != nil {
			b.Fatal(err)
		}
	}
}

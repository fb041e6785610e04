package compaction_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

// benchLake writes events of the bench's generator (nested columns included)
// into a local raw zone through the sink's engine, sealing often enough to
// leave about files raw files, and returns the store, config and raw files by
// period.
func benchLake(tb testing.TB, events, files int) (store.Store, *config.Config, map[layout.Period][]compaction.RawFile) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	lake, err := store.NewLocal(filepath.Join(dir, "lake"))
	if err != nil {
		tb.Fatal(err)
	}
	y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
local_dir: %s
dead_letter: {topic: dlq}
flush: {max_file_bytes: 1GiB, memory_budget: 1GiB, max_age: 1h}
catalog:
  type: sql
  namespace: lake
  sql: {driver: sqlite, dsn: %s}
tables:
%s`, filepath.Join(dir, "lake"), filepath.Join(dir, "catalog.db"), gen.TableYAML("events", "bench"))
	cfg, err := config.Parse([]byte(y), nil)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := sink.NewEngine(cfg, lake, sink.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	e.Start(ctx)
	defer e.Close()
	const parts = 4
	for p := range int32(parts) {
		e.Assign("bench", p, -1, "")
	}
	g := gen.New(99, time.Now().UTC().Truncate(time.Hour).Add(-6*time.Hour), 6*time.Hour)
	seals := files/parts + files/(10*parts) + 1
	every := max(1, events/seals)
	rec := &decode.Record{Topic: "bench", Timestamp: time.Now()}
	for i := range events {
		v, _ := g.Event(i, events)
		rec.Partition, rec.Offset, rec.Value = int32(i%parts), int64(i/parts), v
		if out, err := e.Process(ctx, rec, 0); err != nil || out != sink.Buffered {
			tb.Fatalf("event %d: %v, %v", i, out, err)
		}
		if (i+1)%every == 0 {
			e.SealPartitions(nil, "bench")
		}
	}
	e.SealPartitions(nil, "bench")
	if err := e.WaitDurable(ctx, nil); err != nil {
		tb.Fatal(err)
	}
	groups := map[layout.Period][]compaction.RawFile{}
	err = lake.List(ctx, "raw/", func(o store.ObjectInfo) error {
		k, err := layout.ParseRawKey(layout.Hour, o.Key)
		if err != nil {
			return err
		}
		groups[k.Period] = append(groups[k.Period], compaction.RawFile{Key: o.Key, Topic: k.Topic, Partition: k.Partition,
			First: k.FirstOffset, Size: o.Size, Period: k.Period})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return lake, cfg, groups
}

// BenchmarkMerge merges ~1,000 small raw files of the bench's events (6 hours:
// one group per hour) into sorted outputs; bytes/s is raw Parquet merged.
func BenchmarkMerge(b *testing.B) {
	lake, cfg, groups := benchLake(b, 200_000, 1000)
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, g := range groups {
		for _, f := range g {
			size += f.Size
		}
	}
	runs := 0 // names every merge's outputs apart, across -count runs too
	for _, budget := range []int64{256 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("budget=%dMiB", budget>>20), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				runs++
				m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
					Lake: lake, Warehouse: lake, Budget: budget, RowGroupSize: 128 << 20, Target: 256 << 20,
					TempDir: b.TempDir(), Job: fmt.Sprintf("bench%d-%d", budget>>20, runs)}
				gi, out := 0, int64(0)
				for p, g := range groups {
					res, err := m.Merge(context.Background(), compaction.Group{Period: p, Raw: g}, gi, "out", compaction.Coverage{})
					if err != nil {
						b.Fatal(err)
					}
					for _, o := range res.Outputs {
						out += o.Size
					}
					gi++
				}
				b.ReportMetric(float64(out)/float64(size), "out/in")
			}
		})
	}
}

// TestMergePathsAgree: the bench's events (a struct and a list column among
// them) merged in memory column by column, column by column with spilled
// runs, and row by row through the conversion (budget 1) give the same rows in
// the same order.
func TestMergePathsAgree(t *testing.T) {
	lake, cfg, groups := benchLake(t, 3000, 20)
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		t.Fatal(err)
	}
	var want map[layout.Period][]string
	for i, budget := range []int64{1 << 30, 256 << 10, 1} {
		m := &compaction.Merger{Schema: sch, SortBy: []string{"ts", schema.ColTopic, schema.ColPartition, schema.ColOffset},
			Lake: lake, Warehouse: lake, Budget: budget, RowGroupSize: 1 << 20, Target: 1 << 30,
			TempDir: t.TempDir(), Job: fmt.Sprintf("agree%d", i)}
		got := map[layout.Period][]string{}
		n := 0
		gi := 0
		for p, g := range groups {
			// Every file twice: half the rows are duplicates.
			g = append(g, g...)
			res, err := m.Merge(context.Background(), compaction.Group{Period: p, Raw: g}, gi, "out", compaction.Coverage{})
			if err != nil {
				t.Fatalf("budget %d: %v", budget, err)
			}
			if res.Duplicates*2 != res.RowsIn {
				t.Fatalf("budget %d: %d rows in, %d duplicates", budget, res.RowsIn, res.Duplicates)
			}
			gi++
			for _, o := range res.Outputs {
				got[p] = append(got[p], readRows(t, lake, o.Key)...)
			}
			n += len(got[p])
		}
		if n != 3000 {
			t.Fatalf("budget %d: %d rows out, want 3000", budget, n)
		}
		if want == nil {
			want = got
			continue
		}
		for p := range want {
			for j := range want[p] {
				if got[p][j] != want[p][j] {
					t.Fatalf("budget %d: period %v row %d is\n%s\nwant\n%s", budget, p, j, got[p][j], want[p][j])
				}
			}
		}
	}
}

func readRows(t *testing.T, s store.Store, key string) []string {
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
	r := parquet.NewReader(f)
	defer r.Close()
	var out []string
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			out = append(out, fmt.Sprint(row))
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

package sink

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// countingPool counts the decompression slices recordPool hands out again.
type countingPool struct {
	*recordPool
	reused atomic.Int64
}

func (p *countingPool) GetDecompressBytes(src []byte, c kgo.CompressionCodecType) []byte {
	b := p.recordPool.GetDecompressBytes(src, c)
	if b != nil {
		p.reused.Add(1)
	}
	return b
}

// TestRecordPoolReusesMemory consumes compressed batches through recordPool,
// recycling each poll's records as the sink's loop does: every record reads back
// as produced, and later batches decompress into memory earlier ones gave back.
func TestRecordPoolReusesMemory(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	pool := &countingPool{recordPool: &recordPool{}}
	cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.WithPools(pool), kgo.FetchMaxBytes(64<<10), kgo.FetchMaxPartitionBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	const rounds, per = 5, 2000
	next := 0
	for round := range rounds {
		recs := make([]*kgo.Record, per)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: "t", Value: fmt.Appendf(nil, `{"round":%d,"i":%d,"pad":"%0200d"}`, round, round*per+i, i)}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for next < (round+1)*per {
			fetches := cons.PollFetches(ctx)
			if err := fetches.Err(); err != nil {
				t.Fatal(err)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				want := fmt.Sprintf(`{"round":%d,"i":%d,"pad":"%0200d"}`, next/per, next, next%per)
				if string(r.Value) != want {
					t.Fatalf("record %d (offset %d): %q, want %q", next, r.Offset, r.Value, want)
				}
				next++
			})
			fetches.EachRecord(func(r *kgo.Record) { r.Recycle() })
		}
	}
	if pool.reused.Load() == 0 {
		t.Fatalf("%d records in %d rounds, no decompression slice was reused", next, rounds)
	}
}

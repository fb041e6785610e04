package sink

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordPool hands the Kafka client the memory of fetched batches
// (kgo.WithPools): the bytes a compressed batch decompresses into, and the
// batch's records. Without it the client clones every decompressed batch into a
// fresh slice (4% of the sink's CPU at 1M events) and allocates a record slice
// per batch. The loop recycles every record of a poll once it is done with it:
// the engine copies what it keeps, and dead letters are produced before.
type recordPool struct {
	bytes, recs sync.Pool // slices, boxed on Put: one small allocation per batch
}

// GetDecompressBytes returns a pooled slice; the client grows one too short and
// puts the grown one back.
func (p *recordPool) GetDecompressBytes([]byte, kgo.CompressionCodecType) []byte {
	if b, ok := p.bytes.Get().([]byte); ok {
		return b
	}
	return nil
}

func (p *recordPool) PutDecompressBytes(b []byte) { p.bytes.Put(b[:0]) }

// GetRecords returns n zero records (a reused slice is cleared: records the
// client skipped in a batch are put back as they were).
func (p *recordPool) GetRecords(n int) []kgo.Record {
	if r, ok := p.recs.Get().([]kgo.Record); ok && cap(r) >= n {
		r = r[:n]
		clear(r)
		return r
	}
	return make([]kgo.Record, n)
}

func (p *recordPool) PutRecords(r []kgo.Record) { p.recs.Put(r[:0]) }

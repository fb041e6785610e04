package sink

import (
	"io"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// Batch is the sink's in-memory path without Kafka, S3 or the engine: decoded records
// appended to the column store, then encoded as a Parquet file by the same code as
// the upload workers, with flush.compression auto. The bench's bound measure runs it.
type Batch struct {
	buf  buffer
	enc  encoder
	size int64 // of buf.rows, kept as rows are added (size() walks every chunk)
}

// NewBatch returns an empty batch of the table s; its files carry topic in their footer.
func NewBatch(s *schema.Schema, topic string) *Batch {
	b := &Batch{enc: encoder{mode: config.CompressionAuto, zstd: newZstdCodec(1)}}
	b.buf.bufKey = bufKey{table: &table{schema: s}, tp: &tpState{topic: topic}}
	b.buf.rows = newRowStore(s.Leaves)
	b.size = b.buf.rows.size()
	return b
}

// Add appends the record d decoded last, at the given Kafka offset.
func (b *Batch) Add(d *Decoder, offset int64) {
	if b.buf.n == 0 {
		b.buf.first = offset
	}
	b.size += b.buf.rows.growth(d.row)
	b.buf.rows.appendRow(d.row)
	b.buf.last = offset
	b.buf.n++
}

// Size is the memory the batch's columns hold.
func (b *Batch) Size() int64 { return b.size }

// Flush writes the batch as one Parquet file to w and empties it.
func (b *Batch) Flush(w io.Writer) error {
	b.buf.bytes = b.size
	_, err := b.enc.encode(w, &b.buf, nil, b.buf.first)
	b.buf.rows = newRowStore(b.buf.rows.leaves)
	b.buf.n, b.size = 0, b.buf.rows.size()
	return err
}

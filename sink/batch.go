package sink

import (
	"io"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// Batch is the sink's in-memory path without Kafka, S3 or the engine: decoded records
// appended to the column store, then encoded as a Parquet file by the same code as
// the upload workers, with flush.compression auto. The bench's bound measure runs it.
type Batch struct {
	buf  buffer
	enc  *rawfile.Encoder
	size int64 // of buf.rows, kept as rows are added (Size() walks every chunk)
}

// NewBatch returns an empty batch of the table s; its files carry topic in their footer.
func NewBatch(s *schema.Schema, topic string) *Batch {
	b := &Batch{enc: rawfile.NewEncoder(config.CompressionAuto, rawfile.NewZstdCodec(1))}
	b.buf.bufKey = bufKey{table: &table{Table: &decode.Table{Schema: s}}, tp: &tpState{topic: topic}}
	b.buf.rows = rawfile.NewRowStore(s.Leaves)
	b.size = b.buf.rows.Size()
	return b
}

// Add appends a decoded record (its staged row: decode.Decoder.Row), at the given
// Kafka offset.
func (b *Batch) Add(row [][]byte, offset int64) {
	if b.buf.n == 0 {
		b.buf.first = offset
	}
	b.size += b.buf.rows.Growth(row)
	b.buf.rows.AppendRow(row)
	b.buf.last = offset
	b.buf.n++
}

// Size is the memory the batch's columns hold.
func (b *Batch) Size() int64 { return b.size }

// Flush writes the batch as one Parquet file to w and empties it.
func (b *Batch) Flush(w io.Writer) error {
	b.buf.bytes = b.size
	_, err := b.enc.Encode(w, b.buf.file(b.buf.first), nil)
	b.buf.rows = rawfile.NewRowStore(b.buf.rows.Leaves())
	b.buf.n, b.size = 0, b.buf.rows.Size()
	return err
}

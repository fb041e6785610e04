package rawfile

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// Footer keys written into every raw file: the Kafka coordinates of its rows. The
// compactor reads them back (an input's last offset) and the sink reads
// MetaLastOffset of a file an earlier run wrote under the same key.
const (
	MetaFirstOffset = "lakesink.first_offset"
	MetaLastOffset  = "lakesink.last_offset"
	MetaTopic       = "lakesink.topic"
	MetaPartition   = "lakesink.partition"
)

// reuseBelow is the largest buffer whose writer an encoder keeps for the next file.
// A writer's buffers grow with the pages and dictionaries of the file it wrote; below
// this size they stay within writerFixed (3.8 MiB measured after a file of 1 MiB
// buffered of the sample table), which the budget counts for every worker.
const reuseBelow = 1 << 20

// File is one raw file to encode: a buffer's rows and the Kafka coordinates its
// footer records.
type File struct {
	Schema *schema.Schema
	Rows   *RowStore
	// N is the number of rows in Rows; Bytes the memory they hold (it picks the
	// codec with flush.compression auto, and whether the writer is kept).
	N     int
	Bytes int64
	// Topic and Partition are the Kafka partition of the rows; First is the first
	// kept offset and Last the last offset.
	Topic       string
	Partition   int32
	First, Last int64
}

// Encoder writes raw files for one upload worker. It keeps the Parquet writer of its
// last small file and resets it for the next file of the same table: a new writer
// allocates page buffers, dictionaries and indexes for every column (~0.5 MiB for
// the sample table), which made set-up a third of the CPU of a 100-row file, the file
// thousands of open hour partitions write. TestEncoderReuseSameBytes checks that a
// reused writer writes the same bytes as a new one.
//
// Its codec follows flush.compression: with auto, Snappy for buffers below
// config.SmallFileBytes and zstd above (the lake's zstd, with encoders reused across
// files: codec.go).
type Encoder struct {
	mode    string // flush.compression
	zstd    *ZstdCodec
	snappy  snappyCodec
	schema  *schema.Schema
	pw      *parquet.Writer
	codec   compress.Codec    // pw's
	batches [][]parquet.Value // WriteTo's scratch
}

// NewEncoder returns an encoder for flush.compression mode (config.Compression*),
// compressing zstd pages with z (shared by the encoders of a process).
func NewEncoder(mode string, z *ZstdCodec) *Encoder {
	return &Encoder{mode: mode, zstd: z}
}

// codecFor returns the codec of b's file.
func (c *Encoder) codecFor(b *File) compress.Codec {
	switch {
	case c.mode == config.CompressionZstd:
		return c.zstd
	case c.mode == config.CompressionSnappy, b.Bytes < int64(config.SmallFileBytes):
		return &c.snappy
	}
	return c.zstd
}

// Encode writes the file's kept rows (keep nil: all) as one Parquet file to w and
// returns the number of rows written.
func (c *Encoder) Encode(w io.Writer, b *File, keep []bool) (int, error) {
	s := b.Schema
	codec := c.codecFor(b)
	pw := c.pw
	if pw != nil && c.schema == s && c.codec == codec {
		pw.Reset(w)
	} else {
		pw = parquet.NewWriter(w, s.WriterOptions(parquet.Compression(codec))...)
	}
	c.pw, c.schema, c.codec = nil, nil, nil
	pw.SetKeyValueMetadata(MetaFirstOffset, strconv.FormatInt(b.First, 10))
	pw.SetKeyValueMetadata(MetaLastOffset, strconv.FormatInt(b.Last, 10))
	pw.SetKeyValueMetadata(MetaTopic, b.Topic)
	pw.SetKeyValueMetadata(MetaPartition, strconv.FormatInt(int64(b.Partition), 10))
	var err error
	if c.batches, err = b.Rows.WriteTo(pw, keep, c.batches); err != nil {
		return 0, err
	}
	if err := pw.Close(); err != nil {
		return 0, err
	}
	if b.Bytes < reuseBelow {
		// parquet-go v0.32's Reset clears each column chunk's PathInSchema in place,
		// and that slice is the column writer's own path: the next file would name
		// every column "". Dropping the footer's reference first leaves the paths be.
		rgs := pw.File().Metadata().RowGroups
		for i := range rgs {
			for j := range rgs[i].Columns {
				rgs[i].Columns[j].MetaData.PathInSchema = nil
			}
		}
		c.pw, c.schema, c.codec = pw, s, codec
	}
	n := b.N
	if keep != nil {
		n = 0
		for _, k := range keep {
			if k {
				n++
			}
		}
	}
	return n, nil
}

// ReadLastOffset reads the last offset recorded in the footer of the raw file key.
func ReadLastOffset(ctx context.Context, st store.Store, key string) (int64, error) {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("open parquet %s: %w", key, err)
	}
	last, ok, err := LastOffset(f)
	if err != nil {
		return 0, fmt.Errorf("raw file %s: %w", key, err)
	}
	if !ok {
		return 0, fmt.Errorf("raw file %s has no %s footer key", key, MetaLastOffset)
	}
	return last, nil
}

// LastOffset returns the last Kafka offset the footer of a raw file records; ok is
// false when the footer has none (not a raw file).
func LastOffset(f *parquet.File) (last int64, ok bool, err error) {
	v, ok := f.Lookup(MetaLastOffset)
	if !ok {
		return 0, false, nil
	}
	last, err = strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("%s=%q: %w", MetaLastOffset, v, err)
	}
	return last, true, nil
}

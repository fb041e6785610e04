package rawfile

import (
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
)

// ZstdCodec compresses the pages of the raw files the sink writes with zstd
// (flush.compression).
//
// parquet-go's zstd.Codec keeps its encoders in a sync.Pool of its own, and the
// schema's writer options make a new Codec per file, so every file built a new
// encoder: ~1.2 MiB of match tables, plus a 16 MiB history (8 MiB window) for
// pages above 128 KiB, all garbage after one file. With thousands of small files
// (many open hour partitions) that churn, not the buffers, drove RSS past the budget.
// Here a few encoders live for the life of the process (one per upload in flight
// is enough), with a 1 MiB window: pages are at most 256 KiB (the page buffer
// size), so no match is lost.
//
// It is a compress.Codec that reuses its encoders, at zstd's fastest level: raw
// files are rewritten by the compactor (at its own level), and on the bench's events
// the fastest level costs ~2–5 % more bytes for 13–22 % more events per CPU-second
// (docs/performance.md).
type ZstdCodec struct {
	free    chan *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
	decErr  error
}

var _ compress.Codec = (*ZstdCodec)(nil)

// NewZstdCodec returns a codec that keeps up to keep encoders between pages.
func NewZstdCodec(keep int) *ZstdCodec {
	return &ZstdCodec{free: make(chan *zstd.Encoder, keep)}
}

// String names the codec as parquet-go does.
func (*ZstdCodec) String() string { return "ZSTD" }

// CompressionCodec is the codec's Parquet code, written into the column chunks.
func (*ZstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

// Encode compresses src into dst (reallocated if too small).
func (c *ZstdCodec) Encode(dst, src []byte) ([]byte, error) {
	var e *zstd.Encoder
	select {
	case e = <-c.free:
	default:
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithWindowSize(1<<20),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return dst, err
		}
	}
	out := e.EncodeAll(src, dst[:0])
	select {
	case c.free <- e:
	default: // enough encoders kept: let this one go
	}
	return out, nil
}

// Decode decompresses src into dst (reallocated if too small).
func (c *ZstdCodec) Decode(dst, src []byte) ([]byte, error) {
	c.decOnce.Do(func() { c.dec, c.decErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)) })
	if c.decErr != nil {
		return dst, c.decErr
	}
	return c.dec.DecodeAll(src, dst[:0])
}

// snappyCodec is Parquet's SNAPPY codec at the fast level. parquet-go's codec calls
// klauspost's snappy.Encode, which is s2's "better" level: on the small raw files
// compression: auto gives Snappy, that costs twice the CPU for a few % fewer bytes.
type snappyCodec struct{}

var _ compress.Codec = snappyCodec{}

func (snappyCodec) String() string { return "SNAPPY" }

func (snappyCodec) CompressionCodec() format.CompressionCodec { return format.Snappy }

// Encode compresses src into dst (reallocated if too small).
func (snappyCodec) Encode(dst, src []byte) ([]byte, error) {
	return s2.EncodeSnappy(dst[:cap(dst)], src), nil
}

// Decode decompresses src into dst (reallocated if too small).
func (snappyCodec) Decode(dst, src []byte) ([]byte, error) {
	return s2.Decode(dst[:cap(dst)], src)
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// Footer keys written into every raw file.
const (
	MetaFirstOffset = "lakesink.first_offset"
	MetaLastOffset  = "lakesink.last_offset"
	MetaTopic       = "lakesink.topic"
	MetaPartition   = "lakesink.partition"
)

func (e *Engine) worker(ctx context.Context) {
	enc := &encoder{mode: e.flush.Compression, zstd: e.zstd}
	for {
		e.mu.Lock()
		b := e.next()
		for b == nil && !(e.closed && len(e.queue) == 0) {
			e.cond.Wait()
			b = e.next()
		}
		if b == nil {
			e.mu.Unlock()
			return
		}
		e.uploading[b.bufKey] = true
		dropped := b.dropped
		cost := e.uploadCost(b)
		e.inflight += cost
		e.mu.Unlock()
		var err error
		if !dropped {
			err = e.upload(ctx, enc, b)
		}
		e.mu.Lock()
		e.inflight -= cost
		delete(e.uploading, b.bufKey)
		if err != nil && e.failed == nil {
			e.failed = err
		}
		e.cond.Broadcast()
		e.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// next takes the oldest queued buffer whose key is not being uploaded. Called with e.mu held.
func (e *Engine) next() *buffer {
	for i, b := range e.queue {
		if !e.uploading[b.bufKey] {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			return b
		}
	}
	return nil
}

// upload writes a sealed buffer until it is durable, retrying transient failures with
// backoff until ctx ends. A key that already exists means an earlier run wrote the same
// records: the existing file's range becomes durable and the remaining rows go to the
// next key, so a replay never writes a record twice.
func (e *Engine) upload(ctx context.Context, enc *encoder, b *buffer) error {
	t := b.table
	backoff := 200 * time.Millisecond
	for {
		e.mu.Lock()
		skips := b.tp.overlapping(t.cfg.Name, b.period, b.first, b.last)
		dropped := b.dropped
		e.mu.Unlock()
		if dropped {
			return nil
		}
		keep, first := keepMask(b.offsets, skips)
		var err error
		var size int64
		var rows int
		key := ""
		start := time.Now()
		if first >= 0 {
			key = layout.RawKey(t.cfg.Name, t.gran, layout.Period(b.period), b.tp.topic, b.tp.partition, first)
			size, rows, err = e.writeFile(ctx, enc, key, b, keep, first)
		}
		switch {
		case err == nil:
			e.mu.Lock()
			b.tp.addDurable(span{table: t.cfg.Name, period: b.period, first: b.first, last: b.last})
			e.release(b)
			e.cond.Broadcast()
			e.mu.Unlock()
			if key != "" {
				e.m.UploadSeconds.Observe(time.Since(start).Seconds())
				e.m.FileBytes.Observe(float64(size))
				e.m.FileRows.Observe(float64(rows))
			}
			e.m.FlushSeconds.Observe(time.Since(b.sealed).Seconds())
			e.log.Debug("flushed", "table", t.cfg.Name, "file", key, "rows", rows, "bytes", size, "trigger", b.trigger)
			return nil
		case store.IsExists(err):
			last, rerr := e.existingLast(ctx, key)
			if rerr != nil {
				e.m.FlushErrors.WithLabelValues("conflict").Inc()
				e.log.Error("reading existing raw file", "file", key, "err", rerr)
				if err := sleep(ctx, backoff); err != nil {
					return err
				}
				continue
			}
			e.m.UploadConflicts.Inc()
			e.log.Info("raw file already written by an earlier run; skipping its records", "file", key, "topic", b.tp.topic,
				"partition", b.tp.partition, "offset", first, "last_offset", last)
			e.mu.Lock()
			b.tp.addDurable(span{table: t.cfg.Name, period: b.period, first: first, last: last})
			e.mu.Unlock()
		default:
			if ctx.Err() != nil {
				return fmt.Errorf("upload %s: %w", key, ctx.Err())
			}
			e.m.FlushErrors.WithLabelValues("upload").Inc()
			e.log.Error("upload failed; retrying", "file", key, "err", err, "retry_in", backoff)
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// keepMask marks the rows not covered by skips; first is the first kept offset, -1 if none.
// The mask is nil when every row is kept.
func keepMask(offsets []int64, skips []span) ([]bool, int64) {
	if len(skips) == 0 {
		if len(offsets) == 0 {
			return nil, -1
		}
		return nil, offsets[0]
	}
	keep := make([]bool, len(offsets))
	first := int64(-1)
	for i, o := range offsets {
		covered := false
		for _, s := range skips {
			if o >= s.first && o <= s.last {
				covered = true
				break
			}
		}
		keep[i] = !covered
		if !covered && first < 0 {
			first = o
		}
	}
	return keep, first
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFile encodes the buffer's kept rows as Parquet and streams them to key.
func (e *Engine) writeFile(ctx context.Context, enc *encoder, key string, b *buffer, keep []bool, first int64) (int64, int, error) {
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw}
	type result struct {
		rows int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := enc.encode(cw, b, keep, first)
		pw.CloseWithError(err)
		done <- result{rows, err}
	}()
	err := e.st.Create(ctx, key, pr)
	pr.CloseWithError(errors.Join(err, errors.New("upload ended")))
	res := <-done
	if err != nil {
		return 0, 0, err
	}
	if res.err != nil {
		return 0, 0, fmt.Errorf("encode %s: %w", key, res.err)
	}
	return cw.n, res.rows, nil
}

// reuseBelow is the largest buffer whose writer an encoder keeps for the next file.
// A writer's buffers grow with the pages and dictionaries of the file it wrote; below
// this size they stay within writerFixed (3.8 MiB measured after a file of 1 MiB
// buffered of the sample table), which the budget counts for every worker.
const reuseBelow = 1 << 20

// encoder writes raw files for one upload worker. It keeps the Parquet writer of its
// last small file and resets it for the next file of the same table: a new writer
// allocates page buffers, dictionaries and indexes for every column (~0.5 MiB for
// the sample table), which made set-up a third of the CPU of a 100-row file, the file
// thousands of open hour partitions write. TestEncoderReuseSameBytes checks that a
// reused writer writes the same bytes as a new one.
//
// Its codec follows flush.compression: with auto, Snappy for buffers below
// config.SmallFileBytes and zstd above (the lake's zstd, with encoders reused across
// files: codec.go).
type encoder struct {
	mode    string // flush.compression
	zstd    *zstdCodec
	snappy  snappyCodec
	schema  *schema.Schema
	pw      *parquet.Writer
	codec   compress.Codec    // pw's
	batches [][]parquet.Value // writeTo's scratch
}

// codecFor returns the codec of b's file.
func (c *encoder) codecFor(b *buffer) compress.Codec {
	switch {
	case c.mode == config.CompressionZstd:
		return c.zstd
	case c.mode == config.CompressionSnappy, b.bytes < int64(config.SmallFileBytes):
		return &c.snappy
	}
	return c.zstd
}

// encode writes the buffer's kept rows (keep nil: all) as one Parquet file to w and
// returns the number of rows written.
func (c *encoder) encode(w io.Writer, b *buffer, keep []bool, first int64) (int, error) {
	s := b.table.schema
	codec := c.codecFor(b)
	pw := c.pw
	if pw != nil && c.schema == s && c.codec == codec {
		pw.Reset(w)
	} else {
		pw = parquet.NewWriter(w, s.WriterOptions(parquet.Compression(codec))...)
	}
	c.pw, c.schema, c.codec = nil, nil, nil
	pw.SetKeyValueMetadata(MetaFirstOffset, strconv.FormatInt(first, 10))
	pw.SetKeyValueMetadata(MetaLastOffset, strconv.FormatInt(b.last, 10))
	pw.SetKeyValueMetadata(MetaTopic, b.tp.topic)
	pw.SetKeyValueMetadata(MetaPartition, strconv.FormatInt(int64(b.tp.partition), 10))
	var err error
	if c.batches, err = b.rows.writeTo(pw, keep, c.batches); err != nil {
		return 0, err
	}
	if err := pw.Close(); err != nil {
		return 0, err
	}
	if b.bytes < reuseBelow {
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
	n := b.n
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

// existingLast reads the last offset recorded in the footer of an existing raw file.
func (e *Engine) existingLast(ctx context.Context, key string) (int64, error) {
	obj, err := e.st.Open(ctx, key)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("open parquet %s: %w", key, err)
	}
	v, ok := f.Lookup(MetaLastOffset)
	if !ok {
		return 0, fmt.Errorf("raw file %s has no %s footer key", key, MetaLastOffset)
	}
	last, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("raw file %s: %s=%q: %w", key, MetaLastOffset, v, err)
	}
	return last, nil
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lakesink/lakesink/internal/wait"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

func (e *Engine) worker(ctx context.Context) {
	enc := rawfile.NewEncoder(e.flush.Compression, e.zstd)
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
func (e *Engine) upload(ctx context.Context, enc *rawfile.Encoder, b *buffer) error {
	t := b.table
	backoff := 200 * time.Millisecond
	readBackoff, unreadable := e.unreadableBackoff, 0
	for {
		e.mu.Lock()
		skips := b.tp.overlapping(t.Config.Name, b.period, b.first, b.last)
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
			key = layout.RawKey(t.Config.Name, t.Gran, layout.Period(b.period), b.tp.topic, b.tp.partition, first)
			size, rows, err = e.writeFile(ctx, enc, key, b, keep, first)
		}
		switch {
		case err == nil:
			e.mu.Lock()
			b.tp.addDurable(span{table: t.Config.Name, period: b.period, first: b.first, last: b.last})
			e.release(b)
			e.cond.Broadcast()
			e.mu.Unlock()
			if key != "" {
				e.m.UploadSeconds.Observe(time.Since(start).Seconds())
				e.m.FileBytes.Observe(float64(size))
				e.m.FileRows.Observe(float64(rows))
			}
			e.m.FlushSeconds.Observe(time.Since(b.sealed).Seconds())
			e.log.Debug("flushed", "table", t.Config.Name, "file", key, "rows", rows, "bytes", size, "trigger", b.trigger)
			return nil
		case store.IsExists(err):
			last, rerr := rawfile.ReadLastOffset(ctx, e.st, key)
			if rerr != nil && store.IsNotFound(rerr) {
				continue // deleted since (the compactor's cleaning): write it again
			}
			if rerr != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("read existing raw file %s: %w", key, ctx.Err())
				}
				unreadable++
				e.m.FlushErrors.WithLabelValues("conflict").Inc()
				t.unreadable.Inc()
				if unreadable >= unreadableTries {
					return fmt.Errorf("%w: %s (topic %s, partition %d, offset %d; %d reads failed): %w",
						ErrUnreadableRawFile, key, b.tp.topic, b.tp.partition, first, unreadable, rerr)
				}
				e.log.Error("reading existing raw file failed; retrying", "file", key, "topic", b.tp.topic,
					"partition", b.tp.partition, "offset", first, "err", rerr, "retry_in", readBackoff)
				if err := wait.Sleep(ctx, readBackoff); err != nil {
					return fmt.Errorf("read existing raw file %s: %w", key, err)
				}
				readBackoff = min(readBackoff*2, 30*time.Second)
				continue
			}
			e.m.UploadConflicts.Inc()
			e.log.Info("raw file already written by an earlier run; skipping its records", "file", key, "topic", b.tp.topic,
				"partition", b.tp.partition, "offset", first, "last_offset", last)
			e.mu.Lock()
			b.tp.addDurable(span{table: t.Config.Name, period: b.period, first: first, last: last})
			e.mu.Unlock()
		default:
			if ctx.Err() != nil {
				return fmt.Errorf("upload %s: %w", key, ctx.Err())
			}
			e.m.FlushErrors.WithLabelValues("upload").Inc()
			e.log.Error("upload failed; retrying", "file", key, "err", err, "retry_in", backoff)
			if err := wait.Sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

// ErrUnreadableRawFile stops the sink: a raw file already exists at the key an
// upload must write, and it cannot be read back (corrupt, truncated, not Parquet,
// not a raw file), so the sink cannot know which records it holds. It needs a
// human: see "Unreadable raw file" in deploy/README.md.
var ErrUnreadableRawFile = errors.New("existing raw file cannot be read")

// unreadableTries bounds the reads of an existing raw file before the sink stops
// with ErrUnreadableRawFile; with the backoff from 200 ms doubling up to 30 s, the
// last one comes about 80 s after the first (a transient S3 error has passed by then).
const unreadableTries = 10

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
func (e *Engine) writeFile(ctx context.Context, enc *rawfile.Encoder, key string, b *buffer, keep []bool, first int64) (int64, int, error) {
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw}
	type result struct {
		rows int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := enc.Encode(cw, b.file(first), keep)
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

// file is the raw file of b's rows from offset first on.
func (b *buffer) file(first int64) *rawfile.File {
	return &rawfile.File{Schema: b.table.Schema, Rows: b.rows, N: b.n, Bytes: b.bytes,
		Topic: b.tp.topic, Partition: b.tp.partition, First: first, Last: b.last}
}

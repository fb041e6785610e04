package deadletter

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/kafkaopt"
	"github.com/lakesink/lakesink/lake/config"
)

// Count is the number of dead letters of one table and reason.
type Count struct {
	Table, Reason string
	Count         int64
	First, Last   time.Time // by lakesink.time
}

// Stats reads the whole dead-letter topic (up to its end offsets at
// start) and counts the dead letters by table and reason.
func Stats(ctx context.Context, cfg *config.Config, log *slog.Logger) ([]Count, int64, error) {
	opt := ReplayOptions{DryRun: true, Log: log}
	r, admCl, err := newReplayer(ctx, cfg, &opt)
	if err != nil {
		return nil, 0, err
	}
	defer admCl.Close()
	for p, s := range r.starts {
		r.pos[p] = s
	}
	base, _ := kafkaopt.ClientOptions(&cfg.Kafka)
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumeTopics(r.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(int32(cfg.Kafka.FetchMaxBytes)),
	)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: kafka client: %w", ErrReplaySetup, err)
	}
	defer cl.Close()
	type key struct{ table, reason string }
	counts := map[key]*Count{}
	var total int64
	for !r.finished() {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollRecords(pctx, 10_000)
		cancel()
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Offset >= r.ends[rec.Partition] {
				return
			}
			r.pos[rec.Partition] = rec.Offset + 1
			if rec.Attrs.IsControl() {
				return
			}
			var k key
			var at time.Time
			for _, h := range rec.Headers {
				switch h.Key {
				case HeaderTable:
					k.table = string(h.Value)
				case HeaderReason:
					k.reason = string(h.Value)
				case HeaderTime:
					at, _ = time.Parse(time.RFC3339Nano, string(h.Value))
				}
			}
			c := counts[k]
			if c == nil {
				c = &Count{Table: k.table, Reason: k.reason, First: at, Last: at}
				counts[k] = c
			}
			c.Count++
			if !at.IsZero() && (c.First.IsZero() || at.Before(c.First)) {
				c.First = at
			}
			if at.After(c.Last) {
				c.Last = at
			}
			total++
		})
	}
	out := make([]Count, 0, len(counts))
	for _, c := range counts {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Table != b.Table {
			return strings.Compare(a.Table, b.Table)
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out, total, nil
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// The tests of this file run the whole sink (Sink.Run) against an in-process Kafka
// (kfake) with source topic "t" (one partition) and dead-letter topic "d".

const testGroup = "g"

// newCluster starts an in-process Kafka with the source and dead-letter topics.
func newCluster(t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.SeedTopics(1, "d"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// sinkConfig is a sink of table events (gen.TableYAML) over topic t, into dir.
func sinkConfig(t *testing.T, addrs []string, dir, flush string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `kafka: {brokers: [%s], group: %s, commit_interval: 100ms}
local_dir: %s
dead_letter: {topic: d}
flush: {max_file_bytes: 1MiB, shutdown_timeout: 20s%s}
tables:
%s`, strings.Join(addrs, ","), testGroup, dir, flush, gen.TableYAML("events", "t")), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sinkBed starts an in-process Kafka and returns it, a sink config into a fresh
// local directory (sinkConfig) and the store over that directory.
func sinkBed(t *testing.T, flush string) (*kfake.Cluster, *config.Config, store.Store) {
	t.Helper()
	c, addrs := newCluster(t)
	dir := t.TempDir()
	local, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c, sinkConfig(t, addrs, dir, flush), local
}

// runningSink is a Sink.Run in its own goroutine.
type runningSink struct {
	s      *Sink
	m      *Metrics
	cancel context.CancelFunc
	done   chan error
}

func startSink(t *testing.T, cfg *config.Config, st store.Store, setup func(*Sink)) *runningSink {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(cfg, st, m, slog.New(slog.DiscardHandler), kgo.HeartbeatInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSink{s: s, m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("sink did not stop within 30s")
		}
	})
	return r
}

// stop cancels the sink (SIGTERM) and returns what Run returned.
func (r *runningSink) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

func (r *runningSink) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("sink did not stop within 30s")
		return nil
	}
}

// waitFor polls cond every 10 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newClient(t *testing.T, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ProducerBatchMaxBytes(4 << 20)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce appends values to topic t, partition 0, in one batch.
func produce(t *testing.T, cl *kgo.Client, values ...[]byte) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: "t", Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committedOffset is the group's committed offset of t/0, -1 when none.
func committedOffset(t *testing.T, cl *kgo.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("t", 0); ok && o.Err == nil {
		return o.At
	}
	return -1
}

// deadLetters counts the dead letters in topic d by source offset.
func deadLetters(t *testing.T, addrs []string) map[int64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addrs))
	ends, err := adm.ListEndOffsets(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("d", 0)
	out := map[int64]int{}
	if end.Offset == 0 {
		return out
	}
	cl := newClient(t, addrs, kgo.ConsumeTopics("d"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for read := int64(0); read < end.Offset; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d dead letters: %v", read, end.Offset, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			for _, h := range r.Headers {
				if h.Key == deadletter.HeaderOffset {
					o, err := strconv.ParseInt(string(h.Value), 10, 64)
					if err != nil {
						t.Fatalf("dead letter %d: %s %q", r.Offset, h.Key, h.Value)
					}
					out[o]++
				}
			}
		})
	}
	return out
}

// requireLanded fails unless offsets 0..n-1 of t/0 are each in exactly one place:
// the raw files in dir, or (the offsets in bad) the dead-letter topic.
func requireLanded(t *testing.T, addrs []string, dir string, n int64, bad ...int64) {
	t.Helper()
	raw, dead := lakeOffsets(t, dir), deadLetters(t, addrs)
	isBad := map[int64]bool{}
	for _, o := range bad {
		isBad[o] = true
	}
	for o := range n {
		want, other := raw, dead
		if isBad[o] {
			want, other = dead, raw
		}
		if want[o] != 1 || other[o] != 0 {
			t.Errorf("offset %d: %d times in the raw zone, %d times in the dead-letter topic", o, raw[o], dead[o])
		}
	}
	if len(raw)+len(dead) != int(n) {
		t.Errorf("%d offsets in the raw zone and %d dead letters, want %d in all", len(raw), len(dead), n)
	}
}

// restartAndLand runs a fresh sink over t/0 until it consumed offsets 0..n-1, stops
// it, and requires the group committed to n and every offset in exactly one place
// (the offsets in bad in the dead-letter topic, the rest in the raw zone).
func restartAndLand(t *testing.T, cfg *config.Config, st store.Store, cl *kgo.Client, n int64, bad ...int64) {
	t.Helper()
	r := startSink(t, cfg, st, nil)
	waitFor(t, 60*time.Second, "everything consumed", func() bool { return r.s.eng.Next()["t"][0] == n })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := committedOffset(t, cl); got != n {
		t.Fatalf("committed offset %d after the restart, want %d", got, n)
	}
	requireLanded(t, cfg.Kafka.Brokers, cfg.LocalDir, n, bad...)
}

// TestCancelWhileBlockedOnMemoryKeepsDeadLetter: a poll holds a rejected record and,
// after it, records that wait for memory (uploads stuck). SIGTERM then: the rejected
// record is either in the dead-letter topic or not committed past, and a restart
// lands every record exactly once.
func TestCancelWhileBlockedOnMemoryKeepsDeadLetter(t *testing.T) {
	_, cfg, local := sinkBed(t, ", memory_budget: 4MiB")
	addrs := cfg.Kafka.Brokers
	blocked := blockingStore{Store: local, release: make(chan struct{})}
	r := startSink(t, cfg, blocked, nil)
	cl := newClient(t, addrs)
	ev := events(3000, 1)
	// About two thirds of the buffers' 1 MiB, consumed and held (uploads are stuck).
	produce(t, cl, ev[:1200]...)
	waitFor(t, 30*time.Second, "the first records consumed", func() bool { return r.s.eng.Next()["t"][0] == 1200 })
	// One poll: a rejected record, then more than the budget has room for.
	bad := int64(1200)
	produce(t, cl, append([][]byte{[]byte(`{"event_id":`)}, ev[1201:]...)...)
	waitFor(t, 30*time.Second, "the sink to wait for memory", func() bool { return testutil.ToFloat64(r.m.FetchPaused) == 1 })
	if next := r.s.eng.Next()["t"][0]; next <= bad {
		t.Fatalf("next offset %d: the rejected record at %d was not handled before the wait", next, bad)
	}
	// SIGTERM; the uploads recover while the sink shuts down.
	r.cancel()
	close(blocked.release)
	if err := r.wait(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if c, dead := committedOffset(t, cl), deadLetters(t, addrs); c > bad && dead[bad] != 1 {
		t.Fatalf("committed offset %d is past the rejected record %d, which is %d times in the dead-letter topic", c, bad, dead[bad])
	}
	// A restart lands everything exactly once.
	restartAndLand(t, cfg, local, cl, 3000, bad)
}

// failProduce makes the cluster answer every produce to topic d with a
// non-retriable error while on is true; it counts the produces it failed.
func failProduce(t *testing.T, c *kfake.Cluster, cl *kgo.Client, on *atomic.Bool, failed *atomic.Int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	id := details["d"].ID
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		toD := false
		for _, tp := range pr.Topics {
			toD = toD || tp.Topic == "d" || tp.TopicID == id
		}
		if !toD || !on.Load() {
			return nil, nil, false
		}
		failed.Add(1)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
}

// TestDeadLetterProduceFailingCommitsNothingPast: the dead-letter produce fails (the
// broker refuses it) and the sink stops with an error; its revoke on the way out
// commits nothing past the rejected record, and a restart lands it exactly once.
func TestDeadLetterProduceFailingCommitsNothingPast(t *testing.T) {
	c, cfg, local := sinkBed(t, "")
	addrs := cfg.Kafka.Brokers
	cl := newClient(t, addrs)
	var on atomic.Bool
	var failed atomic.Int64
	failProduce(t, c, cl, &on, &failed)
	ev := events(100, 1)
	produce(t, cl, ev[:50]...)
	r := startSink(t, cfg, local, nil)
	waitFor(t, 30*time.Second, "the first records consumed", func() bool { return r.s.eng.Next()["t"][0] == 50 })
	// Make them durable, so that nothing but the rejected record holds the commit back.
	r.s.eng.SealPartitions(nil, "test")
	waitFor(t, 30*time.Second, "the first records durable", func() bool { return r.s.eng.WaitDurable(context.Background(), nil) == nil })
	on.Store(true)
	bad := int64(50)
	produce(t, cl, []byte(`{"event_id":`))
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "dead-letter") {
		t.Fatalf("sink returned %v, want the dead-letter produce error", err)
	}
	if failed.Load() == 0 {
		t.Fatal("no dead-letter produce was refused")
	}
	if got := committedOffset(t, cl); got > bad {
		t.Fatalf("committed offset %d is past the rejected record %d, which was never produced", got, bad)
	}
	on.Store(false)
	produce(t, cl, ev[51:]...)
	restartAndLand(t, cfg, local, cl, 100, bad)
}

// TestCommitWhileRebalanceBlocked: the loop's periodic commit reaches the broker
// while the poll that moved it still blocks rebalances (BlockRebalanceOnPoll). A
// commit sent after AllowRebalance can land after a rebalance gave the partition to
// another member and rewind that member's commit.
func TestCommitWhileRebalanceBlocked(t *testing.T) {
	c, cfg, local := sinkBed(t, "")
	addrs := cfg.Kafka.Brokers
	// The loop's state as franz-go sees it: a poll that returned records blocks
	// rebalances until AllowRebalance; an empty poll does not.
	const (
		allowed = iota
		held
		empty
	)
	var state, recording atomic.Int32
	var commits [3]atomic.Int32
	recording.Store(1)
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req.(*kmsg.OffsetCommitRequest).Group == testGroup && recording.Load() == 1 {
			commits[state.Load()].Add(1)
		}
		return nil, nil, false
	})
	r := startSink(t, cfg, local, func(s *Sink) {
		s.hooks.polled = func(n int) {
			if n > 0 {
				state.Store(held)
			} else {
				state.Store(empty)
			}
		}
		s.hooks.allowing = func() { state.Store(allowed) }
	})
	cl := newClient(t, addrs)
	// Rejected records only: each one moves the commit point once dead-lettered.
	deadline := time.Now().Add(30 * time.Second)
	for commits[held].Load() < 3 && commits[allowed].Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no commit while a poll held records within 30s: %d after an empty poll", commits[empty].Load())
		}
		n := commits[held].Load() + commits[empty].Load() + commits[allowed].Load()
		// Let the commit interval (100ms) pass since the last commit, so that the
		// loop's iteration of the poll that returns the record is due to commit.
		time.Sleep(2 * cfg.Kafka.CommitInterval)
		produce(t, cl, []byte(`{"event_id":`))
		waitFor(t, 10*time.Second, "a commit", func() bool {
			return commits[held].Load()+commits[empty].Load()+commits[allowed].Load() > n
		})
	}
	recording.Store(0)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := commits[allowed].Load(); n > 0 {
		t.Fatalf("%d offset commits sent after AllowRebalance (%d while the poll blocked rebalances)", n, commits[held].Load())
	}
}

// TestUnreadableRawFileStopsSink: the key the sink must write already holds an
// object that is not a raw file. The sink retries reading it with backoff, counts
// each failure, then stops with an error naming the key and commits nothing.
func TestUnreadableRawFileStopsSink(t *testing.T) {
	_, cfg, local := sinkBed(t, "")
	addrs := cfg.Kafka.Brokers
	g := gen.New(3, time.Now().UTC().Truncate(time.Hour).Add(-time.Hour), time.Hour)
	var ev [][]byte
	for i := range 5 {
		v, _ := g.Event(i, 5)
		ev = append(ev, append([]byte(nil), v...))
	}
	ts := g.Time(0, 5)
	key := layout.RawKey("events", layout.Hour, layout.PeriodOf(layout.Hour, ts.UnixMicro()), "t", 0, 0)
	if err := local.Create(context.Background(), key, strings.NewReader("not a parquet file")); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, addrs)
	produce(t, cl, ev...)
	r := startSink(t, cfg, local, func(s *Sink) { s.eng.unreadableBackoff = time.Millisecond })
	waitFor(t, 30*time.Second, "the records consumed", func() bool { return r.s.eng.Next()["t"][0] == 5 })
	r.s.eng.SealPartitions(nil, "test")
	err := r.wait(t)
	if !errors.Is(err, ErrUnreadableRawFile) || !strings.Contains(err.Error(), key) {
		t.Fatalf("sink returned %v, want ErrUnreadableRawFile naming %s", err, key)
	}
	if n := testutil.ToFloat64(r.m.RawFileUnreadable.WithLabelValues("events")); n != unreadableTries {
		t.Fatalf("lakesink_raw_file_unreadable_total = %v, want %d", n, unreadableTries)
	}
	if c := committedOffset(t, cl); c > 0 {
		t.Fatalf("committed offset %d, past the records the unreadable file was in the way of", c)
	}
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/kafkaopt"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// topicCounters are a topic's lakesink_records_consumed_total and
// lakesink_bytes_consumed_total.
type topicCounters struct{ records, bytes prometheus.Counter }

// Sink is the long-running job: a Kafka consumer group member feeding an Engine.
type Sink struct {
	cfg    *config.Config
	log    *slog.Logger
	m      *Metrics
	eng    *Engine
	st     store.Store
	cl     *kgo.Client
	group  string
	tables map[string]string // topic -> table
	// consumed holds each topic's records and bytes counters, looked up once:
	// WithLabelValues twice per record was 2 % of the sink's CPU.
	consumed map[string]topicCounters

	idMu     sync.Mutex
	topicIDs map[string][16]byte // OffsetCommit v10+ names topics by id

	hooks loopHooks // tests
}

// loopHooks, when set, are called by the consumer loop: polled after each poll with
// the number of records it returned, allowing just before AllowRebalance.
type loopHooks struct {
	polled   func(records int)
	allowing func()
}

// New builds a sink: the engine, the Kafka client and its rebalance callbacks.
func New(cfg *config.Config, st store.Store, m *Metrics, log *slog.Logger, extra ...kgo.Opt) (*Sink, error) {
	eng, err := NewEngine(cfg, st, m, log)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: log, m: m, eng: eng, st: st, group: cfg.Kafka.Group, tables: map[string]string{}}
	s.consumed = map[string]topicCounters{}
	for _, t := range cfg.Tables {
		for _, tp := range t.Topics {
			s.tables[tp] = t.Name
			s.consumed[tp] = topicCounters{m.RecordsConsumed.WithLabelValues(tp), m.BytesConsumed.WithLabelValues(tp)}
		}
	}
	opts, err := kafkaopt.ClientOptions(&cfg.Kafka)
	if err != nil {
		return nil, err
	}
	start := kgo.NewOffset().AtStart()
	if cfg.Kafka.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Kafka.Group),
		kgo.ConsumeTopics(cfg.Topics()...),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(cfg.Kafka.SessionTimeout),
		kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout),
		// Partitions added to a source topic are found on a metadata refresh.
		kgo.MetadataMaxAge(cfg.Kafka.MetadataMaxAge),
		kgo.FetchMaxBytes(int32(fetchMaxBytes(cfg))), // capped by the memory budget (memory.go)
		kgo.FetchMaxPartitionBytes(int32(min(fetchMaxBytes(cfg), 1<<20))),
		// Records of aborted transactions (a replay of dead letters that crashed,
		// see Replay) must never land; control records come through so the commit
		// point can move past transaction markers.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnOffsetsFetched(s.onFetched),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.WithLogger(kafkaopt.Logger(log.With("component", "kafka"))),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordRetries(10),
	)
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl
	return s, nil
}

// Engine returns the sink's engine (for tests and diagnostics).
func (s *Sink) Engine() *Engine { return s.eng }

// CheckTopics verifies that the dead-letter topic exists and warns about missing sources.
func (s *Sink) CheckTopics(ctx context.Context) error {
	adm := kadm.NewClient(s.cl)
	topics := append([]string{s.cfg.DeadLetter.Topic}, s.cfg.Topics()...)
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if d, ok := details[s.cfg.DeadLetter.Topic]; !ok || d.Err != nil {
		return fmt.Errorf("dead_letter.topic: topic %q does not exist on the cluster; create it first", s.cfg.DeadLetter.Topic)
	}
	for _, t := range s.cfg.Topics() {
		if d, ok := details[t]; !ok || d.Err != nil {
			s.log.Warn("source topic does not exist yet", "topic", t)
		}
	}
	return nil
}

// Ready reports whether the sink has joined its group and the store answers.
func (s *Sink) Ready(ctx context.Context) error {
	if member, gen := s.cl.GroupMetadata(); member == "" || gen < 0 {
		return errors.New("not joined to the consumer group yet")
	}
	return s.st.Ping(ctx)
}

// Run consumes until ctx ends, then flushes everything held, commits and leaves the
// group within flush.shutdown_timeout. It returns nil after a clean shutdown.
func (s *Sink) Run(ctx context.Context) error {
	workerCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	s.eng.Start(workerCtx)
	defer s.eng.Close()
	stopWatermarks := s.startWatermarks(ctx)
	defer stopWatermarks()

	err := s.loop(ctx)
	if err != nil {
		// Nothing is committed past a failure: a restart replays, and the raw-zone keys
		// plus the commit metadata keep the replay free of duplicates.
		s.log.Error("sink stopping on error", "err", err)
		stopWorkers()
		s.cl.AllowRebalance()
		s.cl.Close()
		return err
	}
	s.log.Info("shutting down: flushing buffers")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Flush.ShutdownTimeout)
	defer cancel()
	s.eng.SealPartitions(nil, "shutdown")
	if err := s.eng.WaitDurable(sctx, nil); err != nil {
		stopWorkers()
		s.cl.Close()
		return fmt.Errorf("shutdown flush: %w", err)
	}
	if err := s.commit(sctx, nil); err != nil {
		s.log.Error("final commit failed", "err", err)
	}
	s.checkpoint(sctx, nil) // deletes the checkpoint objects the final commit made stale
	stopWatermarks()
	s.finalWatermarks(sctx)
	s.cl.AllowRebalance()
	s.cl.Close() // leaves the group; revoke callbacks find nothing left to flush
	s.log.Info("shut down cleanly")
	return nil
}

func (s *Sink) loop(ctx context.Context) error {
	nextCommit := time.Now().Add(s.cfg.Kafka.CommitInterval)
	nextTick := time.Now().Add(time.Second)
	rec := &decode.Record{}
	var dlq []*kgo.Record
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := s.cl.PollRecords(pctx, 10_000)
		cancel()
		if s.hooks.polled != nil {
			s.hooks.polled(fetches.NumRecords())
		}
		if fetches.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		dlq = dlq[:0]
		var perr error
		fetches.EachRecord(func(r *kgo.Record) {
			if perr != nil {
				return
			}
			if r.Attrs.IsControl() {
				// A transaction marker: nothing to land, but its offset is handled.
				s.eng.Advance(r.Topic, r.Partition, r.Offset)
				return
			}
			if c, ok := s.consumed[r.Topic]; ok {
				c.records.Inc()
				c.bytes.Add(float64(len(r.Value)))
			}
			rec.Topic, rec.Partition, rec.Offset, rec.Timestamp, rec.Value = r.Topic, r.Partition, r.Offset, r.Timestamp, r.Value
			if err := s.eng.Prepare(ctx, rec); err != nil {
				perr = err // the schema registry stays unreachable: stop, nothing committed past
				return
			}
			out, err := s.eng.Process(ctx, rec, r.LeaderEpoch)
			if out == Rejected {
				dlq = append(dlq, s.deadLetter(r, err))
				return
			}
			perr = err
		})
		// The poll's dead letters go out also when it ended early (SIGTERM while a
		// record waited for memory): the offset book holds each rejected record until
		// its dead letter is acknowledged, so what fails here is never committed past.
		if err := s.produceDeadLetters(ctx, dlq); err != nil {
			return err
		}
		clear(dlq) // so that the slice does not keep the poll's records alive
		if perr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return perr
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				lag := p.HighWatermark - p.Records[n-1].Offset - 1
				s.m.ConsumerLagRecords.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(lag))
			}
		})
		now := time.Now()
		if now.After(nextTick) {
			s.eng.Tick()
			nextTick = now.Add(time.Second)
		}
		// Commit while the poll still blocks rebalances: after AllowRebalance a
		// rebalance may hand a partition to another member, and this commit, of the
		// generation it was built in, could land after that member's and rewind it
		// (franz-go's BlockRebalanceOnPoll documentation).
		if now.After(nextCommit) {
			if err := s.commit(ctx, nil); err != nil && ctx.Err() == nil {
				s.log.Warn("offset commit failed; will retry", "err", err)
			}
			nextCommit = now.Add(s.cfg.Kafka.CommitInterval)
		}
		if err := s.eng.Err(); err != nil {
			return err
		}
		if s.hooks.allowing != nil {
			s.hooks.allowing()
		}
		s.cl.AllowRebalance()
	}
	return nil
}

// produceDeadLetters sends the dead letters of a poll and waits for the
// acknowledgements; each acknowledged one releases its source record in the offset
// book (Engine.DeadLettered). A cancelled ctx does not cut it short.
func (s *Sink) produceDeadLetters(ctx context.Context, dlq []*kgo.Record) error {
	if len(dlq) == 0 {
		return nil
	}
	var firstErr error
	for _, res := range s.cl.ProduceSync(context.WithoutCancel(ctx), dlq...) {
		src := res.Record.Context.Value(sourceKey{}).(source)
		if res.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("produce to dead-letter topic %s (topic %s, partition %d, offset %d): %w",
					s.cfg.DeadLetter.Topic, src.topic, src.partition, src.offset, res.Err)
			}
			continue
		}
		s.eng.DeadLettered(src.topic, src.partition, src.offset)
	}
	return firstErr
}

// sourceKey keys a dead letter's source coordinates in its record's Context.
type sourceKey struct{}

type source struct {
	topic     string
	partition int32
	offset    int64
}

func (s *Sink) deadLetter(r *kgo.Record, err error) *kgo.Record {
	reason, table := deadletter.Reason(err), s.tables[r.Topic]
	s.m.RecordsDeadLettered.WithLabelValues(table, reason).Inc()
	s.log.Debug("dead-lettering record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "table", table, "reason", reason, "err", err)
	dl := deadletter.Record(r, s.cfg.DeadLetter.Topic, table, reason, err, time.Now())
	dl.Context = context.WithValue(context.Background(), sourceKey{}, source{r.Topic, r.Partition, r.Offset})
	return dl
}

// commit sends the engine's pending offsets, with their metadata, for the partitions
// given (nil: all), as a group member of the current generation.
func (s *Sink) commit(ctx context.Context, tps map[string][]int32) error {
	commits := s.checkpoint(ctx, s.eng.Commits(tps))
	if len(commits) == 0 {
		return nil
	}
	ids, err := s.ids(ctx, commits)
	if err != nil {
		return err
	}
	member, gen := s.cl.GroupMetadata()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation, req.MemberID = s.group, gen, member
	byTopic := map[string]int{}
	for _, c := range commits {
		i, ok := byTopic[c.Topic]
		if !ok {
			t := kmsg.NewOffsetCommitRequestTopic()
			t.Topic, t.TopicID = c.Topic, ids[c.Topic]
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[c.Topic] = i
		}
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch = c.Partition, c.Offset, c.Epoch
		meta := c.Metadata
		p.Metadata = &meta
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		s.m.Commits.WithLabelValues("error").Inc()
		return fmt.Errorf("offset commit: %w", err)
	}
	var firstErr error
	for _, t := range resp.Topics {
		if t.Topic == "" {
			for name, id := range ids {
				if id == t.TopicID {
					t.Topic = name
				}
			}
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				s.m.Commits.WithLabelValues("error").Inc()
				if firstErr == nil {
					firstErr = fmt.Errorf("offset commit %s/%d: %w", t.Topic, p.Partition, err)
				}
				continue
			}
			for _, c := range commits {
				if c.Topic == t.Topic && c.Partition == p.Partition {
					s.eng.Committed(c)
					s.m.Commits.WithLabelValues("ok").Inc()
				}
			}
		}
	}
	for topic, lag := range s.eng.Lag() {
		s.m.CommitLagRecords.WithLabelValues(topic).Set(float64(lag))
	}
	return firstErr
}

// ids returns the topic ids of the committed topics, asking the cluster for unknown ones.
func (s *Sink) ids(ctx context.Context, commits []Commit) (map[string][16]byte, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.topicIDs == nil {
		s.topicIDs = map[string][16]byte{}
	}
	var missing []string
	for _, c := range commits {
		if _, ok := s.topicIDs[c.Topic]; !ok {
			missing = append(missing, c.Topic)
		}
	}
	if len(missing) > 0 {
		details, err := kadm.NewClient(s.cl).ListTopics(ctx, missing...)
		if err != nil {
			return nil, fmt.Errorf("topic ids for commit: %w", err)
		}
		for name, d := range details {
			if d.Err == nil {
				s.topicIDs[name] = d.ID
			}
		}
	}
	out := make(map[string][16]byte, len(commits))
	for _, c := range commits {
		out[c.Topic] = s.topicIDs[c.Topic]
	}
	return out, nil
}

func (s *Sink) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	for topic, parts := range assigned {
		for _, p := range parts {
			s.eng.Assign(topic, p, -1, "")
		}
	}
	s.log.Info("partitions assigned", "partitions", assigned)
}

// onFetched records the committed offsets of newly assigned partitions, then sweeps
// their orphan checkpoint objects (sweepCheckpoints): after resolving every commit,
// before franz-go starts fetching the partitions.
func (s *Sink) onFetched(ctx context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	topics, named := map[string]bool{}, map[string]string{}
	fetched := func(topic string, partition int32, offset int64, meta *string, code int16) error {
		if err := s.fetched(ctx, topic, partition, offset, meta, code); err != nil {
			return err
		}
		if code == 0 {
			topics[topic] = true
			named[layout.CheckpointPrefix(s.group, topic, partition)] = checkpointNamed(meta)
		}
		return nil
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				if err := fetched(t.Topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode); err != nil {
					return err
				}
			}
		}
	}
	if len(resp.Groups) == 0 {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := fetched(t.Topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode); err != nil {
					return err
				}
			}
		}
	}
	s.sweepCheckpoints(ctx, topics, named)
	return nil
}

// fetched records a partition's committed offset and durable ranges (read from the
// checkpoint object the metadata names, if any: an error then ends the group
// session, and franz-go joins again).
func (s *Sink) fetched(ctx context.Context, topic string, partition int32, offset int64, meta *string, code int16) error {
	if code != 0 {
		return nil
	}
	m := ""
	if meta != nil {
		m = *meta
	}
	ranges, key, err := s.resolveMeta(ctx, m)
	if err != nil {
		s.log.Error("offset checkpoint unreadable: rejoining the group", "topic", topic, "partition", partition, "err", err)
		return err
	}
	s.eng.SetCheckpoint(topic, partition, offset, ranges, key)
	return nil
}

func (s *Sink) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		return
	}
	s.log.Info("partitions revoked: flushing", "partitions", revoked)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Flush.ShutdownTimeout)
	defer cancel()
	s.eng.SealPartitions(revoked, "revoke")
	if err := s.eng.WaitDurable(rctx, revoked); err != nil {
		s.log.Error("revoke flush did not finish; dropping without commit", "err", err)
		s.eng.Drop(revoked)
		return
	}
	if err := s.commit(rctx, revoked); err != nil {
		s.log.Error("revoke commit failed", "err", err)
	}
	s.eng.Forget(revoked)
}

func (s *Sink) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if len(lost) == 0 {
		return
	}
	s.log.Warn("partitions lost: dropping their buffers without commit", "partitions", lost)
	s.eng.Drop(lost)
}

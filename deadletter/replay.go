package deadletter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/kafkaopt"
	"github.com/lakesink/lakesink/lake/config"
)

// ReasonNoSourceTopic: a dead letter whose source topic no longer exists (replay only).
const ReasonNoSourceTopic = "source_topic_missing"

// ErrReplaySetup marks replay errors the operator must fix (flags, config, topics).
var ErrReplaySetup = errors.New("replay setup")

// ErrReplayAborted is returned when a replay transaction was aborted (a rebalance of
// the replay group, a fenced producer): nothing of it is visible; run again.
var ErrReplayAborted = errors.New("replay transaction aborted")

// ReplayOptions selects the dead letters a replay looks at and tunes it.
type ReplayOptions struct {
	// Group is the replay's consumer group, which holds its position (default:
	// kafka.group + "-dlq-replay"). The transactional id is derived from it.
	Group string
	// Reasons, Table, Since and Until filter on the dead-letter headers
	// (lakesink.reason, lakesink.table, lakesink.time; Until exclusive). Empty: all.
	Reasons      []string
	Table        string
	Since, Until time.Time
	// DryRun judges the dead letters and produces and commits nothing.
	DryRun bool
	// Batch is the number of dead letters per transaction (default 1000).
	Batch int
	// Examples is the number of still-failing examples kept per reason (default 3).
	Examples int
	// Hook, when set, is called at named points ("dlq-before-commit",
	// "dlq-after-commit") for the crash tests.
	Hook func(point string)
	// Wait bounds the time to join the replay group and fetch its position (default 2m).
	Wait time.Duration
	Log  *slog.Logger
}

// ReplayExample is one dead letter that still fails with the current config.
type ReplayExample struct {
	Partition   int32
	Offset      int64
	SourceTopic string
	Reason      string
	Error       string
}

// ReplaySummary counts what a replay did with the dead letters it read.
type ReplaySummary struct {
	Read            int64 // dead letters judged in this run
	Replayed        int64 // produced back to their source topic
	Filtered        int64 // left out by --reason/--table/--since/--until (kept for later)
	AlreadyReplayed int64 // replayed by an earlier run, skipped
	Deferred        int64 // not judged: the partition's ledger is full (see replayLedger)
	// Duplicates are dead letters of a source record already replayed from another
	// dead letter, skipped: the sink dead-lettered the record twice (it stopped
	// between the dead letter's acknowledgement and its offset commit).
	Duplicates      int64
	Failing         map[string]int64 // still failing with the current config, by reason (kept)
	ReplayedByTable map[string]int64
	Examples        []ReplayExample
	Transactions    int
}

// StillFailing is the number of dead letters that still fail.
func (s *ReplaySummary) StillFailing() int64 {
	var n int64
	for _, c := range s.Failing {
		n += c
	}
	return n
}

type replayer struct {
	cfg     *config.Config
	opt     ReplayOptions
	dlq     string
	tables  *decode.Tables // the current config's decoders, exactly as the sink runs them (JSON, Avro)
	fatal   error          // a transient failure (schema registry) that stops the run
	adm     *kadm.Client
	parts   map[string]int // source topic -> partition count (0: missing)
	now     time.Time
	reasons map[string]bool

	mu      sync.Mutex
	ledgers map[int32]*replayLedger
	initial map[int32]*replayLedger // as fetched from the group, for a rewind
	full    map[int32]bool
	dirty   map[int32]bool
	pos     map[int32]int64 // next offset to read, per dead-letter partition
	starts  map[int32]int64
	ends    map[int32]int64 // end offsets captured at start: the replay stops there

	// replayed holds the source records replayed, by this run or an earlier one:
	// those of the dead letters the ledgers mark done (read by scanReplayed) and
	// those this run produced back. A dead letter of one of them is a duplicate.
	replayed map[sourceRecord]bool
	added    []sourceRecord // replayed since the last committed transaction: undone by an abort
	scanned  bool

	sum ReplaySummary
}

// sourceRecord is the Kafka record a dead letter was made of (its
// lakesink.source.* headers): the sink may dead-letter one record twice, a replay
// produces it back once.
type sourceRecord struct {
	topic     string
	partition int32
	offset    int64
}

// sourceOf reads a dead letter's source record from its headers.
func sourceOf(h map[string]string) (sourceRecord, bool) {
	p, perr := strconv.ParseInt(h[HeaderPartition], 10, 32)
	o, oerr := strconv.ParseInt(h[HeaderOffset], 10, 64)
	if h[HeaderTopic] == "" || perr != nil || oerr != nil {
		return sourceRecord{}, false
	}
	return sourceRecord{h[HeaderTopic], int32(p), o}, true
}

func headerMap(rec *kgo.Record) map[string]string {
	h := make(map[string]string, len(rec.Headers))
	for _, x := range rec.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// Replay re-reads the dead-letter topic from the replay group's position up to the
// end offsets seen at start, runs each dead letter through the current config's
// decoders (decode.Tables, so JSON and Avro decode exactly as in the sink), and produces those that now decode back to their source topic, with
// their original key, value, timestamp and headers (minus lakesink.*, plus
// lakesink.replayed-from). The records produced and the replay group's new position
// commit in one Kafka transaction, so a record is replayed exactly once even when a
// replay crashes or runs twice; the sink reads with isolation read_committed, so it
// never lands records of an aborted replay. A source record the sink dead-lettered
// twice (lakesink.source.topic|partition|offset) is replayed once: a dead letter of a
// source record already replayed, in this run or an earlier one (scanReplayed), is
// counted in Duplicates and marked done.
func Replay(ctx context.Context, cfg *config.Config, opt ReplayOptions) (*ReplaySummary, error) {
	r, admCl, err := newReplayer(ctx, cfg, &opt)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	if opt.DryRun {
		return r.dryRun(ctx)
	}
	return r.run(ctx)
}

func newReplayer(ctx context.Context, cfg *config.Config, opt *ReplayOptions) (*replayer, *kgo.Client, error) {
	if opt.Group == "" {
		opt.Group = cfg.Kafka.Group + "-dlq-replay"
	}
	if opt.Batch <= 0 {
		opt.Batch = 1000
	}
	if opt.Examples <= 0 {
		opt.Examples = 3
	}
	if opt.Wait <= 0 {
		opt.Wait = 2 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if !opt.Since.IsZero() && !opt.Until.IsZero() && !opt.Until.After(opt.Since) {
		return nil, nil, fmt.Errorf("%w: --until %s is not after --since %s", ErrReplaySetup, opt.Until, opt.Since)
	}
	r := &replayer{cfg: cfg, opt: *opt, dlq: cfg.DeadLetter.Topic, parts: map[string]int{},
		ledgers: map[int32]*replayLedger{}, initial: map[int32]*replayLedger{}, full: map[int32]bool{}, dirty: map[int32]bool{},
		pos: map[int32]int64{}, starts: map[int32]int64{}, ends: map[int32]int64{}, replayed: map[sourceRecord]bool{},
		sum: ReplaySummary{Failing: map[string]int64{}, ReplayedByTable: map[string]int64{}}}
	if len(opt.Reasons) > 0 {
		r.reasons = map[string]bool{}
		for _, x := range opt.Reasons {
			r.reasons[x] = true
		}
	}
	found := opt.Table == ""
	for i := range cfg.Tables {
		found = found || cfg.Tables[i].Name == opt.Table
	}
	tables, err := decode.Compile(cfg, decode.Options{MaxRecordBytes: int(cfg.Flush.MaxRecordBytes), Log: opt.Log})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrReplaySetup, err)
	}
	r.tables = tables
	if !found {
		// Dead letters may name a table the config dropped; warn, don't refuse.
		opt.Log.Warn("--table names no table of the config", "table", opt.Table)
	}
	base, err := kafkaopt.ClientOptions(&cfg.Kafka)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrReplaySetup, err)
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: kafka client: %w", ErrReplaySetup, err)
	}
	r.adm = kadm.NewClient(cl)
	details, err := r.adm.ListTopics(ctx, r.dlq)
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("list topics: %w", err)
	}
	if d, ok := details[r.dlq]; !ok || d.Err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("%w: dead_letter.topic %q does not exist on the cluster", ErrReplaySetup, r.dlq)
	}
	starts, err := r.adm.ListStartOffsets(ctx, r.dlq)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("start offsets of %s: %w", r.dlq, err)
	}
	ends, err := r.adm.ListEndOffsets(ctx, r.dlq)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("end offsets of %s: %w", r.dlq, err)
	}
	starts.Each(func(o kadm.ListedOffset) { r.starts[o.Partition] = o.Offset })
	ends.Each(func(o kadm.ListedOffset) { r.ends[o.Partition] = o.Offset })
	return r, cl, nil
}

// setLedger installs a partition's ledger from its committed offset and metadata.
func (r *replayer) setLedger(p int32, committed int64, meta string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := newLedger(committed, meta)
	l.prune(r.starts[p])
	r.ledgers[p] = l
	r.pos[p] = l.commitOffset()
	r.initial[p] = l.clone()
}

// finished reports whether every partition was read up to its end offset.
func (r *replayer) finished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, end := range r.ends {
		pos, ok := r.pos[p]
		if !ok || pos < end {
			return false
		}
	}
	return true
}

func (r *replayer) ledgersKnown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ledgers) >= len(r.ends)
}

// handle judges one dead letter; it returns the record to produce back, if any.
func (r *replayer) handle(ctx context.Context, rec *kgo.Record) *kgo.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, o := rec.Partition, rec.Offset
	l := r.ledgers[p]
	if l == nil {
		return nil
	}
	if o >= r.ends[p] {
		r.pos[p] = max(r.pos[p], r.ends[p]) // past the end captured at start
		return nil
	}
	if o < r.pos[p] {
		// Handled already: after an aborted transaction the session rewinds to the
		// committed offset, which may lie below the last commit's read position.
		return nil
	}
	r.pos[p] = o + 1
	if rec.Attrs.IsControl() {
		if !r.full[p] {
			l.passed(o)
			r.dirty[p] = true
		}
		return nil
	}
	if l.done(o) {
		r.sum.AlreadyReplayed++
		return nil
	}
	if r.full[p] && o >= l.frontier {
		r.sum.Deferred++
		return nil
	}
	keep := func() bool {
		if !l.canKeep(o) {
			r.full[p] = true
			r.sum.Deferred++
			r.opt.Log.Warn("replay ledger full: later dead letters of this partition wait for another run", "partition", p, "offset", o)
			return false
		}
		if !l.pending[o] { // o >= frontier: a new dead letter judged
			r.dirty[p] = true
		}
		l.judged(o, true)
		r.sum.Read++
		return true
	}
	h := headerMap(rec)
	src, hasSource := sourceOf(h)
	// resolve marks o done (replayed, or a duplicate) unless the ledger is full.
	resolve := func() bool {
		if !l.canResolve(o) {
			r.full[p] = true
			r.sum.Deferred++
			return false
		}
		l.judged(o, false)
		r.dirty[p] = true
		r.sum.Read++
		return true
	}
	if hasSource && r.replayed[src] {
		// The same source record was replayed from another dead letter.
		if resolve() {
			r.sum.Duplicates++
		}
		return nil
	}
	if !r.match(h) {
		if keep() {
			r.sum.Filtered++
		}
		return nil
	}
	out, reason, err := r.rebuild(ctx, rec, h)
	if err != nil {
		if keep() {
			r.sum.Failing[reason]++
			n := 0
			for _, e := range r.sum.Examples {
				if e.Reason == reason {
					n++
				}
			}
			if n < r.opt.Examples {
				r.sum.Examples = append(r.sum.Examples, ReplayExample{Partition: p, Offset: o, SourceTopic: h[HeaderTopic], Reason: reason, Error: err.Error()})
			}
		}
		return nil
	}
	if !resolve() {
		return nil
	}
	r.sum.Replayed++
	r.replayed[src] = true // rebuild succeeded: src is valid
	r.added = append(r.added, src)
	table := ""
	if t := r.tables.ForTopic(out.Topic); t != nil {
		table = t.Config.Name
	}
	r.sum.ReplayedByTable[table]++
	return out
}

// scanReplayed reads the dead letters each ledger marks done (from the log start
// up to its frontier) and records their source records as replayed, so that a
// later dead letter of the same record is a duplicate, also across runs: the
// ledger and the dead-letter topic are the durable state. Call it once the ledgers
// are set, before any record is judged. It reads what retention keeps of the
// dead-letter topic up to the replay position, each run.
func (r *replayer) scanReplayed(ctx context.Context) error {
	r.mu.Lock()
	r.scanned = true
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	for p, l := range r.ledgers {
		if target := min(l.frontier, r.ends[p]); target > r.starts[p] {
			want[p] = target
			from[p] = kgo.NewOffset().At(r.starts[p])
		}
	}
	r.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	base, err := kafkaopt.ClientOptions(&r.cfg.Kafka)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReplaySetup, err)
	}
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.dlq: from}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(int32(r.cfg.Kafka.FetchMaxBytes)),
		kgo.WithLogger(kafkaopt.Logger(r.opt.Log.With("component", "kafka"))),
	)...)
	if err != nil {
		return fmt.Errorf("%w: kafka client: %w", ErrReplaySetup, err)
	}
	defer cl.Close()
	deadline := time.Now().Add(r.opt.Wait)
	for len(want) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("read the replayed dead letters of %s: partitions %v not read within %s", r.dlq, slices.Sorted(maps.Keys(want)), r.opt.Wait)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollRecords(pctx, r.opt.Batch)
		cancel()
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.opt.Log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		r.mu.Lock()
		fetches.EachRecord(func(rec *kgo.Record) {
			target, ok := want[rec.Partition]
			if !ok || rec.Offset >= target {
				delete(want, rec.Partition)
				return
			}
			if rec.Offset+1 >= target {
				delete(want, rec.Partition)
			}
			if rec.Attrs.IsControl() || !r.ledgers[rec.Partition].done(rec.Offset) {
				return
			}
			if src, ok := sourceOf(headerMap(rec)); ok {
				r.replayed[src] = true
			}
		})
		r.mu.Unlock()
	}
	return nil
}

func (r *replayer) match(h map[string]string) bool {
	if r.reasons != nil && !r.reasons[h[HeaderReason]] {
		return false
	}
	if r.opt.Table != "" && h[HeaderTable] != r.opt.Table {
		return false
	}
	if !r.opt.Since.IsZero() || !r.opt.Until.IsZero() {
		t, err := time.Parse(time.RFC3339Nano, h[HeaderTime])
		if err != nil {
			return false
		}
		if (!r.opt.Since.IsZero() && t.Before(r.opt.Since)) || (!r.opt.Until.IsZero() && !t.Before(r.opt.Until)) {
			return false
		}
	}
	return true
}

// rebuild decodes the dead letter with the current config and, when it decodes,
// returns the record to produce back to its source topic.
func (r *replayer) rebuild(ctx context.Context, rec *kgo.Record, h map[string]string) (_ *kgo.Record, reason string, err error) {
	src := h[HeaderTopic]
	srcPart, perr := strconv.ParseInt(h[HeaderPartition], 10, 32)
	srcOff, oerr := strconv.ParseInt(h[HeaderOffset], 10, 64)
	if src == "" || perr != nil || oerr != nil {
		return nil, decode.ReasonMalformed, errors.New("dead letter without lakesink.source.* headers")
	}
	t := r.tables.ForTopic(src)
	if t == nil {
		return nil, decode.ReasonNoTable, decode.NoTable(src)
	}
	dr := &decode.Record{Topic: src, Partition: int32(srcPart), Offset: srcOff, Timestamp: rec.Timestamp, Value: rec.Value}
	if err := r.tables.Prepare(ctx, dr); err != nil {
		if r.fatal == nil {
			r.fatal = err
		}
		return nil, "transient", err
	}
	_, err = t.Decode(dr, time.Now()) // recovers a decoder panic into a rejection, as the sink does
	if err != nil && decode.IsTransient(err) {
		if r.fatal == nil {
			r.fatal = fmt.Errorf("decode %s/%d/%d: %w", r.dlq, rec.Partition, rec.Offset, err)
		}
		return nil, "transient", err
	}
	if err != nil {
		return nil, Reason(err), err
	}
	n, err := r.partitions(ctx, src)
	if err != nil {
		return nil, ReasonNoSourceTopic, err
	}
	part := int32(srcPart)
	if part < 0 || int(part) >= n {
		// The topic shrank or was recreated: hash the key (the offset for keyless records).
		f := fnv.New32a()
		if rec.Key != nil {
			_, _ = f.Write(rec.Key)
		} else {
			_, _ = f.Write([]byte(strconv.FormatInt(rec.Offset, 10)))
		}
		part = int32(f.Sum32() % uint32(n))
	}
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+1)
	for _, x := range rec.Headers {
		if !strings.HasPrefix(x.Key, "lakesink.") {
			headers = append(headers, x)
		}
	}
	headers = append(headers, kgo.RecordHeader{Key: HeaderReplayedFrom,
		Value: fmt.Appendf(nil, "%s/%d/%d", r.dlq, rec.Partition, rec.Offset)})
	return &kgo.Record{Topic: src, Partition: part, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp, Headers: headers}, "", nil
}

// partitions returns the partition count of a source topic (cached).
func (r *replayer) partitions(ctx context.Context, topic string) (int, error) {
	if n, ok := r.parts[topic]; ok {
		if n == 0 {
			return 0, fmt.Errorf("source topic %q does not exist", topic)
		}
		return n, nil
	}
	details, err := r.adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe source topic %q: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		r.parts[topic] = 0
		return 0, fmt.Errorf("source topic %q does not exist", topic)
	}
	r.parts[topic] = len(d.Partitions)
	return len(d.Partitions), nil
}

// fillCommit rewrites the transaction's offset commit: the replay group commits the
// ledger of each partition (lowest offset still to look at, plus metadata).
func (r *replayer) fillCommit(req *kmsg.TxnOffsetCommitRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ti := -1
	for i := range req.Topics {
		if req.Topics[i].Topic == r.dlq {
			ti = i
		}
	}
	if ti < 0 {
		if len(r.dirty) == 0 {
			return nil
		}
		t := kmsg.NewTxnOffsetCommitRequestTopic()
		t.Topic = r.dlq
		req.Topics = append(req.Topics, t)
		ti = len(req.Topics) - 1
	}
	t := &req.Topics[ti]
	seen := map[int32]bool{}
	set := func(p *kmsg.TxnOffsetCommitRequestTopicPartition) {
		l := r.ledgers[p.Partition]
		if l == nil {
			return
		}
		meta := l.metadata()
		p.Offset, p.LeaderEpoch, p.Metadata = l.commitOffset(), -1, &meta
		seen[p.Partition] = true
	}
	for i := range t.Partitions {
		set(&t.Partitions[i])
	}
	for p := range r.dirty {
		if !seen[p] {
			tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			tp.Partition = p
			set(&tp)
			t.Partitions = append(t.Partitions, tp)
		}
	}
	// Partitions without a ledger (not read in this run) keep their commit.
	t.Partitions = slices.DeleteFunc(t.Partitions, func(p kmsg.TxnOffsetCommitRequestTopicPartition) bool { return !seen[p.Partition] })
	return nil
}

func (r *replayer) hook(point string) {
	if r.opt.Hook != nil {
		r.opt.Hook(point)
	}
}

// run is the transactional replay.
func (r *replayer) run(ctx context.Context) (*ReplaySummary, error) {
	base, _ := kafkaopt.ClientOptions(&r.cfg.Kafka)
	opts := append(base,
		kgo.ConsumerGroup(r.opt.Group),
		// Static membership: a replay run after a crashed one takes over its member
		// at once instead of waiting for the session timeout.
		kgo.InstanceID("lakesink-dlq-replay"),
		kgo.SessionTimeout(r.cfg.Kafka.SessionTimeout),
		kgo.RebalanceTimeout(r.cfg.Kafka.RebalanceTimeout),
		kgo.ConsumeTopics(r.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.TransactionalID("lakesink-dlq-replay-"+r.opt.Group),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.FetchMaxBytes(int32(r.cfg.Kafka.FetchMaxBytes)),
		kgo.OnOffsetsFetched(func(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
			each := func(topic string, p int32, off int64, meta *string, code int16) {
				if topic != r.dlq || code != 0 {
					return
				}
				m := ""
				if meta != nil {
					m = *meta
				}
				r.setLedger(p, off, m)
			}
			for _, g := range resp.Groups {
				for _, t := range g.Topics {
					for _, p := range t.Partitions {
						each(t.Topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode)
					}
				}
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					each(t.Topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode)
				}
			}
			return nil
		}),
		kgo.WithLogger(kafkaopt.Logger(r.opt.Log.With("component", "kafka"))),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka client: %w", ErrReplaySetup, err)
	}
	defer sess.Close()
	// Loading the producer id fences an earlier replay with the same group and
	// aborts its open transaction, so the group's position below is settled.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		return nil, fmt.Errorf("init transactional producer: %w", err)
	}
	if err := sess.Begin(); err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	var (
		prodMu  sync.Mutex
		prodErr error
		judged  int
		aborts  int
		saved   = r.snapshot()
	)
	// commit ends the transaction. A clean abort (Kafka's CONCURRENT_TRANSACTIONS
	// right after the previous commit, a rebalance) rewinds the session to the
	// committed position; the ledgers and counts rewind with it and the records
	// are judged again.
	commit := func() error {
		if err := sess.Client().Flush(ctx); err != nil {
			return fmt.Errorf("produce back to the source topic: %w", err)
		}
		r.hook("dlq-before-commit") // records are in the log, the transaction still open
		prodMu.Lock()
		perr := prodErr
		prodMu.Unlock()
		if perr != nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return fmt.Errorf("produce back to the source topic: %w", perr)
		}
		committed, err := sess.End(kgo.PreTxnCommitFnContext(ctx, r.fillCommit), kgo.TryCommit)
		if err != nil {
			return fmt.Errorf("end replay transaction: %w", err)
		}
		judged = 0
		if !committed {
			aborts++
			if aborts > 10 {
				return ErrReplayAborted
			}
			r.opt.Log.Info("replay transaction aborted; judging its records again", "aborts", aborts)
			r.restore(saved)
			time.Sleep(time.Duration(aborts) * 100 * time.Millisecond)
			return sess.Begin()
		}
		aborts = 0
		r.mu.Lock()
		clear(r.dirty)
		r.added = r.added[:0]
		r.mu.Unlock()
		r.sum.Transactions++
		saved = r.snapshot()
		r.opt.Log.Info("replay transaction committed", "replayed", r.sum.Replayed, "read", r.sum.Read)
		r.hook("dlq-after-commit")
		return sess.Begin()
	}
	deadline := time.Now().Add(r.opt.Wait)
	for {
		if ctx.Err() != nil {
			_, _ = sess.End(context.WithoutCancel(ctx), kgo.TryAbort)
			return &r.sum, ctx.Err()
		}
		if r.finished() {
			if !r.isDirty() {
				break
			}
			if err := commit(); err != nil {
				return &r.sum, err
			}
			continue // after an abort, finished() is false again
		}
		if !r.ledgersKnown() && time.Now().After(deadline) {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return &r.sum, fmt.Errorf("replay group %s: no position for every partition of %s within %s (another replay running?)", r.opt.Group, r.dlq, r.opt.Wait)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := sess.PollRecords(pctx, r.opt.Batch)
		cancel()
		if fetches.IsClientClosed() {
			return &r.sum, errors.New("kafka client closed")
		}
		if !r.scanned && r.ledgersKnown() {
			if err := r.scanReplayed(ctx); err != nil {
				_, _ = sess.End(context.WithoutCancel(ctx), kgo.TryAbort)
				return &r.sum, err
			}
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.opt.Log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			judged++
			if out := r.handle(ctx, rec); out != nil {
				sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
					if err != nil {
						prodMu.Lock()
						if prodErr == nil {
							prodErr = err
						}
						prodMu.Unlock()
					}
				})
			}
		})
		if r.fatal != nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return &r.sum, r.fatal
		}
		if judged >= r.opt.Batch && r.isDirty() {
			if err := commit(); err != nil {
				return &r.sum, err
			}
		}
	}
	_, _ = sess.End(ctx, kgo.TryAbort) // the empty transaction begun after the last commit
	return &r.sum, nil
}

func (r *replayer) isDirty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) > 0
}

// replayState is what a replay rewinds to when a transaction aborts.
type replayState struct {
	ledgers map[int32]*replayLedger
	pos     map[int32]int64
	full    map[int32]bool
	sum     ReplaySummary
}

func (r *replayer) snapshot() replayState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return replayState{ledgers: r.ledgers, pos: r.pos, full: r.full, sum: r.sum}.clone()
}

// restore rewinds to a snapshot; partitions whose position was fetched after it
// rewind to that position.
func (r *replayer) restore(st replayState) {
	cp := st.clone() // so that the snapshot can be restored more than once
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, l := range r.initial {
		if _, ok := cp.ledgers[p]; !ok {
			c := l.clone()
			r.ledgers[p], r.pos[p] = c, c.commitOffset()
		}
	}
	for p, l := range cp.ledgers {
		r.ledgers[p] = l
		r.pos[p] = cp.pos[p]
	}
	r.full = cp.full
	r.sum = cp.sum
	clear(r.dirty)
	for _, src := range r.added {
		delete(r.replayed, src)
	}
	r.added = r.added[:0]
}

// clone deep-copies the state: ledgers, positions and the summary's maps.
func (st replayState) clone() replayState {
	cp := replayState{ledgers: map[int32]*replayLedger{}, pos: maps.Clone(st.pos), full: maps.Clone(st.full), sum: st.sum}
	for p, l := range st.ledgers {
		cp.ledgers[p] = l.clone()
	}
	cp.sum.Failing = maps.Clone(st.sum.Failing)
	cp.sum.ReplayedByTable = maps.Clone(st.sum.ReplayedByTable)
	cp.sum.Examples = slices.Clone(st.sum.Examples)
	return cp
}

// clone copies a ledger with its own pending set.
func (l *replayLedger) clone() *replayLedger {
	c := *l
	c.pending = maps.Clone(l.pending)
	return &c
}

// dryRun judges the dead letters from the replay group's position without
// producing or committing anything.
func (r *replayer) dryRun(ctx context.Context) (*ReplaySummary, error) {
	offs, err := r.adm.FetchOffsets(ctx, r.opt.Group)
	// A group that never committed: kadm.ErrEmpty, or GROUP_ID_NOT_FOUND from a
	// coordinator that does not know it.
	if err != nil && !errors.Is(err, kadm.ErrEmpty) && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("replay group %s offsets: %w", r.opt.Group, err)
	}
	starts := map[int32]kgo.Offset{}
	for p := range r.ends {
		committed, meta := int64(-1), ""
		if o, ok := offs.Lookup(r.dlq, p); ok && o.Err == nil {
			committed, meta = o.At, o.Metadata
		}
		r.setLedger(p, committed, meta)
		starts[p] = kgo.NewOffset().At(r.pos[p])
	}
	if err := r.scanReplayed(ctx); err != nil {
		return nil, err
	}
	base, _ := kafkaopt.ClientOptions(&r.cfg.Kafka)
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.dlq: starts}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(int32(r.cfg.Kafka.FetchMaxBytes)),
		kgo.WithLogger(kafkaopt.Logger(r.opt.Log.With("component", "kafka"))),
	)...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka client: %w", ErrReplaySetup, err)
	}
	defer cl.Close()
	for !r.finished() {
		if ctx.Err() != nil {
			return &r.sum, ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollRecords(pctx, r.opt.Batch)
		cancel()
		fetches.EachRecord(func(rec *kgo.Record) { r.handle(ctx, rec) })
		if r.fatal != nil {
			return &r.sum, r.fatal
		}
	}
	return &r.sum, nil
}

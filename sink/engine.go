package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// table is the per-table state of the engine: the compiled table and its counters.
type table struct {
	*decode.Table
	// decoded is the table's lakesink_records_decoded_total, looked up once:
	// WithLabelValues per record was 1 % of the sink's CPU; decodedFast its
	// lakesink_records_decoded_fast_total.
	decoded, decodedFast prometheus.Counter
	// unreadable is the table's lakesink_raw_file_unreadable_total.
	unreadable prometheus.Counter
}

type bufKey struct {
	tp     *tpState
	table  *table
	period int64
}

// bufferOverhead is the memory of a buffer besides its columns and offsets: the
// buffer and row store structs and its entries in the engine's open map and its
// partition's live set. It is counted in the budget: with thousands of small open
// buffers it adds up. Measured (TestOpenBufferOverheadCounted, 20,000 buffers of
// one record of the sample table): 828 B of heap per buffer, of which the row
// store's one chunk is 473 B, so ~355 B of fixed overhead; the budget counts 985 B.
const bufferOverhead = 512

// buffer holds the records of one topic-partition for one table and period, in the
// buffers' byte format (rawfile.RowStore).
type buffer struct {
	bufKey
	rows    *rawfile.RowStore
	first   int64
	last    int64
	n       int
	offsets []int64 // offset of each row, in row order
	bytes   int64
	created time.Time
	written uint64    // Engine.writes when a record was last appended (the cap's LRU order)
	sealed  time.Time // zero while open
	trigger string
	dropped bool // partition lost: upload nothing more, commit nothing
}

// Engine routes decoded records into buffers, seals them by size, age and memory
// pressure, uploads them with a pool of workers, and keeps the offset book.
// Its methods are safe for concurrent use.
type Engine struct {
	log     *slog.Logger
	st      store.Store
	m       *Metrics
	flush   config.Flush
	tables  *decode.Tables // the compiled tables, which decode (Process) and fetch Avro schemas (Prepare)
	byTopic map[string]*table
	now     func() time.Time

	mu    sync.Mutex
	cond  *sync.Cond // signalled when a buffer leaves memory or a worker fails
	tps   map[tpKey]*tpState
	open  map[bufKey]*buffer
	queue []*buffer // sealed, waiting for a worker
	// uploading holds the keys being uploaded: buffers of one (partition, table, period)
	// upload one at a time, in order, so each sees the ranges its predecessor made durable.
	uploading map[bufKey]bool
	buffered  int64    // bytes of open + sealed buffers
	sealed    int64    // bytes of sealed buffers not yet released (a part of buffered)
	sealedN   int      // how many sealed buffers are not yet released
	writes    uint64   // records appended, the clock of buffer.written
	failed    error    // a worker error that needs the process to stop
	stale     []string // checkpoint objects no commit names any more (Committed)
	closed    bool
	wg        sync.WaitGroup

	zstd *rawfile.ZstdCodec // page compression of the raw files, encoders kept across files

	// bufferBudget is the share of flush.memory_budget the buffers and the uploads in
	// flight may hold: the budget less the Kafka client's fetches and the rest of
	// the process (memory.go).
	bufferBudget int64
	// inflight is the memory uploads in flight hold besides their buffers (Parquet
	// pages, compressor, the store's part buffers), estimated by uploadCost.
	inflight int64
	// writerFixed sizes each worker's writer (bufferBudget); the store's part size
	// and concurrency size uploadCost.
	writerFixed             int64
	partSize, partsInFlight int64

	// unreadableBackoff is the first wait before reading an unreadable existing raw
	// file again (worker.go; tests shorten it).
	unreadableBackoff time.Duration
}

type tpKey struct {
	topic     string
	partition int32
}

// NewEngine compiles the tables of cfg and returns an engine writing to st.
func NewEngine(cfg *config.Config, st store.Store, m *Metrics, log *slog.Logger) (*Engine, error) {
	e := &Engine{log: log, st: st, m: m, flush: cfg.Flush, byTopic: map[string]*table{}, now: time.Now,
		tps: map[tpKey]*tpState{}, open: map[bufKey]*buffer{}, uploading: map[bufKey]bool{}, unreadableBackoff: 200 * time.Millisecond,
		zstd: rawfile.NewZstdCodec(cfg.Flush.Workers + 2)}
	e.cond = sync.NewCond(&e.mu)
	tables, err := decode.Compile(cfg, decode.Options{MaxRecordBytes: int(cfg.Flush.MaxRecordBytes), Log: log,
		OnUnknownFields: func(table string) { m.AvroUnknownFields.WithLabelValues(table).Inc() },
		OnRegistryError: m.RegistryErrors.Inc})
	if err != nil {
		return nil, err
	}
	e.tables = tables
	for _, dt := range tables.All() {
		t := &table{Table: dt, decoded: m.RecordsDecoded.WithLabelValues(dt.Config.Name),
			decodedFast: m.RecordsDecodedFast.WithLabelValues(dt.Config.Name),
			unreadable:  m.RawFileUnreadable.WithLabelValues(dt.Config.Name)}
		for _, topic := range dt.Config.Topics {
			e.byTopic[topic] = t
		}
	}
	cols := 0
	for _, t := range e.byTopic {
		cols = max(cols, len(t.Schema.Leaves))
	}
	e.writerFixed = writerFixed(cols)
	if cfg.LocalDir == "" {
		e.partSize, e.partsInFlight = int64(cfg.S3.PartSize), int64(cfg.S3.UploadConcurrency)+1
	}
	e.bufferBudget = bufferBudget(cfg, e.writerFixed, log)
	// What buffered_bytes is held under: the alert on buffered/budget and the
	// dashboard compare against it, not against the whole flush.memory_budget.
	m.BufferBudgetBytes.Set(float64(e.bufferBudget))
	return e, nil
}

// Start launches the upload workers; they stop when Close is called.
func (e *Engine) Start(ctx context.Context) {
	for range e.flush.Workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.worker(ctx)
		}()
	}
}

// Close stops the workers after the queue drains (or ctx ends) and waits for them.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.cond.Broadcast()
	e.mu.Unlock()
	e.wg.Wait()
}

// Err returns the error that stopped a worker, if any.
func (e *Engine) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// Assign starts the offset book of a newly assigned partition. A partition already
// held keeps its state.
func (e *Engine) Assign(topic string, partition int32, committed int64, meta string) {
	e.mu.Lock()
	if e.tps[tpKey{topic, partition}] == nil {
		e.tps[tpKey{topic, partition}] = newTPState(topic, partition)
	}
	e.mu.Unlock()
	e.SetCommitted(topic, partition, committed, meta)
}

// SetCommitted records the committed offset and metadata fetched for a partition
// before consumption starts; the metadata's durable ranges are skipped on replay.
// Metadata naming a checkpoint object is read by the sink first (SetCheckpoint).
func (e *Engine) SetCommitted(topic string, partition int32, committed int64, meta string) {
	e.SetCheckpoint(topic, partition, committed, meta, "")
}

// SetCheckpoint is SetCommitted for a commit whose metadata named the checkpoint
// object key, which held ranges.
func (e *Engine) SetCheckpoint(topic string, partition int32, committed int64, meta, key string) {
	spans, err := decodeMeta(meta)
	if err != nil {
		e.log.Warn("ignoring unreadable commit metadata", "topic", topic, "partition", partition, "err", err)
		spans = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.tps[tpKey{topic, partition}]
	if st == nil || st.next >= 0 {
		return // not ours, or already consuming: the live book is newer
	}
	st.committed, st.committedMeta, st.checkpoint = committed, meta, key
	for _, s := range spans {
		st.addDurable(s)
	}
}

// Outcome is what happened to one record.
type Outcome int

// Outcomes of Process.
const (
	Buffered Outcome = iota
	Skipped
	Rejected
)

// Process decodes one record and buffers it. A decode failure returns Rejected with
// the *decode.Rejection; the caller sends the record to the dead-letter topic and
// calls DeadLettered once the topic acknowledged it: until then the record holds
// its partition's commit point back.
// Process blocks while the memory budget is exhausted, until uploads free it.
func (e *Engine) Process(ctx context.Context, r *decode.Record, epoch int32) (Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed != nil {
		return 0, e.failed
	}
	st := e.tps[tpKey{r.Topic, r.Partition}]
	if st == nil {
		// Not assigned (any more): franz-go may hand out a record of a revoked partition.
		return Skipped, nil
	}
	if st.next >= 0 && r.Offset < st.next {
		return Skipped, nil
	}
	// st.next moves past a record only once it is handled (buffered, skipped as
	// durable, or rejected): a record still waiting for memory is never committed
	// past. A rejected record stays in the book (tpState.rejected) until the caller
	// reports its dead letter acknowledged (DeadLettered): it is never committed
	// past before, whatever stops the caller in between.
	handled := func() {
		st.next = r.Offset + 1
		st.epoch = epoch
	}
	rejected := func() {
		handled()
		st.rejected = append(st.rejected, r.Offset)
	}
	t := e.byTopic[r.Topic]
	if t == nil {
		rejected()
		return Rejected, decode.NoTable(r.Topic)
	}
	et, err := t.Decode(r, e.now())
	if err != nil {
		if decode.IsTransient(err) {
			return 0, err // transient (schema registry): not handled, never dead-lettered
		}
		rejected()
		return Rejected, err
	}
	if st.events.observe(r.Offset, et) {
		e.m.LateRecords.WithLabelValues(t.Config.Name).Inc()
	}
	period := int64(layout.PeriodOf(t.Gran, et))
	if st.skip(t.Config.Name, period, r.Offset) {
		handled()
		e.m.RecordsSkipped.WithLabelValues(t.Config.Name).Inc()
		return Skipped, nil
	}
	key := bufKey{tp: st, table: t, period: period}
	var b *buffer
	var rowsGrowth int64 // what appending the row adds to b.rows (TestColumnsGrowthIsExact)
	for {
		b = e.open[key]
		fresh := b == nil
		if fresh {
			b = &buffer{bufKey: key, first: r.Offset, rows: rawfile.NewRowStore(t.Schema.Leaves)}
		}
		// Reserve exactly what appending the row allocates (and a new buffer's header).
		rowsGrowth = b.rows.Growth(t.Row())
		need := rowsGrowth + int64(rawfile.NewCap(len(b.offsets)*8, cap(b.offsets)*8, 8)-cap(b.offsets)*8)
		if fresh {
			need += b.rows.Size() + bufferOverhead
		}
		if err := e.reserve(ctx, need); err != nil {
			return 0, err
		}
		if !fresh && e.open[key] != b {
			continue // sealed to make room: size the row again for a fresh buffer
		}
		if fresh {
			b.created = e.now()
			b.bytes = b.rows.Size() + bufferOverhead
			e.buffered += b.bytes
			e.open[key] = b
			st.live[b] = struct{}{}
			e.m.OpenPartitions.Set(float64(len(e.open)))
			if e.flush.MaxOpenPartitions > 0 && len(e.open) > e.flush.MaxOpenPartitions {
				e.sealLeastRecent("open_partitions", b)
			}
		}
		break
	}
	offsetsCap := cap(b.offsets)
	b.rows.AppendRow(t.Row())
	handled()
	b.last = r.Offset
	e.writes++
	b.written = e.writes
	if len(b.offsets) == cap(b.offsets) {
		nb := make([]int64, len(b.offsets), rawfile.NewCap(len(b.offsets)*8, cap(b.offsets)*8, 8)/8)
		copy(nb, b.offsets)
		b.offsets = nb
	}
	b.offsets = append(b.offsets, r.Offset)
	b.n++
	// Not b.rows.Size() before and after: it walks every chunk.
	grown := rowsGrowth + int64(8*(cap(b.offsets)-offsetsCap))
	if grown != 0 { // most records fit the chunk and offsets they have
		b.bytes += grown
		e.buffered += grown
		e.m.BufferedBytes.Set(float64(e.buffered))
	}
	t.decoded.Inc()
	if t.DecodedFast() {
		t.decodedFast.Inc()
	}
	if b.bytes >= int64(e.flush.MaxFileBytes) {
		e.seal(b, "size")
	}
	return Buffered, nil
}

// UseSchemaSource replaces the Schema Registry client of the Avro tables (tests).
func (e *Engine) UseSchemaSource(src decode.SchemaSource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tables.UseSchemaSource(src)
}

// Prepare makes sure the writer schema an Avro record names is cached, without
// holding the engine's lock (decode.Tables.Prepare: it retries an unreachable
// registry, then returns an error that stops the sink). Call it before Process.
func (e *Engine) Prepare(ctx context.Context, r *decode.Record) error {
	return e.tables.Prepare(ctx, r)
}

// Advance moves a partition's next offset past a record that holds nothing to land
// (a transaction marker).
func (e *Engine) Advance(topic string, partition int32, offset int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.tps[tpKey{topic, partition}]; st != nil && offset >= st.next {
		st.next = offset + 1
	}
}

// DeadLettered reports that the dead-letter topic acknowledged the dead letter of
// the record Process rejected at offset: the commit point may now pass it.
func (e *Engine) DeadLettered(topic string, partition int32, offset int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.tps[tpKey{topic, partition}]; st != nil {
		st.deadLettered(offset)
	}
}

// reserve makes room for n more bytes within the memory budget: it seals the largest
// open buffers, then waits for uploads. Called with e.mu held.
func (e *Engine) reserve(ctx context.Context, n int64) error {
	budget := e.bufferBudget - e.inflight
	if e.buffered+n <= budget {
		return nil
	}
	// Seal the largest open buffers (the most memory freed per file written) until
	// the sealed bytes on their way out cover the excess and an eighth of the budget
	// more, so that pressure does not return with the next record. Not more: every
	// buffer sealed early is a file more when its partition gets records again.
	if want := e.buffered + n - budget + budget/8; e.sealed < want {
		bufs := make([]*buffer, 0, len(e.open))
		for _, b := range e.open {
			bufs = append(bufs, b)
		}
		sort.Slice(bufs, func(i, j int) bool { return bufs[i].bytes > bufs[j].bytes })
		for _, b := range bufs {
			if e.sealed >= want {
				break
			}
			e.seal(b, "memory")
		}
	}
	if e.buffered+n <= budget {
		return nil
	}
	e.m.FetchPaused.Set(1)
	defer e.m.FetchPaused.Set(0)
	// Wake up on cancellation too (SIGTERM while uploads are failing).
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	defer stop()
	for e.buffered+n > e.bufferBudget-e.inflight && e.failed == nil {
		if e.sealedN == 0 {
			// Nothing is on its way out: seal the largest open buffer (one file),
			// never all of them at once.
			e.sealLargest("memory", nil)
			if len(e.queue) == 0 && e.inflight == 0 {
				break // nothing left to free: a single record larger than the budget
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.cond.Wait()
	}
	return e.failed
}

// seal closes a buffer to new records and queues it for upload. Called with e.mu held.
func (e *Engine) seal(b *buffer, trigger string) {
	if !b.sealed.IsZero() {
		return
	}
	b.sealed = e.now()
	b.trigger = trigger
	e.sealed += b.bytes
	e.sealedN++
	delete(e.open, b.bufKey)
	e.queue = append(e.queue, b)
	e.m.Flushes.WithLabelValues(trigger).Inc()
	e.m.OpenPartitions.Set(float64(len(e.open)))
	e.cond.Broadcast()
}

// sealLeastRecent seals the open buffer but keep written to least recently. Over the
// count cap this is the one to seal, not the largest: the sink consumes a fetch of
// one Kafka partition at a time, so the largest buffers are often those being filled
// (sealing them made a file of every few records of shuffled events), and not the
// oldest: an old buffer may still be written to. Called with e.mu held.
func (e *Engine) sealLeastRecent(trigger string, keep *buffer) {
	var lru *buffer
	for _, b := range e.open {
		if b != keep && (lru == nil || b.written < lru.written) {
			lru = b
		}
	}
	if lru != nil {
		e.seal(lru, trigger)
	}
}

// sealLargest seals the largest open buffer but keep: the one that frees the most
// memory for the one file it costs. Called with e.mu held.
func (e *Engine) sealLargest(trigger string, keep *buffer) {
	var largest *buffer
	for _, b := range e.open {
		if b != keep && (largest == nil || b.bytes > largest.bytes) {
			largest = b
		}
	}
	if largest != nil {
		e.seal(largest, trigger)
	}
}

// Tick seals buffers that reached their age limit. Call it about once a second,
// also when idle.
func (e *Engine) Tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Seal a little before max_age so that the upload too finishes within it.
	slack := min(e.flush.MaxAge/10, 30*time.Second)
	deadline := e.now().Add(-(e.flush.MaxAge - slack))
	for _, b := range e.open {
		if b.created.Before(deadline) {
			e.seal(b, "age")
		}
	}
}

// SealPartitions seals every open buffer of the given partitions (nil: all).
func (e *Engine) SealPartitions(tps map[string][]int32, trigger string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.open {
		if tps == nil || containsTP(tps, b.tp) {
			e.seal(b, trigger)
		}
	}
}

func containsTP(tps map[string][]int32, st *tpState) bool {
	for _, p := range tps[st.topic] {
		if p == st.partition {
			return true
		}
	}
	return false
}

// WaitDurable waits until the given partitions (nil: all) hold nothing in memory,
// or ctx ends. It returns ctx's error or a worker failure.
func (e *Engine) WaitDurable(ctx context.Context, tps map[string][]int32) error {
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	defer stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if e.failed != nil {
			return e.failed
		}
		busy := false
		for _, st := range e.tps {
			if (tps == nil || containsTP(tps, st)) && len(st.live) > 0 {
				busy = true
				break
			}
		}
		if !busy {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for uploads: %w", err)
		}
		e.cond.Wait()
	}
}

// Drop forgets partitions that were lost: their buffers are discarded and nothing
// more is committed for them.
func (e *Engine) Drop(tps map[string][]int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, st := range e.tps {
		if tps != nil && !containsTP(tps, st) {
			continue
		}
		for b := range st.live {
			b.dropped = true
			if b.sealed.IsZero() {
				delete(e.open, b.bufKey)
			}
			e.release(b)
		}
		delete(e.tps, k)
	}
	e.m.OpenPartitions.Set(float64(len(e.open)))
	e.cond.Broadcast()
}

// Forget removes partitions from the book after a clean revoke.
func (e *Engine) Forget(tps map[string][]int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, st := range e.tps {
		if containsTP(tps, st) && len(st.live) == 0 {
			delete(e.tps, k)
		}
	}
}

func (e *Engine) release(b *buffer) {
	if _, ok := b.tp.live[b]; ok {
		delete(b.tp.live, b)
		e.buffered -= b.bytes
		if !b.sealed.IsZero() {
			e.sealed -= b.bytes
			e.sealedN--
		}
		e.m.BufferedBytes.Set(float64(e.buffered))
	}
}

// Commit is one partition's offset to commit.
type Commit struct {
	Topic     string
	Partition int32
	Offset    int64
	Epoch     int32
	Metadata  string
	// Checkpoint, when set, holds the durable ranges that do not fit in Metadata:
	// they must be written to an object first (CheckpointKey), which Metadata then
	// names (Sink.checkpoint).
	Checkpoint    string
	CheckpointKey string
}

// Commits returns the offsets that moved since the last commit (nil tps: all partitions).
func (e *Engine) Commits(tps map[string][]int32) []Commit {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Commit
	for _, st := range e.tps {
		if tps != nil && !containsTP(tps, st) {
			continue
		}
		cp := st.commitPoint()
		if cp < 0 {
			continue
		}
		st.prune(cp)
		ranges := encodeRanges(st.durable, cp)
		if cp == st.committed && ranges == st.committedMeta {
			continue
		}
		c := Commit{Topic: st.topic, Partition: st.partition, Offset: cp, Epoch: st.epoch, Metadata: ranges}
		if len(ranges) > MaxMetadata {
			// Too many ranges for the metadata: they go to a checkpoint object,
			// written before the commit (Sink.checkpoint), never to a mass flush.
			c.Metadata, c.Checkpoint = "", ranges
		}
		out = append(out, c)
	}
	return out
}

// Committed records that the broker accepted a commit. The checkpoint object the
// partition's previous commit named, if another, is no longer needed
// (StaleCheckpoints).
func (e *Engine) Committed(c Commit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.tps[tpKey{c.Topic, c.Partition}]; st != nil {
		st.committed, st.committedMeta = c.Offset, c.Metadata
		if c.CheckpointKey != "" {
			st.committedMeta = c.Checkpoint
		}
		if st.checkpoint != "" && st.checkpoint != c.CheckpointKey {
			e.stale = append(e.stale, st.checkpoint)
		}
		st.checkpoint = c.CheckpointKey
		st.events.committed(c.Offset)
	}
}

// StaleCheckpoints returns, and forgets, the checkpoint objects no commit names any more.
func (e *Engine) StaleCheckpoints() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.stale
	e.stale = nil
	return out
}

// Lag returns, per topic, the records consumed but not committed.
func (e *Engine) Lag() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int64{}
	for _, st := range e.tps {
		if st.next >= 0 && st.committed >= 0 {
			out[st.topic] += st.next - st.committed
		} else if _, ok := out[st.topic]; !ok {
			out[st.topic] = 0
		}
	}
	return out
}

// Next returns, per topic and partition, the next offset to consume (for partitions
// that consumed anything).
func (e *Engine) Next() map[string]map[int32]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]map[int32]int64{}
	for _, st := range e.tps {
		if st.next < 0 {
			continue
		}
		if out[st.topic] == nil {
			out[st.topic] = map[int32]int64{}
		}
		out[st.topic][st.partition] = st.next
	}
	return out
}

// Stats is a snapshot for logs and tests.
type Stats struct {
	Buffered   int64
	Open       int
	Queued     int
	Partitions int
}

// Stats returns a snapshot of the engine's state.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Buffered: e.buffered, Open: len(e.open), Queued: len(e.queue), Partitions: len(e.tps)}
}

var errClosed = errors.New("engine closed")

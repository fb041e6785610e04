package sink

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

func engineConfig(t testing.TB, dir, flush string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("kafka: {brokers: [\"b:1\"]}\nlocal_dir: %s\ndead_letter: {topic: d}\n%s\ntables:\n%s",
		dir, flush, gen.TableYAML("events", "t"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newTestEngine builds an engine over st (a local store in dir when nil).
func newTestEngine(t testing.TB, dir, flush string, st store.Store) *Engine {
	t.Helper()
	if st == nil {
		local, err := store.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		st = local
	}
	e, err := NewEngine(engineConfig(t, dir, flush), st, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type runResult struct {
	eng *Engine
	m   *Metrics
}

// run feeds records [from, to) of partition 0 through a fresh engine, sealing every
// sealEvery records, then flushes everything.
func run(t *testing.T, dir string, events [][]byte, from, to, sealEvery int, committed int64, meta string) runResult {
	t.Helper()
	e := newTestEngine(t, dir, "", nil)
	ctx := context.Background()
	e.Start(ctx)
	defer e.Close()
	e.Assign("t", 0, committed, meta)
	now := time.Now()
	for i := from; i < to; i++ {
		if _, err := e.Process(ctx, &decode.Record{Topic: "t", Partition: 0, Offset: int64(i), Timestamp: now, Value: events[i]}, 0); err != nil {
			t.Fatal(err)
		}
		if sealEvery > 0 && (i+1)%sealEvery == 0 {
			e.SealPartitions(nil, "test")
		}
	}
	e.SealPartitions(nil, "test")
	if err := e.WaitDurable(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return runResult{e, e.m}
}

// lakeOffsets reads every raw file back and counts each offset.
func lakeOffsets(t *testing.T, dir string) map[int64]int {
	t.Helper()
	seen := map[int64]int{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rows, err := parquet.ReadFile[struct {
			Offset int64 `parquet:"_kafka_offset"`
		}](p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, r := range rows {
			seen[r.Offset]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// requireEachOnce fails unless the lake in dir holds offsets 0..n-1, each exactly once.
func requireEachOnce(t *testing.T, dir string, n int) {
	t.Helper()
	seen := lakeOffsets(t, dir)
	if len(seen) != n {
		t.Fatalf("%d distinct offsets in the lake, want %d", len(seen), n)
	}
	for o, c := range seen {
		if c != 1 || o < 0 || o >= int64(n) {
			t.Fatalf("offset %d written %d times", o, c)
		}
	}
}

func events(n, hours int) [][]byte {
	g := gen.New(3, time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours)*time.Hour), time.Duration(hours)*time.Hour)
	out := make([][]byte, n)
	for i := range out {
		v, _ := g.Event(i, n)
		out[i] = append([]byte(nil), v...)
	}
	return out
}

// TestReplayAfterCrashWritesEachRecordOnce: a first run uploads files but "crashes"
// before committing; the replay, with different flush boundaries, hits the existing
// keys, skips what they hold and writes only the rest.
func TestReplayAfterCrashWritesEachRecordOnce(t *testing.T) {
	dir := t.TempDir()
	ev := events(3000, 4)
	run(t, dir, ev, 0, 2000, 700, -1, "")      // crashed run: uploads, never commits
	r := run(t, dir, ev, 0, 3000, 450, -1, "") // replay from the start, other boundaries
	requireEachOnce(t, dir, 3000)
	if c := testutil.ToFloat64(r.m.UploadConflicts); c == 0 {
		t.Fatal("the replay met no existing key: the test did not exercise the conflict path")
	}
}

// TestCommitMetadataSkipsDurableRanges: the commit point stays low while a slow hour
// is held, so files of other hours above it are recorded in the metadata; a restart
// from that commit skips them instead of writing them under new keys.
func TestCommitMetadataSkipsDurableRanges(t *testing.T) {
	dir := t.TempDir()
	ev := events(2000, 3)
	e := newTestEngine(t, dir, "", nil)
	ctx := context.Background()
	e.Start(ctx)
	e.Assign("t", 0, -1, "")
	now := time.Now()
	for i := range 1500 {
		if _, err := e.Process(ctx, &decode.Record{Topic: "t", Partition: 0, Offset: int64(i), Timestamp: now, Value: ev[i]}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Flush every buffer but the one holding the lowest offset.
	lowest := sealAllButLowest(e)
	waitUploaded(e)
	commits := e.Commits(nil)
	e.Close()
	if len(commits) != 1 || commits[0].Offset != lowest.first || !strings.HasPrefix(commits[0].Metadata, "ls1|events:") {
		t.Fatalf("commit %+v, want offset %d with ranges in the metadata", commits, lowest.first)
	}
	// "Crash" here: the held buffer is lost. Restart from the commit with its metadata.
	r := run(t, dir, ev, int(commits[0].Offset), 2000, 0, commits[0].Offset, commits[0].Metadata)
	requireEachOnce(t, dir, 2000)
	if s := testutil.ToFloat64(r.m.RecordsSkipped.WithLabelValues("events")); s == 0 {
		t.Fatal("the restart skipped nothing: the metadata was not used")
	}
}

func TestMetadataCodec(t *testing.T) {
	spans := []span{{"events", 498757, 10, 20}, {"events", 498758, 5, 9}, {"clicks", 20781, 30, 40}}
	m, ok := encodeMeta(spans, 10)
	if !ok || m != "ls1|events:498757:10:20|clicks:20781:30:40" {
		t.Fatalf("encodeMeta = %q, %v", m, ok)
	}
	back, err := decodeMeta(m)
	if err != nil || len(back) != 2 || back[1] != spans[2] {
		t.Fatalf("decodeMeta = %v, %v", back, err)
	}
	if got, _ := decodeMeta("some-member-id"); got != nil {
		t.Fatalf("foreign metadata decoded to %v", got)
	}
	if _, err := decodeMeta("ls1|bad"); err == nil {
		t.Fatal("corrupt metadata accepted")
	}
	many := make([]span, 500)
	for i := range many {
		many[i] = span{"events", int64(i), int64(i), int64(i + 1000)}
	}
	if _, ok := encodeMeta(many, 0); ok {
		t.Fatal("metadata over the 4 KiB cap was accepted")
	}
}

// blockingStore never finishes an upload until released, like an S3 outage.
type blockingStore struct {
	store.Store
	release chan struct{}
}

func (b blockingStore) Create(ctx context.Context, key string, body io.Reader) error {
	select {
	case <-b.release:
		return b.Store.Create(ctx, key, body)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestShutdownWhileOverBudget: with uploads stuck and the budget full, Process
// waits; cancelling it returns promptly and the record it held is not committed past.
func TestShutdownWhileOverBudget(t *testing.T) {
	dir := t.TempDir()
	local, _ := store.NewLocal(dir)
	st := blockingStore{Store: local, release: make(chan struct{})}
	e := newTestEngine(t, dir, "flush: {memory_budget: 4MiB, max_file_bytes: 1MiB}", st)
	wctx, stopWorkers := context.WithCancel(context.Background())
	e.Start(wctx)
	e.Assign("t", 0, -1, "")
	ev := events(20000, 2)
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	blockedAt := -1
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, v := range ev {
			if _, err := e.Process(ctx, &decode.Record{Topic: "t", Offset: int64(i), Timestamp: now, Value: v}, 0); err != nil {
				blockedAt = i
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(e.m.FetchPaused) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("Process never waited for memory")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Process did not return after cancellation")
	}
	if blockedAt < 0 {
		t.Fatal("Process did not fail on cancellation")
	}
	if next := e.Next()["t"][0]; next != int64(blockedAt) {
		t.Fatalf("next offset %d after the record at %d was not buffered", next, blockedAt)
	}
	if s := e.Stats(); s.Buffered > int64(e.flush.MemoryBudget) {
		t.Fatalf("buffered %d over the budget", s.Buffered)
	}
	close(st.release)
	e.SealPartitions(nil, "shutdown")
	if err := e.WaitDurable(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	commits := e.Commits(nil)
	if len(commits) != 1 || commits[0].Offset != int64(blockedAt) {
		t.Fatalf("commits %+v, want offset %d", commits, blockedAt)
	}
	stopWorkers()
	e.Close()
	if seen := lakeOffsets(t, dir); len(seen) != blockedAt {
		t.Fatalf("%d offsets in the lake, want %d", len(seen), blockedAt)
	}
}

// TestRejectedRecordHoldsCommitPoint: a rejected record is held in the offset book
// like a buffered one until its dead letter is acknowledged.
func TestRejectedRecordHoldsCommitPoint(t *testing.T) {
	e := newTestEngine(t, t.TempDir(), "", nil)
	ctx := context.Background()
	e.Start(ctx)
	defer e.Close()
	e.Assign("t", 0, -1, "")
	ev := events(3, 1)
	ev[1] = []byte(`{"event_id":`)
	for i, v := range ev {
		out, _ := e.Process(ctx, &decode.Record{Topic: "t", Offset: int64(i), Timestamp: time.Now(), Value: v}, 0)
		if want := map[bool]Outcome{true: Rejected, false: Buffered}[i == 1]; out != want {
			t.Fatalf("record %d: outcome %d, want %d", i, out, want)
		}
	}
	e.SealPartitions(nil, "test")
	if err := e.WaitDurable(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if c := e.Commits(nil); len(c) != 1 || c[0].Offset != 1 {
		t.Fatalf("commits %+v before the dead letter is acknowledged, want offset 1", c)
	}
	e.DeadLettered("t", 0, 1)
	if c := e.Commits(nil); len(c) != 1 || c[0].Offset != 3 {
		t.Fatalf("commits %+v after the dead letter is acknowledged, want offset 3", c)
	}
}

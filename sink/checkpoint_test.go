package sink

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/lake/store"
)

// overflowRanges feeds 3,000 records over 600 hours of partition 0 (5 per hour), then
// uploads every buffer but the one holding the lowest offset: ~600 ranges above the
// commit point, far more than the 4 KiB commit metadata holds. It returns the
// buffer left open.
func overflowRanges(t *testing.T, e *Engine, ev [][]byte) *buffer {
	t.Helper()
	feed(t, e, ev, 0, len(ev))
	lowest := sealAllButLowest(e)
	e.mu.Lock()
	for len(e.queue) > 0 || e.sealedN > 0 {
		e.cond.Wait()
	}
	e.mu.Unlock()
	return lowest
}

// sealAllButLowest seals every open buffer but the one holding the lowest offset,
// which it returns.
func sealAllButLowest(e *Engine) *buffer {
	e.mu.Lock()
	defer e.mu.Unlock()
	var lowest *buffer
	for _, b := range e.open {
		if lowest == nil || b.first < lowest.first {
			lowest = b
		}
	}
	for _, b := range e.open {
		if b != lowest {
			e.seal(b, "test")
		}
	}
	return lowest
}

// TestMetadataOverflowDoesNotSealOpenBuffers: ranges above the commit point that do not
// fit in the commit metadata never make the engine seal the partition's open buffers
// (issue 18: that turned a small budget with thousands of open hours into one file
// per few records).
func TestMetadataOverflowDoesNotSealOpenBuffers(t *testing.T) {
	ev := events(3000, 600)
	e := newTestEngine(t, t.TempDir(), "", nil)
	e.Start(context.Background())
	defer e.Close()
	e.Assign("t", 0, -1, "")
	lowest := overflowRanges(t, e, ev)
	commits := e.Commits(nil)
	e.Tick()
	if len(commits) != 1 || commits[0].Offset != lowest.first {
		t.Fatalf("commits %d, want one at offset %d", len(commits), lowest.first)
	}
	if n := testutil.ToFloat64(e.m.Flushes.WithLabelValues("metadata")); n != 0 || e.Stats().Open != 1 {
		t.Fatalf("%v buffers sealed because the metadata overflowed, %d left open; want none sealed, 1 open", n, e.Stats().Open)
	}
}

// TestCheckpointRoundTrip: ranges that do not fit in the metadata go to a checkpoint
// object; the commit's metadata names it; a restart from that commit reads the
// object back and skips what its ranges hold, so every record is written once. The
// next commit makes the object stale, and the one after deletes it.
func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ev := events(3000, 600)
	e := newTestEngine(t, dir, "", nil)
	e.Start(context.Background())
	e.Assign("t", 0, -1, "")
	lowest := overflowRanges(t, e, ev)
	s := &Sink{eng: e, st: e.st, log: e.log, m: e.m, group: "g/1"}
	ctx := context.Background()
	commits := s.checkpoint(ctx, e.Commits(nil))
	e.Close()
	if len(commits) != 1 || commits[0].CheckpointKey == "" || len(commits[0].Metadata) > MaxMetadata {
		t.Fatalf("commits %+v, want one naming a checkpoint", commits)
	}
	c := commits[0]
	if got := testutil.ToFloat64(e.m.Checkpoints); got != 1 {
		t.Fatalf("%v checkpoints written, want 1", got)
	}
	t.Logf("commit at %d, metadata %q, checkpoint of %d bytes", c.Offset, c.Metadata, len(c.Checkpoint))
	e.Committed(c)

	// "Crash": the open buffer is lost. A new engine starts from the commit.
	e2 := newTestEngine(t, dir, "", nil)
	e2.Start(ctx)
	s2 := &Sink{eng: e2, st: e2.st, log: e2.log, m: e2.m, group: "g/1"}
	e2.Assign("t", 0, -1, "")
	meta := c.Metadata
	if err := s2.fetched(ctx, "t", 0, c.Offset, &meta, 0); err != nil {
		t.Fatal(err)
	}
	feed(t, e2, ev, int(lowest.first), len(ev))
	e2.SealPartitions(nil, "test")
	if err := e2.WaitDurable(ctx, nil); err != nil {
		t.Fatal(err)
	}
	next := s2.checkpoint(ctx, e2.Commits(nil))
	e2.Close()
	requireEachOnce(t, dir, len(ev))
	if n := testutil.ToFloat64(e2.m.RecordsSkipped.WithLabelValues("events")); n == 0 {
		t.Fatal("the restart skipped nothing: the checkpoint was not read")
	}
	// The next commit (all durable: inline metadata) makes the checkpoint stale; the
	// commit after it deletes the object.
	if len(next) != 1 || next[0].CheckpointKey != "" {
		t.Fatalf("commit after the restart %+v, want one with inline metadata", next)
	}
	e2.Committed(next[0])
	s2.checkpoint(ctx, nil)
	if _, err := e2.st.Stat(ctx, c.CheckpointKey); !store.IsNotFound(err) {
		t.Fatalf("stale checkpoint %s: %v, want deleted", c.CheckpointKey, err)
	}
}

// TestMissingCheckpointReplaysWithoutRanges: metadata naming a checkpoint object that
// is gone does not stop the sink: it replays without the ranges (the compactor
// drops any duplicate); an unreadable one is an error.
func TestMissingCheckpointReplaysWithoutRanges(t *testing.T) {
	e := newTestEngine(t, t.TempDir(), "", nil)
	s := &Sink{eng: e, st: e.st, log: e.log, m: e.m, group: "g"}
	ranges, key, err := s.resolveMeta(context.Background(), metaCheckpoint+"checkpoints/g/t/0/x.ls1")
	if err != nil || ranges != metaVersion || key != "" {
		t.Fatalf("resolveMeta of a missing checkpoint = %q, %q, %v", ranges, key, err)
	}
	if err := e.st.Create(context.Background(), "checkpoints/g/t/0/y.ls1", strings.NewReader("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.resolveMeta(context.Background(), metaCheckpoint+"checkpoints/g/t/0/y.ls1"); err == nil {
		t.Fatal("a corrupt checkpoint was accepted")
	}
}

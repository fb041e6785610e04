package sink

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/layout"
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
	waitUploaded(e)
	return lowest
}

// waitUploaded waits until every sealed buffer is durable: uploaded, its range
// recorded and its memory released, one step under the engine's lock. An empty
// upload queue is not enough: a buffer a worker has taken is still in flight.
func waitUploaded(e *Engine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.queue) > 0 || e.sealedN > 0 {
		e.cond.Wait()
	}
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

// TestCheckpointSweepAtAssignment: once the committed offsets of newly assigned
// partitions are read, the checkpoint objects under those partitions' prefixes that
// their commits do not name (orphans of a sink killed between its writes) are
// deleted; the named object, and the objects of partitions this member was not
// assigned (or whose commit it could not read), stay.
func TestCheckpointSweepAtAssignment(t *testing.T) {
	e := newTestEngine(t, t.TempDir(), "", nil)
	s := &Sink{eng: e, st: e.st, log: e.log, m: e.m, group: "g/1"}
	ctx := context.Background()
	const dir = "checkpoints/g%2F1/"
	named := dir + "t/0/00000000000000000010-b.ls1"
	keep := []string{
		named,
		dir + "t/1/00000000000000000000-a.ls1",             // partition 1: not fetched (another member's)
		dir + "t/2/00000000000000000000-a.ls1",             // partition 2: its offset fetch failed
		dir + "u/0/00000000000000000000-a.ls1",             // another topic
		"checkpoints/g%2F2/t/0/00000000000000000000-a.ls1", // another group
	}
	orphans := []string{
		dir + "t/0/00000000000000000010-a.ls1", // killed between the writes 1 and 2
		dir + "t/0/00000000000000000004-z.ls1", // killed between the writes 2 and 3
		dir + "t/3/00000000000000000000-a.ls1", // partition 3 has no commit at all
		dir + "t/10/00000000000000000000-a.ls1",
	}
	for _, k := range append(append([]string(nil), keep...), orphans...) {
		if err := e.st.Create(ctx, k, strings.NewReader(metaVersion)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []int32{0, 2, 3, 10} {
		e.Assign("t", p, -1, "")
	}
	meta := metaCheckpoint + named
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Topics = []kmsg.OffsetFetchResponseTopic{{Topic: "t", Partitions: []kmsg.OffsetFetchResponseTopicPartition{
		{Partition: 0, Offset: 10, Metadata: &meta},
		{Partition: 2, Offset: -1, ErrorCode: kerr.UnstableOffsetCommit.Code},
		{Partition: 3, Offset: -1},
		{Partition: 10, Offset: -1},
	}}}
	if err := s.onFetched(ctx, nil, resp); err != nil {
		t.Fatal(err)
	}
	for _, k := range keep {
		if _, err := e.st.Stat(ctx, k); err != nil {
			t.Errorf("%s: %v, want kept", k, err)
		}
	}
	for _, k := range orphans {
		if _, err := e.st.Stat(ctx, k); !store.IsNotFound(err) {
			t.Errorf("orphan %s: %v, want swept at assignment", k, err)
		}
	}
	if n := testutil.ToFloat64(e.m.CheckpointsSwept); n != float64(len(orphans)) {
		t.Errorf("%v checkpoints swept, want %d", n, len(orphans))
	}
}

// TestOrphanCheckpoints: which listed keys the sweep deletes.
func TestOrphanCheckpoints(t *testing.T) {
	named := map[string]string{"c/g/t/0/": "c/g/t/0/b", "c/g/t/1/": ""}
	for _, tc := range []struct {
		listed, want []string
	}{
		{nil, nil},
		{[]string{"c/g/t/0/b"}, nil}, // only the named one
		{[]string{"c/g/t/0/a", "c/g/t/0/b"}, []string{"c/g/t/0/a"}},              // killed between 1 and 2, or 2 and 3
		{[]string{"c/g/t/1/a", "c/g/t/1/b"}, []string{"c/g/t/1/a", "c/g/t/1/b"}}, // no checkpoint named
		{[]string{"c/g/t/10/a", "c/g/t/2/a", "c/g/u/0/a"}, nil},                  // partitions not swept
		{[]string{"c/g/t/0/x/b", "c/g/t/0"}, nil},                                // not directly under a prefix
	} {
		if got := orphanCheckpoints(tc.listed, named); !slices.Equal(got, tc.want) {
			t.Errorf("orphanCheckpoints(%q) = %q, want %q", tc.listed, got, tc.want)
		}
	}
}

// TestCheckpointSweepFailureKeepsAssignment: a sweep that cannot list (here: the
// session ends while it runs) logs, counts lakesink_offset_checkpoint_sweep_errors_total
// and leaves the orphans; the assignment goes on.
func TestCheckpointSweepFailureKeepsAssignment(t *testing.T) {
	e := newTestEngine(t, t.TempDir(), "", nil)
	s := &Sink{eng: e, st: e.st, log: e.log, m: e.m, group: "g"}
	orphan := "checkpoints/g/t/0/00000000000000000000-a.ls1"
	if err := e.st.Create(context.Background(), orphan, strings.NewReader(metaVersion)); err != nil {
		t.Fatal(err)
	}
	e.Assign("t", 0, -1, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	meta := metaVersion
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Topics = []kmsg.OffsetFetchResponseTopic{{Topic: "t", Partitions: []kmsg.OffsetFetchResponseTopicPartition{
		{Partition: 0, Offset: 5, Metadata: &meta}}}}
	if err := s.onFetched(ctx, nil, resp); err != nil {
		t.Fatalf("a failed sweep failed the assignment: %v", err)
	}
	if n := testutil.ToFloat64(e.m.CheckpointSweepErrs); n != 1 {
		t.Fatalf("%v sweep errors counted, want 1", n)
	}
	if _, err := e.st.Stat(context.Background(), orphan); err != nil {
		t.Fatalf("orphan after a failed sweep: %v, want kept", err)
	}
}

// BenchmarkCheckpointSweep is what the orphan sweep adds to an assignment, against
// the test bed's S3 server: OnOffsetsFetched for the partitions of one topic, each
// commit inline (nothing to read back), with no orphans (one LIST) and with two
// orphans per partition (a LIST and a DELETE). Creating the orphans is not timed.
func BenchmarkCheckpointSweep(b *testing.B) {
	bed := testbed.S3(b)
	for _, partitions := range []int{1, 64} {
		for _, orphans := range []int{0, 2} {
			b.Run(fmt.Sprintf("partitions=%d/orphans=%d", partitions, orphans), func(b *testing.B) {
				st, err := store.NewS3(context.Background(), store.S3Config{Bucket: bed.Bucket, Prefix: testbed.UniqueName(b, "bench-sweep") + "/",
					Region: bed.Region, Endpoint: bed.Endpoint, PathStyle: true, AccessKeyID: bed.AccessKey, SecretAccessKey: bed.SecretKey})
				if err != nil {
					b.Fatal(err)
				}
				e := newTestEngine(b, b.TempDir(), "", st)
				s := &Sink{eng: e, st: st, log: e.log, m: e.m, group: "g"}
				ctx := context.Background()
				meta := metaVersion
				resp := kmsg.NewPtrOffsetFetchResponse()
				resp.Topics = []kmsg.OffsetFetchResponseTopic{{Topic: "t"}}
				for p := range int32(partitions) {
					resp.Topics[0].Partitions = append(resp.Topics[0].Partitions,
						kmsg.OffsetFetchResponseTopicPartition{Partition: p, Offset: 5, Metadata: &meta})
				}
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					for p := range int32(partitions) {
						e.Assign("t", p, -1, "")
						for o := range orphans {
							key := layout.CheckpointKey("g", "t", p, 5, fmt.Sprintf("%d-%d", i, o))
							if err := st.Create(ctx, key, strings.NewReader(metaVersion)); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.StartTimer()
					if err := s.onFetched(ctx, nil, resp); err != nil {
						b.Fatal(err)
					}
				}
				if n := testutil.ToFloat64(e.m.CheckpointsSwept); n != float64(b.N*partitions*orphans) {
					b.Fatalf("%v swept, want %d", n, b.N*partitions*orphans)
				}
			})
		}
	}
}

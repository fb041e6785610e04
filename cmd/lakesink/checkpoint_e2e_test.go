package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// produceHeldBack writes, to partition 0, one event of an hour no other event has,
// then the events of `hours` other hours in random order: the first event's buffer
// stays small and open, holding the commit point at offset 0, while memory pressure
// seals the largest others, so the ranges above the commit point soon overflow the
// 4 KiB commit metadata. It returns the number of events.
func (b *bed) produceHeldBack(perHour, hours int) int {
	b.t.Helper()
	n := perHour * (hours + 1)
	g := gen.New(18, time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours+1)*time.Hour), time.Duration(hours+1)*time.Hour)
	g.LateFraction = 0
	order := append([]int{0}, rand.New(rand.NewPCG(18, 1)).Perm(n-perHour)...)
	for k := 1; k < len(order); k++ {
		order[k] += perHour // events perHour.. are the other hours'
	}
	ctx := context.Background()
	for _, i := range order {
		v, _ := g.Event(i, n)
		b.cl.Produce(ctx, &kgo.Record{Topic: b.topic, Partition: 0, Value: append([]byte(nil), v...)}, nil)
	}
	if err := b.cl.Flush(ctx); err != nil {
		b.t.Fatal(err)
	}
	return len(order)
}

// committedMeta is the group's committed offset and metadata of partition 0.
func (b *bed) committedMeta() (int64, string) {
	b.t.Helper()
	offs, err := b.adm.FetchOffsets(context.Background(), b.group)
	if err != nil {
		b.t.Fatal(err)
	}
	o, ok := offs.Lookup(b.topic, 0)
	if !ok {
		return -1, ""
	}
	return o.At, o.Metadata
}

// TestE2ECheckpointKillBetweenWrites: with thousands of durable ranges above the
// commit point, the sink writes them to a checkpoint object before the offset commit
// that names it, and deletes the object an earlier commit named after the next one.
// The sink is killed (SIGKILL) between the first two writes: the object is in S3
// (its PUT held unanswered by a proxy after the server applied it), the commit was
// never sent. The restart sweeps that orphan at assignment, runs until a commit names
// a checkpoint and the delete of the object the commit before it named is under way
// (held by the proxy, never applied), and is killed there: between the last two
// writes. The last restart sweeps that orphan too, never the object the commit
// names, reads that object back, and leaves no object but the one its final commit
// names. Every record lands exactly once.
func TestE2ECheckpointKillBetweenWrites(t *testing.T) {
	b := newBed(t, 1)
	n := b.produceHeldBack(100, 600)
	proxy := newFaultProxy(t, b.s3.Endpoint)
	direct := b.s3.Endpoint
	b.s3.Endpoint = proxy.URL
	// ~28 MB of rows (~470 B each) against 8 MiB for buffers: memory flushes of the largest.
	cfg := b.config("flush: {max_age: 30s, memory_budget: 32MiB, max_file_bytes: 4MiB, shutdown_timeout: 30s}")
	b.s3.Endpoint = direct
	lake := b.lake()

	// 1. Hold the first checkpoint PUT's answer (the server has applied it) and kill.
	var mu sync.Mutex
	held := ""
	proxy.setHook(func(r *http.Request, _ []byte) fault {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/checkpoints/") {
			return pass
		}
		mu.Lock()
		defer mu.Unlock()
		if held != "" {
			return pass
		}
		held = r.URL.Path[strings.Index(r.URL.Path, "checkpoints/"):]
		return hang
	})
	p := b.start(cfg)
	var key string
	waitFor(t, 3*time.Minute, "checkpoint PUT applied by S3 and held by the proxy", func() bool {
		mu.Lock()
		key = held
		mu.Unlock()
		if key == "" {
			return false
		}
		_, err := lake.Stat(context.Background(), key)
		return err == nil
	}, p)
	p.kill9(t)
	proxy.setHook(nil)
	at, meta := b.committedMeta()
	t.Logf("killed with checkpoint %s in S3; the group's commit: offset %d, metadata %.60q", key, at, meta)
	if strings.HasSuffix(meta, key) {
		t.Fatalf("the commit names the held checkpoint: the kill was not between the two writes")
	}

	// 2. The restart sweeps that orphan at assignment, before it consumes. Run until
	// a commit names a checkpoint and the sink deletes the object the commit before it
	// named: hold that delete (never forwarded) and kill.
	orphan := key
	var heldDel []string
	proxy.setHook(func(r *http.Request, body []byte) fault {
		keys := checkpointDeletes(r, body)
		if len(keys) == 0 || slices.Contains(keys, orphan) {
			return pass // not a checkpoint delete, or the sweep of the first orphan
		}
		offs, err := b.adm.FetchOffsets(context.Background(), b.group)
		if o, ok := offs.Lookup(b.topic, 0); err != nil || !ok || !strings.HasPrefix(o.Metadata, "ls1@") {
			return pass // the commit that made them stale names no checkpoint
		}
		mu.Lock()
		if heldDel == nil {
			heldDel = keys
		}
		mu.Unlock()
		<-r.Context().Done() // the kill
		return fail500
	})
	p = b.start(cfg)
	waitFor(t, 3*time.Minute, "commit naming a checkpoint object", func() bool {
		_, meta = b.committedMeta()
		return strings.HasPrefix(meta, "ls1@")
	}, p)
	// The sweep ran before the partition's first record: no commit without it.
	if _, err := lake.Stat(context.Background(), orphan); !store.IsNotFound(err) {
		t.Fatalf("orphan checkpoint %s after the restart's first checkpoint commit: %v; want swept at assignment", orphan, err)
	}
	waitFor(t, 3*time.Minute, "delete of a checkpoint made stale by a commit naming another, held by the proxy", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return heldDel != nil
	}, p)
	p.kill9(t)
	proxy.setHook(nil)
	at, meta = b.committedMeta()
	named := strings.TrimPrefix(meta, "ls1@")
	if _, err := lake.Stat(context.Background(), named); err != nil {
		t.Fatalf("the commit at %d names %s: %v", at, named, err)
	}
	orphans := checkpointObjects(t, lake, b.group, b.topic)
	orphans = slices.DeleteFunc(orphans, func(k string) bool { return k == named })
	for _, k := range heldDel {
		if k == named || !slices.Contains(orphans, k) {
			t.Fatalf("held delete of %s: the commit at %d names %s, the other objects are %q: the kill was not between the writes 2 and 3", k, at, named, orphans)
		}
	}
	t.Logf("killed between the writes 2 and 3: the commit at %d names %s; orphans %q", at, named, orphans)

	// 3. The last run sweeps those orphans at assignment (its first checkpoint
	// delete), never the named object, and reads that object back: it skips what its
	// ranges hold.
	var deletes [][]string
	proxy.setHook(func(r *http.Request, body []byte) fault {
		if keys := checkpointDeletes(r, body); len(keys) > 0 {
			mu.Lock()
			deletes = append(deletes, keys)
			mu.Unlock()
		}
		return pass
	})
	p = b.start(cfg)
	b.waitCaughtUp(5*time.Minute, p)
	m := p.metrics(t)
	skipped, swept := m[`lakesink_records_skipped_total{table="events"}`], m[`lakesink_offset_checkpoints_swept_total`]
	p.stop(t)
	mu.Lock()
	first := []string{}
	if len(deletes) > 0 {
		first = deletes[0]
	}
	mu.Unlock()
	if slices.Contains(first, named) || len(first) != len(orphans) || len(slices.DeleteFunc(slices.Clone(orphans), func(k string) bool { return slices.Contains(first, k) })) != 0 {
		t.Fatalf("the last run's first checkpoint delete %q; want the sweep of the orphans %q, never %s", first, orphans, named)
	}
	if swept != float64(len(orphans)) {
		t.Errorf("lakesink_offset_checkpoints_swept_total %v, want %d", swept, len(orphans))
	}
	_, meta = b.committedMeta()
	left := checkpointObjects(t, lake, b.group, b.topic)
	if len(left) > 1 || len(left) == 1 && meta != "ls1@"+left[0] {
		t.Fatalf("checkpoint objects left after a clean stop %q; the final commit's metadata %.60q", left, meta)
	}
	rows, distinct, misplaced := b.lakeCounts()
	t.Logf("%d events: rows %d, distinct %d; the last run skipped %.0f records the checkpoint named", n, rows, distinct, skipped)
	if skipped == 0 {
		t.Errorf("the last run skipped nothing: the checkpoint at offset %d was not read", at)
	}
	if distinct != int64(n) || rows != distinct || misplaced != 0 {
		t.Fatalf("rows %d, distinct %d, misplaced %d; want %d each once", rows, distinct, misplaced, n)
	}
}

// deleteKey finds the keys in an S3 DeleteObjects request body.
var deleteKey = regexp.MustCompile(`<Key>([^<]*)</Key>`)

// checkpointDeletes returns the checkpoint keys (relative to the bed's prefix) that
// an S3 DeleteObjects request deletes; nil for any other request.
func checkpointDeletes(r *http.Request, body []byte) []string {
	if r.Method != http.MethodPost || !r.URL.Query().Has("delete") {
		return nil
	}
	var keys []string
	for _, m := range deleteKey.FindAllSubmatch(body, -1) {
		if _, k, ok := strings.Cut(string(m[1]), "/checkpoints/"); ok {
			keys = append(keys, "checkpoints/"+k)
		}
	}
	return keys
}

// checkpointObjects lists the checkpoint objects of the group's partition 0 of topic.
func checkpointObjects(t *testing.T, st store.Store, group, topic string) []string {
	t.Helper()
	var keys []string
	err := st.List(context.Background(), layout.CheckpointPrefix(group, topic, 0), func(o store.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// lake is the bed's bucket under the bed's prefix, read directly (not through a proxy).
func (b *bed) lake() store.Store {
	b.t.Helper()
	st, err := store.NewS3(context.Background(), store.S3Config{Bucket: b.s3.Bucket, Prefix: b.prefix, Region: b.s3.Region,
		Endpoint: b.s3.Endpoint, PathStyle: true, AccessKeyID: b.s3.AccessKey, SecretAccessKey: b.s3.SecretKey})
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds; it fails the test after d or when a process exits.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		for _, p := range procs {
			if done, err := p.exitedErr(); done {
				t.Fatalf("waiting for %s: the sink exited: %v", what, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
)

// The compactor's reliability scenarios of issue 13 (§1.1 and §1.4): real
// sink, real Kafka, S3 and catalogs, faults injected on loopback.

// rawRows counts the rows of the bed's raw zone with DuckDB (0 when empty).
func rawRows(t *testing.T, b *bed, lake store.Store) int64 {
	t.Helper()
	n := 0
	_ = lake.List(context.Background(), "raw/", func(store.ObjectInfo) error { n++; return nil })
	if n == 0 {
		return 0
	}
	return toInt(t, testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s')`, b.rawGlob()))[0][0])
}

// TestE2ECompactSinkDownPastGrace is issue 13 §1.1 end to end: the sink
// uploads its files and is killed before any offset commit; it stays down while
// the compactor merges them and (raw_grace 0s) deletes them; more events
// arrive; the sink comes back, replays from the start and rewrites the same
// keys, now holding more rows; the compactor must merge the new rows, not take
// the keys as already merged and delete them. Every row ends in the table once.
func TestE2ECompactSinkDownPastGrace(t *testing.T) {
	const n, hours, parts = 1000, 2, 2
	b := newBed(t, parts)
	f := &lakeFixture{b: b, src: b.prefix}
	lake := f.s3(t, b.prefix)
	b.produce(n, hours, 31, parts)
	// First life: files flushed within a second, offsets never committed.
	flush := "flush: {max_age: 1s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"
	noCommit := strings.Replace(readFile(t, b.config(flush)), "commit_interval: 1s", "commit_interval: 1h", 1)
	cfg1 := writeTemp(t, "sink-nocommit.yaml", noCommit)
	p := b.start(cfg1)
	deadline := time.Now().Add(90 * time.Second)
	for rawRows(t, b, lake) < n {
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited early: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the raw zone did not reach %d rows within 90s", n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.kill9(t)
	if off, err := b.adm.FetchOffsets(context.Background(), b.group); err != nil || len(off) != 0 {
		t.Fatalf("the first sink committed offsets (%v, %v): the scenario needs none", off, err)
	}
	var firstKeys []string
	_ = lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error { firstKeys = append(firstKeys, o.Key); return nil })

	// The compactor runs while the sink is down: merge, then clean (grace 0s).
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	ccfg := f.compactConfig(t, b.prefix, catYAML, "")
	for i := range 2 {
		if code, out := f.compactRun(t, ccfg); code != 0 {
			t.Fatalf("compaction %d while the sink is down: exit %d:\n%s", i+1, code, out)
		}
	}
	if left := rawRows(t, b, lake); left != 0 {
		t.Fatalf("%d raw rows left after two compactions with raw_grace 0s; the scenario needs them cleaned", left)
	}

	// More events, then the sink's second life: it replays from offset 0.
	b.produce(n, hours, 32, parts)
	p = b.start(b.config(flush))
	b.waitCaughtUp(90*time.Second, p)
	p.stop(t)
	rewritten := 0
	for _, k := range firstKeys {
		if _, err := lake.Stat(context.Background(), k); err == nil {
			rewritten++
		}
	}
	if rewritten == 0 {
		t.Fatalf("the replaying sink rewrote none of the %d keys of its first life: the scenario did not happen", len(firstKeys))
	}
	for i := range 2 {
		if code, out := f.compactRun(t, ccfg); code != 0 && code != 4 {
			t.Fatalf("compaction %d after the sink came back: exit %d:\n%s", i+1, code, out)
		}
	}
	for _, r := range readIceberg(t, f, "sql", uri, wh, "lake.events", "") {
		if r.Count != 2*n || r.DupKeys != 0 {
			t.Errorf("%s: %d rows, %d duplicate Kafka coordinates; want %d rows, each once", r.Engine, r.Count, r.DupKeys, 2*n)
		}
	}
	t.Logf("%d keys of the first life rewritten by the replay", rewritten)
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/gen"
)

// TestE2ECompactMergedManifests: with compaction.max_manifests: 2, a run of
// one commit per hour leaves merged manifests (maintenance's rewrite); late
// rows for the same hours then replace table files listed in those merged
// manifests, and maintenance merges again. PyIceberg, DuckDB and Trino read
// the table as exactly the produced events.
func TestE2ECompactMergedManifests(t *testing.T) {
	b := newBed(t, 1)
	const n, hours = 6000, 6
	g := gen.New(29, time.Now().UTC().Truncate(time.Hour).Add(-hours*time.Hour), hours*time.Hour)
	g.LateFraction = 0
	sinkCfg := b.config("flush: {max_age: 3s, memory_budget: 128MiB, shutdown_timeout: 30s}")
	// Events of one parity: each half spreads over every hour (event times
	// follow the index), so the second half lands in hours the table has.
	produceAndSink := func(parity int) {
		b.produceInOrder(g, n, parity, 2)
		p := b.start(sinkCfg)
		b.waitCaughtUp(90*time.Second, p)
		p.stop(t)
	}
	produceAndSink(0)
	f := &lakeFixture{b: b, src: b.prefix}
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	// raw_grace 1h keeps the first raw files: the expected rows are read from the raw zone at the end.
	cfg := f.compactConfig(t, b.prefix, catYAML, "  max_partitions_per_commit: 1\n  max_manifests: 2\n  raw_grace: 1h")
	code, out := f.compactRun(t, cfg)
	if code != 0 {
		t.Fatalf("first compact exit %d:\n%s", code, out)
	}
	if c, m := summaryCount(out, "commit(s)"), summaryCount(out, "manifests merged"); c != hours || m < hours-2 {
		t.Fatalf("first run: %d commits, %d manifests merged; want %d and at least %d:\n%s", c, m, hours, hours-2, out)
	}
	produceAndSink(1)
	f.expect = rawExpectation(t, b)
	if f.expect.Count != n {
		t.Fatalf("raw zone holds %d rows, want %d", f.expect.Count, n)
	}
	code, out = f.compactRun(t, cfg)
	if code != 0 {
		t.Fatalf("second compact exit %d:\n%s", code, out)
	}
	// Each commit replaces the hour's table file, listed in a merged manifest.
	in := 0
	if m := regexp.MustCompile(`(\d+) files \([^)]*\) in`).FindStringSubmatch(out); m != nil {
		in, _ = strconv.Atoi(m[1])
	}
	if c, m := summaryCount(out, "commit(s)"), summaryCount(out, "manifests merged"); c != hours || m < 1 || in <= hours {
		t.Fatalf("second run: %d commits, %d manifests merged, %d files in; want %d, at least 1, more than %d (the table files replaced):\n%s", c, m, in, hours, hours, out)
	}
	reads := readIceberg(t, f, "sql", uri, wh, "lake.events", "")
	checkExact(t, f, reads)
	trinoCheckEvents(t, f, trinoRegister(t, reads[0].Metadata))
}

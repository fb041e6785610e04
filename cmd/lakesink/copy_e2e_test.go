package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/gen"
)

// TestE2ECompactCopiesRowGroups: a topic whose events arrive in event-time
// order (one partition, no late events) leaves raw files already in the
// table's order; the compactor copies their row groups into its outputs
// without re-encoding (the summary counts them), and PyIceberg, DuckDB and
// Trino read the table as exactly the produced events.
func TestE2ECompactCopiesRowGroups(t *testing.T) {
	b := newBed(t, 1)
	const n, hours = 20000, 2
	g := gen.New(23, time.Now().UTC().Truncate(time.Hour).Add(-hours*time.Hour), hours*time.Hour)
	g.LateFraction = 0
	b.produceInOrder(g, n, 0, 1)
	// zstd raw files (the compactor's codec), a few per hour.
	p := b.start(b.config("flush: {max_age: 3s, max_file_bytes: 2MiB, memory_budget: 128MiB, shutdown_timeout: 30s, compression: zstd}"))
	b.waitCaughtUp(90*time.Second, p)
	p.stop(t)
	f := &lakeFixture{b: b, src: b.prefix, expect: rawExpectation(t, b)}
	if f.expect.Count != n {
		t.Fatalf("raw zone holds %d rows, want %d", f.expect.Count, n)
	}
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	// Row groups cut at 1 MiB (the least allowed): the raw files of 2 MiB have row groups large enough to copy.
	cfg := f.compactConfig(t, b.prefix, catYAML, "  row_group_size: 1MiB")
	code, out := f.compactRun(t, cfg)
	if code != 0 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	m := regexp.MustCompile(`(\d+) row groups copied`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no row group count in the summary:\n%s", out)
	}
	copied, _ := strconv.Atoi(m[1])
	if copied < hours {
		t.Fatalf("%d row groups copied, want at least one per hour (%d):\n%s", copied, hours, out)
	}
	t.Logf("%d row groups copied", copied)
	reads := readIceberg(t, f, "sql", uri, wh, "lake.events", "")
	checkExact(t, f, reads)
	trinoCheckEvents(t, f, trinoRegister(t, reads[0].Metadata))
}

package compaction_test

import (
	"context"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/store"
)

// TestConcurrentCompactorsConflict: two compactors rewrite the same hour at once,
// each holding its outputs until both have them, so that their commits race. The
// loser's stale commit must be taken for a clean conflict and re-planned: with the
// SQL catalog iceberg-go reports it only as text (requirement failed: branch "main"
// has changed), which isConflict matches, so this test pins that message. Both
// runs succeed, at least one conflict is counted, and the table holds every row
// once.
func TestConcurrentCompactorsConflict(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.sink(t, cfg, 0, 100, "")
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	l.sink(t, cfg, 100, 150, "late") // the compacted hour has work again

	cs := []*compaction.Compactor{l.compactor(t, cfg), l.compactor(t, cfg)}
	sums := raceCommits(t, cs)
	if n := sums[0].Conflicts + sums[1].Conflicts; n == 0 {
		t.Fatalf("no conflict counted (%+v, %+v): the commits did not race", sums[0], sums[1])
	}
	tbl, err := cs[0].Cat.Cat.LoadTable(context.Background(), cs[0].Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readNotes(t, tbl); len(got) != 150 { // readNotes fails on a row read twice
		t.Fatalf("table holds %d distinct rows, want 150", len(got))
	}
	// The loser's coverage index objects (its root and month) went with its
	// outputs: one root and one month object per commit are left, the
	// property's among them.
	var idx []string
	if err := cs[0].Warehouse.List(context.Background(), ".lakesink/coverage/", func(o store.ObjectInfo) error {
		idx = append(idx, cs[0].Warehouse.URI(o.Key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	commits := 1 + sums[0].Commits + sums[1].Commits
	if len(indexRoots(idx)) != commits || len(idx) != 2*commits || !slices.Contains(idx, tbl.Properties()[compaction.IndexProperty]) {
		t.Errorf("index objects %q after %d commits, property %s", idx, commits, tbl.Properties()[compaction.IndexProperty])
	}
}

// indexRoots keeps the coverage index root objects of keys (a root's month
// objects are named "<root>.m<month>.json.zst").
func indexRoots(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.Contains(path.Base(k), ".m") {
			out = append(out, k)
		}
	}
	return out
}

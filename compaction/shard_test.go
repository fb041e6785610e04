package compaction_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/store"
)

// TestParseShard: I/N with 0 ≤ I < N; anything else is an error naming the value.
func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want compaction.Shard
		err  string
	}{
		{in: "0/1", want: compaction.Shard{Index: 0, Count: 1}},
		{in: "2/3", want: compaction.Shard{Index: 2, Count: 3}},
		{in: "3/3", err: "index must be in [0, 3)"},
		{in: "0/0", err: "at least 1"},
		{in: "-1/2", err: "index must be in [0, 2)"},
		{in: "1", err: "want I/N"},
		{in: "a/2", err: "integers"},
	} {
		got, err := compaction.ParseShard(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in)):
			t.Errorf("%q: error %v, want one containing %q and the value", tc.in, err, tc.in)
		}
	}
}

// TestShardOwnership: every partition has exactly one owner; any N
// consecutive periods of a table go to N different shards (a backfill splits
// evenly); and the rule is pinned, since shards of two lakesink versions
// running at once must agree on it.
func TestShardOwnership(t *testing.T) {
	const start = layout.Period(490_000) // 2025-11-24T16
	for n := 1; n <= 7; n++ {
		for _, name := range []string{"events", "clicks", "a"} {
			seen := map[int]bool{}
			for p := start; p < start+layout.Period(n); p++ {
				owners := 0
				for i := range n {
					if (compaction.Shard{Index: i, Count: n}).Owns(name, p) {
						owners++
					}
				}
				if owners != 1 {
					t.Fatalf("%s period %d: %d owners among %d shards", name, p, owners, n)
				}
				seen[compaction.Owner(name, p, n)] = true
			}
			if len(seen) != n {
				t.Errorf("%s: %d consecutive periods went to %d shards, want %d", name, n, len(seen), n)
			}
		}
	}
	if got := compaction.Owner("events", -5, 3); got < 0 || got >= 3 {
		t.Errorf("a period before 1970 went to shard %d of 3", got)
	}
	// fnv32a("events") = 0x12d8e384 = 316,203,908; + 490,000 = 316,693,908 ≡ 0 (mod 4).
	if got := compaction.Owner("events", start, 4); got != 0 {
		t.Errorf("Owner(events, %d, 4) = %d, want 0: the sharding rule changed", start, got)
	}
	if got := compaction.Owner("events", start+1, 4); got != 1 {
		t.Errorf("Owner(events, %d, 4) = %d, want 1: the sharding rule changed", start+1, got)
	}
	if !(compaction.Shard{}).Owns("events", start) {
		t.Error("the zero Shard does not own everything")
	}
}

// raceCommits runs compactors at once, each held after writing its outputs
// until all have theirs, so that their commits race on one base; it fails the
// test on a run's error.
func raceCommits(t *testing.T, cs []*compaction.Compactor) []compaction.Summary {
	t.Helper()
	var arrived sync.WaitGroup
	arrived.Add(len(cs))
	for _, c := range cs {
		var once sync.Once
		c.Hook = func(point string) {
			if point == "after-outputs" {
				once.Do(func() { arrived.Done(); arrived.Wait() })
			}
		}
	}
	sums := make([]compaction.Summary, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = c.Run(context.Background(), "")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("compactor %d: %v", i, err)
		}
	}
	return sums
}

// TestShardsRebaseWithoutRemerge: three shards compact a backfill of six hours
// at once, their commits lined up on one base: the two that lose the race
// find that the winner touched none of their partitions and commit the same
// outputs on the new snapshot (rebased, no second merge: each shard merged
// each of its hours once). The table holds every row once and each shard's
// commit changed only its own partitions.
func TestShardsRebaseWithoutRemerge(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.backfill(t, cfg, 300, 6)
	var cs []*compaction.Compactor
	for i := range 3 {
		c := l.compactor(t, cfg)
		c.Shard = compaction.Shard{Index: i, Count: 3}
		cs = append(cs, c)
	}
	sums := raceCommits(t, cs)
	conflicts, rebased := 0, 0
	for i, s := range sums {
		// Six consecutive hours over three shards: two each, merged once.
		if s.Partitions != 2 || s.Groups != 2 || s.Commits != 1 {
			t.Errorf("shard %d: %d partitions, %d groups, %d commits; want 2, 2, 1 (a re-merge shows as more groups)", i, s.Partitions, s.Groups, s.Commits)
		}
		conflicts += s.Conflicts
		rebased += s.Rebased
	}
	if conflicts < 2 || rebased != conflicts {
		t.Fatalf("%d conflicts, %d rebased; want ≥ 2 (three commits raced on one base), all rebased", conflicts, rebased)
	}
	exact(t, cs[0], 300)
	tbl, err := cs[0].Cat.Cat.LoadTable(context.Background(), cs[0].Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := compaction.CheckShardLineage(context.Background(), tbl); err != nil || n != 3 {
		t.Errorf("shard lineage: %d commits of shards, %v; want 3, no error", n, err)
	}
	t.Logf("%d conflicts, all rebased", conflicts)
	// The coverage index of the last commit holds every shard's raw files (a
	// rebased commit's index is written for the table it is rebased on): a
	// sink replaying the whole backfill has nothing to merge.
	l.backfill(t, cfg, 300, 6)
	sum, err := l.compactor(t, cfg).Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Groups != 0 || sum.RowsOut != 0 || sum.RawDeleted == 0 {
		t.Errorf("replayed backfill: %d groups, %d rows out, %d raw files deleted; want none merged, all deleted as held", sum.Groups, sum.RowsOut, sum.RawDeleted)
	}
	exact(t, cs[0], 300)
}

// TestShardConflictOnOwnPartitionReplans: an unsharded compactor and shard
// 0/2 race on one base. Whichever wins, the loser finds that the winner
// changed one of its partitions: that is a data conflict, never rebased (the
// same raw files would land twice); it plans again and the table holds every
// row once.
func TestShardConflictOnOwnPartitionReplans(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.backfill(t, cfg, 200, 4)
	all, shard := l.compactor(t, cfg), l.compactor(t, cfg)
	shard.Shard = compaction.Shard{Index: 0, Count: 2}
	sums := raceCommits(t, []*compaction.Compactor{all, shard})
	conflicts := sums[0].Conflicts + sums[1].Conflicts
	if conflicts == 0 || sums[0].Rebased+sums[1].Rebased != 0 {
		t.Fatalf("conflicts %d, rebased %d+%d; want a conflict, none rebased", conflicts, sums[0].Rebased, sums[1].Rebased)
	}
	exact(t, all, 200)
}

// TestShardMaintenance: snapshot expiry and the orphan sweep run in shard 0
// (or a --maintenance-only run), never in the other shards; a
// maintenance-only run merges nothing.
func TestShardMaintenance(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	l.backfill(t, cfg, 100, 4)
	swept := func(c *compaction.Compactor) bool {
		t.Helper()
		tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Warehouse.Get(context.Background(), ".lakesink/orphan-sweep/"+strings.Join(tbl.Identifier(), "."))
		if err != nil && !store.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	run := func(sh compaction.Shard, m compaction.Maintenance) compaction.Summary {
		t.Helper()
		c := l.compactor(t, cfg)
		c.Shard, c.Maintenance = sh, m
		sum, err := c.Run(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	c := l.compactor(t, cfg)
	if sum := run(compaction.Shard{Index: 1, Count: 2}, compaction.MaintainAuto); sum.Partitions != 2 || swept(c) {
		t.Fatalf("shard 1/2: %d partitions merged, swept %v; want 2, false", sum.Partitions, swept(c))
	}
	if sum := run(compaction.Shard{Index: 0, Count: 2}, compaction.MaintainSkip); sum.Partitions != 2 || swept(c) {
		t.Fatalf("shard 0/2 --no-maintenance: %d partitions merged, swept %v; want 2, false", sum.Partitions, swept(c))
	}
	exact(t, c, 100)
	l.sink(t, cfg, 100, 120, "") // work for a run that must not do it
	if sum := run(compaction.Shard{}, compaction.MaintainOnly); sum.Groups != 0 || sum.RawDeleted != 0 || !swept(c) {
		t.Fatalf("maintenance only: %d groups, %d raw deleted, swept %v; want 0, 0, true", sum.Groups, sum.RawDeleted, swept(c))
	}
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Warehouse.Delete(context.Background(), ".lakesink/orphan-sweep/"+strings.Join(tbl.Identifier(), ".")); err != nil {
		t.Fatal(err)
	}
	if sum := run(compaction.Shard{Index: 0, Count: 2}, compaction.MaintainAuto); !swept(c) {
		t.Fatalf("shard 0/2 (%d partitions merged) did not sweep orphans", sum.Partitions)
	}
	run(compaction.Shard{Index: 1, Count: 2}, compaction.MaintainAuto)
	exact(t, c, 120)
}

package compaction_test

import (
	"context"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
)

// dataManifests counts the data manifests of the table's current snapshot,
// and fails if the bound compaction reads from the table's history is below.
func dataManifests(t *testing.T, c *compaction.Compactor) int {
	t.Helper()
	tbl, mfs := currentManifests(t, c)
	n := 0
	for _, mf := range mfs {
		if mf.ManifestContent() == iceberg.ManifestContentData {
			n++
		}
	}
	// The bound maintenance reads from the history instead of the manifest
	// list (sparing an idle run a GET) must hold whenever it is known.
	target := int64(tbl.Metadata().Properties().GetInt(table.ManifestTargetSizeBytesKey, table.ManifestTargetSizeBytesDefault))
	if b, ok := compaction.ManifestBound(tbl); ok && b < compaction.ExcessManifests(mfs, layout.Hour, target) {
		t.Fatalf("the history bounds the excess data manifests at %d, but there are %d", b, compaction.ExcessManifests(mfs, layout.Hour, target))
	}
	return n
}

// currentManifests loads the table and reads its current snapshot's manifests.
func currentManifests(t *testing.T, c *compaction.Compactor) (*table.Table, []iceberg.ManifestFile) {
	t.Helper()
	ctx := context.Background()
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := tbl.CurrentSnapshot().Manifests(fs)
	if err != nil {
		t.Fatal(err)
	}
	return tbl, mfs
}

// manifestLab builds a table of 8 hourly files committed one by one (8
// manifests; max_manifests 100 keeps them), then writes raw rows for the two
// hours after the lab's, one owned by each of 2 shards: events [0, 90).
func manifestLab(t *testing.T) (*lab, *config.Config) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.MaxPartitionsPerCommit = 1
	cfg.Compaction.MaxManifests = 100
	l.backfill(t, cfg, 80, 8)
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	if n := dataManifests(t, l.compactor(t, cfg)); n != 8 {
		t.Fatalf("table has %d data manifests, want 8 (one per commit)", n)
	}
	l.write(t, cfg, 80, 85, func(i int) int { return 3600 + i%60 }, "")
	l.write(t, cfg, 85, 90, func(i int) int { return 7200 + i%60 }, "")
	cfg.Compaction.MaxManifests = 4
	return l, cfg
}

// TestManifestMergeLosesRaceToShard: maintenance merges the manifests of a
// table holding more than max_manifests, and a shard commits between the
// merge's planning and its commit. The merge is pinned to the snapshot it
// was built from: it fails as a conflict and is built again on the table
// with the shard's commit, which keeps the shard's file (a merge replayed
// from the old snapshot would drop it).
func TestManifestMergeLosesRaceToShard(t *testing.T) {
	l, cfg := manifestLab(t)
	maint := l.compactor(t, cfg)
	maint.Maintenance = compaction.MaintainOnly
	var before, shardParts int
	maint.Hook = func(p string) {
		if p != "before-manifest-merge" {
			return
		}
		before++
		if before > 1 {
			return
		}
		shard := l.compactor(t, cfg)
		shard.Shard = compaction.Shard{Index: 1, Count: 2}
		shard.Maintenance = compaction.MaintainSkip
		sum, err := shard.Run(context.Background(), "")
		if err != nil {
			t.Fatalf("shard 1/2 during the merge: %v", err)
		}
		shardParts = sum.Partitions
	}
	sum, err := maint.Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if before != 2 || shardParts != 1 {
		t.Fatalf("merge staged %d times, shard merged %d partitions; want 2 (lost the race once, then built again) and 1", before, shardParts)
	}
	if sum.ManifestsMerged < 5 {
		t.Errorf("merged away %d manifests of 9, want at least 5", sum.ManifestsMerged)
	}
	if got := testutil.ToFloat64(maint.Metrics.Manifests.WithLabelValues("events")); int(got) != sum.ManifestsMerged {
		t.Errorf("lakesink_compaction_manifests_merged_total = %v, the summary says %d", got, sum.ManifestsMerged)
	}
	if n := dataManifests(t, maint); n > cfg.Compaction.MaxManifests {
		t.Errorf("after the merge the table has %d data manifests, want at most %d", n, cfg.Compaction.MaxManifests)
	}
	tbl, err := maint.Cat.Cat.LoadTable(context.Background(), maint.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readNotes(t, tbl); len(got) != 85 {
		t.Fatalf("after the merge the table holds %d rows, want 85 (80 and the shard's 5)", len(got))
	}
	if _, _, err := l.compact(t, cfg); err != nil { // the other shard's hour
		t.Fatal(err)
	}
	exact(t, maint, 90)
}

// TestShardRebasesOnManifestMerge: a shard's commit that loses the race to
// maintenance's manifest merge rebases the same outputs on the merged
// snapshot (the merge added and removed no file in any partition) instead of
// merging again, and the table holds every row once.
func TestShardRebasesOnManifestMerge(t *testing.T) {
	l, cfg := manifestLab(t)
	shard := l.compactor(t, cfg)
	shard.Shard = compaction.Shard{Index: 1, Count: 2}
	shard.Maintenance = compaction.MaintainSkip
	merged := 0
	shard.Hook = func(p string) {
		if p != "after-outputs" || merged > 0 {
			return
		}
		maint := l.compactor(t, cfg)
		maint.Maintenance = compaction.MaintainOnly
		sum, err := maint.Run(context.Background(), "")
		if err != nil {
			t.Fatalf("maintenance during the shard's commit: %v", err)
		}
		merged = sum.ManifestsMerged
	}
	sum, err := shard.Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if merged < 5 || sum.Rebased != 1 || sum.Partitions != 1 {
		t.Fatalf("maintenance merged away %d manifests; shard rebased %d times, merged %d partitions; want ≥ 5, 1, 1", merged, sum.Rebased, sum.Partitions)
	}
	if _, _, err := l.compact(t, cfg); err != nil {
		t.Fatal(err)
	}
	exact(t, shard, 90)
}

// TestManifestMergeClustersByMonth: three commits each span two of three
// months; past max_manifests, maintenance rewrites them into one manifest per
// month, so the planner of a one-hour run still reads one month's entries,
// not the whole table's (a single merged manifest of every file made the
// one-hour run on a 10,000-file table cost 1.5× that on a 100-file one).
func TestManifestMergeClustersByMonth(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.MaxManifests = 2
	months := []time.Time{l.hour.AddDate(0, 0, -70), l.hour.AddDate(0, 0, -35), l.hour}
	for i, pair := range [][2]int{{0, 1}, {2, 0}, {1, 2}} {
		for j, m := range pair {
			from := 10 * (2*i + j)
			at := months[m].Add(time.Duration(-i) * time.Hour) // a new hour each run: appends only
			l.writeEvents(t, cfg, from, from+10, func(int) time.Time { return at }, func(int) string { return "" })
		}
		if _, _, err := l.compact(t, cfg); err != nil {
			t.Fatal(err)
		}
	}
	c := l.compactor(t, cfg)
	_, mfs := currentManifests(t, c)
	seen := map[string]bool{}
	for _, mf := range mfs {
		if mf.ManifestContent() != iceberg.ManifestContentData || mf.AddedDataFiles()+mf.ExistingDataFiles() == 0 {
			continue
		}
		lo, hi, ok := compaction.ManifestPeriods(mf)
		if !ok || lo.Start(layout.Hour).Format("2006-01") != hi.Start(layout.Hour).Format("2006-01") {
			t.Fatalf("manifest %s spans %s to %s after the merge, want one month", mf.FilePath(), lo.Start(layout.Hour), hi.Start(layout.Hour))
		}
		month := lo.Start(layout.Hour).Format("2006-01")
		if seen[month] {
			t.Fatalf("two manifests of files of %s after the merge, want one", month)
		}
		seen[month] = true
	}
	if len(seen) != 3 {
		t.Fatalf("manifests of %d months, want 3", len(seen))
	}
	exact(t, c, 60)
}

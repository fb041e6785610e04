package compaction_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
)

// trinoExact fails unless Trino and PyIceberg both read events [0, n) of the
// REST lab's table exactly once (counted by rows, by distinct Kafka offsets
// and by n).
func trinoExact(t *testing.T, r *restLab, n int) {
	t.Helper()
	row := testbed.Trino(t, "SELECT count(*), count(DISTINCT _kafka_offset), count(DISTINCT n), min(n), max(n) FROM "+r.table)[0]
	if got, want := fmt.Sprint(row), fmt.Sprint([]int{n, n, n, 0, n - 1}); got != want {
		t.Fatalf("trino: rows, distinct offsets, distinct n, min n, max n = %s, want %s", got, want)
	}
	q := testbed.IcebergQuery{Catalog: "rest", URI: r.uri, Table: r.ns + ".events", IDColumn: "event_id", TimeColumn: "ts"}
	if r.catalog == testbed.TrinoGlue {
		q.Catalog, q.URI, q.GlueEndpoint = "glue", "", r.uri
	}
	s := testbed.IcebergQ(t, q)
	if s.Count != int64(n) || s.DupKeys == nil || *s.DupKeys != 0 {
		t.Fatalf("pyiceberg: %s; want %d rows, no duplicate Kafka coordinates", s, n)
	}
}

// trinoFiles counts the live data files of the table, as Trino sees them.
func trinoFiles(t *testing.T, r *restLab) string {
	t.Helper()
	return fmt.Sprint(testbed.Trino(t, `SELECT count(*) FROM `+strings.TrimSuffix(r.table, "events")+`"events$files"`)[0][0])
}

// TestOutsideMaintenanceTrinoREST: Trino's table maintenance (what Athena
// runs: OPTIMIZE, then VACUUM's expire_snapshots and remove_orphan_files;
// and optimize_manifests, Spark's rewrite_manifests) on a table lakesink
// writes, raw files still inside raw_grace throughout. After optimize and
// optimize_manifests a run is idle and reads no table data file; late rows for an
// optimized hour merge exactly once; after expire_snapshots and
// remove_orphan_files (retention 0, which did delete a planted orphan) the
// coverage index object is still there and a run is idle again. Trino and
// PyIceberg read every row exactly once at each step.
func TestOutsideMaintenanceTrinoREST(t *testing.T) {
	outsideMaintenance(t, testbed.TrinoREST)
}

// TestOutsideMaintenanceTrinoGlue is TestOutsideMaintenanceTrinoREST on
// Glue (moto), the catalog Athena maintains tables through.
func TestOutsideMaintenanceTrinoGlue(t *testing.T) {
	outsideMaintenance(t, testbed.TrinoGlue)
}

func outsideMaintenance(t *testing.T, catalog string) {
	ctx := context.Background()
	r := newTrinoLab(t, "outside", catalog)
	cfg := r.config(t, time.Hour, "      - {name: note, type: string}\n")
	cfg.Compaction.SmallFileRatio = 1e-9 // each run adds files next to the last run's
	// The table's history.expire.min-snapshots-to-keep, which Trino's
	// expire_snapshots follows: 1, so that it expires every older snapshot.
	cfg.Compaction.SnapshotRetainLast = 1
	hours := 3
	at := func(i int) int { return -3600*(i%hours) + i%60 }
	r.write(t, cfg, 0, 300, at, "")
	r.compact(t, cfg)
	r.write(t, cfg, 300, 600, at, "")
	r.compact(t, cfg)
	if got := trinoFiles(t, r); got != "6" {
		t.Fatalf("%s data files before optimize, want 6", got)
	}

	// rewrite_manifests (Trino clusters them by partition): a snapshot of
	// its own, the same files.
	manifests := func() string {
		return fmt.Sprint(testbed.Trino(t, `SELECT count(*) FROM `+strings.TrimSuffix(r.table, "events")+`"events$manifests"`)[0][0])
	}
	c0 := r.compactor(t, cfg)
	snap, before := snapshotID(t, c0), manifests()
	testbed.Trino(t, "ALTER TABLE "+r.table+" EXECUTE optimize_manifests")
	if after := manifests(); snapshotID(t, c0) == snap || after == before {
		t.Fatalf("optimize_manifests changed nothing: %s manifests → %s", before, after)
	}

	testbed.Trino(t, "ALTER TABLE "+r.table+" EXECUTE optimize")
	if got := trinoFiles(t, r); got != "3" {
		t.Fatalf("%s data files after optimize, want 3", got)
	}
	trinoExact(t, r, 600)
	idleRun(t, r.compactor(t, cfg), "the run after optimize")
	trinoExact(t, r, 600)

	// Late rows for an optimized hour: merged once.
	r.write(t, cfg, 600, 650, func(i int) int { return i % 60 }, "")
	sum := r.compact(t, cfg)
	if sum.Commits != 1 || sum.RowsIn != 50 || sum.Dups != 0 || sum.RowsOut != 50 {
		t.Errorf("late rows: %d commits, %d rows in, %d duplicates, %d out; want 1, 50, 0, 50", sum.Commits, sum.RowsIn, sum.Dups, sum.RowsOut)
	}
	trinoExact(t, r, 650)
	idleRun(t, r.compactor(t, cfg), "the run after the late rows")

	// expire_snapshots and remove_orphan_files with retention 0.
	c := r.compactor(t, cfg)
	tbl, err := c.Cat.Cat.LoadTable(ctx, c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	loc := strings.TrimPrefix(strings.TrimSuffix(tbl.Location(), "/")+"/", c.Warehouse.URI(""))
	planted := loc + "data/planted-orphan.parquet"
	if err := c.Warehouse.Create(ctx, planted, strings.NewReader("not referenced")); err != nil {
		t.Fatal(err)
	}
	indexKey := strings.TrimPrefix(indexURI(t, c), c.Warehouse.URI(""))
	s := testbed.TrinoSession{Properties: map[string]string{
		catalog + ".expire_snapshots_min_retention":    "0s",
		catalog + ".remove_orphan_files_min_retention": "0s",
	}}
	s.Query(t, "ALTER TABLE "+r.table+" EXECUTE expire_snapshots(retention_threshold => '0s')")
	s.Query(t, "ALTER TABLE "+r.table+" EXECUTE remove_orphan_files(retention_threshold => '0s')")
	if _, err := c.Warehouse.Stat(ctx, planted); !store.IsNotFound(err) {
		t.Fatalf("the planted orphan %s is still there after remove_orphan_files (stat: %v)", planted, err)
	}
	if got := fmt.Sprint(testbed.Trino(t, `SELECT count(*) FROM `+strings.TrimSuffix(r.table, "events")+`"events$snapshots"`)[0][0]); got != "1" {
		t.Fatalf("%s snapshots after expire_snapshots, want 1", got)
	}
	if _, err := c.Warehouse.Get(ctx, indexKey); err != nil {
		t.Fatalf("the coverage index %s after remove_orphan_files: %v", indexKey, err)
	}
	trinoExact(t, r, 650)
	idleRun(t, c, "the run after expire_snapshots and remove_orphan_files")
	trinoExact(t, r, 650)
}

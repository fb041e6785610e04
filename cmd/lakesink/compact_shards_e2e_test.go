package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/store"
)

// e2eCatalog is a catalog of one kind on the bed for a compaction test: its
// config section, how PyIceberg reads it (readIceberg's type, uri and table
// name) and the environment the compactor needs.
type e2eCatalog struct {
	yaml, typ, uri, warehouse, table string
	env                              []string
}

// catalog sets up a catalog of kind sqlite, postgres, glue or rest whose
// warehouse lies under prefix.
func (f *lakeFixture) catalog(t *testing.T, kind, prefix string) e2eCatalog {
	t.Helper()
	wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
	switch kind {
	case "sqlite":
		y, uri, wh := sqliteCatalog(t, f.b, prefix)
		return e2eCatalog{yaml: y, typ: "sql", uri: uri, warehouse: wh, table: "lake.events"}
	case "postgres":
		dsn := testbed.Postgres(t)
		return e2eCatalog{yaml: fmt.Sprintf("  type: sql\n  namespace: lake\n  warehouse: %s\n  sql: {driver: postgres, dsn_env: TEST_PG_DSN}", wh),
			typ: "sql", uri: strings.Replace(dsn, "postgres://", "postgresql+psycopg2://", 1), warehouse: wh, table: "lake.events",
			env: []string{"TEST_PG_DSN=" + dsn}}
	case "glue":
		// Through a proxy that adds Glue's optimistic locking, which moto lacks.
		ep := glueVersionLock(t, testbed.Glue(t))
		ns := strings.ReplaceAll(testbed.UniqueName(t, "db"), "-", "_")
		return e2eCatalog{yaml: fmt.Sprintf("  type: glue\n  namespace: %s\n  warehouse: %s\n  glue: {region: us-east-1, endpoint: %s}", ns, wh, ep),
			typ: "glue", warehouse: wh, table: ns + ".events"}
	case "rest":
		uri := testbed.REST(t)
		ns := strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
		return e2eCatalog{yaml: fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh, uri),
			typ: "rest", uri: uri, warehouse: wh, table: ns + ".events"}
	}
	t.Fatalf("unknown catalog kind %q", kind)
	return e2eCatalog{}
}

// runLinedUp runs one lakesink compact per argument list at once, lined up
// (lineUp) so that their commits race on one snapshot, and returns the exit
// codes and outputs.
func (f *lakeFixture) runLinedUp(t *testing.T, cfg string, runs [][]string) ([]int, []string) {
	t.Helper()
	codes, outs, _ := lineUp(t, len(runs), func(i int, env ...string) (int, string) {
		return f.compactRun(t, cfg, append(env, runs[i]...)...)
	})
	return codes, outs
}

// checkLineage opens the catalog of a compactor config and checks, from the
// table's snapshots, that each shard's commits changed only its partitions.
func checkLineage(t *testing.T, f *lakeFixture, cfgPath string, cat e2eCatalog) {
	t.Helper()
	c := f.b.s3
	for _, kv := range append([]string{"AWS_ACCESS_KEY_ID=" + c.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.SecretKey, "AWS_REGION=" + c.Region}, cat.env...) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := config.Load(cfgPath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ic, err := icetable.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	tbl, err := ic.Cat.LoadTable(ctx, ic.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := compaction.CheckShardLineage(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("%d commits of shards in the table's history, want at least 3", n)
	}
}

// lateKey is the name a late copy of a raw file lands under: the first
// offset moved past every offset produced, so its rows are all duplicates of
// rows the table holds, to be dropped by the merge that rewrites the hour.
func lateKey(key string) string {
	dir, base := filepath.Dir(key), filepath.Base(key)
	parts := strings.Split(strings.TrimSuffix(base, ".parquet"), ".")
	var first int64
	fmt.Sscan(parts[len(parts)-1], &first)
	parts[len(parts)-1] = fmt.Sprintf("%020d", first+1_000_000)
	return dir + "/" + strings.Join(parts, ".") + ".parquet"
}

// shardArgs are the arguments of shard i of n, plus extra.
func shardArgs(i, n int, extra ...string) []string {
	return append([]string{fmt.Sprintf("--shard=%d/%d", i, n)}, extra...)
}

// TestE2ECompactShards: three shards (--shard I/3) compact the fixture's four
// hours at once on one table, with each catalog. Their commits are lined up
// on one snapshot: the losers rebase (the conflicts are counted, and all are
// rebased: no re-merge), shard 2 is killed right after its commit and its
// next run only cleans. Then a late duplicate lands in every hour and the
// shards race again, the losers killed after their conflict (mid-commit,
// before the rebased commit); the next lined-up runs converge (rebasing
// replace commits this time). The table holds every event exactly once
// (PyIceberg and DuckDB), each shard's commits changed only its own
// partitions (from the snapshots' lineage), and a last run of every shard
// merges nothing.
func TestE2ECompactShards(t *testing.T) {
	f := sinkFixture(t)
	for _, kind := range []string{"sqlite", "postgres", "glue", "rest"} {
		t.Run(kind, func(t *testing.T) {
			prefix, lake := f.lakeFor(t)
			cat := f.catalog(t, kind, prefix)
			cfg := f.compactConfig(t, prefix, cat.yaml, "")
			all := func(extra ...string) [][]string {
				var runs [][]string
				for i := range 3 {
					runs = append(runs, append(shardArgs(i, 3, extra...), cat.env...))
				}
				return runs
			}
			raced := func(round string, codes []int, outs []string, killed int) {
				t.Helper()
				conflicts, rebased, dead := 0, 0, 0
				for i, code := range codes {
					switch code {
					case -1:
						dead++
					case 0, 4: // 4: idle (nothing of its own to do)
						conflicts += summaryCount(outs[i], "conflicts")
						rebased += summaryCount(outs[i], "rebased")
					default:
						t.Fatalf("%s: shard %d: exit %d:\n%s", round, i, code, outs[i])
					}
				}
				if dead != killed {
					t.Fatalf("%s: %d shards killed, want %d:\n%s", round, dead, killed, strings.Join(outs, "\n"))
				}
				if conflicts == 0 || rebased != conflicts {
					t.Fatalf("%s: %d conflicts, %d rebased; want conflicts, all rebased:\n%s", round, conflicts, rebased, strings.Join(outs, "\n"))
				}
				t.Logf("%s: %d conflicts, all rebased, %d shards killed", round, conflicts, dead)
			}

			// One raw file of each hour, kept for round 2 (runs delete them).
			spares := map[string][]byte{}
			seen := map[string]bool{}
			_ = lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error {
				if d := filepath.Dir(o.Key); !seen[d] {
					seen[d] = true
					spares[o.Key] = readObject(t, lake, o.Key)
				}
				return nil
			})
			if len(spares) != 4 {
				t.Fatalf("the raw zone has %d hours, want 4", len(spares))
			}

			// Round 1: shard 2 dies right after its commit.
			runs := all()
			runs[2] = append(runs[2], "LAKESINK_TEST_KILL_AT=after-commit")
			codes, outs := f.runLinedUp(t, cfg, runs)
			raced("first merge", codes, outs, 1)
			code, out := f.compactRun(t, cfg, append(shardArgs(2, 3), cat.env...)...)
			if code != 0 || summaryCount(out, "raw files deleted") == 0 || summaryCount(out, "group(s)") != 0 {
				t.Fatalf("shard 2 after its kill: exit %d, want 0 with raw files deleted and nothing merged:\n%s", code, out)
			}

			// Round 2: a late duplicate in every hour; the losers die after
			// their conflict, before committing again.
			for key, body := range spares {
				if err := lake.Create(context.Background(), lateKey(key), bytes.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			codes, outs = f.runLinedUp(t, cfg, all("LAKESINK_TEST_KILL_AT=after-conflict"))
			dead := 0
			for i, c := range codes {
				switch c {
				case -1:
					dead++
				case 0, 4:
				default:
					t.Fatalf("late duplicates: shard %d: exit %d:\n%s", i, c, outs[i])
				}
			}
			if dead != 2 {
				t.Fatalf("late duplicates: %d shards killed after a conflict, want 2 (three raced):\n%s", dead, strings.Join(outs, "\n"))
			}
			// Round 3: the two killed shards merge again, race and rebase.
			codes, outs = f.runLinedUp(t, cfg, all())
			raced("after the kills", codes, outs, 0)

			reads := readIceberg(t, f, cat.typ, cat.uri, cat.warehouse, cat.table, "")
			checkExact(t, f, reads)
			checkLineage(t, f, cfg, cat)
			for i := range 3 {
				code, out := f.compactRun(t, cfg, append(shardArgs(i, 3), cat.env...)...)
				if (code != 0 && code != 4) || summaryCount(out, "group(s)") != 0 {
					t.Fatalf("last run of shard %d: exit %d, want nothing merged:\n%s", i, code, out)
				}
			}
		})
	}
}

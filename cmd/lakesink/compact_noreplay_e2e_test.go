package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
)

const conflictsTotal = `lakesink_compaction_commit_conflicts_total{table="events"}`

// TestE2ECompactNoReplayOnRival: another writer sets the table's
// commit.retry.num-retries to 5, with which iceberg-go replays a conflicting
// commit on the new head. Compactor A's commit is held at the REST proxy while
// compactor B merges the same raw files and commits; released, A's commit must
// come back as a conflict (A plans again and finds nothing left), not be
// replayed on B's snapshot with the same rows twice.
func TestE2ECompactNoReplayOnRival(t *testing.T) {
	f := sinkFixture(t)
	uri := testbed.REST(t)
	proxy := newFaultProxy(t, uri)
	prefix, _ := f.lakeFor(t)
	ns := strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
	wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
	rest := func(u string) string {
		return fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh, u)
	}
	cfgA := f.compactConfig(t, prefix, rest(proxy.URL), "")
	cfgB := f.compactConfig(t, prefix, rest(uri), "")

	// The table exists, and another writer has set the property.
	ctx := context.Background()
	cfg, err := config.Load(cfgB, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": f.b.s3.AccessKey, "AWS_SECRET_ACCESS_KEY": f.b.s3.SecretKey, "AWS_REGION": f.b.s3.Region} {
		t.Setenv(k, v)
	}
	cat, err := icetable.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	tbl, _, err := cat.Ensure(ctx, &cfg.Tables[0], &cfg.Compaction)
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Properties()[table.CommitNumRetriesKey]; got != "0" {
		t.Errorf("a table lakesink creates has %s=%q, want \"0\"", table.CommitNumRetriesKey, got)
	}
	tx := tbl.NewTransaction()
	if err := tx.SetProperties(map[string]string{table.CommitNumRetriesKey: "5", table.CommitMinRetryWaitMsKey: "10"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatalf("set %s: %v", table.CommitNumRetriesKey, err)
	}

	arrived, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the proxy closes (cleanups run last first): a held request never blocks it
	proxy.setHook(func(r *http.Request, _ []byte) fault {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/namespaces/"+ns+"/tables/events") {
			held := false
			once.Do(func() { held = true })
			if held {
				close(arrived)
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
		}
		return pass
	})
	type result struct {
		code int
		out  string
		m    map[string]float64
		err  error
	}
	resA := make(chan result, 1)
	mfA := filepath.Join(t.TempDir(), "a.prom")
	go func() {
		code, out, m, err := f.compactExec(4*time.Minute, mfA, cfgA)
		resA <- result{code, out, m, err}
	}()
	select {
	case <-arrived:
	case r := <-resA:
		t.Fatalf("compactor A ended (exit %d) without committing through the proxy:\n%s", r.code, r.out)
	case <-time.After(3 * time.Minute):
		t.Fatal("compactor A's commit did not reach the proxy within 3 minutes")
	}
	codeB, outB, _ := f.compactRunFor(t, 3*time.Minute, cfgB)
	free()
	a := <-resA
	if a.err != nil {
		t.Fatalf("compactor A: %v:\n%s", a.err, a.out)
	}
	if codeB != 0 {
		t.Fatalf("compactor B: exit %d:\n%s", codeB, outB)
	}
	if a.code != 0 && a.code != 4 {
		t.Fatalf("compactor A: exit %d:\n%s", a.code, a.out)
	}
	if a.m[conflictsTotal] < 1 {
		t.Errorf("compactor A saw %v conflicts, want ≥ 1 (its commit was replayed?):\n%s", a.m[conflictsTotal], a.out)
	}
	checkExact(t, f, readIceberg(t, f, "rest", uri, wh, ns+".events", ""))
}

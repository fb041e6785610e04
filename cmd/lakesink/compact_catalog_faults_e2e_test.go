package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/testbed"
)

const (
	reconciledApplied = `lakesink_compaction_commit_reconciled_total{outcome="applied",table="events"}`
	reconciledAbsent  = `lakesink_compaction_commit_reconciled_total{outcome="absent",table="events"}`
)

// catalogFault is one scenario: the fault the first commit request gets, the
// one further commit requests get until the compactor reads the table again
// (the client's own retries of that request), and how the compactor must
// have reconciled it.
type catalogFault struct {
	name        string
	first, then fault
	reconcil    string // the reconciled_total series that must be 1
}

// catalogProxy says which requests of a catalog's protocol commit and load the table.
type catalogProxy struct {
	isCommit, isLoad func(*http.Request) bool
}

// runCatalogFault compacts the fixture through proxy with the first commit
// request faulted, and checks the table is exact.
func runCatalogFault(t *testing.T, f *lakeFixture, sc catalogFault, proxy *faultProxy, cp catalogProxy,
	catYAML func(prefix string) string, read func(wh string) []icebergRead) {
	prefix, _ := f.lakeFor(t)
	var mu sync.Mutex
	phase := 0 // 0 before the first commit, 1 until the next load, 2 after
	proxy.setHook(func(r *http.Request, _ []byte) fault {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case phase == 0 && cp.isCommit(r):
			phase = 1
			return sc.first
		case phase == 1 && cp.isCommit(r):
			return sc.then
		case phase == 1 && cp.isLoad(r):
			phase = 2
		}
		return pass
	})
	defer proxy.setHook(nil)
	cfg := f.compactConfig(t, prefix, catYAML(prefix), "  commit_timeout: 5s")
	code, out, m := f.compactRunFor(t, 3*time.Minute, cfg)
	mu.Lock()
	faulted := phase > 0
	mu.Unlock()
	if !faulted {
		t.Fatalf("no commit request went through the proxy:\n%s", out)
	}
	if code != 0 {
		t.Fatalf("compact exit %d, want 0 (reconciled within the run):\n%s", code, out)
	}
	if m[sc.reconcil] != 1 {
		t.Errorf("%s = %v, want 1: the reconcile path did not run as expected\n%s", sc.reconcil, m[sc.reconcil], out)
	}
	wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
	checkExact(t, f, read(wh))
}

// TestE2ECompactRESTCommitFaults: the REST catalog answers 500, times out, or
// loses the answer to a commit it applied (issue 13 §1.4). Every time the
// compactor ends with exit 0 and the table holds every row once, with every
// referenced file present (the readers read them all).
func TestE2ECompactRESTCommitFaults(t *testing.T) {
	f := sinkFixture(t)
	uri := testbed.REST(t)
	proxy := newFaultProxy(t, uri)
	for _, sc := range []catalogFault{
		// The catalog refuses: nothing applied, the run plans again with fresh outputs.
		{"500", fail500, pass, reconciledAbsent},
		// The catalog applies the commit but the answer never comes: the compactor
		// times out, finds its job in the table and keeps the outputs.
		{"timeout", hang, pass, reconciledApplied},
		// The catalog applies the commit and the connection drops before the answer.
		{"lost-response", dropResponse, pass, reconciledApplied},
	} {
		t.Run(sc.name, func(t *testing.T) {
			ns := strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
			path := "/namespaces/" + ns + "/tables/events"
			cp := catalogProxy{
				isCommit: func(r *http.Request) bool { return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, path) },
				isLoad:   func(r *http.Request) bool { return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, path) },
			}
			catYAML := func(prefix string) string {
				wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
				return fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh, proxy.URL)
			}
			runCatalogFault(t, f, sc, proxy, cp, catYAML, func(wh string) []icebergRead {
				return readIceberg(t, f, "rest", uri, wh, ns+".events", "")
			})
		})
	}
}

// TestE2ECompactGlueCommitFaults: the same faults on moto's Glue UpdateTable,
// through the AWS SDK's own retries. A lost answer makes the SDK send
// UpdateTable again, which AWS Glue refuses as a concurrent modification (the
// proxy answers so: moto does not check VersionId): a conflict that is not
// clean, since the first request was applied. Outputs deleted then would
// leave the table referencing missing files.
func TestE2ECompactGlueCommitFaults(t *testing.T) {
	f := sinkFixture(t)
	ep := testbed.Glue(t)
	proxy := newFaultProxy(t, ep)
	target := func(op string) func(*http.Request) bool {
		return func(r *http.Request) bool { return r.Header.Get("X-Amz-Target") == "AWSGlue."+op }
	}
	cp := catalogProxy{isCommit: target("UpdateTable"), isLoad: target("GetTable")}
	for _, sc := range []catalogFault{
		// 500 to UpdateTable and to every retry of the SDK: nothing applied.
		{"500", fail500, fail500, reconciledAbsent},
		{"timeout", hang, pass, reconciledApplied},
		{"lost-response-retry-refused", dropResponse, glueConflict, reconciledApplied},
	} {
		t.Run(sc.name, func(t *testing.T) {
			ns := strings.ReplaceAll(testbed.UniqueName(t, "db"), "-", "_")
			catYAML := func(prefix string) string {
				wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
				return fmt.Sprintf("  type: glue\n  namespace: %s\n  warehouse: %s\n  glue: {region: us-east-1, endpoint: %s}", ns, wh, proxy.URL)
			}
			runCatalogFault(t, f, sc, proxy, cp, catYAML, func(wh string) []icebergRead {
				return readIceberg(t, f, "glue", "", wh, ns+".events", "")
			})
		})
	}
}

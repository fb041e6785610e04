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
	reconciled  string // the reconciled_total series that must be 1
}

// catalogUnderTest is a catalog kind the scenarios run against: which
// requests commit and load the table of namespace ns, the catalog section of a
// config for ns and a warehouse, and how to read the table back.
type catalogUnderTest struct {
	nsPrefix         string
	isCommit, isLoad func(ns string, r *http.Request) bool
	yaml             func(ns, wh string) string
	read             func(t *testing.T, ns, wh string) []icebergRead
}

// runCatalogFaults runs each scenario in a namespace of its own: the fixture
// compacted through proxy with the first commit request faulted; the run must
// end with exit 0, the scenario's reconcile outcome counted once, and the
// table exact.
func runCatalogFaults(t *testing.T, f *lakeFixture, proxy *faultProxy, cat catalogUnderTest, scenarios []catalogFault) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ns := strings.ReplaceAll(testbed.UniqueName(t, cat.nsPrefix), "-", "_")
			prefix, _ := f.lakeFor(t)
			wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
			var mu sync.Mutex
			phase := 0 // 0 before the first commit, 1 until the next load, 2 after
			proxy.setHook(func(r *http.Request, _ []byte) fault {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case phase == 0 && cat.isCommit(ns, r):
					phase = 1
					return sc.first
				case phase == 1 && cat.isCommit(ns, r):
					return sc.then
				case phase == 1 && cat.isLoad(ns, r):
					phase = 2
				}
				return pass
			})
			defer proxy.setHook(nil)
			cfg := f.compactConfig(t, prefix, cat.yaml(ns, wh), "  commit_timeout: 5s")
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
			if m[sc.reconciled] != 1 {
				t.Errorf("%s = %v, want 1: the reconcile path did not run as expected\n%s", sc.reconciled, m[sc.reconciled], out)
			}
			checkExact(t, f, cat.read(t, ns, wh))
		})
	}
}

// TestE2ECompactRESTCommitFaults: the REST catalog answers 500, times out, or
// loses the answer to a commit it applied (issue 13 §1.4). Every time the
// compactor ends with exit 0 and the table holds every row once, with every
// referenced file present (the readers read them all).
func TestE2ECompactRESTCommitFaults(t *testing.T) {
	f := sinkFixture(t)
	uri := testbed.REST(t)
	proxy := newFaultProxy(t, uri)
	table := func(method string) func(ns string, r *http.Request) bool {
		return func(ns string, r *http.Request) bool {
			return r.Method == method && strings.HasSuffix(r.URL.Path, "/namespaces/"+ns+"/tables/events")
		}
	}
	runCatalogFaults(t, f, proxy, catalogUnderTest{
		nsPrefix: "ns",
		isCommit: table(http.MethodPost),
		isLoad:   table(http.MethodGet),
		yaml: func(ns, wh string) string {
			return fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh, proxy.URL)
		},
		read: func(t *testing.T, ns, wh string) []icebergRead {
			return readIceberg(t, f, "rest", uri, wh, ns+".events", "")
		},
	}, []catalogFault{
		// The catalog refuses: nothing applied, the run plans again with fresh outputs.
		{"500", fail500, pass, reconciledAbsent},
		// The catalog applies the commit but the answer never comes: the compactor
		// times out, finds its job in the table and keeps the outputs.
		{"timeout", hang, pass, reconciledApplied},
		// The catalog applies the commit and the connection drops before the answer.
		{"lost-response", dropResponse, pass, reconciledApplied},
	})
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
	target := func(op string) func(string, *http.Request) bool {
		return func(_ string, r *http.Request) bool { return r.Header.Get("X-Amz-Target") == "AWSGlue."+op }
	}
	runCatalogFaults(t, f, proxy, catalogUnderTest{
		nsPrefix: "db",
		isCommit: target("UpdateTable"),
		isLoad:   target("GetTable"),
		yaml: func(ns, wh string) string {
			return fmt.Sprintf("  type: glue\n  namespace: %s\n  warehouse: %s\n  glue: {region: us-east-1, endpoint: %s}", ns, wh, proxy.URL)
		},
		read: func(t *testing.T, ns, wh string) []icebergRead {
			return readIceberg(t, f, "glue", "", wh, ns+".events", "")
		},
	}, []catalogFault{
		// 500 to UpdateTable and to every retry of the SDK: nothing applied.
		{"500", fail500, fail500, reconciledAbsent},
		{"timeout", hang, pass, reconciledApplied},
		{"lost-response-retry-refused", dropResponse, glueConflict, reconciledApplied},
	})
}

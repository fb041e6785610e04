package sink

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leaves a goroutine running: the
// package starts goroutines (workers, clients) that must all end with it.
//
// Benchmarks against the bed's S3 server with keep-alive (make bench) leave
// the store's pooled connections open (an S3 store has no Close; its transport
// closes idle connections after s3.request_timeout / 2), so a run with -bench
// does not count net/http's per-connection loops.
func TestMain(m *testing.M) {
	flag.Parse()
	var opts []goleak.Option
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		opts = append(opts, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
	}
	goleak.VerifyTestMain(m, opts...)
}

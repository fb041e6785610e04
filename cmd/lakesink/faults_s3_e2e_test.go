package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakesink/lakesink/internal/testbed"
)

// The S3 scenarios of issue 13 §2 that need a whole run of the sink: S3 slow (5 s a
// request) and S3 unreachable (connections refused, then black-holed). Each ends with
// scenario.verify. The per-request faults (503, 500, resets, lost responses) are
// TestE2ES3FaultsNoLossNoDuplicates; the compactor's, TestE2ECompactS3ReadFaults.

// viaS3 writes the scenario's config with its S3 endpoint replaced by endpoint (a
// fault proxy) and returns its path; s.cfg keeps the direct endpoint, for the checks.
func (s *scenario) viaS3(endpoint string) string {
	s.t.Helper()
	data, err := os.ReadFile(s.cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	old := "endpoint: " + s.s3.Endpoint + "\n"
	if !strings.Contains(string(data), old) {
		s.t.Fatalf("config %s has no %q", s.cfg, old)
	}
	path := filepath.Join(s.t.TempDir(), "lakesink-proxied.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, "endpoint: "+endpoint+"\n", 1)), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// slowS3 is a fault proxy in front of the bed's S3 server that, while on is set,
// holds every request for delay before forwarding it, and counts those it held.
type slowS3 struct {
	*faultProxy
	delayed atomic.Int64
}

func newSlowS3(t *testing.T, endpoint string, on *atomic.Bool, delay time.Duration) *slowS3 {
	s := &slowS3{faultProxy: newFaultProxy(t, endpoint)}
	s.setHook(func(r *http.Request, _ []byte) fault {
		if on.Load() {
			s.delayed.Add(1)
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
		}
		return pass
	})
	return s
}

// readyz is the status of a sink's /readyz (0 when it does not answer).
func readyz(p *proc) int {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFaultS3Latency: for LAKESINK_FAULT_S3_LATENCY_FOR (default 30 s) every S3
// request of the sink and of a compactor running meanwhile is held 5 s by a proxy,
// while a producer writes 2,000 records/s. 5 s is under s3.request_timeout (30 s
// per attempt), so slow requests complete: the sink falls behind and catches up
// after, without exiting; the compactor finishes (exit 0).
func TestFaultS3Latency(t *testing.T) {
	// Most of its time is spent waiting out a fault window or a clock margin, so it
	// runs beside the package's other such tests (after the serial ones).
	t.Parallel()
	stretch := envDuration(t, "LAKESINK_FAULT_S3_LATENCY_FOR", 30*time.Second)
	const latency = 5 * time.Second
	const parts = 4
	s := newScenario(t, testbed.Kafka(t), parts, "")
	var slow atomic.Bool
	sinkS3, compactS3 := newSlowS3(t, s.s3.Endpoint, &slow, latency), newSlowS3(t, s.s3.Endpoint, &slow, latency)
	s.produceMix(20_000, 3, 0.01, parts)
	p := s.start(s.viaS3(sinkS3.URL))
	s.waitCaughtUp(2*time.Minute, p)
	before := s.committed()

	slow.Store(true)
	start := time.Now()
	stopProducer := s.backgroundProducer(200, 3, parts)
	type result struct {
		code int
		out  string
		err  error
	}
	compacted := make(chan result, 1)
	compactCfg := s.viaS3(compactS3.URL)
	go func() {
		code, out, _, err := (&lakeFixture{b: s.bed}).compactExec(5*time.Minute, filepath.Join(t.TempDir(), "metrics.prom"), compactCfg)
		compacted <- result{code, out, err}
	}()
	ready := map[int]int{}
	for time.Since(start) < stretch {
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited under S3 latency after %s: %v", time.Since(start).Round(time.Millisecond), err)
		}
		ready[readyz(p)]++
		time.Sleep(time.Second)
	}
	slow.Store(false)
	lifted := time.Now()
	stopProducer()
	m := p.metrics(t)
	t.Logf("S3 latency %s for %s: %d sink requests and %d compactor requests delayed; /readyz answers %v; s3 retries %v",
		latency, stretch, sinkS3.delayed.Load(), compactS3.delayed.Load(), ready, sumPrefix(m, "lakesink_s3_retries_total"))
	if sinkS3.delayed.Load() == 0 || compactS3.delayed.Load() == 0 {
		t.Fatalf("the latency was not injected: %d sink and %d compactor requests delayed", sinkS3.delayed.Load(), compactS3.delayed.Load())
	}
	s.waitCaughtUp(3*time.Minute, p)
	t.Logf("caught up %s after the latency ended", time.Since(lifted).Round(time.Millisecond))
	if after := s.committed(); after <= before {
		t.Fatalf("the sink committed nothing after the latency: %d then %d", before, after)
	}
	res := <-compacted
	if res.err != nil || res.code != 0 {
		t.Fatalf("compactor under S3 latency: exit %d, %v:\n%s", res.code, res.err, res.out)
	}
	s.compacted = true
	p.stop(t)
	s.compact()
	s.verify()
}

// sumPrefix sums the series of m whose name starts with prefix.
func sumPrefix(m map[string]float64, prefix string) float64 {
	n := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// startBehindS3Proxy starts a scenario of 4 partitions with 20,000 records (1 %
// bad) and a sink whose S3 is behind a TCP proxy; it returns when the sink has
// committed, with the offsets committed.
func startBehindS3Proxy(t *testing.T) (*scenario, *tcpProxy, *proc, int64) {
	const parts = 4
	s := newScenario(t, testbed.Kafka(t), parts, "")
	proxy := newTCPProxy(t, false)
	proxy.setTarget(strings.TrimPrefix(s.s3.Endpoint, "http://"))
	s.produceMix(20_000, 3, 0.01, parts)
	p := s.start(s.viaS3("http://" + proxy.addr()))
	return s, proxy, p, s.waitCommitted(1, 2*time.Minute, p)
}

// TestFaultS3Unreachable: the sink's S3 is unreachable for LAKESINK_FAULT_S3_OUTAGE
// (default 60 s) while a producer writes 2,000 records/s: for the first half a TCP
// proxy holds every connection (a black hole: connections open, no byte through),
// for the second half it cuts them all (the held ones too) and refuses new ones. At
// the end of each half, with S3 still away, the audit (reading S3 directly) finds
// every committed offset in S3 or the dead letters: nothing is committed past what
// is durable. The sink does not exit; it retries and catches up after.
func TestFaultS3Unreachable(t *testing.T) {
	// Most of its time is spent waiting out a fault window or a clock margin, so it
	// runs beside the package's other such tests (after the serial ones).
	t.Parallel()
	outage := envDuration(t, "LAKESINK_FAULT_S3_OUTAGE", 60*time.Second)
	s, proxy, p, at := startBehindS3Proxy(t)
	stopProducer := s.backgroundProducer(200, 3, 4)
	start := time.Now()
	wait := func(until time.Time) {
		for time.Now().Before(until) {
			if done, err := p.exitedErr(); done {
				t.Fatalf("sink exited with S3 unreachable after %s: %v", time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	proxy.setHold(true)
	wait(start.Add(outage / 2))
	s.wantClean("S3 black-holed", s.cfg)
	heldAt, readyHeld := s.committed(), readyz(p)
	proxy.setDown(true) // cuts the held connections too
	proxy.setHold(false)
	wait(start.Add(outage))
	s.wantClean("S3 refused", s.cfg)
	refusedAt, readyRefused := s.committed(), readyz(p)
	proxy.setDown(false)
	lifted := time.Now()
	stopProducer()
	cut, refused, held := proxy.cut.Load(), proxy.refused.Load(), proxy.held.Load()
	m := p.metrics(t)
	t.Logf("S3 unreachable %s with %d offsets committed: %d connections cut, %d refused, %d transfers held; committed %d at the end of the black hole (/readyz %d), %d at the end of the refusals (/readyz %d); flush errors %v, s3 retries %v",
		outage, at, cut, refused, held, heldAt, readyHeld, refusedAt, readyRefused, m[`lakesink_flush_errors_total{stage="upload"}`], sumPrefix(m, "lakesink_s3_retries_total"))
	if refused == 0 || held == 0 || cut == 0 {
		t.Fatalf("the outage did not happen: %d connections cut, %d refused, %d transfers held", cut, refused, held)
	}
	if m[`lakesink_flush_errors_total{stage="upload"}`] == 0 {
		t.Fatal("no upload failed during the outage")
	}
	s.waitCaughtUp(3*time.Minute, p)
	t.Logf("caught up %s after S3 came back", time.Since(lifted).Round(time.Millisecond))
	p.stop(t)
	s.compact()
	s.verify()
}

// TestFaultS3SilentConnection: the sink's S3 connections die silently. A TCP proxy
// between the sink and S3 black-holes every connection for LAKESINK_FAULT_S3_SILENT
// (default 45 s: longer than the 30 s request timeout, so that the retries of the
// first timed-out attempts are on the connections silenced next) while a producer writes 2,000 records/s; then the connections open
// at that moment stay silent for good (never answered, never closed: a NAT or load
// balancer that dropped their state) while new connections work. Requests on the
// silent connections must time out (s3.request_timeout, default 30 s) and be retried
// on new ones, so the sink catches up within 2 minutes, with
// lakesink_s3_request_timeouts_total counting the abandoned attempts. Without a
// deadline the upload workers wait on the dead connections for the kernel's
// retransmission timeout (~15 min) and the sink stops uploading.
func TestFaultS3SilentConnection(t *testing.T) {
	// Most of its time is spent waiting out a fault window or a clock margin, so it
	// runs beside the package's other such tests (after the serial ones).
	t.Parallel()
	hold := envDuration(t, "LAKESINK_FAULT_S3_SILENT", 45*time.Second)
	s, proxy, p, _ := startBehindS3Proxy(t)
	stopProducer := s.backgroundProducer(200, 3, 4)
	proxy.setHold(true)
	start := time.Now()
	for time.Since(start) < hold {
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited with S3 black-holed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	silent := proxy.silenceOpen()
	lifted := time.Now()
	stopProducer()
	t.Logf("S3 black-holed %s: %d transfers held; then %d open connections silenced for good, new ones pass", hold, proxy.held.Load(), silent)
	s.waitCaughtUp(2*time.Minute, p)
	m := p.metrics(t)
	t.Logf("caught up %s after the black hole ended: %d transfers stopped on silenced connections, %d connections proxied; s3 request timeouts %v, s3 retries %v",
		time.Since(lifted).Round(time.Millisecond), proxy.silenced.Load(), proxy.accepted.Load(),
		m["lakesink_s3_request_timeouts_total"], sumPrefix(m, "lakesink_s3_retries_total"))
	if proxy.held.Load() == 0 || proxy.silenced.Load() == 0 {
		t.Fatalf("the fault did not happen: %d transfers held, %d stopped on silenced connections", proxy.held.Load(), proxy.silenced.Load())
	}
	if m["lakesink_s3_request_timeouts_total"] == 0 {
		t.Fatal("lakesink_s3_request_timeouts_total is 0: no S3 attempt timed out")
	}
	p.stop(t)
	s.compact()
	s.verify()
}

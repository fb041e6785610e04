package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// s3Faults is a reverse proxy in front of the bed's S3 server that breaks a fixed
// share of the sink's writes, by request kind (put: PutObject, part: UploadPart,
// complete: CompleteMultipartUpload): 503 SlowDown and 500 answered without
// forwarding, the connection reset while the body is read, and the request applied
// by the server with its response lost (the connection closed instead).
type s3Faults struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	seen  map[string]int
	done  map[string]int // faults injected, by "kind fault"
}

func newS3Faults(t *testing.T, endpoint string) (*httptest.Server, *s3Faults) {
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The client signs the Host header it sends (the proxy's): the proxy keeps it.
	f := &s3Faults{proxy: httputil.NewSingleHostReverseProxy(target), seen: map[string]int{}, done: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		srv.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		t.Logf("S3 requests by kind %v; faults injected %v", f.seen, f.done)
	})
	return srv, f
}

func kindOf(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "part"
	case r.Method == http.MethodPut && !q.Has("uploadId") && r.Header.Get("X-Amz-Copy-Source") == "":
		return "put"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "complete"
	}
	return ""
}

func (f *s3Faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := kindOf(r)
	f.mu.Lock()
	f.seen[kind]++
	i := f.seen[kind]
	fault := ""
	switch {
	case kind == "":
	case kind == "put" && i%7 == 3, kind == "part" && i%5 == 2:
		fault = "reset"
	case kind == "put" && i%7 == 5, kind == "complete" && i%3 == 2:
		fault = "lost"
	case i%4 == 1:
		fault = "503"
	case kind == "complete" && i%3 == 0, kind == "put" && i%7 == 6:
		fault = "500"
	}
	f.mu.Unlock()
	record := func() {
		f.mu.Lock()
		f.done[kind+" "+fault]++
		f.mu.Unlock()
	}
	switch fault {
	case "":
		f.proxy.ServeHTTP(w, r)
	case "503":
		record()
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	case "500":
		record()
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`)
	case "reset":
		// Read part of the body, then reset the connection.
		_, _ = io.CopyN(io.Discard, r.Body, 4096)
		record()
		reset(w)
	case "lost":
		rec := httptest.NewRecorder()
		f.proxy.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			record() // applied by the server; the client never hears of it
			reset(w)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// reset closes the client's connection with a TCP reset, without a response.
func reset(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// TestE2ES3FaultsNoLossNoDuplicates runs the sink through a proxy that fails S3
// writes (PutObject, UploadPart, CompleteMultipartUpload) with 503 SlowDown, 500,
// connection resets mid-body and applied requests whose response is lost: every
// record lands in the raw zone exactly once, with small files (single PUTs) and
// large ones (multipart), and lakesink audit finds nothing.
func TestE2ES3FaultsNoLossNoDuplicates(t *testing.T) {
	const parts, small, large = 2, 20_000, 260_000
	b := newBed(t, parts)
	proxy, f := newS3Faults(t, b.s3.Endpoint)
	direct := b.s3.Endpoint
	b.s3.Endpoint = proxy.URL
	// Small files: single PUTs.
	b.produce(small, 2, 11, parts)
	p := b.start(b.config("flush: {max_age: 3s, max_file_bytes: 1MiB, memory_budget: 128MiB, shutdown_timeout: 60s}"))
	b.waitCaughtUp(5*time.Minute, p)
	p.stop(t)
	// Large files: multipart uploads.
	b.produce(large, 1, 12, parts)
	p = b.start(b.config("flush: {max_age: 5m, max_file_bytes: 128MiB, memory_budget: 768MiB, shutdown_timeout: 60s}"))
	deadline := time.Now().Add(5 * time.Minute)
	for {
		m := p.metrics(t)
		if m[`lakesink_records_decoded_total{table="events"}`] == large {
			break
		}
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited early: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not decode the %d records of the second run within 5 minutes", large)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.stop(t) // flushes the large buffers
	if ok, lag := b.caughtUp(); !ok {
		t.Fatalf("after shutdown, committed offsets are not at the end: %s", lag)
	}
	rows, distinct, misplaced := b.lakeCounts()
	if rows != small+large || distinct != small+large || misplaced != 0 {
		t.Fatalf("DuckDB: rows %d distinct %d misplaced %d; want %d, %d, 0", rows, distinct, misplaced, small+large, small+large)
	}
	// The audit reads the raw zone directly, with a compactor's config (an empty catalog).
	b.s3.Endpoint = direct
	fx := &lakeFixture{b: b, src: b.prefix}
	catYAML, _, _ := sqliteCatalog(t, b, b.prefix)
	b.wantClean("after the S3 faults", fx.compactConfig(t, b.prefix, catYAML, "  raw_grace: 1h"))
	f.mu.Lock()
	defer f.mu.Unlock()
	var missing []string
	for _, k := range []string{"put 503", "put 500", "put reset", "put lost", "part 503", "part reset", "complete 503", "complete 500", "complete lost"} {
		if f.done[k] == 0 {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("faults never injected: %s (requests by kind %v)", strings.Join(missing, ", "), f.seen)
	}
}

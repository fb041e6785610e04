package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fault is what faultProxy does with one request.
type fault int

const (
	// pass forwards the request and its response.
	pass fault = iota
	// fail500 and fail503 answer without forwarding.
	fail500
	fail503
	// dropResponse forwards the request (the server applies it) and closes
	// the connection instead of answering: a lost response.
	dropResponse
	// hang forwards the request and never answers: the client times out.
	hang
	// glueConflict answers as AWS Glue does to an UpdateTable whose VersionId
	// is stale (moto does not check it): 400 ConcurrentModificationException.
	glueConflict
)

// faultProxy is a reverse proxy on loopback between lakesink and one server
// (S3, the REST catalog, moto's Glue), with a hook choosing a fault per request.
type faultProxy struct {
	URL    string
	target *url.URL
	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	hook   func(r *http.Request, body []byte) fault
	// after, when set, is called once a request got its fault and was
	// answered (glueVersionLock releases its lock there).
	after  func(r *http.Request, f fault)
	counts map[fault]int
}

// newFaultProxy starts a proxy to target; it is closed when the test ends.
func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{target: u, counts: map[fault]int{}}
	p.rp = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // signatures (SigV4) cover the host the client used
	}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// setHook replaces the hook (nil: pass everything). The hook is called
// outside the proxy's lock and may block to hold a request.
func (p *faultProxy) setHook(h func(r *http.Request, body []byte) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

// injected reports how many requests got fault f.
func (p *faultProxy) injected(f fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[f]
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	f := pass
	if hook != nil {
		f = hook(r, body) // may block: a test holding a request
	}
	p.mu.Lock()
	p.counts[f]++
	after := p.after
	p.mu.Unlock()
	if after != nil {
		defer after(r, f)
	}
	switch f {
	case fail500, fail503:
		code := map[fault]int{fail500: 500, fail503: 503}[f]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"error":{"message":"injected fault","type":"ServerError","code":` + map[fault]string{fail500: "500", fail503: "503"}[f] + `}}`))
	case dropResponse, hang:
		// Forward for real, discard the answer.
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		if f == hang {
			<-r.Context().Done()
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("faultProxy: response writer cannot be hijacked")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
	case glueConflict:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-ErrorType", "ConcurrentModificationException")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"ConcurrentModificationException","Message":"injected: the table version changed"}`))
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// compactRunFor runs lakesink compact with a deadline (a hung compactor fails
// the test instead of hanging it) and returns its exit code, its output and
// the metrics it wrote.
func (f *lakeFixture) compactRunFor(t *testing.T, d time.Duration, cfg string, extra ...string) (int, string, map[string]float64) {
	t.Helper()
	code, out, m, err := f.compactExec(d, filepath.Join(t.TempDir(), "metrics.prom"), cfg, extra...)
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return code, out, m
}

// compactExec is compactRunFor for any goroutine: it reports instead of failing.
func (f *lakeFixture) compactExec(d time.Duration, metricsFile, cfg string, extra ...string) (int, string, map[string]float64, error) {
	cmd := f.compactCmd(cfg, append(extra, "--metrics-file="+metricsFile)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return 0, "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return 0, out.String(), nil, fmt.Errorf("lakesink compact still running after %s", d)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return 0, out.String(), nil, err
	}
	return code, out.String(), readMetricsFile(metricsFile), nil
}

// readMetricsFile parses a Prometheus text file into series → value.
func readMetricsFile(path string) map[string]float64 {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// glueVersionLock puts a proxy in front of moto's Glue that checks an
// UpdateTable's VersionId against the table's current version, as AWS Glue
// does (optimistic locking: a stale one is refused with
// ConcurrentModificationException), which moto does not: there, two
// commits racing between their GetTable and UpdateTable both succeed and the
// later silently drops the earlier. Check and update are serialized. It
// returns the proxy's URL, to use as the Glue endpoint.
func glueVersionLock(t *testing.T, moto string) string {
	t.Helper()
	p := newFaultProxy(t, moto)
	var mu sync.Mutex
	var holding sync.Map // *http.Request → holds mu
	p.hook = func(r *http.Request, body []byte) fault {
		if r.Header.Get("X-Amz-Target") != "AWSGlue.UpdateTable" {
			return pass
		}
		var in struct {
			DatabaseName, VersionId string
			TableInput              struct{ Name string }
		}
		if err := json.Unmarshal(body, &in); err != nil || in.VersionId == "" {
			return pass
		}
		mu.Lock()
		q, _ := json.Marshal(map[string]string{"DatabaseName": in.DatabaseName, "Name": in.TableInput.Name})
		req, _ := http.NewRequest(http.MethodPost, moto, bytes.NewReader(q))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "AWSGlue.GetTable")
		req.Header.Set("Authorization", r.Header.Get("Authorization")) // moto routes by it, never checks it
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			mu.Unlock()
			return fail500
		}
		defer resp.Body.Close()
		var cur struct{ Table struct{ VersionId string } }
		if err := json.NewDecoder(resp.Body).Decode(&cur); err != nil || cur.Table.VersionId != in.VersionId {
			mu.Unlock()
			return glueConflict
		}
		holding.Store(r, true)
		return pass // mu is held until moto has answered (after)
	}
	p.after = func(r *http.Request, _ fault) {
		if _, ok := holding.LoadAndDelete(r); ok {
			mu.Unlock()
		}
	}
	return p.URL
}

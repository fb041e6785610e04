package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/store"
)

// scriptedS3 is a real HTTP server standing in for S3: the n-th request (from 1)
// is answered by answer(n, w, r). hang blocks a handler until the test ends (the
// connection stays open and silent: no answer, no close).
type scriptedS3 struct {
	srv      *httptest.Server
	requests atomic.Int64
	release  chan struct{}
	mu       sync.Mutex
	seen     []*http.Request
}

func newScriptedS3(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request, hang func())) *scriptedS3 {
	s := &scriptedS3{release: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.requests.Add(1))
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(context.Background()))
		s.mu.Unlock()
		answer(n, w, r, func() { <-s.release })
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.release) }) // runs first: hung handlers return, then Close
	return s
}

// store returns a store on the server with a 1 s request timeout and 3 attempts,
// counting retries and stalled attempts.
func (s *scriptedS3) store(t *testing.T, retries *[]string, stalls *atomic.Int64) *store.S3 {
	var mu sync.Mutex
	st, err := store.NewS3(context.Background(), store.S3Config{
		Bucket: "b", Region: "us-east-1", Endpoint: s.srv.URL, PathStyle: true,
		AccessKeyID: "id", SecretAccessKey: "secret", MaxAttempts: 3, RequestTimeout: time.Second,
		OnRetry: func(op string) { mu.Lock(); *retries = append(*retries, op); mu.Unlock() },
		OnStall: func() { stalls.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, code)
}

// TestS3RequestTimeout: an attempt whose connection goes silent (the server reads
// the request and never answers, never closes) is abandoned after RequestTimeout
// and retried on a new connection: a direct PUT, an SDK HEAD, and a ranged GET
// whose body stops halfway (the compactor's reads).
func TestS3RequestTimeout(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	cases := []struct {
		name string
		// answer serves attempt n of the operation; the first one hangs.
		answer func(n int, w http.ResponseWriter, r *http.Request, hang func())
		run    func(*store.S3) error
		op     string // the retried operation
	}{
		{"direct PUT, no answer", func(n int, w http.ResponseWriter, r *http.Request, hang func()) {
			_, _ = io.Copy(io.Discard, r.Body)
			if n == 1 {
				hang()
				return
			}
			if r.Header.Get("Amz-Sdk-Invocation-Id") != "" {
				s3Error(w, http.StatusBadRequest, "NotTheDirectPath")
				return
			}
			w.Header().Set("ETag", `"e"`)
		}, func(s *store.S3) error { return s.Create(context.Background(), "k", bytes.NewReader(data)) }, "PutObject"},
		{"SDK HEAD, no answer", func(n int, w http.ResponseWriter, r *http.Request, hang func()) {
			if n == 1 {
				hang()
				return
			}
			w.Header().Set("Content-Length", "100000")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		}, func(s *store.S3) error {
			info, err := s.Stat(context.Background(), "k")
			if err == nil && info.Size != int64(len(data)) {
				err = fmt.Errorf("size %d, want %d", info.Size, len(data))
			}
			return err
		}, "HeadObject"},
		{"ranged GET, body stops halfway", func(n int, w http.ResponseWriter, r *http.Request, hang func()) {
			w.Header().Set("ETag", `"e"`)
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Length", fmt.Sprint(len(data)))
				return
			}
			var from, to int
			if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); err != nil {
				s3Error(w, http.StatusBadRequest, "BadRange")
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(data)))
			w.Header().Set("Content-Length", fmt.Sprint(to-from+1))
			w.WriteHeader(http.StatusPartialContent)
			if n == 2 { // the first GET (after the HEAD): half the body, then silence
				_, _ = w.Write(data[from : from+(to-from+1)/2])
				w.(http.Flusher).Flush()
				hang()
				return
			}
			_, _ = w.Write(data[from : to+1])
		}, func(s *store.S3) error {
			o, err := s.Open(context.Background(), "k")
			if err != nil {
				return err
			}
			defer o.Close()
			got := make([]byte, len(data))
			if _, err := o.ReadAt(got, 0); err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return fmt.Errorf("read other bytes than the object's")
			}
			return nil
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newScriptedS3(t, c.answer)
			var retries []string
			var stalls atomic.Int64
			if err := c.run(srv.store(t, &retries, &stalls)); err != nil {
				t.Fatalf("with the first attempt's connection silent: %v", err)
			}
			if stalls.Load() == 0 {
				t.Fatal("no attempt timed out (OnStall never called)")
			}
			if c.op != "" && strings.Join(retries, ",") != c.op {
				t.Fatalf("OnRetry saw %q, want one %s", retries, c.op)
			}
		})
	}
}

// TestS3DirectPutRetries: the direct PUT path (s3put.go) retries as the SDK does:
// 503 SlowDown, 500, a connection reset, and a clock-skew rejection (signed again
// at the server's time); it does not retry a plain 403.
func TestS3DirectPutRetries(t *testing.T) {
	skewed := time.Now().Add(-time.Hour).UTC() // the server's clock: an hour behind ours
	cases := []struct {
		name    string
		first   func(w http.ResponseWriter, r *http.Request)
		second  func(t *testing.T, r *http.Request) // checks the retried request
		retried bool
	}{
		{"503 SlowDown", func(w http.ResponseWriter, _ *http.Request) { s3Error(w, http.StatusServiceUnavailable, "SlowDown") }, nil, true},
		{"500 InternalError", func(w http.ResponseWriter, _ *http.Request) {
			s3Error(w, http.StatusInternalServerError, "InternalError")
		}, nil, true},
		{"connection reset", func(w http.ResponseWriter, _ *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			_ = c.(*net.TCPConn).SetLinger(0) // RST, not FIN
			_ = c.Close()
		}, nil, true},
		{"RequestTimeTooSkewed", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Date", skewed.Format(http.TimeFormat))
			s3Error(w, http.StatusForbidden, "RequestTimeTooSkewed")
		}, func(t *testing.T, r *http.Request) {
			signed, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
			if err != nil {
				t.Fatalf("retried PUT's X-Amz-Date %q: %v", r.Header.Get("X-Amz-Date"), err)
			}
			if d := signed.Sub(skewed).Abs(); d > time.Minute {
				t.Fatalf("retried PUT signed at %s, %s from the server's clock %s", signed, d, skewed)
			}
		}, true},
		{"403 AccessDenied", func(w http.ResponseWriter, _ *http.Request) { s3Error(w, http.StatusForbidden, "AccessDenied") }, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newScriptedS3(t, func(n int, w http.ResponseWriter, r *http.Request, _ func()) {
				_, _ = io.Copy(io.Discard, r.Body)
				if r.Header.Get("Amz-Sdk-Invocation-Id") != "" {
					s3Error(w, http.StatusBadRequest, "NotTheDirectPath")
					return
				}
				if n == 1 {
					c.first(w, r)
					return
				}
				w.Header().Set("ETag", `"e"`)
			})
			var retries []string
			var stalls atomic.Int64
			err := srv.store(t, &retries, &stalls).Create(context.Background(), "k", strings.NewReader("x"))
			if !c.retried {
				if err == nil || srv.requests.Load() != 1 || len(retries) != 0 {
					t.Fatalf("want one attempt and its error: %d requests, retries %q, err %v", srv.requests.Load(), retries, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if srv.requests.Load() != 2 || strings.Join(retries, ",") != "PutObject" {
				t.Fatalf("want 2 requests and one PutObject retry: %d requests, retries %q", srv.requests.Load(), retries)
			}
			if c.second != nil {
				srv.mu.Lock()
				r := srv.seen[1]
				srv.mu.Unlock()
				c.second(t, r)
			}
		})
	}
}

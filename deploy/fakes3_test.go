package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeS3 is the slice of the S3 API the sink uses (HeadBucket, conditional PutObject,
// HeadObject, GetObject), path-style, with fault injection: the first failPuts PutObject
// requests of every key answer 503 SlowDown, as S3 does under throttling. Any other request fails the
// test, so a new S3 call in the sink shows up here (and in the IAM policy test).
type fakeS3 struct {
	t        testing.TB
	bucket   string
	mu       sync.Mutex
	objects  map[string][]byte
	failPuts int            // per key
	attempts map[string]int // PutObject requests per key
	puts503  int
	srv      *httptest.Server
}

func newFakeS3(t testing.TB, bucket string, failPuts int) *fakeS3 {
	f := &fakeS3{t: t, bucket: bucket, objects: map[string][]byte{}, failPuts: failPuts, attempts: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeS3) URL() string { return f.srv.URL }

func (f *fakeS3) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.objects {
		out = append(out, k)
	}
	return out
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, code)
}

func (f *fakeS3) serve(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket != f.bucket {
		s3Error(w, http.StatusNotFound, "NoSuchBucket")
		return
	}
	q := r.URL.Query()
	switch {
	case key == "" && r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK)
	case key == "" && r.Method == http.MethodGet && q.Get("list-type") == "2":
		// ListObjectsV2, one page (the sink lists its offset checkpoints).
		prefix := q.Get("prefix")
		var keys []string
		f.mu.Lock()
		for k := range f.objects {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		sizes := map[string]int{}
		for _, k := range keys {
			sizes[k] = len(f.objects[k])
		}
		f.mu.Unlock()
		slices.Sort(keys)
		var b strings.Builder
		fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>`, f.bucket, prefix, len(keys))
		for _, k := range keys {
			fmt.Fprintf(&b, `<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>"%d"</ETag><Size>%d</Size></Contents>`, k, fakeTime.UTC().Format(time.RFC3339), sizes[k], sizes[k])
		}
		b.WriteString(`</ListBucketResult>`)
		w.Header().Set("Content-Type", "application/xml")
		_, _ = io.WriteString(w, b.String())
	case key != "" && r.Method == http.MethodPut && !q.Has("uploadId"):
		body, err := readS3Body(r)
		if err != nil {
			s3Error(w, http.StatusBadRequest, "IncompleteBody")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.attempts[key]++
		if f.attempts[key] <= f.failPuts {
			f.puts503++
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
			return
		}
		if _, ok := f.objects[key]; ok && r.Header.Get("If-None-Match") == "*" {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		f.objects[key] = body
		w.Header().Set("ETag", `"`+strconv.Itoa(len(body))+`"`)
		w.WriteHeader(http.StatusOK)
	case key != "" && (r.Method == http.MethodHead || r.Method == http.MethodGet):
		f.mu.Lock()
		data, ok := f.objects[key]
		f.mu.Unlock()
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		}
		w.Header().Set("ETag", `"`+strconv.Itoa(len(data))+`"`)
		http.ServeContent(w, r, key, fakeTime, bytes.NewReader(data))
	default:
		f.t.Errorf("fake S3: unexpected request %s %s", r.Method, r.URL)
		s3Error(w, http.StatusNotImplemented, "NotImplemented")
	}
}

// readS3Body reads a request body, decoding the aws-chunked encoding the SDK may use.
func readS3Body(r *http.Request) ([]byte, error) {
	if !strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") &&
		!strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
		return io.ReadAll(r.Body)
	}
	br := bufio.NewReader(r.Body)
	var out []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		sizeHex, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(sizeHex, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("aws-chunked size %q: %w", line, err)
		}
		if n == 0 {
			return out, nil // trailers follow; not needed
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, err
		}
		out = append(out, chunk...)
		if _, err := br.Discard(2); err != nil {
			return nil, err
		}
	}
}

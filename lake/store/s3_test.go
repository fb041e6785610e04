package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/store/storetest"
)

// bedS3 returns the config of a store on the bed's S3 server under a prefix of its
// own, and removes what the test wrote when it ends. Multipart uploads left behind
// fail the test: every failed Create must abort its upload.
func bedS3(t *testing.T) store.S3Config {
	t.Helper()
	bed := testbed.S3(t)
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections) // for goleak
	cfg := store.S3Config{
		Bucket: bed.Bucket, Prefix: testbed.UniqueName(t, "store") + "/",
		Region: bed.Region, Endpoint: bed.Endpoint, PathStyle: true,
		AccessKeyID: bed.AccessKey, SecretAccessKey: bed.SecretKey,
		PartSize: storetest.PartSize, MaxAttempts: 3, HTTPClient: hc,
	}
	raw := s3.New(s3.Options{
		Region: bed.Region, BaseEndpoint: aws.String(bed.Endpoint), UsePathStyle: true, HTTPClient: hc,
		Credentials: credentials.NewStaticCredentialsProvider(bed.AccessKey, bed.SecretKey, ""),
	})
	t.Cleanup(func() {
		ctx := context.Background()
		ups, err := raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(cfg.Bucket), Prefix: aws.String(cfg.Prefix)})
		if err != nil {
			t.Errorf("list multipart uploads: %v", err)
		} else {
			for _, u := range ups.Uploads {
				t.Errorf("multipart upload of %s left behind", aws.ToString(u.Key))
				_, _ = raw.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(cfg.Bucket), Key: u.Key, UploadId: u.UploadId})
			}
		}
		p := s3.NewListObjectsV2Paginator(raw, &s3.ListObjectsV2Input{Bucket: aws.String(cfg.Bucket), Prefix: aws.String(cfg.Prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Errorf("clean up %s: %v", cfg.Prefix, err)
				return
			}
			for _, o := range page.Contents {
				if _, err := raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(cfg.Bucket), Key: o.Key}); err != nil {
					t.Errorf("clean up %s: %v", aws.ToString(o.Key), err)
				}
			}
		}
	})
	return cfg
}

func newS3(t *testing.T, cfg store.S3Config) *store.S3 {
	t.Helper()
	s, err := store.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newS3(t, bedS3(t)) })
}

// sseRecorder records the encryption headers of requests that write objects.
type sseRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string // "op sse kms-key-id"
}

func (r *sseRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	op := ""
	switch q := req.URL.Query(); {
	case req.Method == http.MethodPut && q.Has("partNumber"):
		op = "UploadPart"
	case req.Method == http.MethodPut:
		op = "PutObject"
	case req.Method == http.MethodPost && q.Has("uploads"):
		op = "CreateMultipartUpload"
	case req.Method == http.MethodPost && q.Has("uploadId"):
		op = "CompleteMultipartUpload"
	}
	if op != "" {
		r.mu.Lock()
		r.seen = append(r.seen, strings.TrimSpace(op+" "+req.Header.Get("X-Amz-Server-Side-Encryption")+" "+
			req.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")))
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

// TestS3Encryption checks that the configured server-side encryption is asked
// for when objects are created (PutObject, CreateMultipartUpload) and nowhere
// else, and that the objects read back. The bed's server accepts the headers but
// does not report encryption back, so the requests are what is checked.
func TestS3Encryption(t *testing.T) {
	tests := []struct {
		name     string
		sse, kms string
		want     []string
	}{
		{"bucket default", "", "", []string{
			"PutObject", "CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"}},
		{"SSE-S3", "AES256", "", []string{
			"PutObject AES256", "CreateMultipartUpload AES256", "UploadPart", "UploadPart", "CompleteMultipartUpload"}},
		{"SSE-KMS", "aws:kms", "", []string{
			"PutObject aws:kms", "CreateMultipartUpload aws:kms", "UploadPart", "UploadPart", "CompleteMultipartUpload"}},
		{"SSE-KMS with a key", "aws:kms", "alias/lake", []string{
			"PutObject aws:kms alias/lake", "CreateMultipartUpload aws:kms alias/lake", "UploadPart", "UploadPart", "CompleteMultipartUpload"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bedS3(t)
			rec := &sseRecorder{next: cfg.HTTPClient.Transport}
			cfg.HTTPClient = &http.Client{Transport: rec}
			cfg.SSE, cfg.KMSKeyID = tc.sse, tc.kms
			s := newS3(t, cfg)
			ctx := context.Background()
			bodies := map[string]string{"small": "small body", "large": strings.Repeat("x", storetest.PartSize+10)}
			for _, key := range []string{"small", "large"} {
				if err := s.Create(ctx, key, strings.NewReader(bodies[key])); err != nil {
					t.Fatalf("create %s: %v", key, err)
				}
			}
			rec.mu.Lock()
			seen := slices.Clone(rec.seen)
			rec.mu.Unlock()
			if !slices.Equal(seen, tc.want) {
				t.Errorf("requests %q, want %q", seen, tc.want)
			}
			for key, body := range bodies {
				o, err := s.Open(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(o)
				_ = o.Close()
				if err != nil || string(b) != body {
					t.Fatalf("read back %s: %d bytes, %v", key, len(b), err)
				}
			}
		})
	}
}

// TestS3BadAccess: wrong credentials and a missing bucket give errors that say
// what was being done, and never look like "exists" or "not found" to callers.
func TestS3BadAccess(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*store.S3Config)
		codes  []string // one of them is in the error of Create
		// headNotFound: a HEAD response has no body, so a 404 about something
		// else than the key (versitygw answers an unknown access key with 404
		// XAdminUserNotFound where AWS says 403 InvalidAccessKeyId) reads as
		// "not found" to Stat and Open.
		headNotFound bool
	}{
		{"wrong secret", func(c *store.S3Config) { c.SecretAccessKey = "wrong-secret" }, []string{"SignatureDoesNotMatch"}, false},
		{"unknown access key", func(c *store.S3Config) { c.AccessKeyID = "nobody" }, []string{"InvalidAccessKeyId", "XAdminUserNotFound"}, true},
		{"missing bucket", func(c *store.S3Config) { c.Bucket = "lakesink-no-such-bucket" }, []string{"NoSuchBucket"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bedS3(t)
			tc.modify(&cfg)
			s := newS3(t, cfg)
			ctx := context.Background()
			err := s.Create(ctx, "x", strings.NewReader("x"))
			if err == nil || store.IsExists(err) || store.IsNotFound(err) {
				t.Fatalf("create: %v, want a plain error", err)
			}
			if want := "s3 put " + s.URI("x") + ": "; !strings.HasPrefix(err.Error(), want) ||
				!slices.ContainsFunc(tc.codes, func(c string) bool { return strings.Contains(err.Error(), c) }) {
				t.Fatalf("create: %q, want it to start with %q and name one of %q", err, want, tc.codes)
			}
			t.Logf("create: %v", err)
			if err := s.Ping(ctx); err == nil || !strings.HasPrefix(err.Error(), "s3 head bucket s3://"+cfg.Bucket+": ") {
				t.Fatalf("ping: %v", err)
			}
			if err := s.List(ctx, "", func(store.ObjectInfo) error { return nil }); err == nil || store.IsNotFound(err) {
				t.Fatalf("list: %v, want a plain error", err)
			}
			if _, err := s.Stat(ctx, "x"); err == nil || store.IsNotFound(err) != tc.headNotFound {
				t.Fatalf("stat: %v (IsNotFound %v, want %v)", err, store.IsNotFound(err), tc.headNotFound)
			}
		})
	}
}

// TestS3Config checks validation and defaults without contacting a server.
func TestS3Config(t *testing.T) {
	ok := store.S3Config{Bucket: "b", Region: "us-east-1", Endpoint: "http://127.0.0.1:1"}
	tests := []struct {
		name    string
		modify  func(*store.S3Config)
		wantErr string
		wantURI string // of key "k/x"
	}{
		{"minimal", func(*store.S3Config) {}, "", "s3://b/k/x"},
		{"prefix", func(c *store.S3Config) { c.Prefix = "raw/" }, "", "s3://b/raw/k/x"},
		{"prefix without slash", func(c *store.S3Config) { c.Prefix = "raw" }, "", "s3://b/raw/k/x"},
		{"kms", func(c *store.S3Config) { c.SSE, c.KMSKeyID = "aws:kms", "key" }, "", "s3://b/k/x"},
		{"no bucket", func(c *store.S3Config) { c.Bucket = "" }, "bucket is required", ""},
		{"absolute prefix", func(c *store.S3Config) { c.Prefix = "/raw/" }, `prefix "/raw/" starts with /`, ""},
		{"small parts", func(c *store.S3Config) { c.PartSize = 1 << 20 }, "part size 1048576 is outside", ""},
		{"negative concurrency", func(c *store.S3Config) { c.Concurrency = -1 }, "concurrency -1", ""},
		{"unknown sse", func(c *store.S3Config) { c.SSE = "aws:foo" }, `sse "aws:foo" is not one of`, ""},
		{"kms key without kms", func(c *store.S3Config) { c.SSE, c.KMSKeyID = "AES256", "key" }, "a KMS key id needs sse", ""},
		{"half credentials", func(c *store.S3Config) { c.AccessKeyID = "id" }, "need both", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.modify(&cfg)
			s, err := store.NewS3(context.Background(), cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewS3: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewS3: %v", err)
			}
			if got := s.URI("k/x"); got != tc.wantURI {
				t.Fatalf("URI = %q, want %q", got, tc.wantURI)
			}
		})
	}
}

// unavailable answers every request with 503 SlowDown, without a server.
type unavailable struct{}

func (unavailable) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable, Status: "503 Slow Down", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r,
	}, nil
}

func TestS3OnRetry(t *testing.T) {
	var (
		mu  sync.Mutex
		ops []string
	)
	s, err := store.NewS3(context.Background(), store.S3Config{
		Bucket: "b", Region: "us-east-1", Endpoint: "http://127.0.0.1:1", PathStyle: true,
		AccessKeyID: "id", SecretAccessKey: "secret", MaxAttempts: 2,
		HTTPClient: &http.Client{Transport: unavailable{}},
		OnRetry:    func(op string) { mu.Lock(); ops = append(ops, op); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Create(context.Background(), "k", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "SlowDown") {
		t.Fatalf("create against a 503 server: %v", err)
	}
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("create: %v does not carry the HTTP status", err)
	}
	if want := []string{"PutObject"}; strings.Join(ops, ",") != strings.Join(want, ",") {
		t.Fatalf("OnRetry saw %q, want %q (one retry of two attempts)", ops, want)
	}
}

// corrupting flips one byte of every PutObject body after the client computed its
// checksum: what a faulty NIC, proxy or memory would do on the way.
type corrupting struct{ next http.RoundTripper }

func (c corrupting) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut && r.Body != nil && !r.URL.Query().Has("partNumber") {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		data[len(data)/2] ^= 0xff
		r.Body = io.NopCloser(bytes.NewReader(data))
	}
	return c.next.RoundTrip(r)
}

// TestS3PutIntegrity: a body changed between the store and the server is refused by
// the server (the store sends its CRC32), and nothing is written.
func TestS3PutIntegrity(t *testing.T) {
	cfg := bedS3(t)
	cfg.HTTPClient = &http.Client{Transport: corrupting{cfg.HTTPClient.Transport}}
	cfg.MaxAttempts = 1
	s := newS3(t, cfg)
	ctx := context.Background()
	err := s.Create(ctx, "corrupt", strings.NewReader(strings.Repeat("parquet bytes ", 100)))
	if err == nil {
		t.Fatal("a corrupted body was stored")
	}
	t.Logf("create of a corrupted body: %v", err)
	if _, err := s.Stat(ctx, "corrupt"); !store.IsNotFound(err) {
		t.Fatalf("stat after the refused create: %v, want not found", err)
	}
}

func TestS3Swap(t *testing.T) {
	storetest.RunSwap(t, func(t *testing.T) store.Swapper { return newS3(t, bedS3(t)) })
}

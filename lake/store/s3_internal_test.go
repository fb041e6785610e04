package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// These tests drive S3's failure paths in-process through a fake of the S3 API;
// s3_test.go proves the same store against a real server.

// fakeS3 records calls; hooks decide the answers. Methods without a hook
// succeed; methods the store should not call panic (nil embedded interface).
type fakeS3 struct {
	s3API

	putHook      func(*s3.PutObjectInput) error
	partHook     func(context.Context, *s3.UploadPartInput) error
	completeHook func(*s3.CompleteMultipartUploadInput) error
	abortHook    func(context.Context) error
	headHook     func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error)
	deleteHook   func(*s3.DeleteObjectsInput) *s3.DeleteObjectsOutput
	listHook     func(*s3.ListObjectsV2Input) *s3.ListObjectsV2Output

	mu        sync.Mutex
	puts      []*s3.PutObjectInput
	creates   []*s3.CreateMultipartUploadInput
	parts     []int32
	completes []*s3.CompleteMultipartUploadInput
	aborts    []abortCall
	inflight  int
	maxFlight int
}

type abortCall struct {
	ctxErr      error
	hasDeadline bool
}

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	_, _ = io.Copy(io.Discard, in.Body)
	f.mu.Lock()
	f.puts = append(f.puts, in)
	f.mu.Unlock()
	if f.putHook != nil {
		return nil, f.putHook(in)
	}
	return &s3.PutObjectOutput{}, nil
}

func (f *fakeS3) CreateMultipartUpload(_ context.Context, in *s3.CreateMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, in)
	return &s3.CreateMultipartUploadOutput{UploadId: aws.String("upload-1")}, nil
}

func (f *fakeS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, _ ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	n, _ := io.Copy(io.Discard, in.Body)
	f.mu.Lock()
	f.inflight++
	f.maxFlight = max(f.maxFlight, f.inflight)
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()
	if n != aws.ToInt64(in.ContentLength) {
		return nil, fmt.Errorf("part %d: body of %d bytes, content length %d", *in.PartNumber, n, aws.ToInt64(in.ContentLength))
	}
	if f.partHook != nil {
		if err := f.partHook(ctx, in); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.parts = append(f.parts, *in.PartNumber)
	f.mu.Unlock()
	num := *in.PartNumber
	return &s3.UploadPartOutput{ETag: aws.String(fmt.Sprintf("etag-%d", num)), ChecksumCRC32: aws.String(fmt.Sprintf("crc-%d", num))}, nil
}

func (f *fakeS3) CompleteMultipartUpload(_ context.Context, in *s3.CompleteMultipartUploadInput, _ ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	f.mu.Lock()
	f.completes = append(f.completes, in)
	f.mu.Unlock()
	if f.completeHook != nil {
		return nil, f.completeHook(in)
	}
	return &s3.CompleteMultipartUploadOutput{}, nil
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, _ *s3.AbortMultipartUploadInput, _ ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	_, ok := ctx.Deadline()
	f.mu.Lock()
	f.aborts = append(f.aborts, abortCall{ctxErr: ctx.Err(), hasDeadline: ok})
	f.mu.Unlock()
	if f.abortHook != nil {
		return nil, f.abortHook(ctx)
	}
	return &s3.AbortMultipartUploadOutput{}, nil
}

func (f *fakeS3) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return f.headHook(in)
}

func (f *fakeS3) DeleteObjects(_ context.Context, in *s3.DeleteObjectsInput, _ ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error) {
	return f.deleteHook(in), nil
}

func (f *fakeS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return f.listHook(in), nil
}

func testS3(t *testing.T, api s3API, modify func(*S3Config)) *S3 {
	t.Helper()
	cfg := S3Config{Bucket: "b", Prefix: "pre", PartSize: MinPartSize, Concurrency: 2}
	if modify != nil {
		modify(&cfg)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return newS3(api, cfg)
}

// zeros is a body of n zero bytes that counts what has been read from it.
type zeros struct {
	n    int64
	read atomic.Int64
}

func (z *zeros) Read(p []byte) (int, error) {
	left := z.n - z.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), left))
	clear(p[:n])
	z.read.Add(int64(n))
	return n, nil
}

// TestS3CreateBoundsMemory: with every part upload stalled, Create has read at
// most (Concurrency+1) parts of the body, and has Concurrency uploads in flight.
func TestS3CreateBoundsMemory(t *testing.T) {
	const parts = 20
	release := make(chan struct{})
	f := &fakeS3{partHook: func(ctx context.Context, _ *s3.UploadPartInput) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	s := testS3(t, f, nil)
	body := &zeros{n: parts*MinPartSize - 1000}
	done := make(chan error, 1)
	go func() { done <- s.Create(context.Background(), "big", body) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		flight := f.inflight
		f.mu.Unlock()
		if flight >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d uploads in flight, want 2", flight)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // give a runaway reader time to show itself
	if read, limit := body.read.Load(), int64(3*MinPartSize); read > limit {
		t.Fatalf("read %d bytes of the body while uploads stalled, want at most (concurrency+1) parts = %d", read, limit)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("create: %v", err)
	}
	if f.maxFlight > 2 {
		t.Errorf("%d part uploads at once, want at most 2", f.maxFlight)
	}
	if len(f.completes) != 1 || len(f.aborts) != 0 {
		t.Fatalf("%d completes and %d aborts, want 1 and 0", len(f.completes), len(f.aborts))
	}
	c := f.completes[0]
	if aws.ToString(c.IfNoneMatch) != "*" || aws.ToString(c.Key) != "pre/big" {
		t.Errorf("complete of key %q with If-None-Match %q, want pre/big and *", aws.ToString(c.Key), aws.ToString(c.IfNoneMatch))
	}
	for i, p := range c.MultipartUpload.Parts {
		if n := int32(i + 1); *p.PartNumber != n || aws.ToString(p.ETag) != fmt.Sprintf("etag-%d", n) || aws.ToString(p.ChecksumCRC32) != fmt.Sprintf("crc-%d", n) {
			t.Fatalf("completed part %d is %d %s %s", n, *p.PartNumber, aws.ToString(p.ETag), aws.ToString(p.ChecksumCRC32))
		}
	}
	if len(c.MultipartUpload.Parts) != parts {
		t.Fatalf("completed %d parts, want %d", len(c.MultipartUpload.Parts), parts)
	}
}

// TestS3CreateSinglePut: bodies up to one part are one conditional PutObject,
// with the configured encryption.
func TestS3CreateSinglePut(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		sse   string
		kms   string
		multi bool
	}{
		{"empty", 0, "", "", false},
		{"exactly one part", MinPartSize, "AES256", "", false},
		{"one byte more", MinPartSize + 1, "aws:kms", "key-1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{}
			s := testS3(t, f, func(c *S3Config) { c.SSE, c.KMSKeyID = tc.sse, tc.kms })
			if err := s.Create(context.Background(), "k", &zeros{n: tc.size}); err != nil {
				t.Fatal(err)
			}
			if tc.multi {
				if len(f.puts) != 0 || len(f.creates) != 1 || len(f.completes) != 1 {
					t.Fatalf("%d puts, %d multipart uploads; want a multipart upload", len(f.puts), len(f.creates))
				}
				c := f.creates[0]
				if string(c.ServerSideEncryption) != tc.sse || aws.ToString(c.SSEKMSKeyId) != tc.kms {
					t.Fatalf("multipart upload with sse %q key %q", c.ServerSideEncryption, aws.ToString(c.SSEKMSKeyId))
				}
				return
			}
			if len(f.puts) != 1 || len(f.creates) != 0 {
				t.Fatalf("%d puts, %d multipart uploads; want one put", len(f.puts), len(f.creates))
			}
			p := f.puts[0]
			if aws.ToString(p.IfNoneMatch) != "*" || aws.ToInt64(p.ContentLength) != tc.size || aws.ToString(p.Key) != "pre/k" ||
				string(p.ServerSideEncryption) != tc.sse || aws.ToString(p.SSEKMSKeyId) != tc.kms {
				t.Fatalf("put %q: If-None-Match %q, length %d, sse %q %q", aws.ToString(p.Key), aws.ToString(p.IfNoneMatch),
					aws.ToInt64(p.ContentLength), p.ServerSideEncryption, aws.ToString(p.SSEKMSKeyId))
			}
		})
	}
}

var errBroken = errors.New("broken")

type brokenAfter struct {
	zeros
}

func (b *brokenAfter) Read(p []byte) (int, error) {
	n, err := b.zeros.Read(p)
	if errors.Is(err, io.EOF) {
		return 0, errBroken
	}
	return n, err
}

// cancelAfter cancels a context once n bytes have been read.
type cancelAfter struct {
	zeros
	at     int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.read.Load() >= c.at {
		c.cancel()
	}
	return c.zeros.Read(p)
}

func apiError(code string) error { return &smithy.GenericAPIError{Code: code, Message: code} }

// TestS3CreateFailures: every failed multipart Create aborts its upload, with a
// live context of its own even when the caller's was cancelled, and says why.
func TestS3CreateFailures(t *testing.T) {
	tests := []struct {
		name      string
		fake      func() *fakeS3
		body      func(cancel context.CancelFunc) io.Reader
		check     func(error) bool
		wantText  string
		completes int
	}{
		{
			name: "part upload fails",
			fake: func() *fakeS3 {
				return &fakeS3{partHook: func(_ context.Context, in *s3.UploadPartInput) error {
					if *in.PartNumber == 2 {
						return apiError("InternalError")
					}
					return nil
				}}
			},
			body:     func(context.CancelFunc) io.Reader { return &zeros{n: 6 * MinPartSize} },
			check:    func(err error) bool { return err != nil && !IsExists(err) },
			wantText: "s3 upload part 2 of s3://b/pre/k: api error InternalError",
		},
		{
			name:     "body fails",
			fake:     func() *fakeS3 { return &fakeS3{} },
			body:     func(context.CancelFunc) io.Reader { return &brokenAfter{zeros{n: 3*MinPartSize + 10}} },
			check:    func(err error) bool { return errors.Is(err, errBroken) },
			wantText: "s3 put s3://b/pre/k: read body: broken",
		},
		{
			name: "context cancelled",
			fake: func() *fakeS3 { return &fakeS3{} },
			body: func(cancel context.CancelFunc) io.Reader {
				return &cancelAfter{zeros: zeros{n: 6 * MinPartSize}, at: 2*MinPartSize + 100, cancel: cancel}
			},
			check:    func(err error) bool { return errors.Is(err, context.Canceled) },
			wantText: "context canceled",
		},
		{
			name: "key taken at completion",
			fake: func() *fakeS3 {
				return &fakeS3{completeHook: func(*s3.CompleteMultipartUploadInput) error { return apiError("PreconditionFailed") }}
			},
			body:      func(context.CancelFunc) io.Reader { return &zeros{n: 2*MinPartSize + 1} },
			check:     IsExists,
			wantText:  "s3 complete multipart upload s3://b/pre/k: object already exists",
			completes: 1,
		},
		{
			name: "abort fails too",
			fake: func() *fakeS3 {
				return &fakeS3{
					completeHook: func(*s3.CompleteMultipartUploadInput) error { return apiError("InternalError") },
					abortHook:    func(context.Context) error { return apiError("SlowDown") },
				}
			},
			body:      func(context.CancelFunc) io.Reader { return &zeros{n: 2*MinPartSize + 1} },
			check:     func(err error) bool { return err != nil && !IsExists(err) },
			wantText:  "s3 abort multipart upload s3://b/pre/k (upload id upload-1): api error SlowDown",
			completes: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fake()
			s := testS3(t, f, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := s.Create(ctx, "k", tc.body(cancel))
			if !tc.check(err) || !strings.Contains(fmt.Sprint(err), tc.wantText) {
				t.Fatalf("create: %v, want an error containing %q", err, tc.wantText)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.completes) != tc.completes {
				t.Errorf("%d completes, want %d", len(f.completes), tc.completes)
			}
			if len(f.aborts) != 1 {
				t.Fatalf("%d aborts, want 1", len(f.aborts))
			}
			if a := f.aborts[0]; a.ctxErr != nil || !a.hasDeadline {
				t.Errorf("abort ran with context error %v, deadline %v; want a live context with a deadline", a.ctxErr, a.hasDeadline)
			}
		})
	}
}

// TestS3CreateConflict: a 409 means "retry", not "exists", unless the key has
// meanwhile been written.
func TestS3CreateConflict(t *testing.T) {
	tests := []struct {
		name       string
		head       func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error)
		wantExists bool
	}{
		{"key written meanwhile", func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
			return &s3.HeadObjectOutput{ContentLength: aws.Int64(1)}, nil
		}, true},
		{"key still free", func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) { return nil, apiError("NotFound") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{putHook: func(*s3.PutObjectInput) error { return apiError("ConditionalRequestConflict") }, headHook: tc.head}
			err := testS3(t, f, nil).Create(context.Background(), "k", strings.NewReader("x"))
			if err == nil || IsExists(err) != tc.wantExists || IsNotFound(err) {
				t.Fatalf("create: %v, want IsExists %v", err, tc.wantExists)
			}
			if !tc.wantExists && !strings.Contains(err.Error(), "conflicting concurrent request, retry") {
				t.Fatalf("create: %q does not say to retry", err)
			}
		})
	}
}

// TestS3DeleteBatches: DeleteObjects calls of at most 1000 keys in quiet mode;
// missing keys are fine, other failures name their key.
func TestS3DeleteBatches(t *testing.T) {
	var sizes []int
	f := &fakeS3{deleteHook: func(in *s3.DeleteObjectsInput) *s3.DeleteObjectsOutput {
		sizes = append(sizes, len(in.Delete.Objects))
		if !aws.ToBool(in.Delete.Quiet) {
			t.Errorf("delete without quiet mode")
		}
		out := &s3.DeleteObjectsOutput{}
		for _, o := range in.Delete.Objects {
			switch k := aws.ToString(o.Key); k {
			case "pre/k/0007":
				out.Errors = append(out.Errors, types.Error{Key: o.Key, Code: aws.String("NoSuchKey"), Message: aws.String("gone")})
			case "pre/k/2001":
				out.Errors = append(out.Errors, types.Error{Key: o.Key, Code: aws.String("AccessDenied"), Message: aws.String("Access Denied")})
			}
		}
		return out
	}}
	keys := make([]string, 2500)
	for i := range keys {
		keys[i] = fmt.Sprintf("k/%04d", i)
	}
	err := testS3(t, f, nil).Delete(context.Background(), keys...)
	if want := []int{1000, 1000, 500}; !slices.Equal(sizes, want) {
		t.Errorf("batches of %v, want %v", sizes, want)
	}
	if err == nil || err.Error() != "s3 delete s3://b/pre/k/2001: AccessDenied: Access Denied" {
		t.Fatalf("delete: %v, want the AccessDenied key only", err)
	}
}

// TestS3ListStripsPrefix: keys come back without the store's prefix, across
// pages, and folder markers are skipped.
func TestS3ListStripsPrefix(t *testing.T) {
	var tokens []string
	f := &fakeS3{listHook: func(in *s3.ListObjectsV2Input) *s3.ListObjectsV2Output {
		if aws.ToString(in.Prefix) != "pre/a" {
			t.Errorf("listed prefix %q, want pre/a", aws.ToString(in.Prefix))
		}
		tokens = append(tokens, aws.ToString(in.ContinuationToken))
		if in.ContinuationToken == nil {
			return &s3.ListObjectsV2Output{IsTruncated: aws.Bool(true), NextContinuationToken: aws.String("next"),
				Contents: []types.Object{{Key: aws.String("pre/a/")}, {Key: aws.String("pre/a/1"), Size: aws.Int64(1)}}}
		}
		return &s3.ListObjectsV2Output{Contents: []types.Object{{Key: aws.String("pre/a/2"), Size: aws.Int64(2)}}}
	}}
	var got []string
	err := testS3(t, f, nil).List(context.Background(), "a", func(o ObjectInfo) error {
		got = append(got, fmt.Sprintf("%s:%d", o.Key, o.Size))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"a/1:1", "a/2:2"}) || !slices.Equal(tokens, []string{"", "next"}) {
		t.Fatalf("list: %q, %v (tokens %q)", got, err, tokens)
	}
}

func TestClassify(t *testing.T) {
	status := func(code int, err error) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: err}
	}
	wrapped := func(err error) error { return &smithy.OperationError{ServiceID: "S3", OperationName: "Op", Err: err} }
	tests := []struct {
		name string
		err  error
		want errKind
	}{
		{"precondition failed", wrapped(status(412, apiError("PreconditionFailed"))), kindExists},
		{"conditional conflict", wrapped(status(409, apiError("ConditionalRequestConflict"))), kindConflict},
		{"no such key", wrapped(status(404, apiError("NoSuchKey"))), kindNotFound},
		{"HEAD 404", wrapped(status(404, apiError("NotFound"))), kindNotFound},
		{"no such bucket is not a missing object", wrapped(status(404, apiError("NoSuchBucket"))), kindOther},
		{"no such upload", wrapped(status(404, apiError("NoSuchUpload"))), kindOther},
		{"other code on a 404", wrapped(status(404, apiError("XAdminUserNotFound"))), kindOther},
		{"412 without a code", wrapped(status(412, errors.New("x"))), kindExists},
		{"404 without a code", wrapped(status(404, errors.New("x"))), kindNotFound},
		{"409 without a code", wrapped(status(409, errors.New("x"))), kindConflict},
		{"access denied", wrapped(status(403, apiError("AccessDenied"))), kindOther},
		{"not an S3 error", context.Canceled, kindOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Fatalf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestS3ReadAtRetries: a ranged GET whose body breaks off is resumed where it
// stopped; a server that ignores Range is caught.
func TestS3ReadAtRetries(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 100)
	tests := []struct {
		name    string
		get     func(call int, in *s3.GetObjectInput) (*s3.GetObjectOutput, error)
		wantErr string
	}{
		{"broken body is resumed", func(call int, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
			var start, end int
			_, _ = fmt.Sscanf(aws.ToString(in.Range), "bytes=%d-%d", &start, &end)
			body := io.Reader(bytes.NewReader(content[start : end+1]))
			if call == 1 {
				body = io.MultiReader(io.LimitReader(body, 7), &brokenAfter{})
			}
			return &s3.GetObjectOutput{Body: io.NopCloser(body), ContentRange: aws.String(fmt.Sprintf("bytes %d-%d/%d", start, end, len(content)))}, nil
		}, ""},
		{"range ignored", func(int, *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
			return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(content))}, nil
		}, `asked for bytes 100-149, got content range ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			f := &getFake{get: func(in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
				calls++
				if aws.ToString(in.IfMatch) != `"etag"` {
					t.Errorf("GET without If-Match")
				}
				return tc.get(calls, in)
			}}
			f.headHook = func(*s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
				return &s3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(content))), ETag: aws.String(`"etag"`)}, nil
			}
			o, err := testS3(t, f, nil).Open(context.Background(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			p := make([]byte, 50)
			n, err := o.ReadAt(p, 100)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadAt: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != 50 || !bytes.Equal(p, content[100:150]) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
		})
	}
}

type getFake struct {
	fakeS3
	get func(*s3.GetObjectInput) (*s3.GetObjectOutput, error)
}

func (g *getFake) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return g.get(in)
}

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config configures an S3 store.
type S3Config struct {
	Bucket string
	// Prefix is prepended to every key ("lake/"); empty for the bucket root.
	Prefix    string
	Region    string
	Endpoint  string // custom endpoint, e.g. http://127.0.0.1:19000; empty for AWS
	PathStyle bool
	// AccessKeyID and SecretAccessKey are optional static credentials; empty means the
	// default AWS chain (environment, IRSA web identity, instance profile).
	AccessKeyID, SecretAccessKey, SessionToken string
	SSE                                        string // "", "AES256" or "aws:kms"
	KMSKeyID                                   string
	PartSize                                   int64 // multipart part size; default 16 MiB, minimum 5 MiB
	Concurrency                                int   // parallel part uploads per Create; default 4
	MaxAttempts                                int   // SDK attempts per request; default 10
	OnRetry                                    func(op string)
	HTTPClient                                 *http.Client
}

// S3 is a Store over an S3 bucket.
type S3 struct {
	c     *s3.Client
	cfg   S3Config
	parts sync.Pool
}

// NewS3 returns a store for cfg.Bucket.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.PartSize < 5<<20 {
		return nil, fmt.Errorf("s3: part size %d is below the 5 MiB minimum", cfg.PartSize)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			var r aws.RetryerV2 = retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = cfg.MaxAttempts })
			if cfg.OnRetry != nil {
				r = countingRetryer{RetryerV2: r, on: cfg.OnRetry}
			}
			return r
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(cfg.HTTPClient))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load aws config: %w", err)
	}
	c := s3.NewFromConfig(ac, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		// Checksums only where the API requires them: S3-compatible servers differ here.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &S3{c: c, cfg: cfg}
	s.parts.New = func() any { b := make([]byte, cfg.PartSize); return &b }
	return s, nil
}

type countingRetryer struct {
	aws.RetryerV2
	on func(string)
}

func (r countingRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	r.on("s3")
	return r.RetryerV2.RetryDelay(attempt, err)
}

func (s *S3) key(k string) string { return s.cfg.Prefix + k }

// URI implements Store.
func (s *S3) URI(key string) string { return "s3://" + s.cfg.Bucket + "/" + s.key(key) }

func (s *S3) sse(put *s3.PutObjectInput, mp *s3.CreateMultipartUploadInput) {
	if s.cfg.SSE == "" {
		return
	}
	alg := types.ServerSideEncryption(s.cfg.SSE)
	var kms *string
	if s.cfg.KMSKeyID != "" {
		kms = aws.String(s.cfg.KMSKeyID)
	}
	if put != nil {
		put.ServerSideEncryption, put.SSEKMSKeyId = alg, kms
	}
	if mp != nil {
		mp.ServerSideEncryption, mp.SSEKMSKeyId = alg, kms
	}
}

// Create implements Store: one conditional PutObject for bodies up to a part, otherwise
// a multipart upload whose completion is conditional (If-None-Match: *).
func (s *S3) Create(ctx context.Context, key string, body io.Reader) error {
	bp := s.parts.Get().(*[]byte)
	n, err := io.ReadFull(body, *bp)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		s.parts.Put(bp)
		return fmt.Errorf("s3 put %s: read body: %w", s.URI(key), err)
	}
	if n < len(*bp) {
		defer s.parts.Put(bp)
		in := &s3.PutObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key)),
			Body: bytes.NewReader((*bp)[:n]), ContentLength: aws.Int64(int64(n)), IfNoneMatch: aws.String("*")}
		s.sse(in, nil)
		if _, err := s.c.PutObject(ctx, in); err != nil {
			return s.wrap("put", key, err)
		}
		return nil
	}
	return s.multipart(ctx, key, bp, body)
}

func (s *S3) multipart(ctx context.Context, key string, first *[]byte, body io.Reader) (err error) {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))}
	s.sse(nil, in)
	out, err := s.c.CreateMultipartUpload(ctx, in)
	if err != nil {
		s.parts.Put(first)
		return s.wrap("create multipart", key, err)
	}
	id := out.UploadId
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key)), UploadId: id})
		}
	}()
	var (
		mu       sync.Mutex
		parts    []types.CompletedPart
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, s.cfg.Concurrency)
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upload := func(num int32, buf *[]byte, n int) {
		defer wg.Done()
		defer func() { <-sem }()
		defer s.parts.Put(buf)
		res, err := s.c.UploadPart(pctx, &s3.UploadPartInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key)), UploadId: id,
			PartNumber: aws.Int32(num), Body: bytes.NewReader((*buf)[:n]), ContentLength: aws.Int64(int64(n))})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = s.wrap(fmt.Sprintf("upload part %d of", num), key, err)
				cancel()
			}
			return
		}
		parts = append(parts, types.CompletedPart{ETag: res.ETag, PartNumber: aws.Int32(num)})
	}
	buf, n := first, len(*first)
	for num := int32(1); ; num++ {
		sem <- struct{}{}
		wg.Add(1)
		go upload(num, buf, n)
		buf = s.parts.Get().(*[]byte)
		var rerr error
		n, rerr = io.ReadFull(body, *buf)
		if n == 0 || errors.Is(rerr, io.EOF) {
			s.parts.Put(buf)
			break
		}
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			s.parts.Put(buf)
			wg.Wait()
			return fmt.Errorf("s3 put %s: read body: %w", s.URI(key), rerr)
		}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			s.parts.Put(buf)
			break
		}
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	sortParts(parts)
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key)),
		UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, IfNoneMatch: aws.String("*")})
	if err != nil {
		return s.wrap("complete multipart", key, err)
	}
	return nil
}

func sortParts(p []types.CompletedPart) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && *p[j].PartNumber < *p[j-1].PartNumber; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

func (s *S3) wrap(op, key string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict":
			return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrExists)
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrNotFound)
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed:
			return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrExists)
		case http.StatusNotFound:
			return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrNotFound)
		}
	}
	return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), err)
}

type s3Object struct {
	s    *S3
	ctx  context.Context
	key  string
	size int64
}

func (o *s3Object) Size() int64  { return o.size }
func (o *s3Object) Close() error { return nil }

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), o.size) - 1
	out, err := o.s.c.GetObject(o.ctx, &s3.GetObjectInput{Bucket: aws.String(o.s.cfg.Bucket), Key: aws.String(o.s.key(o.key)),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
	if err != nil {
		return 0, o.s.wrap("get", o.key, err)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(out.Body, p[:end-off+1])
	if err != nil {
		return n, fmt.Errorf("s3 get %s: %w", o.s.URI(o.key), err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Open implements Store; reads are ranged GETs.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	return &s3Object{s: s, ctx: ctx, key: key, size: info.Size}, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return ObjectInfo{}, s.wrap("head", key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), Modified: aws.ToTime(out.LastModified)}, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(s.key(prefix))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.cfg.Prefix)
			if err := fn(ObjectInfo{Key: k, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Store, in batches of 1000.
func (s *S3) Delete(ctx context.Context, keys ...string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			objs[i] = types.ObjectIdentifier{Key: aws.String(s.key(k))}
		}
		out, err := s.c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.cfg.Bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)}})
		if err != nil {
			return s.wrap("delete", batch[0], err)
		}
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			return fmt.Errorf("s3 delete %s: %s: %s", s.URI(strings.TrimPrefix(aws.ToString(e.Key), s.cfg.Prefix)), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// Ping implements Store.
func (s *S3) Ping(ctx context.Context) error {
	if _, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)}); err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

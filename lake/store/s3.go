package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3 limits and the defaults of S3Config.
const (
	// DefaultPartSize is S3Config.PartSize when it is zero.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part size (all parts but the last).
	MinPartSize = 5 << 20
	// MaxPartSize is S3's largest part size.
	MaxPartSize = 5 << 30
	// DefaultConcurrency is S3Config.Concurrency when it is zero.
	DefaultConcurrency = 4
	// DefaultMaxAttempts is S3Config.MaxAttempts when it is zero.
	DefaultMaxAttempts = 10

	maxParts      = 10000 // S3's limit per multipart upload
	deleteBatch   = 1000  // S3's limit per DeleteObjects call
	abortTimeout  = 30 * time.Second
	readAttempts  = 3 // GETs per read when a response body breaks off
	defaultRegion = "us-east-1"
)

// S3Config configures an S3 store. Only Bucket is required.
type S3Config struct {
	// Bucket is the bucket holding the lake.
	Bucket string
	// Prefix is prepended to every key ("raw/"); empty for the bucket root. It
	// may not start with "/"; a missing trailing "/" is added.
	Prefix string
	// Region is the bucket's region; empty means the AWS default chain
	// (AWS_REGION, profile), then us-east-1 when Endpoint is set.
	Region string
	// Endpoint is a custom endpoint (http://127.0.0.1:19000); empty for AWS.
	Endpoint string
	// PathStyle addresses the bucket in the path instead of the host name, as
	// most S3-compatible servers need.
	PathStyle bool
	// AccessKeyID, SecretAccessKey and SessionToken are optional static
	// credentials; empty means the default AWS chain (environment, IRSA web
	// identity, profile, instance role).
	AccessKeyID, SecretAccessKey, SessionToken string
	// SSE is the server-side encryption of new objects: "" (the bucket's
	// default), "AES256" (SSE-S3) or "aws:kms" (SSE-KMS).
	SSE string
	// KMSKeyID is the KMS key for "aws:kms"; empty for the AWS managed key.
	KMSKeyID string
	// PartSize is the multipart part size: default 16 MiB, at least 5 MiB.
	// Bodies up to one part are sent with a single PutObject.
	PartSize int64
	// Concurrency is the number of parts uploaded in parallel per Create:
	// default 4. A Create holds at most (Concurrency+1) × PartSize bytes.
	Concurrency int
	// MaxAttempts is the SDK's attempts per request: default 10.
	MaxAttempts int
	// OnRetry, if set, is called with the operation name ("PutObject",
	// "UploadPart", ...) before each retried attempt (for a retries metric).
	OnRetry func(op string)
	// RequestTimeout bounds each attempt of an S3 request by inactivity: default
	// 30 s. Connecting, the TLS handshake, waiting for the response headers and
	// every read or write of a body must make progress within it; an attempt that
	// does not is abandoned and retried (MaxAttempts in all). A transfer that
	// keeps moving bytes is never cut, however large. It applies only when
	// HTTPClient is nil.
	RequestTimeout time.Duration
	// OnStall, if set, is called each time an attempt is abandoned because its
	// connection moved no byte for RequestTimeout (for a metric).
	OnStall func()
	// HTTPClient is the HTTP client for S3 requests; nil for the SDK's default
	// with RequestTimeout's bounds. AWS_CA_BUNDLE does not apply to it (configure
	// its transport instead), and credential providers (STS, IRSA) keep the SDK's
	// client.
	HTTPClient *http.Client
}

// withDefaults validates cfg and fills in its defaults.
func (cfg S3Config) withDefaults() (S3Config, error) {
	if cfg.Bucket == "" {
		return cfg, errors.New("s3 config: bucket is required")
	}
	if strings.HasPrefix(cfg.Prefix, "/") {
		return cfg, fmt.Errorf("s3 config: prefix %q starts with /", cfg.Prefix)
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize {
		return cfg, fmt.Errorf("s3 config: part size %d is outside S3's limits (5 MiB to 5 GiB)", cfg.PartSize)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Concurrency < 1 {
		return cfg, fmt.Errorf("s3 config: concurrency %d is below 1", cfg.Concurrency)
	}
	cfg, err := cfg.clientDefaults()
	if err != nil {
		return cfg, err
	}
	switch cfg.SSE {
	case "", string(types.ServerSideEncryptionAes256):
		if cfg.KMSKeyID != "" {
			return cfg, fmt.Errorf("s3 config: a KMS key id needs sse %q, not %q", types.ServerSideEncryptionAwsKms, cfg.SSE)
		}
	case string(types.ServerSideEncryptionAwsKms):
	default:
		return cfg, fmt.Errorf("s3 config: sse %q is not one of \"\", %q, %q", cfg.SSE, types.ServerSideEncryptionAes256, types.ServerSideEncryptionAwsKms)
	}
	return cfg, nil
}

// clientDefaults validates the settings of the S3 client itself (attempts,
// request timeout, credentials) and fills in their defaults.
func (cfg S3Config) clientDefaults() (S3Config, error) {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxAttempts < 1 {
		return cfg, fmt.Errorf("s3 config: max attempts %d is below 1", cfg.MaxAttempts)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RequestTimeout < time.Second {
		return cfg, fmt.Errorf("s3 config: request timeout %s is below 1s", cfg.RequestTimeout)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return cfg, errors.New("s3 config: static credentials need both an access key id and a secret access key")
	}
	return cfg, nil
}

// s3API is the part of *s3.Client the store uses (a seam for in-process tests).
type s3API interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(context.Context, *s3.UploadPartInput, ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(context.Context, *s3.CompleteMultipartUploadInput, ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObjects(context.Context, *s3.DeleteObjectsInput, ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error)
	HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// S3 is a Store over an S3 bucket (or an S3-compatible server that supports
// conditional writes: If-None-Match on PutObject and CompleteMultipartUpload).
//
// Create uploads bodies up to PartSize with one PutObject, larger ones as a
// multipart upload; both carry If-None-Match: *, so S3 itself refuses to
// overwrite and a multipart upload becomes visible only when it completes.
// Failed multipart uploads are aborted; a bucket lifecycle rule that aborts
// incomplete multipart uploads after a day collects any a crash leaves behind.
type S3 struct {
	api    s3API
	direct *directPut // single-part PUTs without the SDK's middleware (s3put.go); nil: through api
	cfg    S3Config
	bufs   sync.Pool // *[]byte of PartSize, shared by all Creates
	small  sync.Pool // *[]byte of smallBody, shared by all Creates
}

// smallBody is the size of the buffer Create reads a body into first: a body that
// fits is PUT from it, and only a larger one moves to a part buffer. The sink's
// small files (15 KB for 100 rows) then never take a part buffer: sync.Pool drops
// its buffers at garbage collections, and with thousands of open hour partitions
// (frequent collections under the memory limit) a new 16 MiB part buffer, zeroed,
// was allocated every few hundred files (2–3 % of the sink's CPU in the
// hour-partition run of docs/performance.md, "Hour against day partitions").
const smallBody = 256 << 10

var _ Store = (*S3)(nil)

// NewS3 returns a store for cfg.Bucket. It does not contact S3 (see Ping).
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ac, err := loadAWSConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(ac, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		// Ranged GETs carry no checksum to validate; without this the SDK logs so
		// on every read (to stderr, through its default logger).
		o.DisableLogOutputChecksumValidationSkipped = true
		// Set here, not in LoadDefaultConfig, which refuses a plain *http.Client
		// when AWS_CA_BUNDLE is set.
		o.HTTPClient = ac.HTTPClient
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	st := newS3(client, cfg)
	st.direct = newDirectPut(ctx, ac, cfg)
	return st, nil
}

// AWSConfig is the AWS config of cfg's S3 client, for another S3 client to get
// the same bounds (iceberg-go's own file IO, see lake/icetable): the region (else
// the default chain, else us-east-1 when Endpoint is set), static credentials or
// the default chain, MaxAttempts attempts per request, each bounded by
// RequestTimeout as NewS3's are (or HTTPClient, if set), OnRetry called for each
// retried attempt and OnStall for each abandoned one. Bucket, Prefix and the
// upload settings are not used; the endpoint and path style are options of an S3
// client, not of its config: the caller sets them.
func AWSConfig(ctx context.Context, cfg S3Config) (aws.Config, error) {
	cfg, err := cfg.clientDefaults()
	if err != nil {
		return aws.Config{}, err
	}
	return loadAWSConfig(ctx, cfg)
}

// loadAWSConfig loads the AWS config of cfg's S3 client; cfg has its defaults.
func loadAWSConfig(ctx context.Context, cfg S3Config) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRetryMaxAttempts(cfg.MaxAttempts)}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3 store: load aws config: %w", err)
	}
	if ac.Region == "" {
		if cfg.Endpoint == "" {
			return aws.Config{}, errors.New("s3 store: no region: set the region in the config or AWS_REGION")
		}
		ac.Region = defaultRegion
	}
	if cfg.HTTPClient != nil {
		ac.HTTPClient = cfg.HTTPClient
	} else {
		ac.HTTPClient = timeoutClient(ac.HTTPClient, cfg.RequestTimeout, cfg.OnStall)
	}
	if cfg.OnRetry != nil {
		on := cfg.OnRetry
		ac.APIOptions = append(ac.APIOptions, func(st *middleware.Stack) error {
			// Stacks are built per call, so each call counts its own attempts.
			return st.Finalize.Insert(&retryObserver{on: on}, "Retry", middleware.After)
		})
	}
	return ac, nil
}

// newS3 returns a store over api; cfg has its defaults.
func newS3(api s3API, cfg S3Config) *S3 {
	s := &S3{api: api, cfg: cfg}
	s.bufs.New = func() any { b := make([]byte, cfg.PartSize); return &b }
	s.small.New = func() any { b := make([]byte, smallBody); return &b }
	return s
}

// retryObserver sits after the SDK's retry loop, so it sees every attempt of a call.
type retryObserver struct {
	on       func(op string)
	attempts int
}

func (*retryObserver) ID() string { return "lakesink.RetryObserver" }

func (r *retryObserver) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	r.attempts++
	if r.attempts > 1 {
		r.on(awsmiddleware.GetOperationName(ctx))
	}
	return next.HandleFinalize(ctx, in)
}

func (s *S3) key(k string) string { return s.cfg.Prefix + k }

// URI implements Store: "s3://bucket/prefix/key".
func (s *S3) URI(key string) string { return "s3://" + s.cfg.Bucket + "/" + s.key(key) }

func (s *S3) sse() (types.ServerSideEncryption, *string) {
	if s.cfg.KMSKeyID != "" {
		return types.ServerSideEncryption(s.cfg.SSE), aws.String(s.cfg.KMSKeyID)
	}
	return types.ServerSideEncryption(s.cfg.SSE), nil
}

// errKind is what an S3 error means to the store.
type errKind int

const (
	kindOther    errKind = iota
	kindExists           // 412 PreconditionFailed
	kindConflict         // 409 ConditionalRequestConflict
	kindNotFound         // NoSuchKey, or a 404 without a code that says otherwise
)

// classify maps an S3 error by its code (smithy.APIError), or by its HTTP status
// (*smithyhttp.ResponseError) when it has no code. The SDK derives a code from the
// status when a response has no body (HEAD): a 404 then reads "NotFound".
func classify(err error) errKind {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" {
		switch ae.ErrorCode() {
		case "PreconditionFailed":
			return kindExists
		case "ConditionalRequestConflict":
			return kindConflict
		case "NoSuchKey", "NotFound":
			return kindNotFound
		}
		return kindOther // NoSuchBucket, NoSuchUpload, AccessDenied, ...
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusPreconditionFailed:
			return kindExists
		case http.StatusConflict:
			return kindConflict
		case http.StatusNotFound:
			return kindNotFound
		}
	}
	return kindOther
}

// readErr wraps an error of a read, stat or delete: only "not found" is mapped.
func (s *S3) readErr(op, key string, err error) error {
	if classify(err) == kindNotFound {
		return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrNotFound)
	}
	return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), err)
}

// createErr wraps an error of a conditional write. A 409 conflict means another
// request on the key was in flight; S3 asks for a retry. If the key now exists the
// answer is ErrExists, otherwise the error stays an ordinary (retryable) one.
func (s *S3) createErr(ctx context.Context, op, key string, err error) error {
	switch classify(err) {
	case kindExists:
		return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrExists)
	case kindConflict:
		if _, serr := s.Stat(ctx, key); serr == nil {
			return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), ErrExists)
		}
		return fmt.Errorf("s3 %s %s: conflicting concurrent request, retry: %w", op, s.URI(key), err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, s.URI(key), err)
}

func (s *S3) getBuf() *[]byte  { return s.bufs.Get().(*[]byte) }
func (s *S3) putBuf(b *[]byte) { s.bufs.Put(b) }

// readPart fills buf from r and returns how much it read; fewer than len(buf)
// bytes means r ended.
func readPart(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

// Create implements Store: one conditional PutObject for bodies up to PartSize,
// otherwise a multipart upload whose completion is conditional.
func (s *S3) Create(ctx context.Context, key string, body io.Reader) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	small := s.small.Get().(*[]byte)
	n, err := readPart(body, *small)
	if err != nil {
		s.small.Put(small)
		return fmt.Errorf("s3 put %s: read body: %w", s.URI(key), err)
	}
	if n < len(*small) {
		defer s.small.Put(small)
		return s.put(ctx, key, (*small)[:n])
	}
	first := s.getBuf()
	copy(*first, *small)
	s.small.Put(small)
	m, err := readPart(body, (*first)[n:])
	n += m
	if err != nil {
		s.putBuf(first)
		return fmt.Errorf("s3 put %s: read body: %w", s.URI(key), err)
	}
	if n < len(*first) {
		defer s.putBuf(first)
		return s.put(ctx, key, (*first)[:n])
	}
	// A full first part: read the second to know whether a multipart upload is
	// needed (a body of exactly PartSize bytes is still a single PutObject).
	second := s.getBuf()
	m, err = readPart(body, *second)
	if err != nil || m == 0 {
		defer s.putBuf(first)
		s.putBuf(second)
		if err != nil {
			return fmt.Errorf("s3 put %s: read body: %w", s.URI(key), err)
		}
		return s.put(ctx, key, *first)
	}
	return s.multipart(ctx, key, body, first, second, m)
}

func (s *S3) put(ctx context.Context, key string, data []byte) error {
	if s.direct != nil {
		sse, kms := s.sse()
		if err := s.direct.put(ctx, s.key(key), data, string(sse), kms); err != nil {
			return s.createErr(ctx, "put", key, err)
		}
		return nil
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(s.key(key)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		IfNoneMatch:   aws.String("*"),
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
	if _, err := s.api.PutObject(ctx, in); err != nil {
		return s.createErr(ctx, "put", key, err)
	}
	return nil
}

// multipart uploads first, second (the first secondLen bytes of it) and the rest
// of body as parts, at most Concurrency at a time, and completes the upload with
// If-None-Match: *. The reader fills one buffer while Concurrency are uploading,
// so a Create holds at most Concurrency+1 buffers. Any failure aborts the upload.
func (s *S3) multipart(ctx context.Context, key string, body io.Reader, first, second *[]byte, secondLen int) (err error) {
	uri := s.URI(key)
	cin := &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(s.key(key)),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	}
	cin.ServerSideEncryption, cin.SSEKMSKeyId = s.sse()
	out, err := s.api.CreateMultipartUpload(ctx, cin)
	if err != nil {
		s.putBuf(first)
		s.putBuf(second)
		return s.createErr(ctx, "create multipart upload", key, err)
	}
	id := out.UploadId
	defer func() {
		if err != nil {
			err = errors.Join(err, s.abort(ctx, key, id))
		}
	}()

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		parts   []types.CompletedPart
		partErr error
		slots   = make(chan struct{}, s.cfg.Concurrency)
	)
	// upload starts sending buf[:n] as part num, or returns false (and the buffer)
	// when the upload is failing.
	upload := func(num int32, buf *[]byte, n int) bool {
		if pctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-pctx.Done():
			}
		}
		if pctx.Err() != nil {
			s.putBuf(buf)
			return false
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer s.putBuf(buf)
			res, err := s.api.UploadPart(pctx, &s3.UploadPartInput{
				Bucket:            aws.String(s.cfg.Bucket),
				Key:               aws.String(s.key(key)),
				UploadId:          id,
				PartNumber:        aws.Int32(num),
				Body:              bytes.NewReader((*buf)[:n]),
				ContentLength:     aws.Int64(int64(n)),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if partErr == nil {
					partErr = fmt.Errorf("s3 upload part %d of %s: %w", num, uri, err)
					cancel(partErr)
				}
				return
			}
			parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: res.ETag, ChecksumCRC32: res.ChecksumCRC32})
		})
		return true
	}

	var readErr error
	buf, n, next := first, len(*first), second
	for num := int32(1); ; num++ {
		if num > maxParts {
			s.putBuf(buf)
			readErr = fmt.Errorf("s3 put %s: body is larger than %d parts of %d bytes", uri, maxParts, s.cfg.PartSize)
			break
		}
		last := n < int(s.cfg.PartSize)
		if !upload(num, buf, n) || last {
			break
		}
		if next != nil {
			buf, n, next = next, secondLen, nil
			continue
		}
		buf = s.getBuf()
		n, readErr = readPart(body, *buf)
		if readErr != nil || n == 0 {
			s.putBuf(buf)
			if readErr != nil {
				readErr = fmt.Errorf("s3 put %s: read body: %w", uri, readErr)
			}
			break
		}
	}
	if next != nil {
		s.putBuf(next)
	}
	if readErr != nil {
		cancel(readErr)
	}
	wg.Wait()
	switch {
	case readErr != nil:
		return readErr
	case partErr != nil:
		return partErr
	case pctx.Err() != nil:
		return fmt.Errorf("s3 put %s: %w", uri, context.Cause(pctx))
	}

	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return cmp.Compare(*a.PartNumber, *b.PartNumber) })
	_, err = s.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.cfg.Bucket),
		Key:             aws.String(s.key(key)),
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
	})
	if err != nil {
		return s.createErr(ctx, "complete multipart upload", key, err)
	}
	return nil
}

// abort aborts a multipart upload with a context of its own, so it runs even
// when ctx was cancelled.
func (s *S3) abort(ctx context.Context, key string, id *string) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, err := s.api.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(s.cfg.Bucket),
		Key:      aws.String(s.key(key)),
		UploadId: id,
	})
	var ae smithy.APIError
	if err == nil || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload") {
		return nil
	}
	return fmt.Errorf("s3 abort multipart upload %s (upload id %s): %w", s.URI(key), aws.ToString(id), err)
}

// Open implements Store: a HeadObject for the size and ETag; ReadAt sends ranged
// GETs, Read one streaming GET opened on first use. All GETs carry If-Match with
// the ETag, so a reader never mixes bytes of two objects.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("s3 open: %w", err)
	}
	out, err := s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return nil, s.readErr("open", key, err)
	}
	return &s3Object{s: s, ctx: ctx, key: key, size: aws.ToInt64(out.ContentLength), etag: out.ETag}, nil
}

// Get implements Store with one GET of the whole object.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return nil, s.readErr("get", key, err)
	}
	defer out.Body.Close()
	n := aws.ToInt64(out.ContentLength)
	if n < 0 {
		n = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", s.URI(key), err)
	}
	if out.ContentLength != nil && int64(buf.Len()) != n {
		return nil, fmt.Errorf("s3 get %s: got %d bytes of %d", s.URI(key), buf.Len(), n)
	}
	return buf.Bytes(), nil
}

type s3Object struct {
	s      *S3
	ctx    context.Context
	key    string
	size   int64
	etag   *string
	closed atomic.Bool

	mu   sync.Mutex // guards the sequential reader
	body io.ReadCloser
	pos  int64
}

func (o *s3Object) Size() int64 { return o.size }

// get opens bytes [start, end] of the object.
func (o *s3Object) get(start, end int64) (io.ReadCloser, error) {
	out, err := o.s.api.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket:  aws.String(o.s.cfg.Bucket),
		Key:     aws.String(o.s.key(o.key)),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", start, end)),
		IfMatch: o.etag,
	})
	if err != nil {
		if classify(err) == kindExists { // 412: If-Match failed
			return nil, fmt.Errorf("s3 get %s: object changed after it was opened: %w", o.s.URI(o.key), err)
		}
		return nil, o.s.readErr("get", o.key, err)
	}
	// A server that ignores Range would send other bytes than asked for.
	if want := fmt.Sprintf("bytes %d-%d/", start, end); !strings.HasPrefix(aws.ToString(out.ContentRange), want) {
		_ = out.Body.Close()
		return nil, fmt.Errorf("s3 get %s: asked for bytes %d-%d, got content range %q", o.s.URI(o.key), start, end, aws.ToString(out.ContentRange))
	}
	return out.Body, nil
}

// ReadAt implements io.ReaderAt with one ranged GET (more if a response body
// breaks off).
func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if o.closed.Load() {
		return 0, fmt.Errorf("s3 read %s: %w", o.s.URI(o.key), fs.ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("s3 read %s: negative offset %d", o.s.URI(o.key), off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := int(min(int64(len(p)), o.size-off))
	n := 0
	for attempt := 1; n < want; attempt++ {
		rc, err := o.get(off+int64(n), off+int64(want)-1)
		if err != nil {
			return n, err
		}
		m, err := io.ReadFull(rc, p[n:want])
		if err == nil {
			// Reach the body's end, so that the connection goes back to the
			// pool instead of being closed (a body closed early is not reused).
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1))
		}
		_ = rc.Close()
		n += m
		if err != nil && (attempt == readAttempts || o.ctx.Err() != nil) {
			return n, fmt.Errorf("s3 read %s at %d: %w", o.s.URI(o.key), off+int64(n), err)
		}
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read implements io.Reader with one streaming GET from the current position,
// reopened where it left off if the response body breaks off.
func (o *s3Object) Read(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed.Load() {
		return 0, fmt.Errorf("s3 read %s: %w", o.s.URI(o.key), fs.ErrClosed)
	}
	if o.pos >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for attempt := 1; ; attempt++ {
		if o.body == nil {
			rc, err := o.get(o.pos, o.size-1)
			if err != nil {
				return 0, err
			}
			o.body = rc
		}
		n, err := o.body.Read(p)
		o.pos += int64(n)
		if err == nil {
			return n, nil
		}
		_ = o.body.Close()
		o.body = nil
		if o.pos >= o.size { // the end, whatever the error
			return n, nil
		}
		if n > 0 {
			return n, nil // progress; the next call reopens
		}
		if attempt == readAttempts || o.ctx.Err() != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("s3 read %s at %d: %w", o.s.URI(o.key), o.pos, err)
		}
	}
}

// Close releases the streaming GET, if any.
func (o *s3Object) Close() error {
	o.closed.Store(true)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}

// Stat implements Store with a HeadObject.
//
// A HEAD response has no body, so S3 cannot say whether a 404 is about the key or
// the bucket: with a missing bucket, Stat reports IsNotFound. Ping tells the two
// apart.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("s3 stat: %w", err)
	}
	out, err := s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return ObjectInfo{}, s.readErr("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), Modified: aws.ToTime(out.LastModified)}, nil
}

// List implements Store with ListObjectsV2 pages (S3 returns keys in byte
// order). Keys are returned without the store's Prefix; "folder" marker objects
// (keys ending in "/") are skipped.
func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	p := s3.NewListObjectsV2Paginator(s.api, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(s.key(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 list %s: %w", s.URI(prefix), err)
		}
		for _, o := range page.Contents {
			k, ok := strings.CutPrefix(aws.ToString(o.Key), s.cfg.Prefix)
			if !ok || k == "" || strings.HasSuffix(k, "/") {
				continue
			}
			if err := fn(ObjectInfo{Key: k, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Store with DeleteObjects calls of up to 1000 keys (quiet
// mode: only failures come back). Failures of single keys are joined; a failed
// call stops the deletion.
func (s *S3) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("s3 delete: %w", err)
		}
	}
	var errs []error
	for batch := range slices.Chunk(keys, deleteBatch) {
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			objs[i] = types.ObjectIdentifier{Key: aws.String(s.key(k))}
		}
		out, err := s.api.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.cfg.Bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("s3 delete %s and %d more: %w", s.URI(batch[0]), len(batch)-1, err))
			return errors.Join(errs...)
		}
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, fmt.Errorf("s3 delete s3://%s/%s: %s: %s",
				s.cfg.Bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
	}
	return errors.Join(errs...)
}

// Ping implements Store with a HeadBucket.
func (s *S3) Ping(ctx context.Context) error {
	if _, err := s.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)}); err != nil {
		return fmt.Errorf("s3 head bucket s3://%s: %w", s.cfg.Bucket, err)
	}
	return nil
}

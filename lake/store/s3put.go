package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	"github.com/aws/smithy-go/encoding/httpbinding"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lakesink/lakesink/internal/wait"
)

// directPut sends a single-part conditional PutObject with net/http and the SDK's
// SigV4 signer, without the SDK's per-request middleware stack. The stack (building
// it per call, endpoint rules, checksum and signing middleware, response
// deserialisation) cost ~0.17 ms of CPU per PUT, as much as the HTTP exchange itself,
// and the sink makes one PUT per file (docs/performance.md, "Per-file cost"). The
// endpoint is resolved once, by the SDK's own resolver, for the bucket; credentials
// come from the SDK's provider chain (cached, refreshed by it).
//
// Integrity is kept: the body's CRC32 goes in x-amz-checksum-crc32, which S3 (and
// versitygw) verify against what they received, rejecting a mismatch (BadDigest);
// the payload itself is not hashed for the signature (UNSIGNED-PAYLOAD, as the SDK
// does over HTTPS), the headers are signed, If-None-Match: * makes the write
// conditional as before.
//
// Against the SDK's path (the standard retryer), the same: the HTTP client and so
// the per-attempt timeouts (S3Config.RequestTimeout: a stalled attempt fails and is
// retried on a new connection), MaxAttempts in all, what is retried (no response
// at all, 5xx, 429, RequestTimeout) and clock skew correction (a signature
// rejected while the server's Date is over 4 min from our signing time is signed
// again at the server's time; later PUTs keep the offset). What differs, and why
// it is safe: the backoff is shorter (jittered, from 20 ms doubling to 20 s, about
// 10 s over 10 attempts, against the SDK's random [0, 2^n) s capped at 20 s, about
// a minute) and there is no retry quota (the SDK's token bucket of 500, 5 a retry
// and 10 a timeout, that stops all of a client's retries after a run of
// failures). Both only change how fast a failing PUT gives up: its error goes to
// the sink's upload loop, which keeps the data and retries the upload with its own
// backoff (200 ms doubling to 30 s) forever, and at most flush.workers PUTs are in
// flight, so a failing S3 sees at most that many retrying requests at once.
type directPut struct {
	hc          aws.HTTPClient
	creds       aws.CredentialsProvider
	signer      *v4.Signer
	base        string // endpoint URI with the bucket (path-style or virtual-hosted), no trailing slash
	name        string // SigV4 signing name
	region      string // SigV4 signing region
	maxAttempts int
	onRetry     func(op string)
	skew        atomic.Int64 // server clock minus ours (ns), learnt from clock-skew rejections; signing time is now+skew
}

// skewThreshold is the clock skew past which a rejected signature is taken for
// a skewed clock (the SDK's, aws/retry: S3 accepts 15 min).
const skewThreshold = 4 * time.Minute

// clockSkewCodes are the error codes a skewed clock may cause (the SDK's list).
var clockSkewCodes = map[string]bool{"InvalidSignatureException": true, "SignatureDoesNotMatch": true,
	"AuthFailure": true, "RequestTimeTooSkewed": true, "AccessDeniedException": true}

// newDirectPut resolves the bucket's endpoint with the SDK's resolver; it returns
// nil (use the SDK) when the endpoint needs more than plain SigV4 (S3 Express,
// multi-region access points) or FIPS/dual-stack endpoints are asked for through
// the environment.
func newDirectPut(ctx context.Context, ac aws.Config, cfg S3Config) *directPut {
	if os.Getenv("AWS_USE_FIPS_ENDPOINT") != "" || os.Getenv("AWS_USE_DUALSTACK_ENDPOINT") != "" ||
		os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != "" || ac.Credentials == nil {
		return nil
	}
	params := s3.EndpointParameters{Bucket: aws.String(cfg.Bucket), Region: aws.String(ac.Region),
		ForcePathStyle: aws.Bool(cfg.PathStyle), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false)}
	if cfg.Endpoint != "" {
		params.Endpoint = aws.String(cfg.Endpoint)
	}
	ep, err := s3.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, params)
	if err != nil {
		return nil
	}
	d := &directPut{creds: ac.Credentials, signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		name: "s3", region: ac.Region, maxAttempts: cfg.MaxAttempts, onRetry: cfg.OnRetry, hc: ac.HTTPClient}
	if d.hc == nil {
		return nil
	}
	if opts, ok := smithyauth.GetAuthOptions(&ep.Properties); ok {
		sigv4 := false
		for _, o := range opts {
			if o.SchemeID == "sigv4" || o.SchemeID == smithyauth.SchemeIDSigV4 { // the endpoint rules name it "sigv4"
				sigv4 = true
				if n, ok := smithyhttp.GetSigV4SigningName(&o.SignerProperties); ok {
					d.name = n
				}
				if r, ok := smithyhttp.GetSigV4SigningRegion(&o.SignerProperties); ok {
					d.region = r
				}
				break
			}
		}
		if !sigv4 {
			return nil
		}
	}
	u := ep.URI
	if u.RawPath == "" {
		u.RawPath = httpbinding.EscapePath(u.Path, false)
	}
	d.base = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.RawPath, "/")
	return d
}

// put writes data to the object key (the full key, prefix included).
func (d *directPut) put(ctx context.Context, key string, data []byte, sse string, kmsKey *string) error {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.ChecksumIEEE(data))
	crc := base64.StdEncoding.EncodeToString(sum[:])
	url := d.base + "/" + httpbinding.EscapePath(key, false)
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := d.once(ctx, url, data, crc, sse, kmsKey)
		if err == nil || attempt >= d.maxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
		if d.onRetry != nil {
			d.onRetry("PutObject")
		}
		if wait.Sleep(ctx, time.Duration(rand.Int64N(int64(backoff)))+backoff/2) != nil {
			return err
		}
		backoff = min(backoff*2, 20*time.Second)
	}
}

func (d *directPut) once(ctx context.Context, url string, data []byte, crc, sse string, kmsKey *string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(data))
	h := req.Header
	h.Set("If-None-Match", "*")
	h.Set("X-Amz-Checksum-Crc32", crc)
	h.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	if sse != "" {
		h.Set("X-Amz-Server-Side-Encryption", sse)
	}
	if kmsKey != nil {
		h.Set("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id", *kmsKey)
	}
	creds, err := d.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	if creds.SessionToken != "" {
		h.Set("X-Amz-Security-Token", creds.SessionToken)
	}
	skew := time.Duration(d.skew.Load())
	if err := d.signer.SignHTTP(ctx, creds, req, "UNSIGNED-PAYLOAD", d.name, d.region, time.Now().UTC().Add(skew)); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return &netError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	_ = xml.Unmarshal(body, &e)
	if e.Code == "" {
		e.Code = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
	}
	err = &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp},
		Err: &smithy.GenericAPIError{Code: e.Code, Message: e.Message}}
	// Clock skew correction as the SDK does it: a signature rejected while the
	// server's Date is more than skewThreshold from the time we signed at is
	// signed again at the server's time (and so are later PUTs).
	if clockSkewCodes[e.Code] && resp.Header.Get("Age") == "" {
		if date, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			if cand := time.Until(date); (cand - skew).Abs() > skewThreshold {
				d.skew.Store(int64(cand))
				return &clockSkewError{err: err, skew: cand}
			}
		}
	}
	return err
}

// clockSkewError is a signature rejected because our clock is off by skew: retried.
type clockSkewError struct {
	err  error
	skew time.Duration
}

func (e *clockSkewError) Error() string {
	return fmt.Sprintf("clock skew %s (signing again at the server's time): %v", e.skew.Round(time.Second), e.err)
}
func (e *clockSkewError) Unwrap() error { return e.err }

// netError is a request that got no HTTP response (connection refused, reset, timeout).
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// retryable reports whether a PUT that failed with err may be sent again: no
// response at all (a stalled connection included: s3http.go), 5xx, 429
// (throttling), S3's RequestTimeout, or a clock skew just corrected.
func retryable(err error) bool {
	var ce *clockSkewError
	if errors.As(err, &ce) {
		return true
	}
	var ne *netError
	if errors.As(err, &ne) {
		return !errors.Is(err, context.Canceled)
	}
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	code := re.HTTPStatusCode()
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "RequestTimeout" {
		return true
	}
	return code >= 500 || code == http.StatusTooManyRequests
}

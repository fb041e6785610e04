package store

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// captureClient answers every request 200 and keeps the last one.
type captureClient struct{ req *http.Request }

func (c *captureClient) Do(req *http.Request) (*http.Response, error) {
	c.req = req
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
}

// TestPutSignerMatchesSDK checks that the direct PUT's own SigV4 signer gives the
// Authorization header the SDK's v4.Signer gives the same request (with S3's
// DisableURIPathEscaping and an unsigned payload), over endpoints (path-style,
// virtual-hosted, default and other ports), keys that need escaping, session
// tokens, server-side encryption and header values with spaces to normalise.
func TestPutSignerMatchesSDK(t *testing.T) {
	cases := []struct {
		name, endpoint, region, key, token, sse, kms string
		pathStyle                                    bool
		body                                         int
	}{
		{name: "path-style", endpoint: "http://127.0.0.1:19000", region: "us-east-1", key: "raw/events/dt=2026-11-24/hour=13/t.0.42.parquet", pathStyle: true, body: 15280},
		{name: "virtual-hosted AWS", region: "eu-west-1", key: "raw/events/dt=2026-11-24/t.3.0.parquet", body: 100},
		{name: "default port dropped", endpoint: "https://s3.example.com:443", region: "us-west-2", key: "k", pathStyle: true, body: 1},
		{name: "http default port", endpoint: "http://minio.local:80", region: "us-east-1", key: "k", pathStyle: true, body: 1},
		{name: "key to escape", endpoint: "http://127.0.0.1:19000", region: "us-east-1", key: "raw/a b+c~!*'()$&=;:,@[]é%/x y.parquet", pathStyle: true, body: 7},
		{name: "session token and kms", endpoint: "http://127.0.0.1:19000", region: "ap-southeast-2", key: "p/k.parquet",
			token: "FwoGZXIvYXdzEJr//////////wEaDM+token/with+slash==", sse: "aws:kms", kms: "arn:aws:kms:ap-southeast-2:111122223333:key/1234abcd", pathStyle: true, body: 5 << 20},
		{name: "sse-s3", region: "us-east-1", key: "a/b", sse: "AES256", body: 3},
		{name: "spaces to normalise", endpoint: "http://127.0.0.1:19000", region: "us-east-1", key: "k", sse: "aws:kms", kms: "  key  with   spaces ", pathStyle: true, body: 3},
		{name: "empty body", endpoint: "http://127.0.0.1:19000", region: "us-east-1", key: "empty", pathStyle: true, body: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hc := &captureClient{}
			ac := aws.Config{Region: tc.region, HTTPClient: hc,
				Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", tc.token)}
			d := newDirectPut(context.Background(), ac, S3Config{Bucket: "lake-bucket", Endpoint: tc.endpoint, PathStyle: tc.pathStyle, MaxAttempts: 1})
			if d == nil {
				t.Fatal("no direct PUT for this endpoint")
			}
			var kms *string
			if tc.kms != "" {
				kms = &tc.kms
			}
			if err := d.put(context.Background(), tc.key, make([]byte, tc.body), tc.sse, kms); err != nil {
				t.Fatal(err)
			}
			got := hc.req
			at, err := time.Parse(amzTimeFormat, got.Header.Get("X-Amz-Date"))
			if err != nil {
				t.Fatalf("X-Amz-Date: %v", err)
			}
			// The SDK signs a copy without our signature, at the same time.
			want := got.Clone(context.Background())
			want.Header.Del("Authorization")
			want.Header.Del("X-Amz-Date")
			creds, _ := ac.Credentials.Retrieve(context.Background())
			sdk := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
			if err := sdk.SignHTTP(context.Background(), creds, want, "UNSIGNED-PAYLOAD", "s3", tc.region, at); err != nil {
				t.Fatal(err)
			}
			if g, w := got.Header.Get("Authorization"), want.Header.Get("Authorization"); g != w {
				t.Fatalf("Authorization\n got %s\nwant %s", g, w)
			}
			if got.Host != want.Host && want.Host != "" {
				t.Fatalf("Host %q, the SDK's %q", got.Host, want.Host)
			}
			if !strings.Contains(got.Header.Get("Authorization"), "x-amz-checksum-crc32") ||
				!strings.Contains(got.Header.Get("Authorization"), "if-none-match") {
				t.Fatalf("checksum and condition not signed: %s", got.Header.Get("Authorization"))
			}
		})
	}
}

// BenchmarkPutSign is the CPU of signing one direct PUT: the SDK's v4.Signer
// against putSigner.
func BenchmarkPutSign(b *testing.B) {
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	const url = "http://127.0.0.1:19000/lakesink-test/raw/events/dt=2026-11-24/hour=13/events.0.123456.parquet"
	b.Run("sdk", func(b *testing.B) {
		s := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
		b.ReportAllocs()
		for range b.N {
			req, _ := http.NewRequest(http.MethodPut, url, http.NoBody)
			req.ContentLength = 15280
			req.Header.Set("If-None-Match", "*")
			req.Header.Set("X-Amz-Checksum-Crc32", "AAAAAA==")
			req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			if err := s.SignHTTP(context.Background(), creds, req, "UNSIGNED-PAYLOAD", "s3", "us-east-1", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		s := putSigner{service: "s3", region: "us-east-1"}
		b.ReportAllocs()
		for range b.N {
			req, _ := http.NewRequest(http.MethodPut, url, http.NoBody)
			h := putHeaders{host: req.URL.Host, contentLength: 15280, crc32: "AAAAAA=="}
			date, auth := s.sign(creds, req.URL.EscapedPath(), &h, time.Now())
			req.Header["X-Amz-Date"], req.Header["Authorization"] = []string{date}, []string{auth}
		}
	})
}

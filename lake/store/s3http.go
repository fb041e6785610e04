package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// DefaultRequestTimeout is S3Config.RequestTimeout when it is zero.
const DefaultRequestTimeout = 30 * time.Second

// writeBufferSize is the HTTP transport's write buffer per connection. A
// connection keeps its buffer while it is pooled: with the SDK's 10 idle
// connections per host, 640 KiB at most, within the heap the sink's budget counts
// besides buffers (runtimeMemory, sink/memory.go).
const writeBufferSize = 64 << 10

// tcpKeepAlive is the interval of TCP keepalive probes on S3 connections.
const tcpKeepAlive = 15 * time.Second

// ErrStalled is wrapped by the error of an S3 request whose connection moved no
// byte for the request timeout: the attempt is abandoned (and retried by the SDK's
// retryer, or the direct PUT's).
var ErrStalled = errors.New("s3 connection stalled")

// timeoutClient returns the HTTP client for S3 requests: base (the SDK's
// buildable client from the loaded config, which may carry AWS_CA_BUNDLE; a new
// one if it is something else) with per-attempt bounds of timeout each:
//
//   - connecting (dial) and the TLS handshake;
//   - inactivity: every read and write on the connection must move a byte within
//     timeout of the last one, so an upload or download that progresses is never
//     cut however long it takes, while a connection that goes silent (a black
//     hole: no reset ever comes) fails after timeout instead of the kernel's
//     retransmission timeout (~15 min). This covers writing the body, waiting for
//     the response headers, and reading the response body of a GET;
//   - the response headers, at most 2 × timeout after the request is written
//     (ResponseHeaderTimeout, a backstop for HTTP/2, where one stream can stall on
//     a connection that moves bytes for others);
//
// plus TCP keepalive every 15 s. Idle pooled connections are closed after
// timeout/2, before their inactivity deadline can fail a request that reuses one.
// The client is frozen: the S3 client's own defaults (which would rebuild the
// dialer) no longer apply to it.
func timeoutClient(base aws.HTTPClient, timeout time.Duration, onStall func()) aws.HTTPClient {
	b, ok := base.(*awshttp.BuildableClient)
	if !ok {
		b = awshttp.NewBuildableClient()
	}
	b = b.WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = timeout
		d.KeepAlive = tcpKeepAlive
	}).WithTransportOptions(func(tr *http.Transport) {
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, timeout: timeout, onStall: onStall}, nil
		}
		tr.TLSHandshakeTimeout = min(timeout, awshttp.DefaultHTTPTransportTLSHandleshakeTimeout)
		// A backstop only: the inactivity deadline already bounds the wait for the
		// headers on HTTP/1.1 (S3's protocol); this also bounds one HTTP/2 stream.
		tr.ResponseHeaderTimeout = 2 * timeout
		tr.IdleConnTimeout = min(timeout/2, awshttp.DefaultHTTPTransportIdleConnTimeout)
		// A request's headers and a small body leave in one write: with the
		// default 4 KiB buffer, a 15 KB PUT (a small raw file) took five
		// write syscalls.
		tr.WriteBufferSize = writeBufferSize
	})
	return b.Freeze()
}

// idleConn fails a read or write that moves no byte within timeout of the start
// of the call or of the last write. A write extends the read deadline too: the
// transport's reader waits on the connection from the moment it is pooled, and
// the deadline counts from the last activity, not from then.
type idleConn struct {
	net.Conn
	timeout time.Duration
	onStall func()
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	return n, c.stalled(err)
}

func (c *idleConn) Write(p []byte) (int, error) {
	d := time.Now().Add(c.timeout)
	if err := c.Conn.SetWriteDeadline(d); err != nil {
		return 0, err
	}
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	return n, c.stalled(err)
}

// stalled names a deadline error (keeping it a net timeout, which the retryers
// retry) and counts it.
func (c *idleConn) stalled(err error) error {
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if c.onStall != nil {
		c.onStall()
	}
	return &stallError{timeout: c.timeout, err: err}
}

// stallError is an I/O that moved no byte within the request timeout.
type stallError struct {
	timeout time.Duration
	err     error
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%v: no byte moved in %s (s3 request timeout)", ErrStalled, e.timeout)
}
func (e *stallError) Unwrap() []error { return []error{ErrStalled, e.err} }
func (e *stallError) Timeout() bool   { return true }
func (e *stallError) Temporary() bool { return true }

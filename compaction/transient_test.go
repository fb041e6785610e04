package compaction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func httpErr(code int) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("api error")}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), true},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), true},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"net error", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, true},
		{"503", fmt.Errorf("blob: %w", httpErr(503)), true},
		{"500", httpErr(500), true},
		{"429", httpErr(429), true},
		{"404", httpErr(404), false},
		{"403", httpErr(403), false},
		{"bad input", fmt.Errorf("x: %w: %w", ErrBadInput, errors.New("not parquet")), false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestReadFailureKeepsBothErrors: a Parquet error over a failed read is the
// store's (not ErrBadInput) and keeps both; without a failed read it is the
// file's, ErrBadInput with its cause.
func TestReadFailureKeepsBothErrors(t *testing.T) {
	parse, ioErr := errors.New("parquet: bad footer"), httpErr(503)
	tr := &trackedReader{err: ioErr}
	err := readFailure("s3://b/k", tr, parse)
	if errors.Is(err, ErrBadInput) || !errors.Is(err, parse) || !Transient(err) {
		t.Errorf("I/O failure: %v: want both errors, transient, not ErrBadInput", err)
	}
	err = readFailure("s3://b/k", &trackedReader{}, parse)
	if !errors.Is(err, ErrBadInput) || !errors.Is(err, parse) || Transient(err) {
		t.Errorf("bad file: %v: want ErrBadInput and the cause", err)
	}
	if err := readFailure("s3://b/k", nil, parse); !errors.Is(err, ErrBadInput) {
		t.Errorf("in-memory file: %v: want ErrBadInput", err)
	}
}

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Swapper is a store that can replace a small object only while it is unchanged:
// a compare-and-swap on an opaque version (S3: the ETag, sent as If-Match, or
// If-None-Match: * to create). The lake's objects are written once (Create);
// Swap is for the few small records that must be updated in place, such as the
// sink's watermarks.
type Swapper interface {
	// GetVersion reads a whole small object and its version. IsNotFound(err)
	// when the object does not exist.
	GetVersion(ctx context.Context, key string) ([]byte, string, error)
	// Swap writes body under key if the object's version is still version, or,
	// with version "", if key does not exist; it returns the new version. When
	// the condition fails nothing is written and IsChanged(err) is true: read
	// again and retry. IsChanged can also mean that a retried request found the
	// object this very call wrote (its first response was lost), so callers
	// write values that are safe to merge again.
	Swap(ctx context.Context, key string, body []byte, version string) (string, error)
}

// ErrChanged means a Swap found the object changed (or created, or deleted)
// since the version it was given.
var ErrChanged = errors.New("object changed since it was read")

// IsChanged reports whether err means a Swap lost a race.
func IsChanged(err error) bool { return errors.Is(err, ErrChanged) }

var _ Swapper = (*S3)(nil)

// GetVersion implements Swapper with one GET; the version is the ETag.
func (s *S3) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	if err := checkKey(key); err != nil {
		return nil, "", fmt.Errorf("s3 get: %w", err)
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		return nil, "", s.readErr("get", key, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, "", fmt.Errorf("s3 get %s: %w", s.URI(key), err)
	}
	if out.ContentLength != nil && int64(buf.Len()) != *out.ContentLength {
		return nil, "", fmt.Errorf("s3 get %s: got %d bytes of %d", s.URI(key), buf.Len(), *out.ContentLength)
	}
	if aws.ToString(out.ETag) == "" {
		return nil, "", fmt.Errorf("s3 get %s: the response has no ETag", s.URI(key))
	}
	return buf.Bytes(), aws.ToString(out.ETag), nil
}

// Swap implements Swapper with one PutObject carrying If-Match (or
// If-None-Match: * when version is ""). S3 answers 412 when the condition
// fails, 409 when a concurrent conditional request on the key won, and 404
// when If-Match names a deleted object: all three are ErrChanged.
func (s *S3) Swap(ctx context.Context, key string, body []byte, version string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", fmt.Errorf("s3 swap: %w", err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(s.key(key)),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	}
	if version == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(version)
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse()
	out, err := s.api.PutObject(ctx, in)
	if err != nil {
		switch classify(err) {
		case kindExists, kindConflict, kindNotFound:
			return "", fmt.Errorf("s3 swap %s: %w (%w)", s.URI(key), ErrChanged, err)
		}
		return "", fmt.Errorf("s3 swap %s: %w", s.URI(key), err)
	}
	if aws.ToString(out.ETag) == "" {
		return "", fmt.Errorf("s3 swap %s: the response has no ETag", s.URI(key))
	}
	return aws.ToString(out.ETag), nil
}

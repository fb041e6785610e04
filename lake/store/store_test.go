package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/lake/store/storetest"
)

func TestLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, 5<<20)
}

func TestLocalRejectsEscapingKeys(t *testing.T) {
	s, _ := store.NewLocal(t.TempDir())
	for _, k := range []string{"../x", "/abs", "a/../../b", "a//b", ""} {
		if err := s.Create(context.Background(), k, strings.NewReader("x")); err == nil || store.IsExists(err) {
			t.Errorf("key %q accepted (%v)", k, err)
		}
	}
}

func newS3(t *testing.T, cfg testbed.S3Config, secret string) (*store.S3, error) {
	return store.NewS3(context.Background(), store.S3Config{Bucket: cfg.Bucket, Prefix: testbed.UniqueName(t, "store") + "/",
		Region: cfg.Region, Endpoint: cfg.Endpoint, PathStyle: true, AccessKeyID: cfg.AccessKey, SecretAccessKey: secret,
		PartSize: 5 << 20, MaxAttempts: 2})
}

func TestS3(t *testing.T) {
	cfg := testbed.S3(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := newS3(t, cfg, cfg.SecretKey)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			var keys []string
			_ = s.List(context.Background(), "", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
			_ = s.Delete(context.Background(), keys...)
		})
		return s
	}, 5<<20)
}

func TestS3WrongCredentials(t *testing.T) {
	cfg := testbed.S3(t)
	s, err := newS3(t, cfg, "wrong-secret")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Create(context.Background(), "x", strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "s3 put s3://"+cfg.Bucket+"/") {
		t.Fatalf("create with a wrong secret: %v", err)
	}
}

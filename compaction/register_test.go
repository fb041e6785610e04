package compaction

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestInOrderOverlapsCalls: the outputs of a batch are registered several at
// a time (iceberg-go reads each one's footer back from S3: with S3's latency,
// one at a time made a commit wait ~30 ms per output), their data files come
// back in the outputs' order, and the error is the first output's that failed.
func TestInOrderOverlapsCalls(t *testing.T) {
	const n = 6
	var inFlight, peak atomic.Int64
	both := make(chan struct{})
	var once atomic.Bool
	got, err := inOrder(context.Background(), n, 4, func(_ context.Context, i int) (string, error) {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		if now >= 2 && once.CompareAndSwap(false, true) {
			close(both)
		}
		select {
		case <-both:
		case <-time.After(10 * time.Second):
			return "", fmt.Errorf("output %d: no other registered while it was", i)
		}
		return fmt.Sprint("file-", i), nil
	})
	if err != nil {
		t.Fatalf("registered one at a time: %v", err)
	}
	for i, s := range got {
		if s != fmt.Sprint("file-", i) {
			t.Fatalf("data files %v, want them in the outputs' order", got)
		}
	}
	if p := peak.Load(); p < 2 || p > 4 {
		t.Fatalf("%d registered at once at most, want 2 to 4 (the limit)", p)
	}

	boom := errors.New("boom")
	_, err = inOrder(context.Background(), n, 4, func(_ context.Context, i int) (string, error) {
		if i == 2 || i == 4 {
			return "", fmt.Errorf("output %d: %w", i, boom)
		}
		return "", nil
	})
	if err == nil || err.Error() != "output 2: boom" || !errors.Is(err, boom) {
		t.Fatalf("error %v, want the first failed output's (output 2: boom)", err)
	}
}

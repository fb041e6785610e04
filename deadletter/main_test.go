package deadletter_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leaves a goroutine running: the
// package starts goroutines (workers, clients) that must all end with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

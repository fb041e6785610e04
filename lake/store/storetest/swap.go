package storetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/lakesink/lakesink/lake/store"
)

// RunSwap runs the compare-and-swap conformance tests against stores from newStore.
func RunSwap(t *testing.T, newStore func(t *testing.T) store.Swapper) {
	t.Run("CreateReplaceRefuse", func(t *testing.T) { testSwap(t, newStore(t)) })
	t.Run("RacingIncrements", func(t *testing.T) { testSwapRace(t, newStore(t)) })
}

func testSwap(t *testing.T, s store.Swapper) {
	ctx := context.Background()
	if _, _, err := s.GetVersion(ctx, "wm/a.json"); !store.IsNotFound(err) {
		t.Fatalf("GetVersion of a missing key: %v, want not found", err)
	}
	v1, err := s.Swap(ctx, "wm/a.json", []byte("one"), "")
	if err != nil {
		t.Fatalf("create with version \"\": %v", err)
	}
	if _, err := s.Swap(ctx, "wm/a.json", []byte("again"), ""); !store.IsChanged(err) {
		t.Fatalf("create over an existing key: %v, want changed", err)
	}
	b, v, err := s.GetVersion(ctx, "wm/a.json")
	if err != nil || string(b) != "one" || v != v1 {
		t.Fatalf("GetVersion = %q, %q, %v; want one, %q", b, v, err, v1)
	}
	v2, err := s.Swap(ctx, "wm/a.json", []byte("two"), v1)
	if err != nil {
		t.Fatalf("swap with the current version: %v", err)
	}
	if v2 == v1 {
		t.Fatalf("version did not change: %q", v2)
	}
	if _, err := s.Swap(ctx, "wm/a.json", []byte("stale"), v1); !store.IsChanged(err) {
		t.Fatalf("swap with a stale version: %v, want changed", err)
	}
	if b, v, err := s.GetVersion(ctx, "wm/a.json"); err != nil || string(b) != "two" || v != v2 {
		t.Fatalf("after a refused swap: %q, %q, %v; want two, %q", b, v, err, v2)
	}
}

// testSwapRace has 8 writers add 1 to a counter 5 times each through
// read-modify-swap loops: the counter must end at 40 (no update lost), and
// some swaps must have been refused (the race happened).
func testSwapRace(t *testing.T, s store.Swapper) {
	ctx := context.Background()
	const writers, each = 8, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					b, v, err := s.GetVersion(ctx, "wm/n")
					n := 0
					switch {
					case store.IsNotFound(err):
						v = ""
					case err != nil:
						errs <- err
						return
					default:
						if n, err = strconv.Atoi(string(b)); err != nil {
							errs <- err
							return
						}
					}
					_, err = s.Swap(ctx, "wm/n", []byte(strconv.Itoa(n+1)), v)
					if store.IsChanged(err) {
						mu.Lock()
						refused++
						mu.Unlock()
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, _, err := s.GetVersion(ctx, "wm/n")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != fmt.Sprint(writers*each) {
		t.Fatalf("counter = %s after %d increments: updates were lost", got, writers*each)
	}
	if refused == 0 {
		t.Logf("no swap was refused: the writers did not race this time")
	}
}

package deadletter

import (
	"slices"
	"testing"
)

func TestReplayLedger(t *testing.T) {
	l := newLedger(-1, "")
	// Offsets 0..9: even ones replayed, odd ones kept (still failing or filtered).
	for o := int64(0); o < 10; o++ {
		l.judged(o, o%2 == 1)
	}
	if got := l.commitOffset(); got != 1 {
		t.Fatalf("commit offset %d, want 1", got)
	}
	meta := l.metadata()
	r := newLedger(l.commitOffset(), meta)
	if r.frontier != 10 || r.ranges != 5 {
		t.Fatalf("decoded %q: frontier %d ranges %d", meta, r.frontier, r.ranges)
	}
	var pend []int64
	for o := int64(0); o < 12; o++ {
		if !r.done(o) {
			pend = append(pend, o)
		}
	}
	if want := []int64{1, 3, 5, 7, 9, 10, 11}; !slices.Equal(pend, want) {
		t.Fatalf("not done %v, want %v", pend, want)
	}
	// A later run replays 1 and 3: the commit point moves to 5.
	r.judged(1, false)
	r.judged(3, false)
	r.passed(10) // a transaction marker
	if r.commitOffset() != 5 || r.frontier != 11 || r.ranges != 3 {
		t.Fatalf("after replay: commit %d frontier %d ranges %d", r.commitOffset(), r.frontier, r.ranges)
	}
	// Everything replayed: plain offset, empty pending list.
	for _, o := range []int64{5, 7, 9} {
		r.judged(o, false)
	}
	if r.commitOffset() != 11 || r.metadata() != "lsr1:0" {
		t.Fatalf("drained: commit %d meta %q", r.commitOffset(), r.metadata())
	}
	// Foreign metadata (franz-go's member id) reads as no pending offsets.
	if f := newLedger(42, "member-1"); f.frontier != 42 || len(f.pending) != 0 {
		t.Fatalf("foreign metadata: %+v", f)
	}
	// Retention deleted pending offsets below the log start.
	p := newLedger(l.commitOffset(), meta)
	p.prune(6)
	if p.commitOffset() != 7 {
		t.Fatalf("pruned commit %d, want 7", p.commitOffset())
	}
}

func TestReplayLedgerBounded(t *testing.T) {
	l := newLedger(0, "")
	o := int64(0)
	for ; l.canKeep(o); o += 2 {
		l.judged(o, true)
	}
	if l.ranges != maxLedgerRanges {
		t.Fatalf("ranges %d", l.ranges)
	}
	if n := len(l.metadata()); n > 4000 {
		t.Fatalf("metadata %d bytes", n)
	}
	// Keeping the neighbour of a kept offset joins a range: always allowed.
	if !l.canKeep(o - 1) {
		t.Fatal("joining a range refused")
	}
	// Resolving the middle of a run splits it: refused when full.
	l2 := newLedger(0, "")
	for i := int64(0); i < 3; i++ {
		l2.judged(i, true)
	}
	l2.ranges = maxLedgerRanges
	if l2.canResolve(1) || !l2.canResolve(0) {
		t.Fatal("canResolve")
	}
}

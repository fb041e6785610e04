package compaction_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

// backfill writes events [0, n) of Kafka partition 0 spread over hours closed
// hours (event i in hour i mod hours, counting back from the lab's hour).
func (l *lab) backfill(t *testing.T, cfg *config.Config, n, hours int) {
	t.Helper()
	l.write(t, cfg, 0, n, func(i int) int { return -3600*(i%hours) + i%60 }, "")
}

// jobCommits counts the snapshots of tbl that carry job in their summary.
func jobCommits(tbl *table.Table, job string) int {
	n := 0
	for _, s := range tbl.Metadata().Snapshots() {
		if s.Summary != nil && s.Summary.Properties[compaction.SummaryJob] == job {
			n++
		}
	}
	return n
}

// exact fails unless the table holds events [0, n) each exactly once.
func exact(t *testing.T, c *compaction.Compactor, n int) {
	t.Helper()
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	got := readNotes(t, tbl) // fails on a row read twice
	if len(got) != n {
		t.Fatalf("table holds %d distinct rows, want %d", len(got), n)
	}
	for i := range int64(n) {
		if _, ok := got[i]; !ok {
			t.Fatalf("row n=%d missing", i)
		}
	}
}

// TestOneRunCompactsEverythingDue: a backfill of 10 closed hours with
// max_partitions_per_commit 3 compacts in one run, in 4 commits (3+3+3+1
// partitions) each carrying the run's job id, and the table is exact; a
// second run is idle.
func TestOneRunCompactsEverythingDue(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.MaxPartitionsPerCommit = 3
	l.backfill(t, cfg, 200, 10)
	c := l.compactor(t, cfg)
	sum, err := c.Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 4 || sum.Partitions != 10 || sum.MoreToDo {
		t.Fatalf("run: %d commits, %d partitions, more to do %v; want 4, 10, false", sum.Commits, sum.Partitions, sum.MoreToDo)
	}
	tbl, err := c.Cat.Cat.LoadTable(context.Background(), c.Cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if n := jobCommits(tbl, sum.Job); n != 4 {
		t.Fatalf("table has %d snapshots of job %s, want 4", n, sum.Job)
	}
	exact(t, c, 200)
	if sum, err := l.compactor(t, cfg).Run(context.Background(), ""); err != nil || sum.Commits != 0 || sum.Groups != 0 {
		t.Fatalf("second run: %+v, %v; want nothing merged", sum, err)
	}
}

// TestDeadlineStopsBetweenCommits: a run whose deadline has already passed
// makes exactly one commit (the first batch always runs) and reports more to
// do; the next run without a deadline commits the rest and the table is exact.
func TestDeadlineStopsBetweenCommits(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.MaxPartitionsPerCommit = 2
	l.backfill(t, cfg, 120, 6)
	c := l.compactor(t, cfg)
	c.Deadline = time.Now()
	sum, err := c.Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 1 || sum.Partitions != 2 || !sum.MoreToDo {
		t.Fatalf("first run: %d commits, %d partitions, more to do %v; want 1, 2, true", sum.Commits, sum.Partitions, sum.MoreToDo)
	}
	c = l.compactor(t, cfg)
	if sum, err = c.Run(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 2 || sum.Partitions != 4 || sum.MoreToDo {
		t.Fatalf("second run: %d commits, %d partitions, more to do %v; want 2, 4, false", sum.Commits, sum.Partitions, sum.MoreToDo)
	}
	exact(t, c, 120)
}

// rawOpens counts, per key, the raw files opened through a store (footer
// reads; a merge fetches small files whole with Get).
type rawOpens struct {
	store.Store
	mu *sync.Mutex
	n  map[string]int
}

func (s rawOpens) Open(ctx context.Context, key string) (store.Object, error) {
	if strings.HasPrefix(key, "raw/") {
		s.mu.Lock()
		s.n[key]++
		s.mu.Unlock()
	}
	return s.Store.Open(ctx, key)
}

// TestBatchesReadEachRawFooterOnce: in a run of 4 batches (a backfill of 10
// closed hours, max_partitions_per_commit 3, raw_grace 1h as by default, so
// the merged raw files stay), each batch planned with the footers of every
// raw file the earlier batches had merged (their last offsets: a raw file
// counts as held only for its whole range), so batch k read k-1 batches'
// footers again: a backfill of 23,618 raw files in 22 batches of 200 hours
// reads ~250,000 footers. The last offsets a run has read are kept for the
// files the next listing shows unchanged (same key, size and time), so each
// footer is read once. The table is exact.
func TestBatchesReadEachRawFooterOnce(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t, "      - {name: note, type: string}\n")
	cfg.Compaction.RawGrace = time.Hour
	cfg.Compaction.MaxPartitionsPerCommit = 3
	l.backfill(t, cfg, 200, 10)
	c := l.compactor(t, cfg)
	opens := rawOpens{c.Lake, &sync.Mutex{}, map[string]int{}}
	c.Lake = opens
	sum, err := c.Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Commits != 4 || sum.Partitions != 10 {
		t.Fatalf("run: %d commits of %d partitions, want 4 of 10", sum.Commits, sum.Partitions)
	}
	if len(opens.n) != 9 {
		t.Errorf("the footers of %d raw files were read, want the 9 merged before the last batch", len(opens.n))
	}
	for key, n := range opens.n {
		if n > 1 {
			t.Errorf("raw file %s: footer read %d times in one run, want once", key, n)
		}
	}
	exact(t, c, 200)
}

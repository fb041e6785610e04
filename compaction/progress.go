package compaction

import (
	"fmt"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
)

// printf writes one line to Progress, if set.
func (c *Compactor) printf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// printPlan prints a table's plan (the dry run): groups, their inputs and
// outputs, and the raw files to delete.
func (c *Compactor) printPlan(t *config.Table, g layout.Granularity, st *state) {
	p := st.plan
	var in int64
	for _, gr := range p.Groups {
		in += gr.Bytes
	}
	name := t.Name
	if c.Shard.Sharded() {
		name += " (shard " + c.Shard.String() + ")"
	}
	c.printf("table %s: %d groups, %s of input; %d raw files to delete, %d covered within grace, %d in open partitions, %d partitions with nothing to gain",
		name, len(p.Groups), human(in), len(p.Delete), p.Covered, p.Open, p.Skipped)
	for _, gr := range p.Groups {
		outs := max(1, (gr.Bytes+int64(t.TargetFileSize)-1)/int64(t.TargetFileSize))
		c.printf("  %s: %d raw + %d table files, %s -> ~%d output(s)", layout.Dir(g, gr.Period), len(gr.Raw), len(gr.Table), human(gr.Bytes), outs)
		for _, r := range gr.Raw {
			c.printf("    raw   %s (%s)", r.Key, human(r.Size))
		}
		for _, f := range gr.Table {
			c.printf("    table %s (%s)", f.Path, human(f.Size))
		}
	}
	for _, r := range p.Delete {
		c.printf("  delete %s", r.Key)
	}
}

// human renders a byte count in B, KiB, MiB or GiB.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// progress prints files/bytes done, rate and ETA at most every few seconds.
type progress struct {
	c           *Compactor
	table       string
	total       int64
	doneBytes   int64
	files       int
	start, last time.Time
}

func newProgress(c *Compactor, table string, total int64) *progress {
	now := time.Now()
	return &progress{c: c, table: table, total: total, start: now, last: now}
}

func (p *progress) add(n int64) {
	p.doneBytes += n
	p.files++
	if time.Since(p.last) >= 2*time.Second {
		p.print()
	}
}

func (p *progress) print() {
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	rate := float64(p.doneBytes) / max(el, 1e-3)
	eta := "?"
	if rate > 0 && p.total >= p.doneBytes {
		eta = time.Duration(float64(p.total-p.doneBytes) / rate * float64(time.Second)).Round(time.Second).String()
	}
	p.c.printf("progress table=%s files=%d bytes=%s/%s rate=%s/s eta=%s", p.table, p.files, human(p.doneBytes), human(p.total), human(int64(rate)), eta)
}

func (p *progress) done() {
	if p.files > 0 {
		p.print()
	}
}

// batchProgress prints, after each commit of a table, the partitions done out
// of those due when the run started (raised if more became due meanwhile),
// the files and bytes merged, the rate and an ETA from the partitions left.
type batchProgress struct {
	c           *Compactor
	table       string
	total, done int
	files       int
	bytes       int64
	start       time.Time
}

func newBatchProgress(c *Compactor, table string, first Plan) *batchProgress {
	return &batchProgress{c: c, table: table, total: partitions(first) + first.Deferred, start: time.Now()}
}

// partitions counts the distinct partitions of a plan's groups.
func partitions(p Plan) int {
	n := 0
	for i, g := range p.Groups {
		if i == 0 || g.Period != p.Groups[i-1].Period {
			n++
		}
	}
	return n
}

// batch records a finished batch (committed, or with nothing to commit) and
// prints a progress line when the batch merged anything.
func (p *batchProgress) batch(st *state) {
	n := partitions(st.plan)
	if n == 0 {
		return
	}
	p.done += n
	p.total = max(p.total, p.done+st.plan.Deferred)
	for _, g := range st.plan.Groups {
		p.files += len(g.Raw) + len(g.Table)
		p.bytes += g.Bytes
	}
	el := time.Since(p.start)
	rate := float64(p.bytes) / max(el.Seconds(), 1e-3)
	eta := time.Duration(float64(el) / float64(p.done) * float64(p.total-p.done)).Round(time.Second)
	p.c.printf("progress table=%s partitions=%d/%d files=%d bytes=%s rate=%s/s eta=%s",
		p.table, p.done, p.total, p.files, human(p.bytes), human(int64(rate)), eta)
}

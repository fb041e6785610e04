package compaction

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// Merger reads a group's inputs, drops duplicates by (topic, partition,
// offset), sorts by the table's sort columns and writes outputs near the target
// size. Memory is bounded by Budget: beyond it, sorted runs spill to TempDir and
// are k-way merged. A Merger merges one group at a time (not safe for
// concurrent use).
type Merger struct {
	// Schema is the output schema, with the Iceberg table's field ids.
	Schema *schema.Schema
	// SortBy lists the output's sort columns (top-level primitive columns).
	SortBy []string
	// Lake holds the raw files; Warehouse the table files and the outputs.
	Lake, Warehouse store.Store
	Budget          int64
	RowGroupSize    int64
	Target          int64
	TempDir         string
	// Job names the run and Attempt its commit attempt (from 1); outputs are
	// <Dir>/<Job>-a<Attempt>-<group>-<n>.parquet, fresh on every attempt.
	Job     string
	Attempt int
	// ReadTimeout bounds reading one input file (0: none): the store's
	// requests have no deadline of their own, and a hung read must end the
	// run retryable rather than hang it.
	ReadTimeout time.Duration
	// Progress, when set, is told of every input file read (its bytes).
	Progress func(bytes int64)
	// Codec compresses the outputs; nil: the lake's default (zstd, default level).
	Codec compress.Codec
	// CopyRowGroups copies large input row groups already in the output's
	// order into the outputs without re-encoding them (copy.go).
	CopyRowGroups bool

	// Next, when set, is the group the caller merges after the one being
	// merged: its small inputs are fetched while that one sorts and writes
	// (with S3's latency every group otherwise started by waiting for its
	// first inputs). Close stops a fetch no Merge took.
	Next *Group

	// spare is the last group's table, emptied with its capacity kept: hour
	// groups are alike in size, so the next group's columns do not grow by
	// copying (that was 8% of a merge's CPU).
	spare *colTable
	// ahead fetches the inputs aheadOf (Next of the last Merge).
	ahead   *prefetcher
	aheadOf []inputFile
}

// inputs lists a group's input files: its table files, then its raw files.
func (m *Merger) inputs(g Group) ([]inputFile, error) {
	ins := make([]inputFile, 0, len(g.Table)+len(g.Raw))
	for _, tf := range g.Table {
		key, err := relKey(m.Warehouse, tf.Path)
		if err != nil {
			return nil, err
		}
		ins = append(ins, inputFile{st: m.Warehouse, key: key, size: tf.Size})
	}
	for _, rf := range g.Raw {
		ins = append(ins, inputFile{st: m.Lake, key: rf.Key, size: rf.Size})
	}
	return ins, nil
}

// prefetch returns the fetch of ins: the one started ahead for them, or a
// new one (a fetch started ahead for other inputs is stopped).
func (m *Merger) prefetch(ctx context.Context, ins []inputFile) *prefetcher {
	pf := m.ahead
	if pf != nil && !slices.EqualFunc(m.aheadOf, ins, func(a, b inputFile) bool { return a.key == b.key && a.size == b.size }) {
		pf.stop()
		pf = nil
	}
	m.ahead, m.aheadOf = nil, nil
	if pf == nil {
		pf = m.fetchAhead(ctx, ins)
	}
	return pf
}

// Close stops fetching inputs for a group no Merge took (Next).
func (m *Merger) Close() {
	if m.ahead != nil {
		m.ahead.stop()
		m.ahead, m.aheadOf = nil, nil
	}
}

// Output is one file the merger wrote.
type Output struct {
	Key      string
	Size     int64
	Rows     int64
	Coverage Coverage
}

// Result is what merging one group did.
type Result struct {
	Outputs []Output
	// RowsIn counts rows read; Duplicates those dropped as already present.
	RowsIn, Duplicates int64
	BytesIn            int64
	// Empty lists raw files every row of which was already in the table (no
	// output records them; they can go once past the grace period).
	Empty []RawFile
	// Raw is the coverage of the group's raw files (Empty ones included): what
	// the table holds of the raw zone once the outputs are committed.
	Raw Coverage
	// RowGroupsCopied counts input row groups written into the outputs without
	// re-encoding; RowGroupsDemoted those first taken for it, then merged
	// because another input's rows fell in their key range.
	RowGroupsCopied, RowGroupsDemoted int
}

const (
	// wholeFileBytes: input files up to this size are read into memory with
	// one request (inputs are read one at a time, so this bounds the cost).
	wholeFileBytes = 32 << 20
	// readBufferBytes: larger inputs are read in pieces of this size.
	readBufferBytes = 4 << 20
)

// ErrBadInput marks an input file that cannot be read as Parquet of the table:
// a human must look at it (the run halts rather than skipping rows).
var ErrBadInput = errors.New("unreadable input file")

type rec struct {
	row   parquet.Row
	keys  []parquet.Value
	topic []byte
	part  int32
	off   int64
}

type keyCols struct {
	sort             []int // leaf column index of each sort column
	types            []parquet.Type
	topic, part, off int
	pos              []int // leaf column -> position in rec.keys, -1 when not a key
}

func (m *Merger) keyColumns() (*keyCols, error) {
	k := &keyCols{pos: make([]int, len(m.Schema.Parquet.Columns()))}
	for i := range k.pos {
		k.pos[i] = -1
	}
	for i, name := range m.SortBy {
		lc, ok := m.Schema.Parquet.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("sort column %s is not a leaf column of table %s", name, m.Schema.Table)
		}
		k.sort = append(k.sort, lc.ColumnIndex)
		k.types = append(k.types, lc.Node.Type())
		k.pos[lc.ColumnIndex] = i
		switch name {
		case schema.ColTopic:
			k.topic = i
		case schema.ColPartition:
			k.part = i
		case schema.ColOffset:
			k.off = i
		}
	}
	return k, nil
}

func (k *keyCols) fill(row parquet.Row) rec {
	r := rec{keys: make([]parquet.Value, len(k.sort))}
	k.fillInto(&r, row)
	return r
}

// fillInto points r at row and its sort keys (r.keys must have room for them).
func (k *keyCols) fillInto(r *rec, row parquet.Row) {
	r.row = row
	for _, v := range row {
		if c := v.Column(); c < len(k.pos) && k.pos[c] >= 0 {
			r.keys[k.pos[c]] = v
		}
	}
	r.topic = r.keys[k.topic].ByteArray()
	r.part = r.keys[k.part].Int32()
	r.off = r.keys[k.off].Int64()
}

func (k *keyCols) compare(a, b *rec) int {
	for i, t := range k.types {
		av, bv := a.keys[i], b.keys[i]
		switch an, bn := av.IsNull(), bv.IsNull(); {
		case an && bn:
			continue
		case an:
			return -1
		case bn:
			return 1
		}
		if c := t.Compare(av, bv); c != 0 {
			return c
		}
	}
	return 0
}

func sameRecord(a, b *rec) bool {
	return a.off == b.off && a.part == b.part && bytes.Equal(a.topic, b.topic)
}

// rowBytes estimates the memory a sorted row holds: its values, their bytes,
// and the rec around it (slice headers, sort keys, allocation rounding).
func rowBytes(row parquet.Row) int64 {
	n := int64(192 + 24*len(row))
	for _, v := range row {
		if k := v.Kind(); (k == parquet.ByteArray || k == parquet.FixedLenByteArray) && !v.IsNull() {
			n += int64(len(v.ByteArray()))
		}
	}
	return n
}

// Merge merges one group. dir is the outputs' key prefix in the warehouse
// store; filter holds the coverage of every table file of the group's period:
// raw rows inside it are already in the table and are dropped.
func (m *Merger) Merge(ctx context.Context, g Group, gi int, dir string, filter Coverage) (Result, error) {
	var res Result
	kc, err := m.keyColumns()
	if err != nil {
		return res, err
	}
	t := m.spare
	m.spare = nil
	if t == nil {
		if t, err = newTable(m.Schema, m.SortBy); err != nil {
			return res, err
		}
	}
	s := &sorter{m: m, kc: kc, t: t, vals: make([]parquet.Value, 1024)}
	defer s.cleanup()
	defer func() {
		// Kept only while it holds at most half the budget, so that a group's
		// first spill check is not reached by capacity alone.
		if t.clear(); t.memBytes() <= m.Budget/2 {
			m.spare = t
		}
	}()
	// cov is the outputs' footer: the coverage footers of the table files
	// merged (files another engine rewrote have none) and the raw files.
	cov := Coverage{}
	res.Raw = Coverage{}
	ins, err := m.inputs(g)
	if err != nil {
		return res, err
	}
	// Small inputs are fetched and their footers parsed ahead of the merge
	// (those of a group named Next by the Merge before, while it wrote).
	pf := m.prefetch(ctx, ins)
	defer pf.stop()
	var pts []*passThrough
	var total, consumed int64
	for _, in := range ins {
		total += in.size
	}
	reserved := false
	for i, in := range ins {
		flt, footer := filter, Coverage(nil)
		if i < len(g.Table) {
			flt, footer = nil, cov
		}
		kept, last, err := m.read(ctx, in, pf.take(i), s, &res, flt, footer, &pts)
		pf.release(i)
		if err != nil {
			return res, err
		}
		if consumed += in.size; !reserved && s.t.rows > 0 && consumed > 0 {
			reserved = true
			s.reserve(total, consumed)
		}
		if i < len(g.Table) {
			continue
		}
		rf := g.Raw[i-len(g.Table)]
		if last < rf.First {
			last = rf.First
		}
		cov.Add(rf.Topic, rf.Partition, Range{rf.First, last})
		res.Raw.Add(rf.Topic, rf.Partition, Range{rf.First, last})
		if kept == 0 {
			res.Empty = append(res.Empty, rf)
		}
	}
	if m.Next != nil {
		// Every input is read: the next group's are fetched while this one
		// sorts and writes (prefetch took any fetch started before).
		if next, err := m.inputs(*m.Next); err == nil {
			m.ahead, m.aheadOf = m.fetchAhead(ctx, next), next
		}
	}
	if s.n == 0 {
		return res, nil
	}
	w := &outputs{m: m, ctx: ctx, dir: dir, gi: gi, cov: cov}
	// Everything fits the budget: sort and dedupe the permutation, write the
	// columns in its order and the row groups copied between them.
	perm, pts, err := s.settle(ctx, pts)
	res.RowGroupsDemoted = s.demoted
	if err != nil {
		return res, err
	}
	if len(s.runs) == 0 {
		res.Duplicates += s.dups
		err := w.writeMerged(t, perm, pts)
		res.RowGroupsCopied = w.copied
		if err != nil {
			w.abort(err)
			return res, err
		}
		if err := w.close(); err != nil {
			return res, err
		}
		res.Outputs = w.done
		return res, nil
	}
	src, err := s.finish()
	if err != nil {
		return res, err
	}
	res.Duplicates += s.dups
	var prev *rec
	for {
		r, ok, err := src.next()
		if err != nil {
			w.abort(err)
			return res, err
		}
		if !ok {
			break
		}
		if prev != nil && sameRecord(prev, &r) {
			res.Duplicates++
			continue
		}
		if err := w.write(r.row); err != nil {
			w.abort(err)
			return res, err
		}
		prev = &r
	}
	if err := w.close(); err != nil {
		return res, err
	}
	res.Outputs = w.done
	return res, nil
}

// read loads one input file's rows into the sorter: ft is the file fetched
// ahead, or nil to fetch it here. filter, when set, drops rows it holds (raw
// files). footer, when set, receives the file's coverage footer (table files).
// Row groups to copy as they are go to pts (copy.go). It returns the rows kept
// and the file's last offset.
func (m *Merger) read(ctx context.Context, in inputFile, ft *fetched, s *sorter, res *Result, filter, footer Coverage, pts *[]*passThrough) (int64, int64, error) {
	if ft == nil {
		if m.ReadTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, m.ReadTimeout)
			defer cancel()
		}
		f := open(ctx, in)
		ft = &f
	}
	held := false
	defer func() {
		if !held {
			ft.close()
		}
	}()
	if ft.err != nil {
		return 0, 0, ft.err
	}
	st, key, f, size := in.st, in.key, ft.f, ft.size
	bad := func(err error) error { return readFailure(st.URI(key), ft.tracked, err) }
	cols, direct := columnPlan(m.Schema.Parquet, f.Schema())
	var conv parquet.Conversion
	convert := func() error {
		if conv != nil {
			return nil
		}
		var err error
		conv, err = convertTo(m.Schema.Parquet, f.Schema())
		if err != nil {
			return fmt.Errorf("%s: %w: schema does not convert to table %s: %w", st.URI(key), ErrBadInput, m.Schema.Table, err)
		}
		return nil
	}
	if !direct {
		if err := convert(); err != nil {
			return 0, 0, err
		}
	}
	if v, ok := f.Lookup(CoverageKey); ok && footer != nil {
		// Only the outputs' footers carry it on (the coverage index is what
		// decides): a footer that does not parse is left out.
		var fc Coverage
		if json.Unmarshal([]byte(v), &fc) == nil {
			footer.Merge(fc)
		}
	}
	ip := &input{res: res, filter: filter, last: -1}
	if v, ok := f.Lookup(rawfile.MetaLastOffset); ok {
		ip.last, _ = strconv.ParseInt(v, 10, 64)
	}
	meta := f.Metadata().RowGroups
	copyable := m.copyable(f)
	var took []*passThrough
	for i, rg := range f.RowGroups() {
		first := s.t.rows
		sp := s.spanOf(rg, copyable)
		try := copyable && s.eligible(f, i) && !s.overlapsSeen(sp)
		s.seen = append(s.seen, sp)
		if try {
			pt, err := s.passThrough(i, rg, ip)
			if err != nil {
				return 0, 0, bad(err)
			}
			if pt != nil {
				pt.in = in
				took = append(took, pt)
				continue
			}
		}
		if direct && i < len(meta) && meta[i].TotalByteSize <= s.m.Budget/4 {
			// Column by column: a row group at most a quarter of the budget.
			if err := s.t.addRowGroup(rg, cols, s.vals); err != nil {
				return 0, 0, bad(err)
			}
			if err := s.added(first, ip); err != nil {
				return 0, 0, err
			}
			continue
		}
		// Row by row, through the conversion: the sorter may spill between
		// any two batches.
		if err := convert(); err != nil {
			return 0, 0, err
		}
		if s.rows == nil {
			s.rows = make([]parquet.Row, 256)
		}
		rows := parquet.ConvertRowGroup(rg, conv).Rows()
		for {
			n, err := rows.ReadRows(s.rows)
			for _, row := range s.rows[:n] {
				s.t.addRow(row)
			}
			if n > 0 {
				if err := s.added(first, ip); err != nil {
					rows.Close()
					return 0, 0, err
				}
				first = s.t.rows
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rows.Close()
				return 0, 0, bad(err)
			}
		}
		rows.Close()
	}
	// A file fetched whole stays in memory for its copies while the files held
	// so fit in a quarter of the budget; any other is opened again to copy.
	if len(took) > 0 && ft.obj == nil && s.held+size <= m.Budget/4 {
		held, s.held = true, s.held+size
		for _, pt := range took {
			pt.ft = ft
		}
		s.files = append(s.files, ft)
	}
	*pts = append(*pts, took...)
	res.BytesIn += size
	if m.Progress != nil {
		m.Progress(size)
	}
	return ip.kept, ip.last, nil
}

// input is what reading one file counts.
type input struct {
	res        *Result
	filter     Coverage
	kept, last int64
	topic      []byte
	topicStr   string
}

// sorter holds rows up to the budget, then spills sorted runs to disk.
type sorter struct {
	m    *Merger
	kc   *keyCols
	t    *colTable
	perm []uint32 // the rows of t to merge (raw rows already in the table left out)
	n    int64
	dups int64 // duplicates dropped while spilling
	runs []*os.File
	vals []parquet.Value
	rows []parquet.Row
	// held is the bytes of input files held for their row groups' copies;
	// demoted counts the row groups taken for copying, then merged.
	held    int64
	seen    []span // of every row group read, for overlapsSeen
	files   []*fetched
	demoted int
}

// added takes in the rows of t from first on: counts them, filters them, and
// spills when the budget is reached.
func (s *sorter) added(first int, in *input) error {
	for r := first; r < s.t.rows; r++ {
		in.res.RowsIn++
		if in.filter != nil {
			topic, part, off := s.t.coords(r)
			if off > in.last {
				in.last = off
			}
			if !bytes.Equal(topic, in.topic) || in.topic == nil {
				in.topic, in.topicStr = topic, string(topic)
			}
			if in.filter.Holds(in.topicStr, part, off) {
				in.res.Duplicates++
				continue
			}
		}
		in.kept++
		s.n++
		s.perm = append(s.perm, uint32(r))
	}
	if s.t.memBytes()+int64(4*cap(s.perm)) >= s.m.Budget {
		return s.spill()
	}
	return nil
}

// reserve sizes the table and the permutation for the group's rows,
// projected (with an eighth to spare) from those of the first total bytes
// of its input files read so far (consumed), within half the budget: what a
// table may keep between groups (Merge's spare), so that reserving never
// makes the sorter spill.
func (s *sorter) reserve(total, consumed int64) {
	rows := int(float64(s.t.rows) * float64(total) / float64(consumed) * 1.125)
	limit := s.m.Budget/2 - 4*int64(rows)
	if limit <= 0 {
		return
	}
	s.t.reserve(rows, limit)
	if cap(s.perm) < rows {
		s.perm = append(make([]uint32, 0, rows), s.perm...)
	}
}

// spill writes the held rows, sorted and deduplicated, as a run to TempDir.
func (s *sorter) spill() error {
	if len(s.perm) == 0 {
		s.t.reset()
		return nil
	}
	perm, dups := s.t.sorted(s.perm)
	s.dups += dups
	f, err := os.CreateTemp(s.m.TempDir, "lakesink-run-*.parquet")
	if err != nil {
		return fmt.Errorf("spill sorted run: %w", err)
	}
	s.runs = append(s.runs, f)
	w := parquet.NewWriter(f, s.m.Schema.Parquet, parquet.PageBufferSize(1<<20))
	// Row groups of about 8 MiB: the writer holds one row group's pages.
	per := max(1, int(8<<20/s.t.rowBytes()))
	for len(perm) > 0 {
		k := min(per, len(perm))
		if s.vals, err = s.t.writeRows(w, perm[:k], s.vals); err != nil {
			return fmt.Errorf("spill sorted run: %w", err)
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("spill sorted run: %w", err)
		}
		perm = perm[k:]
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("spill sorted run: %w", err)
	}
	s.t.reset()
	s.perm = s.perm[:0]
	return nil
}

func (s *sorter) cleanup() {
	for _, ft := range s.files {
		ft.close()
	}
	for _, f := range s.runs {
		f.Close()
		os.Remove(f.Name())
	}
}

// finish spills what is held and returns a k-way merge of the sorted runs.
func (s *sorter) finish() (source, error) {
	if len(s.perm) > 0 {
		if err := s.spill(); err != nil {
			return nil, err
		}
	}
	h := &mergeHeap{kc: s.kc}
	for _, f := range s.runs {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			return nil, fmt.Errorf("reopen sorted run: %w", err)
		}
		rs := &runSource{r: parquet.NewReader(pf, s.m.Schema.Parquet), kc: s.kc, buf: make([]parquet.Row, 128)}
		r, ok, err := rs.next()
		if err != nil {
			return nil, err
		}
		if ok {
			h.items = append(h.items, heapItem{r, rs})
		}
	}
	heap.Init(h)
	return h, nil
}

type source interface {
	next() (rec, bool, error)
}

type runSource struct {
	r    *parquet.Reader
	kc   *keyCols
	buf  []parquet.Row
	n, i int
	eof  bool
}

func (r *runSource) next() (rec, bool, error) {
	for r.i == r.n {
		if r.eof {
			return rec{}, false, nil
		}
		n, err := r.r.ReadRows(r.buf)
		r.n, r.i = n, 0
		if err == io.EOF {
			r.eof = true
		} else if err != nil {
			return rec{}, false, fmt.Errorf("read sorted run: %w", err)
		}
	}
	row := r.buf[r.i].Clone()
	r.i++
	return r.kc.fill(row), true, nil
}

type heapItem struct {
	r   rec
	src *runSource
}

type mergeHeap struct {
	kc    *keyCols
	items []heapItem
}

func (h *mergeHeap) Len() int { return len(h.items) }
func (h *mergeHeap) Less(i, j int) bool {
	return h.kc.compare(&h.items[i].r, &h.items[j].r) < 0
}
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(heapItem)) }
func (h *mergeHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}

func (h *mergeHeap) next() (rec, bool, error) {
	if len(h.items) == 0 {
		return rec{}, false, nil
	}
	top := h.items[0]
	r, ok, err := top.src.next()
	if err != nil {
		return rec{}, false, err
	}
	if ok {
		h.items[0].r = r
		heap.Fix(h, 0)
	} else {
		heap.Pop(h)
	}
	return top.r, true, nil
}

// outputs writes sorted rows into files of about the target size, streaming
// each through the store (never overwriting: names are fresh per job).
type outputs struct {
	m    *Merger
	ctx  context.Context
	dir  string
	gi   int
	cov  Coverage
	done []Output

	copied  int // row groups copied
	cur     *parquet.Writer
	pw      *io.PipeWriter
	cw      *countWriter
	errc    chan error
	key     string
	rows    int64
	rgBytes int64
	batch   []parquet.Row
	vals    []parquet.Value
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (o *outputs) open() error {
	o.key = fmt.Sprintf("%s/%s-a%d-%d-%d.parquet", o.dir, o.m.Job, o.m.Attempt, o.gi, len(o.done))
	pr, pw := io.Pipe()
	o.pw, o.cw = pw, &countWriter{w: pw}
	o.errc = make(chan error, 1)
	st, key, ctx := o.m.Warehouse, o.key, o.ctx
	go func() {
		err := st.Create(ctx, key, pr)
		pr.CloseWithError(err)
		o.errc <- err
	}()
	var sorting []parquet.SortingColumn
	for _, c := range o.m.SortBy {
		sorting = append(sorting, parquet.Ascending(c))
	}
	cov, err := o.cov.MarshalJSON()
	if err != nil {
		return err
	}
	opts := []parquet.WriterOption{
		parquet.SortingWriterConfig(parquet.SortingColumns(sorting...)),
		parquet.KeyValueMetadata(CoverageKey, string(cov)),
		parquet.KeyValueMetadata(JobKey, o.m.Job),
	}
	if o.m.Codec != nil {
		opts = append(opts, parquet.Compression(o.m.Codec))
	}
	o.cur = parquet.NewWriter(o.cw, o.m.Schema.WriterOptions(opts...)...)
	o.rows, o.rgBytes = 0, 0
	return nil
}

// writeTable writes the rows perm of t, in that order, in row groups of about
// RowGroupSize, rolling files near Target.
func (o *outputs) writeTable(t *colTable, perm []uint32) error {
	per := max(1, int(o.m.RowGroupSize/t.rowBytes()))
	var err error
	for len(perm) > 0 {
		if o.cur == nil {
			if err := o.open(); err != nil {
				return err
			}
		}
		k := min(per, len(perm))
		if o.vals, err = t.writeRows(o.cur, perm[:k], o.vals); err != nil {
			return fmt.Errorf("write %s: %w", o.key, err)
		}
		o.rows += int64(k)
		perm = perm[k:]
		if err := o.cur.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", o.key, err)
		}
		if o.cw.n >= o.m.Target {
			if err := o.finishFile(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *outputs) write(row parquet.Row) error {
	if o.cur == nil {
		if err := o.open(); err != nil {
			return err
		}
	}
	o.batch = append(o.batch, row)
	o.rows++
	o.rgBytes += rowBytes(row)
	if len(o.batch) < 512 {
		return nil
	}
	return o.flushBatch()
}

func (o *outputs) flushBatch() error {
	if _, err := o.cur.WriteRows(o.batch); err != nil {
		return fmt.Errorf("write %s: %w", o.key, err)
	}
	o.batch = o.batch[:0]
	if o.rgBytes >= o.m.RowGroupSize {
		if err := o.cur.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", o.key, err)
		}
		o.rgBytes = 0
		if o.cw.n >= o.m.Target {
			return o.finishFile()
		}
	}
	return nil
}

func (o *outputs) finishFile() error {
	if len(o.batch) > 0 {
		if _, err := o.cur.WriteRows(o.batch); err != nil {
			return fmt.Errorf("write %s: %w", o.key, err)
		}
		o.batch = o.batch[:0]
	}
	if err := o.cur.Close(); err != nil {
		o.pw.CloseWithError(err)
		<-o.errc
		return fmt.Errorf("write %s: %w", o.key, err)
	}
	o.pw.Close()
	if err := <-o.errc; err != nil {
		return fmt.Errorf("upload %s: %w", o.m.Warehouse.URI(o.key), err)
	}
	o.done = append(o.done, Output{Key: o.key, Size: o.cw.n, Rows: o.rows, Coverage: o.cov})
	o.cur = nil
	return nil
}

func (o *outputs) close() error {
	if o.cur == nil {
		return nil
	}
	return o.finishFile()
}

func (o *outputs) abort(err error) {
	if o.cur != nil {
		o.pw.CloseWithError(err)
		<-o.errc
		o.cur = nil
	}
}

func relKey(st store.Store, path string) (string, error) {
	root := st.URI("")
	if len(path) > len(root) && path[:len(root)] == root {
		return path[len(root):], nil
	}
	return "", fmt.Errorf("table file %s is outside the warehouse %s", path, root)
}

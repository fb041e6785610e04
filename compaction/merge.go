package compaction

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// Merger reads a group's inputs, drops duplicates by (topic, partition,
// offset), sorts by the table's sort columns and writes outputs near the target
// size. Memory is bounded by Budget: beyond it, sorted runs spill to TempDir and
// are k-way merged.
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
	// Job names the run; outputs are <Dir>/<Job>-<group>-<n>.parquet.
	Job string
	// Progress, when set, is told of every input file read (its bytes).
	Progress func(bytes int64)
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
	s := &sorter{m: m, kc: kc}
	defer s.cleanup()
	cov := Coverage{}
	for _, tf := range g.Table {
		cov.Merge(tf.Coverage)
		key, err := relKey(m.Warehouse, tf.Path)
		if err != nil {
			return res, err
		}
		if _, _, err := m.read(ctx, m.Warehouse, key, s, &res, nil); err != nil {
			return res, err
		}
	}
	for _, rf := range g.Raw {
		kept, last, err := m.read(ctx, m.Lake, rf.Key, s, &res, func(r *rec) bool {
			return !filter.Holds(string(r.topic), r.part, r.off)
		})
		if err != nil {
			return res, err
		}
		if last < rf.First {
			last = rf.First
		}
		cov.Add(rf.Topic, rf.Partition, Range{rf.First, last})
		if kept == 0 {
			res.Empty = append(res.Empty, rf)
		}
	}
	if s.n == 0 {
		return res, nil
	}
	src, err := s.finish()
	if err != nil {
		return res, err
	}
	w := &outputs{m: m, ctx: ctx, dir: dir, gi: gi, cov: cov}
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

// read loads one input file's rows into the sorter. keep, when set, filters
// rows (raw files). It returns the rows kept and the file's last offset.
func (m *Merger) read(ctx context.Context, st store.Store, key string, s *sorter, res *Result, keep func(*rec) bool) (int64, int64, error) {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", st.URI(key), err)
	}
	defer obj.Close()
	size := obj.Size()
	var src io.ReaderAt = obj
	opts := []parquet.FileOption{parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(readBufferBytes)}
	if size <= wholeFileBytes {
		// A small file is fetched with one GET: reading it page by page would
		// cost a request per page of every column.
		data := make([]byte, size)
		if _, err := io.ReadFull(obj, data); err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", st.URI(key), err)
		}
		src = bytes.NewReader(data)
		opts = opts[:2]
	}
	f, err := parquet.OpenFile(src, size, opts...)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w: %v", st.URI(key), ErrBadInput, err)
	}
	conv, err := parquet.Convert(m.Schema.Parquet, f.Schema())
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w: schema does not convert to table %s: %v", st.URI(key), ErrBadInput, m.Schema.Table, err)
	}
	var kept, last int64 = 0, -1
	if v, ok := f.Lookup("lakesink.last_offset"); ok {
		last, _ = strconv.ParseInt(v, 10, 64)
	}
	buf := make([]parquet.Row, 256)
	r := rec{keys: make([]parquet.Value, len(s.kc.sort))}
	for _, rg := range f.RowGroups() {
		rows := parquet.ConvertRowGroup(rg, conv).Rows()
		for {
			n, err := rows.ReadRows(buf)
			for _, row := range buf[:n] {
				res.RowsIn++
				s.kc.fillInto(&r, row)
				if r.off > last && keep != nil {
					last = r.off
				}
				if keep != nil && !keep(&r) {
					res.Duplicates++
					continue
				}
				kept++
				if err := s.add(row); err != nil {
					rows.Close()
					return 0, 0, err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rows.Close()
				return 0, 0, fmt.Errorf("%s: %w: %v", st.URI(key), ErrBadInput, err)
			}
		}
		rows.Close()
		// buf's rows were cloned by add; reuse is safe.
	}
	res.BytesIn += size
	if m.Progress != nil {
		m.Progress(size)
	}
	return kept, last, nil
}

// sorter holds rows up to the budget, then spills sorted runs to disk.
type sorter struct {
	m     *Merger
	kc    *keyCols
	mem   []rec
	bytes int64
	n     int64
	runs  []*os.File
	slab  slab
}

// add copies row (its values and bytes into the slab) and holds it.
func (s *sorter) add(row parquet.Row) error {
	r := rec{keys: s.slab.values(len(s.kc.sort))}
	s.kc.fillInto(&r, s.slab.clone(row))
	s.mem = append(s.mem, r)
	s.bytes += rowBytes(r.row)
	s.n++
	if s.bytes >= s.m.Budget {
		return s.spill()
	}
	return nil
}

func (s *sorter) sortMem() {
	slices.SortStableFunc(s.mem, func(a, b rec) int { return s.kc.compare(&a, &b) })
}

func (s *sorter) spill() error {
	s.sortMem()
	f, err := os.CreateTemp(s.m.TempDir, "lakesink-run-*.parquet")
	if err != nil {
		return fmt.Errorf("spill sorted run: %w", err)
	}
	s.runs = append(s.runs, f)
	w := parquet.NewWriter(f, s.m.Schema.Parquet, parquet.PageBufferSize(1<<20))
	batch := make([]parquet.Row, 0, 256)
	for i := range s.mem {
		batch = append(batch, s.mem[i].row)
		if len(batch) == cap(batch) {
			if _, err := w.WriteRows(batch); err != nil {
				return fmt.Errorf("spill sorted run: %w", err)
			}
			batch = batch[:0]
		}
	}
	if _, err := w.WriteRows(batch); err != nil {
		return fmt.Errorf("spill sorted run: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("spill sorted run: %w", err)
	}
	clear(s.mem)
	s.mem = s.mem[:0]
	s.slab = slab{}
	s.bytes = 0
	return nil
}

func (s *sorter) cleanup() {
	for _, f := range s.runs {
		f.Close()
		os.Remove(f.Name())
	}
}

// finish returns the rows in sorted order: from memory alone when nothing
// spilled, else a k-way merge of the runs.
func (s *sorter) finish() (source, error) {
	if len(s.runs) == 0 {
		s.sortMem()
		return &memSource{recs: s.mem}, nil
	}
	if len(s.mem) > 0 {
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

type memSource struct {
	recs []rec
	i    int
}

func (m *memSource) next() (rec, bool, error) {
	if m.i == len(m.recs) {
		return rec{}, false, nil
	}
	m.i++
	return m.recs[m.i-1], true, nil
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

	cur     *parquet.Writer
	pw      *io.PipeWriter
	cw      *countWriter
	errc    chan error
	key     string
	rows    int64
	rgBytes int64
	batch   []parquet.Row
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
	o.key = fmt.Sprintf("%s/%s-%d-%d.parquet", o.dir, o.m.Job, o.gi, len(o.done))
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
	o.cur = parquet.NewWriter(o.cw, o.m.Schema.WriterOptions(
		parquet.SortingWriterConfig(parquet.SortingColumns(sorting...)),
		parquet.KeyValueMetadata(CoverageKey, string(cov)),
		parquet.KeyValueMetadata(JobKey, o.m.Job),
	)...)
	o.rows, o.rgBytes = 0, 0
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

// slab hands out values and bytes from large chunks: a sorted row costs no
// allocation of its own, and the garbage collector scans few objects.
type slab struct {
	vals []parquet.Value
	buf  []byte
}

const slabValues, slabBytes = 1 << 14, 1 << 20

func (s *slab) values(n int) []parquet.Value {
	if cap(s.vals)-len(s.vals) < n {
		s.vals = make([]parquet.Value, 0, max(slabValues, n))
	}
	start := len(s.vals)
	s.vals = s.vals[:start+n]
	return s.vals[start : start+n : start+n]
}

func (s *slab) bytes(b []byte) []byte {
	if cap(s.buf)-len(s.buf) < len(b) {
		s.buf = make([]byte, 0, max(slabBytes, len(b)))
	}
	start := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[start:len(s.buf):len(s.buf)]
}

// clone copies row into the slab (what parquet.Row.Clone does, value by value).
func (s *slab) clone(row parquet.Row) parquet.Row {
	out := s.values(len(row))
	for i, v := range row {
		if !v.IsNull() {
			switch v.Kind() {
			case parquet.ByteArray:
				v = parquet.ByteArrayValue(s.bytes(v.ByteArray())).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
			case parquet.FixedLenByteArray:
				v = parquet.FixedLenByteArrayValue(s.bytes(v.ByteArray())).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
			}
		}
		out[i] = v
	}
	return out
}

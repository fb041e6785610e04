package compaction

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/lakesink/lakesink/lake/schema"
)

// The merger holds rows column by column, not row by row: each leaf column of
// the output schema keeps its entries (one per value slot, nulls included) in
// flat, pointer-free slices, so holding a row costs no allocation and the
// garbage collector has next to nothing to scan. Sorting moves only a
// permutation of row numbers, compared on the sort columns alone; outputs are
// written column by column in permutation order.
//
// Inputs are read column chunk by column chunk (page values, no row assembly)
// when every output column is in the file with the same type and levels, or
// is a top-level column the file lacks entirely (read as nulls). Any other
// file (a widened type, a field added inside a struct) goes through
// parquet.Convert's row reader, whose rows are appended to the same columns
// (convertTo: decimals whose physical type changed are re-encoded exactly).

// column is one leaf column's entries.
type column struct {
	kind           parquet.Kind
	maxDef, maxRep int
	n              int      // entries
	def, rep       []byte   // levels, when the column has them
	num            []uint64 // fixed-size kinds: one per entry
	data           []byte   // byte-array kinds: the bytes of every entry
	end            []uint32 // byte-array kinds: end of entry j in data
	rows           []uint32 // repeated columns: the first entry of each row
}

func (c *column) isBytes() bool {
	return c.kind == parquet.ByteArray || c.kind == parquet.FixedLenByteArray
}

// numRows is how many rows the column holds.
func (c *column) numRows() int {
	if c.maxRep > 0 {
		return len(c.rows)
	}
	return c.n
}

// span returns the entries [from, to) of row r.
func (c *column) span(r int) (int, int) {
	if c.maxRep == 0 {
		return r, r + 1
	}
	to := c.n
	if r+1 < len(c.rows) {
		to = int(c.rows[r+1])
	}
	return int(c.rows[r]), to
}

func (c *column) add(v parquet.Value) {
	if c.maxRep > 0 {
		rl := v.RepetitionLevel()
		if rl == 0 {
			c.rows = append(c.rows, uint32(c.n))
		}
		c.rep = append(c.rep, byte(rl))
	}
	if c.maxDef > 0 {
		c.def = append(c.def, byte(v.DefinitionLevel()))
	}
	switch c.kind {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		c.data = append(c.data, v.ByteArray()...)
		c.end = append(c.end, uint32(len(c.data)))
	case parquet.Boolean:
		var b uint64
		if v.Boolean() {
			b = 1
		}
		c.num = append(c.num, b)
	case parquet.Int32:
		c.num = append(c.num, uint64(uint32(v.Int32())))
	case parquet.Int64:
		c.num = append(c.num, uint64(v.Int64()))
	case parquet.Float:
		c.num = append(c.num, uint64(math.Float32bits(v.Float())))
	case parquet.Double:
		c.num = append(c.num, math.Float64bits(v.Double()))
	}
	c.n++
}

// addNulls appends n null rows (top-level optional column missing in a file).
func (c *column) addNulls(n int) {
	for range n {
		c.add(parquet.Value{})
	}
}

// null reports whether entry j is null (or an empty/absent nested value).
func (c *column) null(j int) bool {
	return c.maxDef > 0 && int(c.def[j]) < c.maxDef
}

func (c *column) bytesAt(j int) []byte {
	start := uint32(0)
	if j > 0 {
		start = c.end[j-1]
	}
	return c.data[start:c.end[j]:c.end[j]]
}

// value returns entry j as a parquet value of leaf column col.
func (c *column) value(j, col int) parquet.Value {
	var rl, dl int
	if c.maxRep > 0 {
		rl = int(c.rep[j])
	}
	if c.maxDef > 0 {
		dl = int(c.def[j])
		if dl < c.maxDef {
			return parquet.Value{}.Level(rl, dl, col)
		}
	}
	var v parquet.Value
	switch c.kind {
	case parquet.ByteArray:
		v = parquet.ByteArrayValue(c.bytesAt(j))
	case parquet.FixedLenByteArray:
		v = parquet.FixedLenByteArrayValue(c.bytesAt(j))
	case parquet.Boolean:
		v = parquet.BooleanValue(c.num[j] != 0)
	case parquet.Int32:
		v = parquet.Int32Value(int32(c.num[j]))
	case parquet.Int64:
		v = parquet.Int64Value(int64(c.num[j]))
	case parquet.Float:
		v = parquet.FloatValue(math.Float32frombits(uint32(c.num[j])))
	case parquet.Double:
		v = parquet.DoubleValue(math.Float64frombits(c.num[j]))
	}
	return v.Level(rl, dl, col)
}

// memBytes is what the column's slices hold.
func (c *column) memBytes() int64 {
	return int64(cap(c.def) + cap(c.rep) + 8*cap(c.num) + cap(c.data) + 4*cap(c.end) + 4*cap(c.rows))
}

// colTable holds rows of the output schema, column by column.
type colTable struct {
	sch              *parquet.Schema
	cols             []column
	rows             int
	topic, part, off int   // leaf columns of the Kafka coordinates
	keyCols          []int // leaf column of each sort column
	pair             []keyCmp
	keys             []func(a, b int) int
}

// keyCmp compares entry a of one column with entry b of another column of the
// same leaf (of two tables of one schema, or the same table).
type keyCmp func(ca *column, a int, cb *column, b int) int

func newTable(s *schema.Schema, sortBy []string) (*colTable, error) {
	t := &colTable{sch: s.Parquet}
	for _, p := range s.Parquet.Columns() {
		lc, _ := s.Parquet.Lookup(p...)
		t.cols = append(t.cols, column{kind: lc.Node.Type().Kind(), maxDef: lc.MaxDefinitionLevel, maxRep: lc.MaxRepetitionLevel})
	}
	for _, c := range []struct {
		name string
		at   *int
		kind parquet.Kind
	}{{schema.ColTopic, &t.topic, parquet.ByteArray}, {schema.ColPartition, &t.part, parquet.Int32}, {schema.ColOffset, &t.off, parquet.Int64}} {
		lc, ok := s.Parquet.Lookup(c.name)
		if !ok || lc.MaxRepetitionLevel > 0 || lc.MaxDefinitionLevel > 0 || lc.Node.Type().Kind() != c.kind {
			return nil, fmt.Errorf("table %s: column %s is not a required %v column", s.Table, c.name, c.kind)
		}
		*c.at = lc.ColumnIndex
	}
	for _, name := range sortBy {
		lc, ok := s.Parquet.Lookup(name)
		if !ok || lc.MaxRepetitionLevel > 0 || len(lc.Path) != 1 {
			return nil, fmt.Errorf("sort column %s is not a top-level primitive column of table %s", name, s.Table)
		}
		k := comparator(&t.cols[lc.ColumnIndex], lc.ColumnIndex, lc.Node.Type())
		c := &t.cols[lc.ColumnIndex]
		t.keyCols = append(t.keyCols, lc.ColumnIndex)
		t.pair = append(t.pair, k)
		t.keys = append(t.keys, func(a, b int) int { return k(c, a, c, b) })
	}
	return t, nil
}

// comparator compares entries of leaf column ci (c is one of its columns,
// for its kind and levels): nulls first, then as the column's type orders
// values (signed integers and unsigned-lexicographic bytes compared directly,
// anything else through the type).
func comparator(c *column, ci int, typ parquet.Type) keyCmp {
	var vals keyCmp
	switch {
	case c.kind == parquet.Int64 && typ.Compare(parquet.Int64Value(-1), parquet.Int64Value(1)) < 0:
		vals = func(ca *column, a int, cb *column, b int) int { return cmp.Compare(int64(ca.num[a]), int64(cb.num[b])) }
	case c.kind == parquet.Int32 && typ.Compare(parquet.Int32Value(-1), parquet.Int32Value(1)) < 0:
		vals = func(ca *column, a int, cb *column, b int) int { return cmp.Compare(int32(ca.num[a]), int32(cb.num[b])) }
	case c.kind == parquet.ByteArray && typ.Compare(parquet.ByteArrayValue([]byte{0xff}), parquet.ByteArrayValue([]byte("a"))) > 0 &&
		typ.Compare(parquet.ByteArrayValue([]byte("ab")), parquet.ByteArrayValue([]byte("b"))) < 0:
		vals = func(ca *column, a int, cb *column, b int) int { return bytes.Compare(ca.bytesAt(a), cb.bytesAt(b)) }
	default:
		vals = func(ca *column, a int, cb *column, b int) int { return typ.Compare(ca.value(a, ci), cb.value(b, ci)) }
	}
	if c.maxDef == 0 {
		return vals
	}
	return func(ca *column, a int, cb *column, b int) int {
		switch an, bn := ca.null(a), cb.null(b); {
		case an && bn:
			return 0
		case an:
			return -1
		case bn:
			return 1
		}
		return vals(ca, a, cb, b)
	}
}

// compareKeys compares rows a and b on the sort columns alone.
func (t *colTable) compareKeys(a, b int) int {
	for _, k := range t.keys {
		if c := k(a, b); c != 0 {
			return c
		}
	}
	return 0
}

// compareAcross compares row a of t with row b of u (a table of the same
// schema and sort columns) on the sort columns alone.
func (t *colTable) compareAcross(a int, u *colTable, b int) int {
	for i, k := range t.pair {
		ci := t.keyCols[i]
		if c := k(&t.cols[ci], a, &u.cols[ci], b); c != 0 {
			return c
		}
	}
	return 0
}

func (t *colTable) compare(a, b uint32) int {
	if c := t.compareKeys(int(a), int(b)); c != 0 {
		return c
	}
	// Equal keys keep their input order (table files first, then raw files).
	return cmp.Compare(a, b)
}

// sorted sorts the permutation perm and drops every row whose Kafka
// coordinates equal those of the row before it; it returns what it kept and
// how many it dropped.
func (t *colTable) sorted(perm []uint32) ([]uint32, int64) {
	slices.SortFunc(perm, t.compare)
	out := perm[:0]
	var dups int64
	for i, r := range perm {
		if i > 0 && len(out) > 0 && t.same(out[len(out)-1], r) {
			dups++
			continue
		}
		out = append(out, r)
	}
	return out, dups
}

func (t *colTable) same(a, b uint32) bool {
	o, p := &t.cols[t.off], &t.cols[t.part]
	return o.num[a] == o.num[b] && p.num[a] == p.num[b] && bytes.Equal(t.cols[t.topic].bytesAt(int(a)), t.cols[t.topic].bytesAt(int(b)))
}

// coords returns row r's Kafka coordinates.
func (t *colTable) coords(r int) ([]byte, int32, int64) {
	return t.cols[t.topic].bytesAt(r), int32(t.cols[t.part].num[r]), int64(t.cols[t.off].num[r])
}

func (t *colTable) memBytes() int64 {
	var n int64
	for i := range t.cols {
		n += t.cols[i].memBytes()
	}
	return n
}

// rowBytes estimates the average size of a row as the writer's row group
// threshold counts it (values and their bytes, as rowBytes does for a row).
func (t *colTable) rowBytes() int64 {
	if t.rows == 0 {
		return 1
	}
	n := int64(192 * t.rows)
	for i := range t.cols {
		n += int64(24*t.cols[i].n + len(t.cols[i].data))
	}
	return max(1, n/int64(t.rows))
}

// usedBytes is what memBytes would be if every slice were exactly full.
func (c *column) usedBytes() int64 {
	return int64(len(c.def) + len(c.rep) + 8*len(c.num) + len(c.data) + 4*len(c.end) + 4*len(c.rows))
}

// reserve gives every column room for rows rows in all, projected from what
// it holds per row now (at least one row), within limit bytes of capacity
// (memBytes): a projection over limit is scaled down to it. It never shrinks.
// Appending a group's rows to columns that start small regrows each slice
// many times over (append grows a large slice by about 1.25×, copying it
// each time): a merge spent ~4 % of its CPU there, and a sharded run paid it
// again in every process.
func (t *colTable) reserve(rows int, limit int64) {
	if t.rows == 0 || rows <= t.rows {
		return
	}
	var used int64
	for i := range t.cols {
		used += t.cols[i].usedBytes()
	}
	scale := float64(rows) / float64(t.rows)
	if used > 0 && float64(used)*scale > float64(limit) {
		scale = float64(limit) / float64(used)
	}
	if scale <= 1 {
		return
	}
	for i := range t.cols {
		c := &t.cols[i]
		c.def = growTo(c.def, scale)
		c.rep = growTo(c.rep, scale)
		c.num = growTo(c.num, scale)
		c.data = growTo(c.data, scale)
		c.end = growTo(c.end, scale)
		c.rows = growTo(c.rows, scale)
	}
}

// growTo returns s with a capacity of at least len(s) × scale (s itself when
// it has that already, or is empty: a slice the column does not use). The
// capacity is exact, so reserve stays within its limit (slices.Grow rounds
// up to append's growth and the allocator's size classes).
func growTo[E any](s []E, scale float64) []E {
	n := int(float64(len(s)) * scale)
	if len(s) == 0 || cap(s) >= n {
		return s
	}
	out := make([]E, len(s), n)
	copy(out, s)
	return out
}

// clear empties the table, keeping its columns' capacity.
func (t *colTable) clear() {
	for i := range t.cols {
		c := &t.cols[i]
		c.n = 0
		c.def, c.rep, c.num, c.data, c.end, c.rows = c.def[:0], c.rep[:0], c.num[:0], c.data[:0], c.end[:0], c.rows[:0]
	}
	t.rows = 0
}

// reset empties the table and frees its columns (after a spill: the held memory
// must drop for the budget check to count the next rows).
func (t *colTable) reset() {
	for i := range t.cols {
		c := &t.cols[i]
		*c = column{kind: c.kind, maxDef: c.maxDef, maxRep: c.maxRep}
	}
	t.rows = 0
}

// addRow appends a row of the output schema (values in column order).
func (t *colTable) addRow(row parquet.Row) {
	for _, v := range row {
		t.cols[v.Column()].add(v)
	}
	t.rows++
}

// check verifies every column holds t.rows rows.
func (t *colTable) check() error {
	for i := range t.cols {
		if n := t.cols[i].numRows(); n != t.rows {
			return fmt.Errorf("column %d holds %d rows, want %d", i, n, t.rows)
		}
	}
	return nil
}

// columnPlan maps the output's leaf columns onto a file's: src[i] is the file's
// leaf column of output column i, or -1 for a top-level column the file lacks.
// ok is false when the file needs parquet.Convert's row reader.
func columnPlan(out, in *parquet.Schema) (src []int, ok bool) {
	for _, p := range out.Columns() {
		oc, _ := out.Lookup(p...)
		ic, found := in.Lookup(p...)
		if !found {
			ot, _ := field(out, p[0])
			if _, top := field(in, p[0]); top || ot == nil || !ot.Optional() {
				return nil, false
			}
			src = append(src, -1)
			continue
		}
		ot, it := oc.Node.Type(), ic.Node.Type()
		if ot.Kind() != it.Kind() || ot.Length() != it.Length() || ot.String() != it.String() ||
			oc.MaxDefinitionLevel != ic.MaxDefinitionLevel || oc.MaxRepetitionLevel != ic.MaxRepetitionLevel {
			return nil, false
		}
		src = append(src, ic.ColumnIndex)
	}
	return src, true
}

// field returns the top-level field of s named name.
func field(s *parquet.Schema, name string) (parquet.Node, bool) {
	for _, f := range s.Fields() {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

// addRowGroup appends a row group column chunk by column chunk.
func (t *colTable) addRowGroup(rg parquet.RowGroup, src []int, buf []parquet.Value) error {
	n := int(rg.NumRows())
	chunks := rg.ColumnChunks()
	for i, j := range src {
		c := &t.cols[i]
		if j < 0 {
			c.addNulls(n)
			continue
		}
		if err := c.addChunk(chunks[j], buf); err != nil {
			return fmt.Errorf("column %d: %w", j, err)
		}
	}
	t.rows += n
	return t.check()
}

func (c *column) addChunk(chunk parquet.ColumnChunk, buf []parquet.Value) error {
	pages := chunk.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if c.addPage(p) {
			parquet.Release(p)
			continue
		}
		vr := p.Values()
		for {
			k, err := vr.ReadValues(buf)
			for _, v := range buf[:k] {
				c.add(v)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				parquet.Release(p)
				return err
			}
		}
		parquet.Release(p)
	}
}

// addPage appends a page's entries from its typed buffers: levels copied in
// bulk, values (or dictionary indexes) read as Go slices, no parquet.Value per
// entry. It appends nothing and returns false for a page it cannot read that
// way (the caller reads its values one by one).
func (c *column) addPage(p parquet.Page) bool {
	n := int(p.NumValues())
	var def, rep []byte
	if c.maxDef > 0 {
		if def = p.DefinitionLevels(); len(def) != n {
			return false
		}
	}
	if c.maxRep > 0 {
		if rep = p.RepetitionLevels(); len(rep) != n {
			return false
		}
	}
	data := p.Data()
	var idx []int32
	vals := data
	if d := p.Dictionary(); d != nil {
		if data.Kind() != encoding.Int32 {
			return false
		}
		idx = data.Int32()
		vals = d.Page().Data()
	}
	var want encoding.Kind
	switch c.kind {
	case parquet.Int32:
		want = encoding.Int32
	case parquet.Int64:
		want = encoding.Int64
	case parquet.Float:
		want = encoding.Float
	case parquet.Double:
		want = encoding.Double
	case parquet.ByteArray:
		want = encoding.ByteArray
	default:
		return false
	}
	if vals.Kind() != want {
		return false
	}
	defined := n
	if def != nil {
		defined = 0
		for _, d := range def {
			if int(d) == c.maxDef {
				defined++
			}
		}
	}
	var num []uint64
	var bdata []byte
	var boffs []uint32
	switch c.kind {
	case parquet.Int32:
		in := vals.Int32()
		num = make([]uint64, len(in))
		for i, v := range in {
			num[i] = uint64(uint32(v))
		}
	case parquet.Int64:
		num = unsafeUint64s(vals.Int64())
	case parquet.Float:
		in := vals.Float()
		num = make([]uint64, len(in))
		for i, v := range in {
			num[i] = uint64(math.Float32bits(v))
		}
	case parquet.Double:
		num = unsafeUint64s(vals.Double())
	case parquet.ByteArray:
		bdata, boffs = vals.ByteArray()
		if len(boffs) == 0 {
			boffs = []uint32{0}
		}
	}
	size := len(num)
	if c.kind == parquet.ByteArray {
		size = len(boffs) - 1
	}
	if idx == nil && size != defined || idx != nil && len(idx) != defined {
		return false
	}
	for _, k := range idx {
		if k < 0 || int(k) >= size {
			return false
		}
	}
	if rep != nil {
		for e, r := range rep {
			if r == 0 {
				c.rows = append(c.rows, uint32(c.n+e))
			}
		}
		c.rep = append(c.rep, rep...)
	}
	if def != nil {
		c.def = append(c.def, def...)
	}
	vi := 0
	if c.kind == parquet.ByteArray {
		if idx == nil && def == nil {
			// Required plain bytes: copy them whole, shift the offsets.
			base := uint32(len(c.data)) - boffs[0]
			c.data = append(c.data, bdata[boffs[0]:boffs[len(boffs)-1]]...)
			for _, o := range boffs[1:] {
				c.end = append(c.end, o+base)
			}
			c.n += n
			return true
		}
		for e := range n {
			if def == nil || int(def[e]) == c.maxDef {
				k := vi
				if idx != nil {
					k = int(idx[vi])
				}
				vi++
				c.data = append(c.data, bdata[boffs[k]:boffs[k+1]]...)
			}
			c.end = append(c.end, uint32(len(c.data)))
		}
		c.n += n
		return true
	}
	if idx == nil && def == nil {
		c.num = append(c.num, num...)
		c.n += n
		return true
	}
	for e := range n {
		var v uint64
		if def == nil || int(def[e]) == c.maxDef {
			k := vi
			if idx != nil {
				k = int(idx[vi])
			}
			vi++
			v = num[k]
		}
		c.num = append(c.num, v)
	}
	c.n += n
	return true
}

// unsafeUint64s views 8-byte values (int64 or float64 bits) as uint64s, without a copy.
func unsafeUint64s[T int64 | float64](s []T) []uint64 {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&s[0])), len(s))
}

// writeRows writes the rows perm, in that order, into w's current row group,
// column by column (whole rows per batch: a row never spans two pages).
func (t *colTable) writeRows(w *parquet.Writer, perm []uint32, batch []parquet.Value) ([]parquet.Value, error) {
	cws := w.ColumnWriters()
	if len(cws) != len(t.cols) {
		return batch, fmt.Errorf("writer has %d columns, rows %d", len(cws), len(t.cols))
	}
	for i := range t.cols {
		c := &t.cols[i]
		batch = batch[:0]
		for _, r := range perm {
			if len(batch) >= 4096 {
				if _, err := cws[i].WriteRowValues(batch); err != nil {
					return batch, err
				}
				batch = batch[:0]
			}
			from, to := c.span(int(r))
			for j := from; j < to; j++ {
				batch = append(batch, c.value(j, i))
			}
		}
		if len(batch) > 0 {
			if _, err := cws[i].WriteRowValues(batch); err != nil {
				return batch, err
			}
		}
	}
	return batch, nil
}

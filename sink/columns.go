package sink

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/schema"
)

// columns is a buffer's compact columnar storage: per leaf column, chunks of bytes
// holding each value as a level byte (repetition<<4 | definition) followed, when the
// value is not null, by its bytes (fixed-width little-endian, or uvarint length +
// bytes). Memory is what the chunks hold, so the buffer's size is known exactly;
// parquet-go's own buffers cost tens of KiB each when empty and several times the
// data when small, which does not scale to thousands of open partitions. Levels and
// values share a chunk so that appending a row writes one place per column: with
// thousands of open buffers every one of them is a cache and TLB miss. A row's
// bytes never straddle two chunks, so neither does a value.
type columns struct {
	leaves []schema.Leaf
	cols   []column
	rows   int
}

type column struct {
	cur  []byte   // the chunk being filled (inline: appending touches no other memory)
	full [][]byte // the chunks before it
}

func newColumns(leaves []schema.Leaf) *columns {
	return &columns{leaves: leaves, cols: make([]column, len(leaves))}
}

// size is the heap held by the columns (capacities, not lengths).
func (c *columns) size() int64 {
	n := int64(len(c.cols)) * 24
	for i := range c.cols {
		col := &c.cols[i]
		n += int64(cap(col.cur)) + int64(cap(col.full))*24
		for _, ch := range col.full {
			n += int64(cap(ch))
		}
	}
	return n
}

// newCap is the capacity a slice grows to when it needs room for need more bytes:
// at least what is needed, else double from 64 bytes up to 64 KiB, then a quarter
// more, at most 16 MiB more. Small steps at first keep a buffer of a few rows at a
// few hundred bytes per column (it was 1 KiB per slice, 34 KiB per buffer of the
// sample table, which thousands of open hour partitions multiply). Growth is
// explicit (not append's doubling) so the memory a row adds is known before adding it.
func newCap(length, capacity, need int) int {
	if length+need <= capacity {
		return capacity
	}
	step := capacity
	if capacity >= 64<<10 {
		step = capacity / 4
	}
	return max(length+need, capacity+min(max(step, 64), 16<<20))
}

// chunkCap is the capacity of the chunk a column starts when its last chunk (of
// capacity last; 0: none) has no room for need more bytes: double the last, from 64
// bytes up to 1 MiB, and at least need. Chunks are never copied to grow: copying
// cost the sink 6% of its CPU on 128 MiB buffers (each byte moved four times).
func chunkCap(last, need int) int {
	return max(need, min(max(2*last, 64), 1<<20))
}

// fits reports whether the chunk being filled has room for need more bytes.
func (col *column) fits(need int) bool { return cap(col.cur)-len(col.cur) >= need }

// reset empties the columns, keeping their capacity (the decoder's staged row).
func (c *columns) reset() {
	for i := range c.cols {
		col := &c.cols[i]
		col.cur, col.full = col.cur[:0], nil
	}
	c.rows = 0
}

// add appends one value of leaf column i at the given levels, in the columns'
// format: the decoder stages each record this way, so that appendRow only copies
// bytes (the record's values were parquet.Values, re-encoded value by value into
// every buffer: a fifth of the sink's ingest CPU).
func (c *columns) add(i int, v parquet.Value, rep, def int) {
	col, leaf := &c.cols[i], &c.leaves[i]
	col.cur = append(col.cur, byte(rep<<4|def))
	if def == leaf.MaxDef {
		col.cur = appendValue(col.cur, leaf, v)
	}
}

// appendValue appends a non-null value's bytes in the columns' format.
func appendValue(b []byte, leaf *schema.Leaf, v parquet.Value) []byte {
	switch leaf.Kind {
	case parquet.Boolean:
		t := byte(0)
		if v.Boolean() {
			t = 1
		}
		return append(b, t)
	case parquet.Int32:
		return binary.LittleEndian.AppendUint32(b, uint32(v.Int32()))
	case parquet.Int64:
		return binary.LittleEndian.AppendUint64(b, uint64(v.Int64()))
	case parquet.Float:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(v.Float()))
	case parquet.Double:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Double()))
	case parquet.FixedLenByteArray:
		return append(b, v.ByteArray()...)
	}
	ba := v.ByteArray()
	b = binary.AppendUvarint(b, uint64(len(ba)))
	return append(b, ba...)
}

// growth returns how many bytes appendRow(row) will allocate (row: a decoder's
// staged record, one chunk per column). Growing the list of full chunks is counted
// in the chunk (24 bytes each, with append's doubling: at most 48).
func (c *columns) growth(row *columns) int64 {
	var n int64
	for i := range row.cols {
		col, need := &c.cols[i], len(row.cols[i].cur)
		if !col.fits(need) {
			n += int64(chunkCap(cap(col.cur), need))
			if col.cur != nil && len(col.full) == cap(col.full) {
				n += int64(max(2*cap(col.full), 4)-cap(col.full)) * 24
			}
		}
	}
	return n
}

// appendRow adds row (a decoder's staged record, one chunk per column) to c.
func (c *columns) appendRow(row *columns) {
	for i := range row.cols {
		col, add := &c.cols[i], row.cols[i].cur
		if !col.fits(len(add)) {
			if col.cur != nil {
				if len(col.full) == cap(col.full) {
					full := make([][]byte, len(col.full), max(2*cap(col.full), 4))
					copy(full, col.full)
					col.full = full
				}
				col.full = append(col.full, col.cur)
			}
			col.cur = make([]byte, 0, chunkCap(cap(col.cur), len(add)))
		}
		col.cur = append(col.cur, add...)
	}
	c.rows += row.rows
}

// chunks is the number of chunks of the column; chunk(k) is the k-th, in order.
func (col *column) chunks() int { return len(col.full) + 1 }

func (col *column) chunk(k int) []byte {
	if k < len(col.full) {
		return col.full[k]
	}
	return col.cur
}

// values decodes column i into parquet values with their levels.
func (c *columns) values(i int) []parquet.Value {
	col, leaf := &c.cols[i], &c.leaves[i]
	var vals []parquet.Value
	for k := range col.chunks() {
		ch := col.chunk(k)
		for pos := 0; pos < len(ch); {
			v, rep, def, next := c.entry(leaf, ch, pos)
			vals = append(vals, v.Level(rep, def, i))
			pos = next
		}
	}
	return vals
}

// writeBatch is the number of values writeTo hands a column writer at a time.
const writeBatch = 4096

// writeTo streams every kept row (keep nil: all) into the writer's column writers,
// in batches of whole rows; batch is scratch space of capacity writeBatch (nil: one
// is allocated).
func (c *columns) writeTo(w *parquet.Writer, keep []bool, batch []parquet.Value) error {
	cws := w.ColumnWriters()
	if len(cws) != len(c.cols) {
		return fmt.Errorf("writer has %d columns, buffer %d", len(cws), len(c.cols))
	}
	if cap(batch) < writeBatch {
		batch = make([]parquet.Value, 0, writeBatch)
	}
	for i := range c.cols {
		col, leaf := &c.cols[i], &c.leaves[i]
		// A required top-level column's values carry no levels, and its column
		// buffer reads none: Value.Level (not inlined) is skipped.
		flat := leaf.MaxDef == 0 && leaf.MaxRep == 0
		row := -1
		batch = batch[:0]
		for k := range col.chunks() {
			ch := col.chunk(k)
			for pos := 0; pos < len(ch); {
				v, rep, def, next := c.entry(leaf, ch, pos)
				pos = next
				if rep == 0 {
					row++
					if len(batch) >= cap(batch)-16 {
						if _, err := cws[i].WriteRowValues(batch); err != nil {
							return fmt.Errorf("column %d: %w", i, err)
						}
						batch = batch[:0]
					}
				}
				if keep != nil && !keep[row] {
					continue
				}
				if !flat {
					v = v.Level(rep, def, i)
				}
				batch = append(batch, v)
			}
		}
		if len(batch) > 0 {
			if _, err := cws[i].WriteRowValues(batch); err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
	}
	return nil
}

// entry reads the value at pos of a chunk of leaf's column: its level byte, then its
// bytes when it is not null. It returns the value (null: the zero Value), its levels
// and the position of the next value.
func (c *columns) entry(leaf *schema.Leaf, ch []byte, pos int) (v parquet.Value, rep, def, next int) {
	lv := ch[pos]
	rep, def, next = int(lv>>4), int(lv&15), pos+1
	if def == leaf.MaxDef {
		v, next = c.value(leaf, ch, next)
	}
	return v, rep, def, next
}

func (c *columns) value(leaf *schema.Leaf, data []byte, pos int) (parquet.Value, int) {
	switch leaf.Kind {
	case parquet.Boolean:
		return parquet.BooleanValue(data[pos] == 1), pos + 1
	case parquet.Int32:
		return parquet.Int32Value(int32(binary.LittleEndian.Uint32(data[pos:]))), pos + 4
	case parquet.Int64:
		return parquet.Int64Value(int64(binary.LittleEndian.Uint64(data[pos:]))), pos + 8
	case parquet.Float:
		return parquet.FloatValue(math.Float32frombits(binary.LittleEndian.Uint32(data[pos:]))), pos + 4
	case parquet.Double:
		return parquet.DoubleValue(math.Float64frombits(binary.LittleEndian.Uint64(data[pos:]))), pos + 8
	case parquet.FixedLenByteArray:
		return parquet.FixedLenByteArrayValue(data[pos : pos+leaf.TypeLen]), pos + leaf.TypeLen
	}
	n, k := binary.Uvarint(data[pos:])
	pos += k
	return parquet.ByteArrayValue(data[pos : pos+int(n)]), pos + int(n)
}

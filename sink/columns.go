package sink

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/schema"
)

// columns is a buffer's compact columnar storage: per leaf column, one byte slice
// holding each value as a level byte (repetition<<4 | definition) followed, when the
// value is not null, by its bytes (fixed-width little-endian, or uvarint length +
// bytes). Memory is what the slices hold, so the buffer's size is known exactly;
// parquet-go's own buffers cost tens of KiB each when empty and several times the
// data when small, which does not scale to thousands of open partitions. Levels and
// values share a slice so that appending a row writes one place per column: with
// thousands of open buffers every one of them is a cache and TLB miss.
type columns struct {
	leaves []schema.Leaf
	cols   []column
	rows   int
}

type column struct {
	b []byte
}

func newColumns(leaves []schema.Leaf) *columns {
	return &columns{leaves: leaves, cols: make([]column, len(leaves))}
}

// size is the heap held by the columns (capacities, not lengths).
func (c *columns) size() int64 {
	n := int64(len(c.cols)) * 24
	for i := range c.cols {
		n += int64(cap(c.cols[i].b))
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

func ensure(b []byte, need int) []byte {
	if c := newCap(len(b), cap(b), need); c != cap(b) {
		nb := make([]byte, len(b), c)
		copy(nb, b)
		return nb
	}
	return b
}

// reset empties the columns, keeping their capacity (the decoder's staged row).
func (c *columns) reset() {
	for i := range c.cols {
		c.cols[i].b = c.cols[i].b[:0]
	}
	c.rows = 0
}

// add appends one value of leaf column i at the given levels, in the columns'
// format: the decoder stages each record this way, so that appendRow only copies
// bytes (the record's values were parquet.Values, re-encoded value by value into
// every buffer: a fifth of the sink's ingest CPU).
func (c *columns) add(i int, v parquet.Value, rep, def int) {
	col, leaf := &c.cols[i], &c.leaves[i]
	col.b = append(col.b, byte(rep<<4|def))
	if def != leaf.MaxDef {
		return
	}
	switch leaf.Kind {
	case parquet.Boolean:
		b := byte(0)
		if v.Boolean() {
			b = 1
		}
		col.b = append(col.b, b)
	case parquet.Int32:
		col.b = binary.LittleEndian.AppendUint32(col.b, uint32(v.Int32()))
	case parquet.Int64:
		col.b = binary.LittleEndian.AppendUint64(col.b, uint64(v.Int64()))
	case parquet.Float:
		col.b = binary.LittleEndian.AppendUint32(col.b, math.Float32bits(v.Float()))
	case parquet.Double:
		col.b = binary.LittleEndian.AppendUint64(col.b, math.Float64bits(v.Double()))
	case parquet.FixedLenByteArray:
		col.b = append(col.b, v.ByteArray()...)
	default:
		b := v.ByteArray()
		col.b = binary.AppendUvarint(col.b, uint64(len(b)))
		col.b = append(col.b, b...)
	}
}

// growth returns how many bytes of capacity appendRow(row) will allocate.
func (c *columns) growth(row *columns) int64 {
	var n int64
	for i := range row.cols {
		col, add := &c.cols[i], &row.cols[i]
		n += int64(newCap(len(col.b), cap(col.b), len(add.b)) - cap(col.b))
	}
	return n
}

// appendRow adds the rows of row (the decoder's staged record) to c.
func (c *columns) appendRow(row *columns) {
	for i := range row.cols {
		col, add := &c.cols[i], &row.cols[i]
		col.b = append(ensure(col.b, len(add.b)), add.b...)
	}
	c.rows += row.rows
}

// values decodes column i into parquet values with their levels.
func (c *columns) values(i int) []parquet.Value {
	col, leaf := &c.cols[i], &c.leaves[i]
	var vals []parquet.Value
	for pos := 0; pos < len(col.b); {
		lv := col.b[pos]
		pos++
		rep, def := int(lv>>4), int(lv&15)
		var v parquet.Value
		if def == leaf.MaxDef {
			v, pos = c.value(leaf, col.b, pos)
		}
		vals = append(vals, v.Level(rep, def, i))
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
		row := -1
		batch = batch[:0]
		for pos := 0; pos < len(col.b); {
			lv := col.b[pos]
			pos++
			rep, def := int(lv>>4), int(lv&15)
			if rep == 0 {
				row++
				if len(batch) >= cap(batch)-16 {
					if _, err := cws[i].WriteRowValues(batch); err != nil {
						return fmt.Errorf("column %d: %w", i, err)
					}
					batch = batch[:0]
				}
			}
			var v parquet.Value
			if def == leaf.MaxDef {
				v, pos = c.value(leaf, col.b, pos)
			}
			if keep != nil && !keep[row] {
				continue
			}
			batch = append(batch, v.Level(rep, def, i))
		}
		if len(batch) > 0 {
			if _, err := cws[i].WriteRowValues(batch); err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
	}
	return nil
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

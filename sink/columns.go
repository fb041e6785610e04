package sink

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/schema"
)

// columns is a buffer's compact columnar storage: per leaf column, one level byte per
// value (repetition<<4 | definition) and the non-null values packed back to back
// (fixed-width little-endian, or uvarint length + bytes). Memory is what the slices
// hold, so the buffer's size is known exactly; parquet-go's own buffers cost tens of
// KiB each when empty and several times the data when small, which does not scale to
// thousands of open partitions.
type columns struct {
	leaves []schema.Leaf
	cols   []column
	rows   int
}

type column struct {
	levels []byte
	data   []byte
}

func newColumns(leaves []schema.Leaf) *columns {
	return &columns{leaves: leaves, cols: make([]column, len(leaves))}
}

// size is the heap held by the columns (capacities, not lengths).
func (c *columns) size() int64 {
	n := int64(len(c.cols)) * 48
	for i := range c.cols {
		n += int64(cap(c.cols[i].levels) + cap(c.cols[i].data))
	}
	return n
}

// encodedSize is the number of data bytes a non-null value takes.
func encodedSize(leaf *schema.Leaf, v *parquet.Value) int {
	switch leaf.Kind {
	case parquet.Boolean:
		return 1
	case parquet.Int32, parquet.Float:
		return 4
	case parquet.Int64, parquet.Double:
		return 8
	case parquet.FixedLenByteArray:
		return leaf.TypeLen
	}
	n := len(v.ByteArray())
	return n + uvarintLen(uint64(n))
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
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

// growth returns how many bytes of capacity appendRow(staged) will allocate.
func (c *columns) growth(staged [][]parquet.Value) int64 {
	var n int64
	for i, vals := range staged {
		col, leaf := &c.cols[i], &c.leaves[i]
		data := 0
		for j := range vals {
			if vals[j].DefinitionLevel() == leaf.MaxDef {
				data += encodedSize(leaf, &vals[j])
			}
		}
		n += int64(newCap(len(col.levels), cap(col.levels), len(vals)) - cap(col.levels))
		n += int64(newCap(len(col.data), cap(col.data), data) - cap(col.data))
	}
	return n
}

// appendRow adds one record's staged values (one slice per leaf column).
func (c *columns) appendRow(staged [][]parquet.Value) {
	for i, vals := range staged {
		col := &c.cols[i]
		leaf := &c.leaves[i]
		data := 0
		for j := range vals {
			if vals[j].DefinitionLevel() == leaf.MaxDef {
				data += encodedSize(leaf, &vals[j])
			}
		}
		col.levels = ensure(col.levels, len(vals))
		col.data = ensure(col.data, data)
		for _, v := range vals {
			def := v.DefinitionLevel()
			col.levels = append(col.levels, byte(v.RepetitionLevel()<<4|def))
			if def != leaf.MaxDef {
				continue
			}
			switch leaf.Kind {
			case parquet.Boolean:
				b := byte(0)
				if v.Boolean() {
					b = 1
				}
				col.data = append(col.data, b)
			case parquet.Int32:
				col.data = binary.LittleEndian.AppendUint32(col.data, uint32(v.Int32()))
			case parquet.Int64:
				col.data = binary.LittleEndian.AppendUint64(col.data, uint64(v.Int64()))
			case parquet.Float:
				col.data = binary.LittleEndian.AppendUint32(col.data, math.Float32bits(v.Float()))
			case parquet.Double:
				col.data = binary.LittleEndian.AppendUint64(col.data, math.Float64bits(v.Double()))
			case parquet.FixedLenByteArray:
				col.data = append(col.data, v.ByteArray()...)
			default:
				b := v.ByteArray()
				col.data = binary.AppendUvarint(col.data, uint64(len(b)))
				col.data = append(col.data, b...)
			}
		}
	}
	c.rows++
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
		pos, row := 0, -1
		batch = batch[:0]
		for _, lv := range col.levels {
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
				v, pos = c.value(leaf, col.data, pos)
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

package rawfile

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/schema"
)

// The buffers' byte format: each value of a leaf column is a level byte
// (repetition<<4 | definition) followed, when the value is not null, by its bytes
// (fixed-width little-endian, or uvarint length + bytes). Memory is what the bytes
// take, so a buffer's size is known exactly; parquet-go's own buffers cost tens of
// KiB each when empty and several times the data when small, which does not scale
// to thousands of open partitions.

// AppendEntry appends one value of a leaf column at the given levels in the buffers'
// format: its level byte, then its bytes when it is not null (def is the leaf's
// maximum definition level).
func AppendEntry(b []byte, leaf *schema.Leaf, v parquet.Value, rep, def int) []byte {
	if b = append(b, byte(rep<<4|def)); def != leaf.MaxDef {
		return b
	}
	return AppendValue(b, leaf, v)
}

// AppendValue appends a non-null value's bytes in the buffers' format.
func AppendValue(b []byte, leaf *schema.Leaf, v parquet.Value) []byte {
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

// RowStore is a buffer's records, one after another: each is its columns' values in
// the buffers' byte format, column by column (a column's values in a record: the
// first has repetition level 0, any more a higher one). Appending a record writes
// one place, so with thousands of open buffers a record costs one run of cache
// misses, not one per column (a store per column took 2.3 µs per record at 1,000
// open buffers, 1 µs at 10). Records sit in chunks that never grow by copying
// (copying cost the sink 6% of its CPU on 128 MiB buffers), and a record never
// straddles two chunks.
type RowStore struct {
	leaves []schema.Leaf
	cur    []byte   // the chunk being filled
	full   [][]byte // the chunks before it
}

// NewRowStore returns an empty store of rows of the given leaf columns.
func NewRowStore(leaves []schema.Leaf) *RowStore { return &RowStore{leaves: leaves} }

// Leaves returns the leaf columns of the store's rows.
func (s *RowStore) Leaves() []schema.Leaf { return s.leaves }

// Size is the heap held by the chunks (capacities, not lengths).
func (s *RowStore) Size() int64 {
	n := int64(cap(s.cur)) + int64(cap(s.full))*24
	for _, ch := range s.full {
		n += int64(cap(ch))
	}
	return n
}

// NewCap is the capacity a slice grows to when it needs room for need more bytes:
// at least what is needed, else double from 64 bytes up to 64 KiB, then a quarter
// more, at most 16 MiB more. Growth is explicit (not append's doubling) so the
// memory an append adds is known before making it.
func NewCap(length, capacity, need int) int {
	if length+need <= capacity {
		return capacity
	}
	step := capacity
	if capacity >= 64<<10 {
		step = capacity / 4
	}
	return max(length+need, capacity+min(max(step, 64), 16<<20))
}

// chunkCap is the capacity of the chunk a store starts when its last chunk (of
// capacity last; 0: none) has no room for need more bytes: double the last, from 64
// bytes up to 1 MiB, and at least need. Small first chunks keep a buffer of a few
// records at about their size, which thousands of open hour partitions multiply.
func chunkCap(last, need int) int {
	return max(need, min(max(2*last, 64), 1<<20))
}

// Growth returns how many bytes AppendRow(row) will allocate. Growing the list of
// full chunks is counted with the chunk (24 bytes each, with append's doubling).
func (s *RowStore) Growth(row [][]byte) int64 {
	need := rowLen(row)
	if cap(s.cur)-len(s.cur) >= need {
		return 0
	}
	n := int64(chunkCap(cap(s.cur), need))
	if s.cur != nil && len(s.full) == cap(s.full) {
		n += int64(max(2*cap(s.full), 4)-cap(s.full)) * 24
	}
	return n
}

// AppendRow adds row (a decoder's staged record: its leaf columns' bytes) to s.
func (s *RowStore) AppendRow(row [][]byte) {
	if need := rowLen(row); cap(s.cur)-len(s.cur) < need {
		if s.cur != nil {
			if len(s.full) == cap(s.full) {
				full := make([][]byte, len(s.full), max(2*cap(s.full), 4))
				copy(full, s.full)
				s.full = full
			}
			s.full = append(s.full, s.cur)
		}
		s.cur = make([]byte, 0, chunkCap(cap(s.cur), need))
	}
	for _, b := range row {
		s.cur = append(s.cur, b...)
	}
}

// rowLen is the number of bytes a staged row takes in a store.
func rowLen(row [][]byte) int {
	n := 0
	for _, b := range row {
		n += len(b)
	}
	return n
}

// chunks is the number of chunks; chunk(k) is the k-th, in order.
func (s *RowStore) chunks() int { return len(s.full) + 1 }

func (s *RowStore) chunk(k int) []byte {
	if k < len(s.full) {
		return s.full[k]
	}
	return s.cur
}

// writeBlock is the number of rows WriteTo gathers before it hands each column
// writer the block's values.
const writeBlock = 256

// WriteTo streams every kept row (keep nil: all) into the writer's column writers, a
// block of whole rows at a time. batches is scratch space, one slice per column (nil:
// allocated); it is returned for reuse.
func (s *RowStore) WriteTo(w *parquet.Writer, keep []bool, batches [][]parquet.Value) ([][]parquet.Value, error) {
	cws := w.ColumnWriters()
	if len(cws) != len(s.leaves) {
		return batches, fmt.Errorf("writer has %d columns, buffer %d", len(cws), len(s.leaves))
	}
	if len(batches) != len(s.leaves) {
		batches = make([][]parquet.Value, len(s.leaves))
		for i := range batches {
			batches[i] = make([]parquet.Value, 0, writeBlock)
		}
	}
	flush := func() error {
		for i, b := range batches {
			if len(b) > 0 {
				if _, err := cws[i].WriteRowValues(b); err != nil {
					return fmt.Errorf("column %d: %w", i, err)
				}
				batches[i] = b[:0]
			}
		}
		return nil
	}
	row, block := 0, 0
	for k := range s.chunks() {
		ch := s.chunk(k)
		for pos := 0; pos < len(ch); row++ {
			kept := keep == nil || keep[row]
			for i := range s.leaves {
				leaf := &s.leaves[i]
				v, rep, def, next := Entry(leaf, ch, pos)
				pos = next
				if leaf.MaxRep == 0 {
					if kept {
						// A required top-level column's values carry no levels, and
						// its column buffer reads none. The others get theirs set in
						// place: Value.Level is not inlined and copies the value
						// twice (rep is 0 here, the zero value's).
						batches[i] = append(batches[i], v)
						if leaf.MaxDef != 0 {
							last := &batches[i][len(batches[i])-1]
							last.SetDefinitionLevel(def)
							last.SetColumnIndex(i)
						}
					}
					continue
				}
				for {
					if kept {
						batches[i] = append(batches[i], v)
						last := &batches[i][len(batches[i])-1]
						last.SetRepetitionLevel(rep)
						last.SetDefinitionLevel(def)
						last.SetColumnIndex(i)
					}
					if pos == len(ch) || ch[pos]>>4 == 0 {
						break
					}
					v, rep, def, pos = Entry(leaf, ch, pos)
				}
			}
			if kept {
				if block++; block == writeBlock {
					if err := flush(); err != nil {
						return batches, err
					}
					block = 0
				}
			}
		}
	}
	return batches, flush()
}

// Entry reads the value at pos of leaf's column bytes: its level byte, then its
// bytes when it is not null. It returns the value (null: the zero Value), its levels
// and the position of the next value.
func Entry(leaf *schema.Leaf, ch []byte, pos int) (v parquet.Value, rep, def, next int) {
	lv := ch[pos]
	rep, def, next = int(lv>>4), int(lv&15), pos+1
	if def == leaf.MaxDef {
		v, next = value(leaf, ch, next)
	}
	return v, rep, def, next
}

// value reads the bytes of a non-null value at pos; it returns the value and the
// position after it.
func value(leaf *schema.Leaf, data []byte, pos int) (parquet.Value, int) {
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

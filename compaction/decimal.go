package compaction

import (
	"encoding/binary"
	"fmt"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// A decimal column widened in the table (decimal(P,S) → decimal(P',S)) can
// change physical type between files: Iceberg stores a precision up to 9 as
// INT32, up to 18 as INT64 and beyond as a FIXED_LEN_BYTE_ARRAY of the
// minimal width (big-endian two's complement). parquet.Convert converts
// values by physical type only: an INT64 becomes the int's little-endian bytes
// and a narrower byte array is not sign-extended, which changes the number.
// convertTo wraps the conversion of such files to re-encode those columns'
// unscaled values exactly.

// decimalFix is one decimal leaf column whose physical type differs between
// the source file and the output schema.
type decimalFix struct {
	path     string
	src, dst int          // column indexes in the source and output schemas
	kind     parquet.Kind // the output's physical type
	width    int          // the output's byte width, for FIXED_LEN_BYTE_ARRAY
}

// decimalFixes lists the decimal columns of out whose physical type differs in in.
func decimalFixes(out, in *parquet.Schema) []decimalFix {
	var fixes []decimalFix
	for _, p := range out.Columns() {
		oc, _ := out.Lookup(p...)
		ot := oc.Node.Type()
		if lt := ot.LogicalType(); lt == nil {
			continue
		} else if _, ok := lt.Value.(*format.DecimalType); !ok {
			continue
		}
		ic, ok := in.Lookup(p...)
		if !ok {
			continue
		}
		it := ic.Node.Type()
		if it.Kind() == ot.Kind() && it.Length() == ot.Length() {
			continue
		}
		fixes = append(fixes, decimalFix{path: fmt.Sprint(p), src: ic.ColumnIndex, dst: oc.ColumnIndex, kind: ot.Kind(), width: ot.Length()})
	}
	return fixes
}

// convertTo is parquet.Convert(out, in) with the decimal columns whose
// physical type changed re-encoded exactly.
func convertTo(out, in *parquet.Schema) (parquet.Conversion, error) {
	conv, err := parquet.Convert(out, in)
	if err != nil {
		return nil, err
	}
	if fixes := decimalFixes(out, in); len(fixes) > 0 {
		return &decimalConversion{Conversion: conv, fixes: fixes}, nil
	}
	return conv, nil
}

type decimalConversion struct {
	parquet.Conversion
	fixes []decimalFix
}

// Convert saves the unscaled values of the fixed columns (as big-endian two's
// complement, nil for null) from the source rows, converts, then replaces the
// output values of those columns, in the same order.
func (c *decimalConversion) Convert(rows []parquet.Row) (int, error) {
	nf := len(c.fixes)
	saved := make([][][]byte, len(rows)*nf)
	for r, row := range rows {
		for _, v := range row {
			for k, f := range c.fixes {
				if v.Column() == f.src {
					saved[r*nf+k] = append(saved[r*nf+k], unscaledBytes(v))
				}
			}
		}
	}
	n, err := c.Conversion.Convert(rows)
	used := make([]int, nf)
	for r := range rows[:n] {
		clear(used)
		row := rows[r]
		for i, v := range row {
			for k, f := range c.fixes {
				if v.Column() != f.dst {
					continue
				}
				vals := saved[r*nf+k]
				if used[k] >= len(vals) {
					return r, fmt.Errorf("decimal column %s: row %d has more values after conversion than before", f.path, r)
				}
				b := vals[used[k]]
				used[k]++
				if v.IsNull() || b == nil {
					continue
				}
				nv, err := encodeUnscaled(b, f)
				if err != nil {
					return r, fmt.Errorf("decimal column %s: %w", f.path, err)
				}
				row[i] = nv.Level(v.RepetitionLevel(), v.DefinitionLevel(), f.dst)
			}
		}
	}
	return n, err
}

// unscaledBytes returns a decimal value's unscaled integer as big-endian two's
// complement (a copy), or nil for a null.
func unscaledBytes(v parquet.Value) []byte {
	switch {
	case v.IsNull():
		return nil
	case v.Kind() == parquet.Int32:
		return binary.BigEndian.AppendUint64(nil, uint64(int64(v.Int32())))
	case v.Kind() == parquet.Int64:
		return binary.BigEndian.AppendUint64(nil, uint64(v.Int64()))
	}
	return append([]byte(nil), v.ByteArray()...)
}

// encodeUnscaled encodes a big-endian two's complement integer as f's
// physical type, failing if it does not fit.
func encodeUnscaled(b []byte, f decimalFix) (parquet.Value, error) {
	width := f.width
	switch f.kind {
	case parquet.Int32:
		width = 4
	case parquet.Int64:
		width = 8
	case parquet.FixedLenByteArray:
	default:
		return parquet.Value{}, fmt.Errorf("unexpected physical type %s", f.kind)
	}
	var sign byte
	if len(b) > 0 && b[0]&0x80 != 0 {
		sign = 0xff
	}
	// Drop leading sign bytes beyond width, then sign-extend to width.
	for len(b) > width && b[0] == sign && (b[1]&0x80 != 0) == (sign != 0) {
		b = b[1:]
	}
	if len(b) > width {
		return parquet.Value{}, fmt.Errorf("unscaled value of %d bytes does not fit %d", len(b), width)
	}
	out := make([]byte, width)
	for i := range width - len(b) {
		out[i] = sign
	}
	copy(out[width-len(b):], b)
	switch f.kind {
	case parquet.Int32:
		return parquet.Int32Value(int32(binary.BigEndian.Uint32(out))), nil
	case parquet.Int64:
		return parquet.Int64Value(int64(binary.BigEndian.Uint64(out))), nil
	}
	return parquet.FixedLenByteArrayValue(out), nil
}

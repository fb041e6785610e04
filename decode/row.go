package decode

import (
	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
)

// columns is one record as the decoder stages it: per leaf column, its values in the
// buffers' byte format. The decoder fills columns in the order the record's fields
// come, so each column has its own bytes; rawfile.RowStore.AppendRow then copies them
// in column order.
type columns struct {
	leaves []schema.Leaf
	cols   [][]byte
}

func newColumns(leaves []schema.Leaf) *columns {
	return &columns{leaves: leaves, cols: make([][]byte, len(leaves))}
}

// reset empties the columns, keeping their capacity.
func (c *columns) reset() {
	for i := range c.cols {
		c.cols[i] = c.cols[i][:0]
	}
}

// add appends one value of leaf column i at the given levels, in the buffers' byte
// format: the decoder stages each record this way, so that AppendRow only copies
// bytes (the record's values were parquet.Values, re-encoded value by value into
// every buffer: a fifth of the sink's ingest CPU).
func (c *columns) add(i int, v parquet.Value, rep, def int) {
	c.cols[i] = rawfile.AppendEntry(c.cols[i], &c.leaves[i], v, rep, def)
}

// values decodes column i into parquet values with their levels.
func (c *columns) values(i int) []parquet.Value {
	var vals []parquet.Value
	leaf := &c.leaves[i]
	for pos := 0; pos < len(c.cols[i]); {
		v, rep, def, next := rawfile.Entry(leaf, c.cols[i], pos)
		vals = append(vals, v.Level(rep, def, i))
		pos = next
	}
	return vals
}

// Row returns the record Decode staged last: per leaf column, its values in the
// raw files' row format (rawfile.RowStore.AppendRow takes it).
func (d *Decoder) Row() [][]byte { return d.row.cols }

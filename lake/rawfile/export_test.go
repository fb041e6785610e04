package rawfile

import "github.com/parquet-go/parquet-go"

// ReuseBelow is reuseBelow, for the black-box tests.
const ReuseBelow = reuseBelow

// KeptWriter reports whether the encoder kept its last file's writer for the next.
func (c *Encoder) KeptWriter() bool { return c.pw != nil }

// Chunks is the number of chunks of the store.
func (s *RowStore) Chunks() int { return s.chunks() }

// Values decodes column i of the store into parquet values with their levels, reading
// the rows as WriteTo does but on its own (the tests compare the two).
func (s *RowStore) Values(i int) []parquet.Value {
	var vals []parquet.Value
	for k := range s.chunks() {
		ch := s.chunk(k)
		for pos := 0; pos < len(ch); {
			for c := range s.leaves {
				leaf := &s.leaves[c]
				for first := true; first || leaf.MaxRep > 0 && pos < len(ch) && ch[pos]>>4 != 0; first = false {
					v, rep, def, next := Entry(leaf, ch, pos)
					if c == i {
						vals = append(vals, v.Level(rep, def, i))
					}
					pos = next
				}
			}
		}
	}
	return vals
}

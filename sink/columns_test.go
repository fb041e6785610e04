package sink

import "github.com/parquet-go/parquet-go"

// values decodes column i of the store into parquet values with their levels, reading
// the rows as writeTo does but on its own (the tests compare the two).
func (s *rowStore) values(i int) []parquet.Value {
	var vals []parquet.Value
	for k := range s.chunks() {
		ch := s.chunk(k)
		for pos := 0; pos < len(ch); {
			for c := range s.leaves {
				leaf := &s.leaves[c]
				for first := true; first || leaf.MaxRep > 0 && pos < len(ch) && ch[pos]>>4 != 0; first = false {
					v, rep, def, next := entry(leaf, ch, pos)
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

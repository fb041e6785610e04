package decode

import (
	"bytes"
	"math"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson/fastfloat"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// The fast path reads a JSON record in one pass, straight into the staged row,
// without building fastjson's tree and looking every field up in it (the two were
// 40% of the decoder's CPU). It takes only the common shape of a record: strict
// JSON, strings without escapes, every value of its column's own JSON type (no
// coercion), no repeated keys among those it reads. On anything else it declines,
// and Decode reads the record again with fastjson, which accepts what fastjson
// accepts and rejects with the reasons the dead letters carry. A record the fast
// path takes is staged exactly as the full path stages it (FuzzDecode compares
// the two on every input).

// fastObject is an object the fast path reads at the top level of a record: the
// keys of the columns' JSON paths that start there.
type fastObject struct {
	names  []string
	fields []fastField
	index  map[string]int
}

// fastField is a key of a fastObject: a column (node, at col in the schema's
// columns), or an object holding more of the columns' paths (obj).
type fastField struct {
	node *schema.Node
	col  int
	obj  *fastObject
}

// maxFastFields bounds the keys of one object the fast path tracks (a bit each).
const maxFastFields = 64

// maxFastDepth bounds the nesting the fast path reads or skips (fastjson's is 300).
const maxFastDepth = 64

// compileFast returns the top-level object of s's columns, or nil when the fast
// path cannot read this table: one column's path is a prefix of another's, or an
// object has more than maxFastFields known keys.
func compileFast(s *schema.Schema) *fastObject {
	top := &fastObject{index: map[string]int{}}
	for col, c := range s.Columns {
		if kafkaColumn(s, c) {
			continue
		}
		path := c.Path
		if len(path) == 0 {
			return nil // the full path reads the whole record for it
		}
		o := top
		for k, seg := range path {
			i, ok := o.index[seg]
			if !ok {
				i = len(o.fields)
				o.index[seg] = i
				o.names = append(o.names, seg)
				o.fields = append(o.fields, fastField{})
			}
			f := &o.fields[i]
			if k == len(path)-1 {
				if ok {
					return nil // a path ends where another passes or ends
				}
				f.node, f.col = c, col
				break
			}
			if f.node != nil {
				return nil
			}
			if f.obj == nil {
				f.obj = &fastObject{index: map[string]int{}}
			}
			o = f.obj
		}
	}
	if !fastFits(top) {
		return nil
	}
	return top
}

func fastFits(o *fastObject) bool {
	if len(o.fields) > maxFastFields {
		return false
	}
	for _, f := range o.fields {
		if f.obj != nil && !fastFits(f.obj) {
			return false
		}
		if f.node != nil && !fastNodeFits(f.node) {
			return false
		}
	}
	return true
}

func fastNodeFits(n *schema.Node) bool {
	if n.Type.Kind == config.KindStruct && len(n.Children) > maxFastFields {
		return false
	}
	for _, c := range n.Children {
		if !fastNodeFits(c) {
			return false
		}
	}
	return true
}

// fastReader is the fast path's position in a record.
type fastReader struct {
	b     []byte
	i     int
	depth int
}

func (r *fastReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space (0 at the end).
func (r *fastReader) peek() byte {
	r.ws()
	if r.i == len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// str reads a string without escapes at r.i (on its opening quote) and returns its
// bytes; ok is false for any other string.
func (r *fastReader) str() (b []byte, ok bool) {
	rest := r.b[r.i+1:]
	n := bytes.IndexByte(rest, '"')
	if n < 0 || bytes.IndexByte(rest[:n], '\\') >= 0 {
		return nil, false
	}
	r.i += n + 2
	return rest[:n], true
}

// skipStr skips a string at r.i, escapes included.
func (r *fastReader) skipStr() bool {
	for i := r.i + 1; i < len(r.b); i++ {
		switch r.b[i] {
		case '\\':
			i++
		case '"':
			r.i = i + 1
			return true
		}
	}
	return false
}

// num reads a number in JSON's grammar at r.i and returns its text; ok is false
// when the text is not one, or runs on into anything but a delimiter.
func (r *fastReader) num() (text []byte, ok bool) {
	end, ok := numberEnd(r.b, r.i)
	if !ok {
		return nil, false
	}
	if end < len(r.b) {
		switch r.b[end] {
		case ' ', '\t', '\n', '\r', ',', ']', '}':
		default:
			return nil, false
		}
	}
	text, r.i = r.b[r.i:end], end
	return text, true
}

// lit reads the literal word (true, false, null) at r.i.
func (r *fastReader) lit(word string) bool {
	if len(r.b)-r.i < len(word) || string(r.b[r.i:r.i+len(word)]) != word {
		return false
	}
	r.i += len(word)
	return true
}

// skip skips any value, checking its grammar as far as the fast path reads it.
func (r *fastReader) skip() bool {
	switch r.peek() {
	case '"':
		return r.skipStr()
	case 't':
		return r.lit("true")
	case 'f':
		return r.lit("false")
	case 'n':
		return r.lit("null")
	case '[':
		return r.list(func() bool { return r.skip() })
	case '{':
		return r.object(func([]byte) bool { return r.skip() })
	}
	_, ok := r.num()
	return ok
}

// enter steps into the array or object at r.i; empty reports that it closed at once.
func (r *fastReader) enter(closing byte) (empty, ok bool) {
	if r.depth++; r.depth > maxFastDepth {
		return false, false
	}
	r.i++
	if r.peek() == closing {
		r.i++
		r.depth--
		return true, true
	}
	return false, true
}

// next steps past the ',' after an element (more) or past the closing byte.
func (r *fastReader) next(closing byte) (more, ok bool) {
	switch r.peek() {
	case ',':
		r.i++
		return true, true
	case closing:
		r.i++
		r.depth--
		return false, true
	}
	return false, false
}

// list reads an array at r.i, calling elem for each element (r at its start).
func (r *fastReader) list(elem func() bool) bool {
	empty, ok := r.enter(']')
	for ok && !empty {
		if !elem() {
			return false
		}
		more, ok2 := r.next(']')
		ok, empty = ok2, !more
	}
	return ok
}

// object reads an object at r.i, calling field for each key (without escapes) with
// r at its value.
func (r *fastReader) object(field func(key []byte) bool) bool {
	empty, ok := r.enter('}')
	for ok && !empty {
		if r.peek() != '"' {
			return false
		}
		key, isStr := r.str()
		if !isStr || r.peek() != ':' {
			return false
		}
		r.i++
		if !field(key) {
			return false
		}
		more, ok2 := r.next('}')
		ok, empty = ok2, !more
	}
	return ok
}

// decodeFast stages the record's columns read by the fast path; false: it declined
// (the staged row is then partial and must be reset).
func (d *Decoder) decodeFast(r *Record) bool {
	fr := &d.fr
	*fr = fastReader{b: r.Value}
	if fr.peek() != '{' || !d.fastObject(d.fast) {
		return false
	}
	if fr.ws(); fr.i != len(fr.b) {
		return false
	}
	d.emitKafka(r)
	return true
}

// fastObject reads an object of columns' paths (fr on its '{').
func (d *Decoder) fastObject(o *fastObject) bool {
	fr := &d.fr
	var seen uint64
	guess := 0
	ok := fr.object(func(key []byte) bool {
		// Producers write keys in one order: try the one after the last first.
		i := guess
		if i >= len(o.names) || o.names[i] != b2s(key) {
			var known bool
			if i, known = o.index[b2s(key)]; !known {
				return d.known == nil && fr.skip() // strict: the full path names the key
			}
		}
		if seen&(1<<i) != 0 {
			return false // a repeated key: fastjson's Get reads the first
		}
		seen |= 1 << i
		guess = i + 1
		f := &o.fields[i]
		if f.node != nil {
			d.cur = d.contracts[f.col]
			return d.fastValue(f.node, 0, 0)
		}
		if fr.peek() == 'n' {
			return fr.lit("null") && d.fastUnseen(f.obj, 0)
		}
		return fr.peek() == '{' && d.fastObject(f.obj)
	})
	return ok && d.fastUnseen(o, seen)
}

// fastUnseen stages the columns under the keys of o not in seen (a bit per key) as
// missing: all of them for an absent or null object.
func (d *Decoder) fastUnseen(o *fastObject, seen uint64) bool {
	for i := range o.fields {
		if seen&(1<<i) != 0 {
			continue
		}
		f := &o.fields[i]
		if f.node != nil && !d.fastMissing(f.node, 0, 0) || f.obj != nil && !d.fastUnseen(f.obj, 0) {
			return false
		}
	}
	return true
}

// fastMissing stages an absent or null value of n: nulls, or a decline when n is
// required (the full path rejects the record).
func (d *Decoder) fastMissing(n *schema.Node, rep, def int) bool {
	if !n.Optional {
		return false
	}
	d.emitNulls(n, rep, def)
	return true
}

// fastValue reads one value of n, as shred does: def is the definition level of the
// parent, rep the repetition level of the first value.
func (d *Decoder) fastValue(n *schema.Node, rep, def int) bool {
	fr := &d.fr
	c := fr.peek()
	if c == 'n' {
		return fr.lit("null") && d.fastMissing(n, rep, def)
	}
	if n.Optional {
		def++
	}
	switch n.Type.Kind {
	case config.KindList:
		if c != '[' {
			return false
		}
		i := 0
		ok := fr.list(func() bool {
			r := elemRep(n, rep, i)
			i++
			return d.fastValue(n.Children[0], r, def+1)
		})
		if ok && i == 0 {
			d.emitNulls(n, rep, def)
		}
		return ok
	case config.KindMap:
		if c != '{' {
			return false
		}
		i := 0
		key, value := n.Children[0], n.Children[1]
		ok := fr.object(func(k []byte) bool {
			r := elemRep(n, rep, i)
			i++
			d.emit(key.Leaf, parquet.ByteArrayValue(k), r, def+1)
			return d.fastValue(value, r, def+1)
		})
		if ok && i == 0 {
			d.emitNulls(n, rep, def)
		}
		return ok
	case config.KindStruct:
		if c != '{' {
			return false
		}
		var seen uint64
		ok := fr.object(func(k []byte) bool {
			for i, ch := range n.Children {
				if ch.Name == b2s(k) {
					if seen&(1<<i) != 0 {
						return false
					}
					seen |= 1 << i
					return d.fastValue(ch, rep, def)
				}
			}
			return d.known == nil && fr.skip()
		})
		if !ok {
			return false
		}
		for i, ch := range n.Children {
			if seen&(1<<i) == 0 && !d.fastMissing(ch, rep, def) {
				return false
			}
		}
		return true
	}
	pv, ok := d.fastLeaf(n.Type, c)
	if ok {
		d.emit(n.Leaf, pv, rep, def)
	}
	return ok
}

// fastLeaf reads a primitive value of type t whose JSON type is t's own (c is its
// first byte).
func (d *Decoder) fastLeaf(t *config.Type, c byte) (parquet.Value, bool) {
	fr := &d.fr
	switch t.Kind {
	case config.KindBool:
		switch {
		case c == 't' && fr.lit("true"):
			return parquet.BooleanValue(true), true
		case c == 'f' && fr.lit("false"):
			return parquet.BooleanValue(false), true
		}
		return parquet.Value{}, false
	case config.KindInt32, config.KindInt64, config.KindFloat32, config.KindFloat64:
		text, ok := fr.num()
		if !ok {
			return parquet.Value{}, false
		}
		switch t.Kind {
		case config.KindInt32, config.KindInt64:
			i, err := fastfloat.ParseInt64(b2s(text))
			switch {
			case err != nil:
				return parquet.Value{}, false
			case t.Kind == config.KindInt64:
				return parquet.Int64Value(i), true
			case i < math.MinInt32 || i > math.MaxInt32:
				return parquet.Value{}, false
			}
			return parquet.Int32Value(int32(i)), true
		}
		f, err := fastfloat.Parse(b2s(text))
		switch {
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			return parquet.Value{}, false
		case t.Kind == config.KindFloat64:
			return parquet.DoubleValue(f), true
		case math.Abs(f) > math.MaxFloat32:
			return parquet.Value{}, false
		}
		return parquet.FloatValue(float32(f)), true
	case config.KindDecimal:
		var text []byte
		var ok bool
		if c == '"' {
			text, ok = fr.str()
		} else {
			text, ok = fr.num()
		}
		if !ok {
			return parquet.Value{}, false
		}
		pv, err := d.decimalValue(t, b2s(text))
		return pv, err == nil
	}
	// The rest are strings in JSON.
	if c != '"' {
		if t.Kind == config.KindTimestamp && d.cur.tsUnit != 0 {
			if text, ok := fr.num(); ok {
				us, err := epochMicros(text, d.cur.tsUnit)
				return parquet.Int64Value(us), err == nil
			}
		}
		return parquet.Value{}, false
	}
	b, ok := fr.str()
	if !ok {
		return parquet.Value{}, false
	}
	switch t.Kind {
	case config.KindString:
		return parquet.ByteArrayValue(b), true
	case config.KindTimestamp:
		us, err := d.timestampString(b)
		return parquet.Int64Value(us), err == nil
	case config.KindDate:
		pv, err := dateValue(b)
		return pv, err == nil
	case config.KindBytes:
		pv, err := d.bytesValue(b)
		return pv, err == nil
	}
	return parquet.Value{}, false
}

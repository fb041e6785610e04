package decode

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// Avro rejection reasons (see also the JSON ones in decode.go).
const (
	ReasonBadFraming    = "bad_framing"    // not the Confluent wire format (magic byte 0 + 4-byte schema id)
	ReasonUnknownSchema = "unknown_schema" // the schema id names a schema that is not usable Avro (an unknown id is retried, not rejected)
	ReasonMalformedAvro = "malformed_avro" // the body does not decode with its writer schema
)

// avroDecoder decodes records in the Confluent wire format (magic byte 0, 4-byte
// big-endian schema id, Avro binary body) into the column values of one table.
// For each writer schema id it compiles, once, a plan that projects the writer's
// fields by name onto the table's columns; decoding then walks the Avro body once,
// writing each value straight into its leaf columns (Dremel levels, like shred).
// Like Decoder it is not safe for concurrent use (the engine serialises it).
type avroDecoder struct {
	d     *Decoder // the table's decoder: column staging, levels, event-time checks
	table string
	cache *schemaCache
	plans map[int]*avroPlan
	log   *slog.Logger
	// onUnknownFields is called once per schema id whose writer has fields the table lacks.
	onUnknownFields func(id int, fields []string)
	depth           int
}

func newAvroDecoder(d *Decoder, table string, cache *schemaCache, log *slog.Logger) *avroDecoder {
	return &avroDecoder{d: d, table: table, cache: cache, plans: map[int]*avroPlan{}, log: log}
}

// avroPlan is the compiled projection of one writer schema onto the table.
type avroPlan struct {
	err     error // the writer schema cannot be used at all: every record is rejected
	root    *avroOp
	missing []*schema.Node // table columns the writer lacks: null, or rejected if required
	unknown []string       // writer fields the table lacks (ignored)
}

type opKind uint8

const (
	opSkip   opKind = iota // read and drop a writer value
	opNull                 // the null branch of a union
	opLeaf                 // a primitive written to a leaf column
	opRecord               // a record: fields in writer order
	opArray
	opMap
	opUnion
	opReject // the writer type cannot be projected onto the column
)

// writer primitive types
type wtype uint8

const (
	wNull wtype = iota
	wBool
	wInt
	wLong
	wFloat
	wDouble
	wBytes
	wString
	wFixed
	wEnum
)

// conversions from a writer primitive to a column value
type conv uint8

const (
	cString   conv = iota // bytes/string → BYTE_ARRAY
	cEnum                 // enum index → its symbol
	cBool                 //
	cInt32                // int → int32
	cInt64                // int/long → int64
	cFloat32              // int/long/float → float32
	cFloat64              // int/long/float/double → float64
	cTsMillis             // long millis → micros
	cTsMicros             // long micros
	cDate                 // int days
	cDecimal              // bytes/fixed two's complement → decimal(p,s)
)

type avroOp struct {
	kind     opKind
	w        wtype
	conv     conv
	node     *schema.Node // target (nil: skip)
	size     int          // fixed size
	symbols  []string     // enum
	rescale  int          // decimal: column scale - writer scale
	mul      *big.Int     // decimal: 10^rescale
	limit    *big.Int     // decimal: 10^column precision
	fields   []*avroOp    // record fields in writer order
	names    []string     // record: the writer's field names, parallel to fields (rejection paths)
	missing  []*schema.Node
	elem     *avroOp   // array items, map values
	branches []*avroOp // union
	rej      string    // opReject: why
	zero     bool      // may encode as zero bytes (guards huge block counts)
}

// Decode decodes one Confluent-framed Avro record into its staged row and returns its event
// time in microseconds. Errors are *Rejection, except a transient registry error.
func (a *avroDecoder) Decode(r *Record, now time.Time) (int64, error) {
	d := a.d
	d.reset()
	if len(r.Value) > d.maxBytes {
		return 0, reject(ReasonOversized, "", "record of %d bytes exceeds flush.max_record_bytes %d", len(r.Value), d.maxBytes)
	}
	id, err := schemaID(r.Value)
	if err != nil {
		return 0, err
	}
	p, err := a.plan(context.Background(), id)
	if err != nil {
		return 0, err
	}
	rd := avroReader{b: r.Value, i: 5}
	a.depth = 0
	for i, f := range p.root.fields {
		// The writer's name, also for a skipped field: a rejection names the field it is in.
		d.path = append(d.path[:0], pathElem{name: p.root.names[i]})
		if f.node == nil {
			if err := a.skip(&rd, f); err != nil {
				return 0, err
			}
			continue
		}
		if err := a.value(&rd, f, 0, 0); err != nil {
			return 0, err
		}
	}
	d.path = d.path[:0]
	if rd.i != len(rd.b) {
		return 0, reject(ReasonMalformedAvro, "", "%d bytes left after the record (schema id %d)", len(rd.b)-rd.i, id)
	}
	for _, c := range p.missing {
		if !c.Optional {
			return 0, reject(ReasonMissingField, c.Name, "required column is not in writer schema id %d", id)
		}
		d.emitNulls(c, 0, 0)
	}
	d.emitKafka(r)
	return d.checkEventTime(r, now)
}

// schemaID reads the Confluent framing.
func schemaID(v []byte) (int, error) {
	if len(v) < 5 {
		return 0, reject(ReasonBadFraming, "", "record of %d bytes is too short for the Confluent wire format (magic byte 0 + 4-byte schema id)", len(v))
	}
	if v[0] != 0 {
		return 0, reject(ReasonBadFraming, "", "magic byte is 0x%02x, want 0x00 (Confluent wire format)", v[0])
	}
	return int(binary.BigEndian.Uint32(v[1:5])), nil
}

// plan returns the compiled plan for a writer schema id, fetching the schema if
// Tables.Prepare did not already.
func (a *avroDecoder) plan(ctx context.Context, id int) (*avroPlan, error) {
	if p := a.plans[id]; p != nil {
		return p, p.err
	}
	var ws avro.Schema
	if e := a.cache.lookup(id); e != nil {
		if e.err != nil {
			return nil, e.err
		}
		ws = e.schema
	} else {
		var err error
		if ws, err = a.cache.get(ctx, id); err != nil {
			return nil, err
		}
	}
	p, err := compilePlan(ws, a.d.s)
	if err != nil {
		a.plans[id] = &avroPlan{err: err}
		return nil, err
	}
	if len(p.unknown) > 0 {
		if a.log != nil {
			a.log.Warn("writer schema has fields the table does not; they are ignored until the columns change (restart for columns_from: registry)",
				"table", a.table, "schema_id", id, "fields", strings.Join(p.unknown, ","))
		}
		if a.onUnknownFields != nil {
			a.onUnknownFields(id, p.unknown)
		}
	}
	a.plans[id] = p
	return p, nil
}

// compilePlan projects a writer record schema onto the table's columns by name.
// An unusable top-level schema rejects every record that uses it.
func compilePlan(ws avro.Schema, s *schema.Schema) (*avroPlan, error) {
	rec, ok := deref(ws).(*avro.RecordSchema)
	if !ok {
		return nil, reject(ReasonUnknownSchema, "", "writer schema is %s, want a record", ws.Type())
	}
	c := &compiler{skips: map[avro.Schema]*avroOp{}}
	p := &avroPlan{root: &avroOp{kind: opRecord}}
	byName := map[string]*schema.Node{}
	for _, col := range s.Columns {
		if kafkaColumn(s, col) {
			continue
		}
		byName[col.Path[0]] = col
	}
	used := map[*schema.Node]bool{}
	for _, f := range rec.Fields() {
		p.root.names = append(p.root.names, f.Name())
		col := byName[f.Name()]
		if col == nil {
			p.unknown = append(p.unknown, f.Name())
			p.root.fields = append(p.root.fields, c.skip(f.Type()))
			continue
		}
		used[col] = true
		op := c.project(f.Type(), col, 0)
		p.root.fields = append(p.root.fields, op)
	}
	for _, col := range s.Columns {
		if len(col.Path) > 0 && byName[col.Path[0]] == col && !used[col] {
			p.missing = append(p.missing, col)
		}
	}
	return p, nil
}

type compiler struct {
	skips map[avro.Schema]*avroOp
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func rejectOp(n *schema.Node, format string, args ...any) *avroOp {
	return &avroOp{kind: opReject, node: n, rej: fmt.Sprintf(format, args...)}
}

// project compiles the reading of writer type ws into column node n.
func (c *compiler) project(ws avro.Schema, n *schema.Node, depth int) *avroOp {
	ws = deref(ws)
	if depth > 64 {
		return rejectOp(n, "writer schema nests deeper than the column")
	}
	if u, ok := ws.(*avro.UnionSchema); ok {
		op := &avroOp{kind: opUnion, node: n}
		for _, b := range u.Types() {
			if b.Type() == avro.Null {
				op.branches = append(op.branches, &avroOp{kind: opNull, node: n, zero: true})
				op.zero = true
				continue
			}
			bop := c.project(b, n, depth+1)
			op.zero = op.zero || bop.zero
			op.branches = append(op.branches, bop)
		}
		return op
	}
	t := n.Type
	wrong := func() *avroOp {
		return rejectOp(n, "writer type %s cannot be written to a %s column", describe(ws), t)
	}
	switch t.Kind {
	case config.KindStruct:
		rec, ok := ws.(*avro.RecordSchema)
		if !ok {
			return wrong()
		}
		op := &avroOp{kind: opRecord, node: n, zero: true}
		byName := map[string]*schema.Node{}
		for _, ch := range n.Children {
			byName[ch.Name] = ch
		}
		used := map[*schema.Node]bool{}
		for _, f := range rec.Fields() {
			ch := byName[f.Name()]
			var fop *avroOp
			if ch == nil {
				fop = c.skip(f.Type())
			} else {
				used[ch] = true
				fop = c.project(f.Type(), ch, depth+1)
			}
			op.zero = op.zero && fop.zero
			op.fields = append(op.fields, fop)
			op.names = append(op.names, f.Name())
		}
		for _, ch := range n.Children {
			if !used[ch] {
				op.missing = append(op.missing, ch)
			}
		}
		return op
	case config.KindList:
		arr, ok := ws.(*avro.ArraySchema)
		if !ok {
			return wrong()
		}
		return &avroOp{kind: opArray, node: n, elem: c.project(arr.Items(), n.Children[0], depth+1)}
	case config.KindMap:
		m, ok := ws.(*avro.MapSchema)
		if !ok {
			return wrong()
		}
		if n.Type.Key.Kind != config.KindString {
			return wrong()
		}
		return &avroOp{kind: opMap, node: n, elem: c.project(m.Values(), n.Children[1], depth+1)}
	}
	// leaves
	op := &avroOp{kind: opLeaf, node: n}
	var lt avro.LogicalType
	var dec *avro.DecimalLogicalSchema
	switch s := ws.(type) {
	case *avro.NullSchema: // hamba/avro parses "null" as *NullSchema, not a PrimitiveSchema
		return &avroOp{kind: opNull, node: n, zero: true}
	case *avro.PrimitiveSchema:
		if l := s.Logical(); l != nil {
			lt = l.Type()
			dec, _ = l.(*avro.DecimalLogicalSchema)
		}
		switch s.Type() {
		case avro.Null:
			return &avroOp{kind: opNull, node: n, zero: true}
		case avro.Boolean:
			op.w = wBool
		case avro.Int:
			op.w = wInt
		case avro.Long:
			op.w = wLong
		case avro.Float:
			op.w = wFloat
		case avro.Double:
			op.w = wDouble
		case avro.Bytes:
			op.w = wBytes
		case avro.String:
			op.w = wString
		default:
			return wrong()
		}
	case *avro.FixedSchema:
		op.w, op.size = wFixed, s.Size()
		if l := s.Logical(); l != nil {
			lt = l.Type()
			dec, _ = l.(*avro.DecimalLogicalSchema)
		}
	case *avro.EnumSchema:
		op.w, op.symbols = wEnum, s.Symbols()
	default:
		return wrong()
	}
	w := op.w
	isTime := lt == avro.TimestampMillis || lt == avro.TimestampMicros || lt == avro.LocalTimestampMillis || lt == avro.LocalTimestampMicros
	switch t.Kind {
	case config.KindString:
		switch {
		case w == wEnum:
			op.conv = cEnum
		case (w == wString || w == wBytes || w == wFixed) && dec == nil:
			op.conv = cString
		default:
			return wrong()
		}
	case config.KindBytes:
		if w != wBytes && w != wFixed && w != wString || dec != nil {
			return wrong()
		}
		op.conv = cString
	case config.KindBool:
		if w != wBool {
			return wrong()
		}
		op.conv = cBool
	case config.KindInt32:
		if w != wInt || lt == avro.Date {
			return wrong()
		}
		op.conv = cInt32
	case config.KindInt64:
		if w != wInt && w != wLong || isTime || lt == avro.Date {
			return wrong()
		}
		op.conv = cInt64
	case config.KindFloat32:
		if w != wInt && w != wLong && w != wFloat || isTime {
			return wrong()
		}
		op.conv = cFloat32
	case config.KindFloat64:
		if w != wInt && w != wLong && w != wFloat && w != wDouble || isTime {
			return wrong()
		}
		op.conv = cFloat64
	case config.KindTimestamp:
		switch {
		case w == wLong && (lt == avro.TimestampMillis || lt == avro.LocalTimestampMillis):
			op.conv = cTsMillis
		case w == wLong && (lt == avro.TimestampMicros || lt == avro.LocalTimestampMicros):
			op.conv = cTsMicros
		default:
			return rejectOp(n, "writer type %s cannot be written to a timestamp column (want long with logical type timestamp-millis or timestamp-micros)", describe(ws))
		}
	case config.KindDate:
		if w != wInt || lt != avro.Date {
			return rejectOp(n, "writer type %s cannot be written to a date column (want int with logical type date)", describe(ws))
		}
		op.conv = cDate
	case config.KindDecimal:
		if dec == nil || (w != wBytes && w != wFixed) {
			return rejectOp(n, "writer type %s cannot be written to a %s column (want a decimal logical type)", describe(ws), t)
		}
		if dec.Scale() > t.Scale {
			return rejectOp(n, "writer decimal(%d,%d) has more fractional digits than the %s column", dec.Precision(), dec.Scale(), t)
		}
		op.conv, op.rescale = cDecimal, t.Scale-dec.Scale()
		op.mul = new(big.Int).Exp(bigTen, big.NewInt(int64(op.rescale)), nil)
		op.limit = new(big.Int).Exp(bigTen, big.NewInt(int64(t.Precision)), nil)
	default:
		return wrong()
	}
	return op
}

// describe names a writer type for rejections: "string", "long (timestamp-millis)".
func describe(s avro.Schema) string {
	var lt string
	switch s := s.(type) {
	case *avro.PrimitiveSchema:
		if l := s.Logical(); l != nil {
			lt = string(l.Type())
		}
	case *avro.FixedSchema:
		if l := s.Logical(); l != nil {
			lt = string(l.Type())
		}
		return fmt.Sprintf("fixed(%d)", s.Size()) + paren(lt)
	}
	return string(s.Type()) + paren(lt)
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// skip compiles a reader that drops a writer value; recursive types reuse the op.
func (c *compiler) skip(ws avro.Schema) *avroOp {
	ws = deref(ws)
	if op := c.skips[ws]; op != nil {
		return op
	}
	op := &avroOp{kind: opSkip}
	c.skips[ws] = op
	switch s := ws.(type) {
	case *avro.RecordSchema:
		op.kind, op.zero = opRecord, true
		for _, f := range s.Fields() {
			fop := c.skip(f.Type())
			op.zero = op.zero && fop.zero
			op.fields = append(op.fields, fop)
			op.names = append(op.names, f.Name())
		}
	case *avro.UnionSchema:
		op.kind = opUnion
		for _, b := range s.Types() {
			bop := c.skip(b)
			op.zero = op.zero || bop.zero
			op.branches = append(op.branches, bop)
		}
	case *avro.ArraySchema:
		op.kind, op.elem = opArray, c.skip(s.Items())
	case *avro.MapSchema:
		op.kind, op.elem = opMap, c.skip(s.Values())
	case *avro.FixedSchema:
		op.w, op.size = wFixed, s.Size()
		op.zero = s.Size() == 0
	case *avro.EnumSchema:
		op.w, op.symbols = wEnum, s.Symbols()
	case *avro.NullSchema: // hamba/avro parses "null" as *NullSchema, not a PrimitiveSchema
		op.w, op.zero = wNull, true
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Null:
			op.w, op.zero = wNull, true
		case avro.Boolean:
			op.w = wBool
		case avro.Int:
			op.w = wInt
		case avro.Long:
			op.w = wLong
		case avro.Float:
			op.w = wFloat
		case avro.Double:
			op.w = wDouble
		default:
			op.w = wBytes // bytes and string share the encoding
		}
	default:
		op.kind, op.rej = opReject, "unsupported writer type "+string(ws.Type())
	}
	return op
}

// avroReader reads the Avro binary encoding.
type avroReader struct {
	b []byte
	i int
}

func (a *avroDecoder) malformed(r *avroReader, what string) *Rejection {
	return reject(ReasonMalformedAvro, a.d.field(), "%s at byte %d of %d", what, r.i, len(r.b))
}

func (r *avroReader) long() (int64, bool) {
	var u uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.i >= len(r.b) {
			return 0, false
		}
		c := r.b[r.i]
		r.i++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), true
		}
	}
	return 0, false
}

func (r *avroReader) bytes() ([]byte, bool) {
	n, ok := r.long()
	if !ok || n < 0 || n > int64(len(r.b)-r.i) {
		return nil, false
	}
	b := r.b[r.i : r.i+int(n)]
	r.i += int(n)
	return b, true
}

func (r *avroReader) fixed(n int) ([]byte, bool) {
	if n > len(r.b)-r.i {
		return nil, false
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b, true
}

// blockCount reads the item count of the next array or map block.
func (a *avroDecoder) blockCount(r *avroReader, zero bool) (int64, error) {
	n, ok := r.long()
	if !ok {
		return 0, a.malformed(r, "truncated block count")
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, a.malformed(r, "bad block count")
		}
		n = -n
		if _, ok := r.long(); !ok { // block size in bytes
			return 0, a.malformed(r, "truncated block size")
		}
	}
	if limit := int64(len(r.b) - r.i); n > limit && (!zero || n > 1<<20) {
		return 0, a.malformed(r, fmt.Sprintf("block of %d items exceeds the record", n))
	}
	return n, nil
}

const maxAvroDepth = 100

// value decodes one writer value into op.node, with Dremel levels: def is the
// definition level of the parent, rep the repetition level of the first value.
func (a *avroDecoder) value(r *avroReader, op *avroOp, rep, def int) error {
	d := a.d
	n := op.node
	switch op.kind {
	case opReject:
		return reject(ReasonWrongType, d.field(), "%s", op.rej)
	case opSkip:
		return a.skip(r, op)
	case opUnion:
		idx, ok := r.long()
		if !ok || idx < 0 || idx >= int64(len(op.branches)) {
			return a.malformed(r, "bad union branch index")
		}
		return a.value(r, op.branches[idx], rep, def)
	case opNull:
		if !n.Optional {
			return reject(ReasonMissingField, d.field(), "required %s value is null", n.Type)
		}
		d.emitNulls(n, rep, def)
		return nil
	}
	if n.Optional {
		def++
	}
	if op.kind == opLeaf {
		pv, _, err := a.leaf(r, op)
		if err != nil {
			return err
		}
		d.emit(n.Leaf, pv, rep, def)
		return nil
	}
	a.depth++
	err := a.nested(r, op, rep, def)
	a.depth--
	return err
}

// nested decodes a record, array or map value (value has applied the node's level).
func (a *avroDecoder) nested(r *avroReader, op *avroOp, rep, def int) error {
	d, n := a.d, op.node
	if a.depth > maxAvroDepth {
		return a.malformed(r, "nesting too deep")
	}
	switch op.kind {
	case opRecord:
		d.path = append(d.path, pathElem{})
		for i, f := range op.fields {
			d.path[len(d.path)-1].name = op.names[i]
			if f.node == nil {
				if err := a.skip(r, f); err != nil {
					return err
				}
				continue
			}
			if err := a.value(r, f, rep, def); err != nil {
				return err
			}
		}
		d.path = d.path[:len(d.path)-1]
		for _, ch := range op.missing {
			if !ch.Optional {
				return reject(ReasonMissingField, d.field()+"."+ch.Name, "required field is not in the writer schema")
			}
			d.emitNulls(ch, rep, def)
		}
		return nil
	case opArray, opMap:
		i := 0
		d.path = append(d.path, pathElem{})
		for {
			cnt, err := a.blockCount(r, op.elem.zero && op.kind == opArray)
			if err != nil {
				return err
			}
			if cnt == 0 {
				break
			}
			for range cnt {
				rr := elemRep(n, rep, i)
				if op.kind == opMap {
					k, ok := r.bytes()
					if !ok {
						return a.malformed(r, "truncated map key")
					}
					d.emit(n.Children[0].Leaf, parquet.ByteArrayValue(k), rr, def+1)
					d.path[len(d.path)-1] = pathElem{name: b2s(k)}
				} else {
					d.path[len(d.path)-1] = pathElem{idx: i}
				}
				if err := a.value(r, op.elem, rr, def+1); err != nil {
					return err
				}
				i++
			}
		}
		d.path = d.path[:len(d.path)-1]
		if i == 0 {
			d.emitNulls(n, rep, def)
		}
		return nil
	}
	return reject(ReasonWrongType, d.field(), "unsupported writer value")
}

var bigTen = big.NewInt(10)

func (a *avroDecoder) leaf(r *avroReader, op *avroOp) (parquet.Value, int, error) {
	d := a.d
	var (
		i   int64
		f   float64
		b   []byte
		ok  bool
		raw uint64
	)
	switch op.w {
	case wBool:
		if r.i >= len(r.b) {
			return parquet.Value{}, 0, a.malformed(r, "truncated boolean")
		}
		bv := r.b[r.i] != 0
		r.i++
		return parquet.BooleanValue(bv), 1, nil
	case wInt, wLong, wEnum:
		if i, ok = r.long(); !ok {
			return parquet.Value{}, 0, a.malformed(r, "truncated integer")
		}
		if op.w != wLong && (i < math.MinInt32 || i > math.MaxInt32) {
			return parquet.Value{}, 0, a.malformed(r, "int out of range")
		}
		f = float64(i)
	case wFloat:
		if b, ok = r.fixed(4); !ok {
			return parquet.Value{}, 0, a.malformed(r, "truncated float")
		}
		raw = uint64(binary.LittleEndian.Uint32(b))
		f = float64(math.Float32frombits(uint32(raw)))
	case wDouble:
		if b, ok = r.fixed(8); !ok {
			return parquet.Value{}, 0, a.malformed(r, "truncated double")
		}
		f = math.Float64frombits(binary.LittleEndian.Uint64(b))
	case wBytes, wString:
		if b, ok = r.bytes(); !ok {
			return parquet.Value{}, 0, a.malformed(r, "truncated bytes")
		}
	case wFixed:
		if b, ok = r.fixed(op.size); !ok {
			return parquet.Value{}, 0, a.malformed(r, "truncated fixed")
		}
	}
	switch op.conv {
	case cString:
		return parquet.ByteArrayValue(b), len(b), nil
	case cEnum:
		if i < 0 || i >= int64(len(op.symbols)) {
			return parquet.Value{}, 0, a.malformed(r, "enum index out of range")
		}
		s := op.symbols[i]
		return parquet.ByteArrayValue([]byte(s)), len(s), nil
	case cInt32:
		return parquet.Int32Value(int32(i)), 4, nil
	case cInt64:
		return parquet.Int64Value(i), 8, nil
	case cFloat32:
		switch op.w {
		case wFloat:
			return parquet.FloatValue(math.Float32frombits(uint32(raw))), 4, nil
		case wInt, wLong: // one rounding, as Avro's promotion: float32(float64(i)) can round twice
			return parquet.FloatValue(float32(i)), 4, nil
		}
		return parquet.FloatValue(float32(f)), 4, nil
	case cFloat64:
		return parquet.DoubleValue(f), 8, nil
	case cTsMillis:
		if i > math.MaxInt64/1000 || i < math.MinInt64/1000 {
			return parquet.Value{}, 0, reject(ReasonBadTime, d.field(), "timestamp-millis %d is out of range", i)
		}
		return parquet.Int64Value(i * 1000), 8, nil
	case cTsMicros:
		return parquet.Int64Value(i), 8, nil
	case cDate:
		return parquet.Int32Value(int32(i)), 4, nil
	case cDecimal:
		return a.decimal(b, op)
	}
	return parquet.Value{}, 0, reject(ReasonWrongType, d.field(), "unsupported conversion")
}

// decimal converts a big-endian two's complement unscaled value to the column's
// decimal(p,s) physical value, rescaling to the column's scale.
func (a *avroDecoder) decimal(b []byte, op *avroOp) (parquet.Value, int, error) {
	d := a.d
	t := op.node.Type
	if len(b) <= 8 && op.rescale <= 18 && t.Precision <= 18 {
		var u int64
		if len(b) > 0 {
			u = int64(int8(b[0]))
			for _, c := range b[1:] {
				u = u<<8 | int64(c)
			}
		}
		ok := true
		for range op.rescale {
			if u > math.MaxInt64/10 || u < math.MinInt64/10 {
				ok = false
				break
			}
			u *= 10
		}
		limit := int64(1)
		for range t.Precision {
			limit *= 10
		}
		if ok && u < limit && u > -limit {
			if t.Precision <= 9 {
				return parquet.Int32Value(int32(u)), 4, nil
			}
			return parquet.Int64Value(u), 8, nil
		}
		return parquet.Value{}, 0, reject(ReasonBadValue, d.field(), "decimal value does not fit %s", t)
	}
	u := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		u.Sub(u, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if op.rescale > 0 {
		u.Mul(u, op.mul)
	}
	if u.CmpAbs(op.limit) >= 0 {
		return parquet.Value{}, 0, reject(ReasonBadValue, d.field(), "decimal value does not fit %s", t)
	}
	switch {
	case t.Precision <= 9:
		return parquet.Int32Value(int32(u.Int64())), 4, nil
	case t.Precision <= 18:
		return parquet.Int64Value(u.Int64()), 8, nil
	}
	return d.wideDecimal(t.Precision, u), schema.DecimalBytes(t.Precision), nil
}

// skip drops one writer value.
func (a *avroDecoder) skip(r *avroReader, op *avroOp) error {
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxAvroDepth {
		return a.malformed(r, "nesting too deep")
	}
	switch op.kind {
	case opReject:
		return reject(ReasonMalformedAvro, a.d.field(), "%s", op.rej)
	case opRecord:
		d := a.d
		d.path = append(d.path, pathElem{})
		for i, f := range op.fields {
			d.path[len(d.path)-1].name = op.names[i]
			if err := a.skip(r, f); err != nil {
				return err
			}
		}
		d.path = d.path[:len(d.path)-1]
		return nil
	case opUnion:
		idx, ok := r.long()
		if !ok || idx < 0 || idx >= int64(len(op.branches)) {
			return a.malformed(r, "bad union branch index")
		}
		return a.skip(r, op.branches[idx])
	case opArray, opMap:
		for {
			cnt, err := a.blockCount(r, op.elem.zero && op.kind == opArray)
			if err != nil {
				return err
			}
			if cnt == 0 {
				return nil
			}
			for range cnt {
				if op.kind == opMap {
					if _, ok := r.bytes(); !ok {
						return a.malformed(r, "truncated map key")
					}
				}
				if err := a.skip(r, op.elem); err != nil {
					return err
				}
			}
		}
	}
	ok := true
	switch op.w {
	case wNull:
	case wBool:
		_, ok = r.fixed(1)
	case wInt, wLong, wEnum:
		_, ok = r.long()
	case wFloat:
		_, ok = r.fixed(4)
	case wDouble:
		_, ok = r.fixed(8)
	case wBytes, wString:
		_, ok = r.bytes()
	case wFixed:
		_, ok = r.fixed(op.size)
	}
	if !ok {
		return a.malformed(r, "truncated value")
	}
	return nil
}

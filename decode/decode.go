package decode

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson"
	"github.com/valyala/fastjson/fastfloat"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// Rejection reasons: the values of the dead-letter "lakesink.reason" header and of the
// reason label of lakesink_records_dead_lettered_total.
const (
	ReasonOversized    = "oversized"
	ReasonMalformed    = "malformed_json"
	ReasonMissingField = "missing_field"
	ReasonWrongType    = "wrong_type"
	ReasonBadValue     = "bad_value"
	ReasonBadTime      = "bad_timestamp"
	ReasonTimeRange    = "time_out_of_range"
	ReasonUnknownField = "unknown_field"
	ReasonNoTable      = "no_table"
	ReasonPanic        = "decoder_panic"
)

// Rejection explains why a record cannot be written to its table.
type Rejection struct {
	Reason string // one of the Reason constants
	Field  string // the column or nested field at fault, if any
	Detail string
}

// Error renders the rejection: "reason: field f: detail", or "reason: detail".
func (r *Rejection) Error() string {
	if r.Field != "" {
		return r.Reason + ": field " + r.Field + ": " + r.Detail
	}
	return r.Reason + ": " + r.Detail
}

func reject(reason, field, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Record is what the decoder needs of a Kafka record.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Value     []byte
}

// Decoder turns JSON records into column values for one table. It is not safe for
// concurrent use; each one reuses its parser and scratch space across records.
type Decoder struct {
	s         *schema.Schema
	gran      int64
	notBefore int64
	maxFuture int64
	maxBytes  int
	p         fastjson.Parser
	// row holds, after a successful Decode, the record staged as one row of the
	// buffers' column format (columns.add).
	row   *columns
	arena []byte
	num   []byte     // scratch for the text of a JSON number
	path  []pathElem // where shred is, turned into a string only for a rejection
	// contracts holds the coercions of each declared column (index in s.Columns), names
	// its JSON path as rejections name it, and cur the contract of the column being shredded.
	contracts []contract
	names     []string
	cur       contract
	// known is the tree of declared JSON fields when the table is strict, else nil.
	known *fieldSet
	// fast is the table's columns as the fast path reads them (decode_fast.go), nil
	// when it cannot; fr its position in the record; tookFast tells whether it
	// staged the last record decoded.
	fast     *fastObject
	fr       fastReader
	tookFast bool
}

// contract is a column's config.Contract in the form the hot path wants.
type contract struct {
	numStrings, boolStrings, boolNumbers bool
	tsUnit                               int64 // microseconds per epoch unit; 0: RFC 3339 strings only
}

// fieldSet is the tree of JSON object keys a strict table declares: the segments of
// the column paths. A declared column (col) checks its own nested fields as it shreds.
type fieldSet struct {
	col      bool
	children map[string]*fieldSet
}

// pathElem is a struct field or map key name, or a list index when name is empty.
type pathElem struct {
	name string
	idx  int
}

// field renders the current path: "lines[0].qty".
func (d *Decoder) field() string {
	var b strings.Builder
	for i, e := range d.path {
		switch {
		case e.name == "":
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.idx))
			b.WriteByte(']')
		case i > 0:
			b.WriteByte('.')
			b.WriteString(e.name)
		default:
			b.WriteString(e.name)
		}
	}
	return b.String()
}

// NewDecoder returns a decoder for the table.
func NewDecoder(s *schema.Schema, t *config.Table, maxRecordBytes int) *Decoder {
	g := int64(3_600_000_000)
	if t.EventTime.Granularity == "day" {
		g = 86_400_000_000
	}
	d := &Decoder{
		s: s, gran: g,
		notBefore: t.EventTime.NotBefore.UnixMicro(),
		maxFuture: t.EventTime.MaxFuture.Microseconds(),
		maxBytes:  maxRecordBytes,
		row:       newColumns(s.Leaves),
		contracts: make([]contract, len(s.Columns)),
		names:     make([]string, len(s.Columns)),
	}
	if t.Strict {
		d.known = &fieldSet{}
	}
	for i, c := range s.Columns {
		d.names[i] = strings.Join(c.Path, ".")
		if d.names[i] == "" {
			d.names[i] = c.Name
		}
		for j := range t.Columns {
			if t.Columns[j].Name == c.Name {
				d.contracts[i] = contractOf(t.ContractOf(&t.Columns[j]))
			}
		}
		if d.known != nil && len(c.Path) > 0 {
			fs := d.known
			for _, seg := range c.Path {
				next := fs.children[seg]
				if next == nil {
					next = &fieldSet{}
					if fs.children == nil {
						fs.children = map[string]*fieldSet{}
					}
					fs.children[seg] = next
				}
				fs = next
			}
			fs.col = true
		}
	}
	d.fast = compileFast(s)
	return d
}

func contractOf(k config.Contract) contract {
	c := contract{numStrings: k.NumericStrings, boolStrings: k.BoolStrings, boolNumbers: k.BoolNumbers}
	switch k.TimestampFormat {
	case config.TimestampEpochSeconds:
		c.tsUnit = 1_000_000
	case config.TimestampEpochMillis, "":
		c.tsUnit = 1_000
	case config.TimestampEpochMicros:
		c.tsUnit = 1
	}
	return c
}

func (d *Decoder) reset() {
	d.row.reset()
	d.arena = d.arena[:0]
}

// Decode decodes one record into its staged row and returns its event time in microseconds.
// now bounds how far in the future an event time may be.
func (d *Decoder) Decode(r *Record, now time.Time) (int64, error) {
	d.reset()
	if len(r.Value) > d.maxBytes {
		return 0, reject(ReasonOversized, "", "record of %d bytes exceeds flush.max_record_bytes %d", len(r.Value), d.maxBytes)
	}
	d.tookFast = d.fast != nil && d.decodeFast(r)
	if d.tookFast {
		return d.checkEventTime(r, now)
	}
	if d.fast != nil {
		d.reset()
	}
	v, err := d.p.ParseBytes(r.Value)
	if err != nil {
		return 0, reject(ReasonMalformed, "", "%v", err)
	}
	if v.Type() != fastjson.TypeObject {
		return 0, reject(ReasonMalformed, "", "top-level JSON value is a %s, want an object", v.Type())
	}
	if d.known != nil {
		d.path = d.path[:0]
		if err := d.checkKnown(d.known, v); err != nil {
			return 0, err
		}
	}
	for i, c := range d.s.Columns {
		if kafkaColumn(d.s, c) {
			continue
		}
		d.path = append(d.path[:0], pathElem{name: d.names[i]})
		d.cur = d.contracts[i]
		if err := d.shred(c, v.Get(c.Path...), 0, 0); err != nil {
			return 0, err
		}
	}
	d.emitKafka(r)
	return d.checkEventTime(r, now)
}

// elemRep is the repetition level of element i of the list or map n: rep, the
// level of the value holding it, for the first; n's own level for the rest.
func elemRep(n *schema.Node, rep, i int) int {
	if i > 0 {
		return n.RepLevel
	}
	return rep
}

// kafkaColumn reports whether c is one of the Kafka coordinate columns, which come
// from the record, not its JSON.
func kafkaColumn(s *schema.Schema, c *schema.Node) bool {
	return c == s.Topic || c == s.Partition || c == s.Offset || c == s.Timestamp
}

// emitKafka stages the record's Kafka coordinates.
func (d *Decoder) emitKafka(r *Record) {
	s := d.s
	d.emit(s.Topic.Leaf, parquet.ByteArrayValue([]byte(r.Topic)), 0, 0)
	d.emit(s.Partition.Leaf, parquet.Int32Value(r.Partition), 0, 0)
	d.emit(s.Offset.Leaf, parquet.Int64Value(r.Offset), 0, 0)
	d.emit(s.Timestamp.Leaf, parquet.Int64Value(r.Timestamp.UnixMicro()), 0, 0)
}

// checkEventTime returns the staged record's event time (JSON or Avro), or rejects
// the record when it is missing or outside the table's range.
func (d *Decoder) checkEventTime(r *Record, now time.Time) (int64, error) {
	et := d.eventTime(r)
	if d.s.EventTime != d.s.Timestamp && et == math.MinInt64 {
		return 0, reject(ReasonMissingField, d.s.EventTime.Name, "event time is missing")
	}
	if et < d.notBefore {
		return 0, reject(ReasonTimeRange, d.s.EventTime.Name, "event time %s is before event_time.not_before %s",
			fmtMicros(et), fmtMicros(d.notBefore))
	}
	if limit := now.UnixMicro() + d.maxFuture; et > limit {
		return 0, reject(ReasonTimeRange, d.s.EventTime.Name, "event time %s is more than event_time.max_future ahead of now (%s)",
			fmtMicros(et), now.UTC().Format(time.RFC3339))
	}
	return et, nil
}

func fmtMicros(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

func (d *Decoder) eventTime(r *Record) int64 {
	if d.s.EventTime == d.s.Timestamp {
		return r.Timestamp.UnixMicro()
	}
	leaf := d.s.EventTime.Leaf
	b := d.row.cols[leaf]
	if len(b) == 0 || int(b[0]&15) != d.row.leaves[leaf].MaxDef {
		return math.MinInt64
	}
	return int64(binary.LittleEndian.Uint64(b[1:]))
}

func (d *Decoder) emit(leaf int, v parquet.Value, rep, def int) {
	d.row.add(leaf, v, rep, def)
}

func (d *Decoder) emitNulls(n *schema.Node, rep, def int) {
	for i := n.Leaf; i < n.Leaf+n.NumLeaves; i++ {
		d.row.add(i, parquet.Value{}, rep, def)
	}
}

// Staged returns the values a successful Decode staged for a leaf column.
func (d *Decoder) Staged(leaf int) []parquet.Value { return d.row.values(leaf) }

// shred writes one (possibly nested) value with the Dremel algorithm: def is the
// definition level of the parent, rep the repetition level of the first value.
func (d *Decoder) shred(n *schema.Node, v *fastjson.Value, rep, def int) error {
	if v == nil || v.Type() == fastjson.TypeNull {
		if !n.Optional {
			return reject(ReasonMissingField, d.field(), "required %s value is missing or null", n.Type)
		}
		d.emitNulls(n, rep, def)
		return nil
	}
	if n.Optional {
		def++
	}
	switch n.Type.Kind {
	case config.KindList:
		arr, err := v.Array()
		if err != nil {
			return reject(ReasonWrongType, d.field(), "got %s, want a JSON array for %s", v.Type(), n.Type)
		}
		if len(arr) == 0 {
			d.emitNulls(n, rep, def)
			return nil
		}
		d.path = append(d.path, pathElem{})
		for i, e := range arr {
			d.path[len(d.path)-1].idx = i
			if err := d.shred(n.Children[0], e, elemRep(n, rep, i), def+1); err != nil {
				return err
			}
		}
		d.path = d.path[:len(d.path)-1]
		return nil
	case config.KindMap:
		obj, err := v.Object()
		if err != nil {
			return reject(ReasonWrongType, d.field(), "got %s, want a JSON object for %s", v.Type(), n.Type)
		}
		if obj.Len() == 0 {
			d.emitNulls(n, rep, def)
			return nil
		}
		i := 0
		var ferr error
		obj.Visit(func(k []byte, val *fastjson.Value) {
			if ferr != nil {
				return
			}
			r := elemRep(n, rep, i)
			i++
			key, value := n.Children[0], n.Children[1]
			d.emit(key.Leaf, parquet.ByteArrayValue(k), r, def+1)
			d.path = append(d.path, pathElem{name: b2s(k)})
			ferr = d.shred(value, val, r, def+1)
			if ferr == nil {
				d.path = d.path[:len(d.path)-1]
			}
		})
		return ferr
	case config.KindStruct:
		obj, err := v.Object()
		if err != nil {
			return reject(ReasonWrongType, d.field(), "got %s, want a JSON object for %s", v.Type(), n.Type)
		}
		if d.known != nil {
			if err := d.checkStruct(n, obj); err != nil {
				return err
			}
		}
		d.path = append(d.path, pathElem{})
		for _, c := range n.Children {
			d.path[len(d.path)-1].name = c.Name
			if err := d.shred(c, obj.Get(c.Name), rep, def); err != nil {
				return err
			}
		}
		d.path = d.path[:len(d.path)-1]
		return nil
	}
	pv, err := d.leafValue(n, v)
	if err != nil {
		return err
	}
	d.emit(n.Leaf, pv, rep, def)
	return nil
}

func (d *Decoder) leafValue(n *schema.Node, v *fastjson.Value) (parquet.Value, error) {
	t := n.Type
	wrong := func(want string) (parquet.Value, error) {
		return parquet.Value{}, reject(ReasonWrongType, d.field(), "got JSON %s, want %s for %s", v.Type(), want, t)
	}
	switch t.Kind {
	case config.KindString:
		b, err := v.StringBytes()
		if err != nil {
			return wrong("a string")
		}
		return parquet.ByteArrayValue(b), nil
	case config.KindBool:
		switch v.Type() {
		case fastjson.TypeTrue:
			return parquet.BooleanValue(true), nil
		case fastjson.TypeFalse:
			return parquet.BooleanValue(false), nil
		case fastjson.TypeString:
			if d.cur.boolStrings {
				switch b2s(v.GetStringBytes()) {
				case "true":
					return parquet.BooleanValue(true), nil
				case "false":
					return parquet.BooleanValue(false), nil
				}
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "string %s is not \"true\" or \"false\"", v)
			}
		case fastjson.TypeNumber:
			if d.cur.boolNumbers {
				switch b2s(d.numberText(v)) {
				case "1":
					return parquet.BooleanValue(true), nil
				case "0":
					return parquet.BooleanValue(false), nil
				}
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "number %s is not 0 or 1", v)
			}
		}
		return wrong("true or false")
	case config.KindInt32, config.KindInt64:
		var i int64
		var err error
		switch {
		case v.Type() == fastjson.TypeNumber:
			i, err = v.Int64()
		case v.Type() == fastjson.TypeString && d.cur.numStrings:
			b := v.GetStringBytes()
			if !isJSONNumber(b) {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "string %s is not a number", v)
			}
			i, err = fastfloat.ParseInt64(b2s(b))
		default:
			return wrong("a number")
		}
		if t.Kind == config.KindInt32 {
			if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is not an integer in the int32 range", v)
			}
			return parquet.Int32Value(int32(i)), nil
		}
		if err != nil {
			return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is not an integer in the int64 range", v)
		}
		return parquet.Int64Value(i), nil
	case config.KindFloat32, config.KindFloat64:
		var f float64
		switch {
		case v.Type() == fastjson.TypeNumber:
			var err error
			if f, err = v.Float64(); err != nil {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is not a finite number", v)
			}
		case v.Type() == fastjson.TypeString && d.cur.numStrings:
			b := v.GetStringBytes()
			var err error
			if !isJSONNumber(b) {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "string %s is not a number", v)
			}
			if f, err = fastfloat.Parse(b2s(b)); err != nil {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is not a finite number", v)
			}
		default:
			return wrong("a number")
		}
		// fastjson reads NaN and Inf, and 1e400 parses as +Inf: none is a JSON number.
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is not a finite number", v)
		}
		if t.Kind == config.KindFloat32 {
			if math.Abs(f) > math.MaxFloat32 {
				return parquet.Value{}, reject(ReasonBadValue, d.field(), "%s is outside the float32 range", v)
			}
			return parquet.FloatValue(float32(f)), nil
		}
		return parquet.DoubleValue(f), nil
	case config.KindTimestamp:
		us, err := d.parseTimestamp(v)
		if err != nil {
			return parquet.Value{}, reject(ReasonBadTime, d.field(), "%v", err)
		}
		return parquet.Int64Value(us), nil
	case config.KindDate:
		b, err := v.StringBytes()
		if err != nil {
			return wrong("a date string YYYY-MM-DD")
		}
		pv, err := dateValue(b)
		if err != nil {
			return parquet.Value{}, reject(ReasonBadValue, d.field(), "%q is not a date YYYY-MM-DD", b)
		}
		return pv, nil
	case config.KindBytes:
		b, err := v.StringBytes()
		if err != nil {
			return wrong("a base64 string")
		}
		pv, err := d.bytesValue(b)
		if err != nil {
			return parquet.Value{}, reject(ReasonBadValue, d.field(), "not valid base64: %v", err)
		}
		return pv, nil
	case config.KindDecimal:
		var text string
		switch v.Type() {
		case fastjson.TypeNumber:
			text = v.String()
		case fastjson.TypeString:
			text = string(v.GetStringBytes())
		default:
			return wrong("a number or numeric string")
		}
		pv, err := d.decimalValue(t, text)
		if err != nil {
			return parquet.Value{}, reject(ReasonBadValue, d.field(), "%v", err)
		}
		return pv, nil
	}
	return parquet.Value{}, reject(ReasonWrongType, d.field(), "unsupported type %s", t)
}

// dateValue converts a date string YYYY-MM-DD to days since the epoch.
func dateValue(b []byte) (parquet.Value, error) {
	tm, err := time.Parse("2006-01-02", string(b))
	if err != nil {
		return parquet.Value{}, err
	}
	return parquet.Int32Value(int32(tm.Unix() / 86400)), nil
}

// bytesValue decodes base64 text into the decoder's arena.
func (d *Decoder) bytesValue(b []byte) (parquet.Value, error) {
	start := len(d.arena)
	d.arena = append(d.arena, make([]byte, base64.StdEncoding.DecodedLen(len(b)))...)
	m, err := base64.StdEncoding.Decode(d.arena[start:], b)
	if err != nil {
		d.arena = d.arena[:start]
		return parquet.Value{}, err
	}
	d.arena = d.arena[:start+m]
	return parquet.ByteArrayValue(d.arena[start : start+m]), nil
}

// decimalValue converts decimal text to the column's physical value (int32, int64 or
// big-endian two's complement bytes in the decoder's arena).
func (d *Decoder) decimalValue(t *config.Type, text string) (parquet.Value, error) {
	small, wide, err := parseDecimal(text, t.Precision, t.Scale)
	if err != nil {
		return parquet.Value{}, err
	}
	switch {
	case t.Precision <= 9:
		return parquet.Int32Value(int32(small)), nil
	case t.Precision <= 18:
		return parquet.Int64Value(small), nil
	}
	if wide == nil {
		wide = big.NewInt(small)
	}
	return d.wideDecimal(t.Precision, wide), nil
}

// wideDecimal is the fixed-length value of a decimal of more than 18 digits: its
// unscaled value v in big-endian two's complement, in the decoder's arena.
func (d *Decoder) wideDecimal(precision int, v *big.Int) parquet.Value {
	n := schema.DecimalBytes(precision)
	start := len(d.arena)
	d.arena = append(d.arena, make([]byte, n)...)
	fillTwosComplement(d.arena[start:start+n], v)
	return parquet.FixedLenByteArrayValue(d.arena[start : start+n])
}

// parseTimestamp reads an RFC 3339 string (any offset, converted to UTC) or, unless the
// column's format is rfc3339, a number of seconds, milliseconds or microseconds since the
// epoch (a numeric string too with numeric_strings). Sub-microsecond digits are truncated.
func (d *Decoder) parseTimestamp(v *fastjson.Value) (int64, error) {
	unit := d.cur.tsUnit
	switch v.Type() {
	case fastjson.TypeString:
		return d.timestampString(v.GetStringBytes())
	case fastjson.TypeNumber:
		if unit == 0 {
			return 0, fmt.Errorf("got JSON number %s, but timestamp format rfc3339 reads only strings", v)
		}
		return epochMicros(d.numberText(v), unit)
	}
	if unit == 0 {
		return 0, fmt.Errorf("got JSON %s, want an RFC 3339 string", v.Type())
	}
	return 0, fmt.Errorf("got JSON %s, want an RFC 3339 string or %s", v.Type(), unitName(unit))
}

// timestampString reads a JSON string timestamp: RFC 3339, or a number of the
// column's epoch unit with numeric_strings.
func (d *Decoder) timestampString(b []byte) (int64, error) {
	if unit := d.cur.tsUnit; unit != 0 && d.cur.numStrings && isJSONNumber(b) {
		return epochMicros(b, unit)
	}
	// The parsed time is used only for its instant, so it may view the JSON bytes.
	t, err := time.Parse(time.RFC3339Nano, b2s(b))
	if err != nil {
		return 0, fmt.Errorf("%q is not an RFC 3339 timestamp", b)
	}
	return t.UnixMicro(), nil
}

// maxEpochMicros bounds epoch timestamps (about year 287,000): beyond it the conversion
// to microseconds would overflow int64.
const maxEpochMicros = 9e18

// epochMicros converts the text of a JSON number of units since the epoch to microseconds.
func epochMicros(text []byte, unit int64) (int64, error) {
	if i, err := fastfloat.ParseInt64(b2s(text)); err == nil {
		if i > maxEpochMicros/unit || i < -maxEpochMicros/unit {
			return 0, fmt.Errorf("%s is not a usable %s timestamp", text, unitName(unit))
		}
		return i * unit, nil
	}
	f, err := fastfloat.Parse(b2s(text))
	us := f * float64(unit)
	if err != nil || math.IsNaN(us) || math.Abs(us) > maxEpochMicros {
		return 0, fmt.Errorf("%s is not a usable %s timestamp", text, unitName(unit))
	}
	return int64(us), nil
}

func unitName(unit int64) string {
	switch unit {
	case 1_000_000:
		return "epoch-seconds"
	case 1_000:
		return "epoch-milliseconds"
	}
	return "epoch-microseconds"
}

// numberText returns the text of a JSON number, in scratch space valid until the next call.
func (d *Decoder) numberText(v *fastjson.Value) []byte {
	d.num = v.MarshalTo(d.num[:0])
	return d.num
}

// isJSONNumber reports whether b is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? — no spaces, no "+", no NaN or Inf.
func isJSONNumber(b []byte) bool {
	end, ok := numberEnd(b, 0)
	return ok && end == len(b)
}

// numberEnd reads a number in JSON's grammar from b[i:] and returns where it ends;
// ok is false when b[i:] does not start with one.
func numberEnd(b []byte, i int) (end int, ok bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, false
		}
	}
	return i, true
}

// checkKnown rejects the first key of the object v that the strict table does not
// declare; d.path holds the path of v. A value that is not an object is left to the
// columns under it.
func (d *Decoder) checkKnown(fs *fieldSet, v *fastjson.Value) error {
	obj, err := v.Object()
	if err != nil {
		return nil
	}
	var ferr error
	obj.Visit(func(k []byte, val *fastjson.Value) {
		if ferr != nil {
			return
		}
		next := fs.children[b2s(k)]
		if next == nil {
			d.path = append(d.path, pathElem{name: b2s(k)})
			ferr = reject(ReasonUnknownField, d.field(), "field %q is not declared by any column of strict table %s", k, d.s.Table)
			return
		}
		if !next.col {
			d.path = append(d.path, pathElem{name: b2s(k)})
			ferr = d.checkKnown(next, val)
			d.path = d.path[:len(d.path)-1]
		}
	})
	return ferr
}

// checkStruct rejects the first key of a struct value that the struct type does not declare.
func (d *Decoder) checkStruct(n *schema.Node, obj *fastjson.Object) error {
	var ferr error
	obj.Visit(func(k []byte, _ *fastjson.Value) {
		if ferr != nil {
			return
		}
		for _, c := range n.Children {
			if c.Name == b2s(k) {
				return
			}
		}
		d.path = append(d.path, pathElem{name: b2s(k)})
		ferr = reject(ReasonUnknownField, d.field(), "field %q is not declared by %s (strict table)", k, n.Type)
	})
	return ferr
}

var ten = big.NewInt(10)

// parseDecimalFast parses the common decimal text in one pass and without
// allocating: an optional sign, digits, optionally '.' and at most scale more digits,
// 18 significant digits at most, within the precision. Anything else (exponents,
// rounding, overflow, errors) is left to parseDecimal's general path: ok is false.
func parseDecimalFast(s string, precision, scale int) (v int64, ok bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "" {
		return 0, false
	}
	var u int64
	sig, frac, dot := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if sig > 0 || c != '0' {
				sig++
			}
			u = u*10 + int64(c-'0')
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if s == "." || frac > scale || sig+scale-frac > 18 {
		return 0, false
	}
	u *= pow10[scale-frac]
	if precision <= 18 && u >= pow10[precision] {
		return 0, false
	}
	if neg {
		u = -u
	}
	return u, true
}

// pow10 holds 10^0 .. 10^18, the powers of ten an int64 holds.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// parseDecimal converts decimal text ("-12.5", "1e3") into an unscaled integer at the
// given scale, rejecting values that need rounding or overflow the precision. A value
// of at most 18 digits comes back in small with wide nil (no allocation: math/big
// was a tenth of the sink's decode CPU on the sample table's decimal(12,2)); a longer
// one in wide.
func parseDecimal(s string, precision, scale int) (small int64, wide *big.Int, err error) {
	if v, ok := parseDecimalFast(s, precision, scale); ok {
		return v, nil, nil
	}
	return parseDecimalGeneral(s, precision, scale)
}

// parseDecimalGeneral is parseDecimal for any text: exponents, trailing zeros past
// the scale, more than 18 digits, and the errors.
func parseDecimalGeneral(s string, precision, scale int) (small int64, wide *big.Int, err error) {
	orig := s
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, nil, fmt.Errorf("%q is not a decimal number", orig)
		}
		exp, s = e, s[:i]
	}
	neg := strings.HasPrefix(s, "-")
	if neg || strings.HasPrefix(s, "+") {
		s = s[1:]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, nil, fmt.Errorf("%q is not a decimal number", orig)
	}
	// Leading zeros carry nothing; an all-zero value is zero whatever its exponent.
	// Bounding the digits before scaling keeps "1e999999999" from building a huge power of ten.
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, nil, nil
	}
	shift := scale - len(frac) + exp
	if shift >= 0 && len(digits)+shift > precision {
		return 0, nil, fmt.Errorf("%q does not fit decimal(%d,%d)", orig, precision, scale)
	}
	if shift < 0 {
		cut := -shift
		if cut > len(digits) {
			cut = len(digits)
		}
		if strings.Trim(digits[len(digits)-cut:], "0") != "" {
			return 0, nil, fmt.Errorf("%q has more than %d fractional digits", orig, scale)
		}
		digits = digits[:len(digits)-cut]
		shift = 0
	}
	if len(digits)+shift <= 18 {
		u, err := strconv.ParseInt("0"+digits, 10, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("%q is not a decimal number", orig)
		}
		u *= pow10[shift]
		if precision <= 18 && u >= pow10[precision] {
			return 0, nil, fmt.Errorf("%q does not fit decimal(%d,%d)", orig, precision, scale)
		}
		if neg {
			u = -u
		}
		return u, nil, nil
	}
	u, ok := new(big.Int).SetString("0"+digits, 10)
	if !ok {
		return 0, nil, fmt.Errorf("%q is not a decimal number", orig)
	}
	u.Mul(u, new(big.Int).Exp(ten, big.NewInt(int64(shift)), nil))
	limit := new(big.Int).Exp(ten, big.NewInt(int64(precision)), nil)
	if u.CmpAbs(limit) >= 0 {
		return 0, nil, fmt.Errorf("%q does not fit decimal(%d,%d)", orig, precision, scale)
	}
	if neg {
		u.Neg(u)
	}
	return 0, u, nil
}

func fillTwosComplement(dst []byte, v *big.Int) {
	if v.Sign() >= 0 {
		v.FillBytes(dst)
		return
	}
	// two's complement of a negative number: 2^(8n) + v
	m := new(big.Int).Lsh(big.NewInt(1), uint(8*len(dst)))
	m.Add(m, v)
	m.FillBytes(dst)
}

// b2s views map-key bytes as a string for the path; the path lives only while the
// record is decoded and is copied into a string if the record is rejected.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the kind of a column type.
type Kind int

// Column type kinds (DESIGN.md §3).
const (
	KindString Kind = iota + 1
	KindBool
	KindInt32
	KindInt64
	KindFloat32
	KindFloat64
	KindDecimal
	KindDate
	KindTimestamp
	KindBytes
	KindList
	KindMap
	KindStruct
)

// Type is a parsed column type such as "decimal(12,2)", "list<string>",
// "map<string,int64>" or "struct<city:string,zip:int32>".
type Type struct {
	Kind      Kind
	Precision int // decimal
	Scale     int // decimal
	Elem      *Type
	Key       *Type
	Value     *Type
	Fields    []Field
}

// Field is a named member of a struct type.
type Field struct {
	Name string
	Type *Type
}

var primitives = map[string]Kind{
	"string": KindString, "bool": KindBool, "boolean": KindBool,
	"int32": KindInt32, "int": KindInt32, "int64": KindInt64, "long": KindInt64, "bigint": KindInt64,
	"float32": KindFloat32, "float": KindFloat32, "float64": KindFloat64, "double": KindFloat64,
	"date": KindDate, "timestamp": KindTimestamp, "bytes": KindBytes, "binary": KindBytes,
}

// TypeNames lists the accepted type spellings, for error messages.
const TypeNames = "string, bool, int32, int64, float32, float64, decimal(p,s), date, timestamp, bytes, list<T>, map<string,T>, struct<name:T,...>"

// ParseType parses a column type.
func ParseType(s string) (*Type, error) {
	p := &typeParser{s: s}
	t, err := p.parse()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected %q at offset %d in type %q", p.s[p.i:], p.i, s)
	}
	return t, nil
}

// String formats the type in the syntax ParseType reads.
func (t *Type) String() string {
	switch t.Kind {
	case KindDecimal:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale)
	case KindList:
		return "list<" + t.Elem.String() + ">"
	case KindMap:
		return "map<" + t.Key.String() + "," + t.Value.String() + ">"
	case KindStruct:
		parts := make([]string, len(t.Fields))
		for i, f := range t.Fields {
			parts[i] = f.Name + ":" + f.Type.String()
		}
		return "struct<" + strings.Join(parts, ",") + ">"
	}
	for name, k := range map[string]Kind{"string": KindString, "bool": KindBool, "int32": KindInt32, "int64": KindInt64,
		"float32": KindFloat32, "float64": KindFloat64, "date": KindDate, "timestamp": KindTimestamp, "bytes": KindBytes} {
		if k == t.Kind {
			return name
		}
	}
	return "?"
}

type typeParser struct {
	s string
	i int
}

func (p *typeParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *typeParser) ident() string {
	p.space()
	j := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			p.i++
			continue
		}
		break
	}
	return p.s[j:p.i]
}

func (p *typeParser) expect(c byte) error {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != c {
		return fmt.Errorf("expected %q at offset %d in type %q", c, p.i, p.s)
	}
	p.i++
	return nil
}

func (p *typeParser) peek(c byte) bool {
	p.space()
	return p.i < len(p.s) && p.s[p.i] == c
}

func (p *typeParser) parse() (*Type, error) {
	name := strings.ToLower(p.ident())
	if k, ok := primitives[name]; ok {
		return &Type{Kind: k}, nil
	}
	switch name {
	case "decimal":
		if err := p.expect('('); err != nil {
			return nil, err
		}
		prec, err := strconv.Atoi(p.ident())
		if err != nil {
			return nil, fmt.Errorf("decimal precision in %q: %w", p.s, err)
		}
		if err := p.expect(','); err != nil {
			return nil, err
		}
		scale, err := strconv.Atoi(p.ident())
		if err != nil {
			return nil, fmt.Errorf("decimal scale in %q: %w", p.s, err)
		}
		if err := p.expect(')'); err != nil {
			return nil, err
		}
		if prec < 1 || prec > 38 || scale < 0 || scale > prec {
			return nil, fmt.Errorf("decimal(%d,%d): precision must be 1..38 and scale 0..precision", prec, scale)
		}
		return &Type{Kind: KindDecimal, Precision: prec, Scale: scale}, nil
	case "list", "array":
		if err := p.expect('<'); err != nil {
			return nil, err
		}
		e, err := p.parse()
		if err != nil {
			return nil, err
		}
		return &Type{Kind: KindList, Elem: e}, p.expect('>')
	case "map":
		if err := p.expect('<'); err != nil {
			return nil, err
		}
		k, err := p.parse()
		if err != nil {
			return nil, err
		}
		if k.Kind != KindString {
			return nil, fmt.Errorf("map keys must be string in %q", p.s)
		}
		if err := p.expect(','); err != nil {
			return nil, err
		}
		v, err := p.parse()
		if err != nil {
			return nil, err
		}
		return &Type{Kind: KindMap, Key: k, Value: v}, p.expect('>')
	case "struct":
		if err := p.expect('<'); err != nil {
			return nil, err
		}
		t := &Type{Kind: KindStruct}
		seen := map[string]bool{}
		for {
			fname := p.ident()
			if fname == "" {
				return nil, fmt.Errorf("expected a field name at offset %d in type %q", p.i, p.s)
			}
			if seen[fname] {
				return nil, fmt.Errorf("duplicate struct field %q in type %q", fname, p.s)
			}
			seen[fname] = true
			if err := p.expect(':'); err != nil {
				return nil, err
			}
			ft, err := p.parse()
			if err != nil {
				return nil, err
			}
			t.Fields = append(t.Fields, Field{Name: fname, Type: ft})
			if p.peek(',') {
				p.i++
				continue
			}
			return t, p.expect('>')
		}
	case "":
		return nil, fmt.Errorf("missing type name at offset %d in %q", p.i, p.s)
	}
	return nil, fmt.Errorf("unknown type %q (want %s)", name, TypeNames)
}

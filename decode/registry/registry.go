// Package registry talks to a Confluent-compatible Schema Registry: it fetches Avro
// writer schemas by id for the sink and derives a table's columns from all the
// versions of a subject (columns_from: registry).
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/lakesink/lakesink/lake/config"
)

// ErrNotFound is returned (wrapped) when the registry answers that a schema id,
// subject or version does not exist: a permanent answer, unlike a network error.
var ErrNotFound = errors.New("not found in the schema registry")

// ErrUnknownID is returned (wrapped, with ErrNotFound) when the registry does not know a
// schema id. The sink does not take it as a verdict on the record: a registry replica
// that lags, or a sink pointed at the wrong registry, answers the same; it retries and
// then stops, as for an unreachable registry.
var ErrUnknownID = errors.New("schema id unknown to the registry")

// Client is a Schema Registry client.
type Client struct {
	cl *sr.Client
}

// New returns a client for the schema_registry section.
func New(c *config.SchemaRegistry) (*Client, error) {
	if c == nil {
		return nil, errors.New("schema_registry is not configured")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = config.DefaultRegistryTimeout
	}
	opts := []sr.ClientOpt{sr.URLs(c.URL), sr.HTTPClient(&http.Client{Timeout: timeout}), sr.UserAgent("lakesink")}
	if c.Username != "" {
		opts = append(opts, sr.BasicAuth(c.Username, c.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return &Client{cl: cl}, nil
}

func wrap(err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// SchemaByID returns the text of the Avro schema with the given id. A schema of
// another type (Protobuf, JSON Schema) is an error wrapping ErrNotFound.
func (c *Client) SchemaByID(ctx context.Context, id int) (string, error) {
	s, err := c.cl.SchemaByID(ctx, id)
	if err != nil {
		err = wrap(err)
		if errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("fetch schema id %d: %w: %w", id, ErrUnknownID, err)
		}
		return "", fmt.Errorf("fetch schema id %d: %w", id, err)
	}
	if s.Type != sr.TypeAvro {
		return "", fmt.Errorf("schema id %d is %s, not Avro: %w", id, s.Type, ErrNotFound)
	}
	if len(s.References) > 0 {
		return "", fmt.Errorf("schema id %d uses schema references, which lakesink does not resolve: %w", id, ErrNotFound)
	}
	return s.Schema, nil
}

// SubjectSchemas returns the text of every registered version of subject, oldest first.
func (c *Client) SubjectSchemas(ctx context.Context, subject string) ([]string, error) {
	ss, err := c.cl.Schemas(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("list versions of subject %s: %w", subject, wrap(err))
	}
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s.Type != sr.TypeAvro {
			return nil, fmt.Errorf("subject %s version %d is %s, not Avro", subject, s.Version, s.Type)
		}
		out = append(out, s.Schema.Schema)
	}
	return out, nil
}

// Parse parses an Avro schema with a fresh name cache: two versions of one record
// name must not see each other's definitions.
func Parse(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

// Derive fills the columns of every columns_from: registry table from the registry
// and validates the configuration again with them.
func Derive(ctx context.Context, cfg *config.Config) error {
	tables := cfg.RegistryTables()
	if len(tables) == 0 {
		return nil
	}
	c, err := New(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Derived {
			continue
		}
		texts, err := c.SubjectSchemas(ctx, t.Subject)
		if err != nil {
			return fmt.Errorf("table %s: %w", t.Name, err)
		}
		cols, err := DeriveColumns(texts)
		if err != nil {
			return fmt.Errorf("table %s: subject %s: %w", t.Name, t.Subject, err)
		}
		t.Columns, t.Derived = cols, true
	}
	return cfg.Validate()
}

// DeriveColumns returns the union of the top-level fields of the given record
// schemas (oldest first), in order of first appearance, so that the column layout
// does not change when a producer switches between versions. A column is required
// only when every version has the field with a non-null type; fields missing from
// some version, and nullable unions, give optional columns. The same field with
// incompatible types in two versions is an error naming it.
func DeriveColumns(texts []string) ([]config.Column, error) {
	if len(texts) == 0 {
		return nil, errors.New("no registered versions")
	}
	type col struct {
		typ      string
		required bool
		seen     int
	}
	var order []string
	cols := map[string]*col{}
	for v, text := range texts {
		s, err := Parse(text)
		if err != nil {
			return nil, fmt.Errorf("version %d: %w", v+1, err)
		}
		rec, ok := s.(*avro.RecordSchema)
		if !ok {
			return nil, fmt.Errorf("version %d: top-level schema is %s, want a record", v+1, s.Type())
		}
		for _, f := range rec.Fields() {
			typ, nullable, err := ColumnType(f.Type())
			if err != nil {
				return nil, fmt.Errorf("version %d: field %s: %w", v+1, f.Name(), err)
			}
			c := cols[f.Name()]
			if c == nil {
				c = &col{typ: typ, required: !nullable && v == 0}
				cols[f.Name()] = c
				order = append(order, f.Name())
			} else {
				wider, ok := widen(c.typ, typ)
				if !ok {
					return nil, fmt.Errorf("field %s is %s in an earlier version and %s in version %d", f.Name(), c.typ, typ, v+1)
				}
				c.typ = wider
				c.required = c.required && !nullable
			}
			c.seen++
		}
	}
	out := make([]config.Column, 0, len(order))
	for _, name := range order {
		c := cols[name]
		out = append(out, config.Column{Name: name, Type: c.typ, Required: c.required && c.seen == len(texts)})
	}
	return out, nil
}

// widen returns the column type that holds values of both a and b: Avro's
// promotions int → long → float → double.
func widen(a, b string) (string, bool) {
	if a == b {
		return a, true
	}
	rank := map[string]int{"int32": 1, "int64": 2, "float32": 3, "float64": 4}
	ra, rb := rank[a], rank[b]
	if ra == 0 || rb == 0 {
		return "", false
	}
	if ra > rb {
		return a, true
	}
	return b, true
}

// ColumnType maps an Avro schema to a lakesink column type (DESIGN.md §3) and says
// whether it is nullable (a union with null).
func ColumnType(s avro.Schema) (typ string, nullable bool, err error) {
	return columnType(s, 0)
}

func columnType(s avro.Schema, depth int) (string, bool, error) {
	if depth > 32 {
		return "", false, errors.New("nested too deeply (recursive type?)")
	}
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	switch s := s.(type) {
	case *avro.UnionSchema:
		var inner avro.Schema
		nullable := false
		for _, b := range s.Types() {
			if b.Type() == avro.Null {
				nullable = true
				continue
			}
			if inner != nil {
				return "", false, fmt.Errorf("union %s has several non-null branches; only [null, T] unions map to a column", s.String())
			}
			inner = b
		}
		if inner == nil {
			return "", false, errors.New("union of only null")
		}
		t, _, err := columnType(inner, depth+1)
		return t, nullable, err
	case *avro.RecordSchema:
		parts := make([]string, 0, len(s.Fields()))
		for _, f := range s.Fields() {
			t, _, err := columnType(f.Type(), depth+1)
			if err != nil {
				return "", false, fmt.Errorf("%s: %w", f.Name(), err)
			}
			parts = append(parts, f.Name()+":"+t)
		}
		if len(parts) == 0 {
			return "", false, errors.New("record without fields")
		}
		return "struct<" + strings.Join(parts, ",") + ">", false, nil
	case *avro.ArraySchema:
		t, _, err := columnType(s.Items(), depth+1)
		if err != nil {
			return "", false, err
		}
		return "list<" + t + ">", false, nil
	case *avro.MapSchema:
		t, _, err := columnType(s.Values(), depth+1)
		if err != nil {
			return "", false, err
		}
		return "map<string," + t + ">", false, nil
	case *avro.EnumSchema:
		return "string", false, nil
	case *avro.FixedSchema:
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			return fmt.Sprintf("decimal(%d,%d)", d.Precision(), d.Scale()), false, nil
		}
		return "bytes", false, nil
	case *avro.PrimitiveSchema:
		var lt avro.LogicalType
		if l := s.Logical(); l != nil {
			lt = l.Type()
			if d, ok := l.(*avro.DecimalLogicalSchema); ok {
				return fmt.Sprintf("decimal(%d,%d)", d.Precision(), d.Scale()), false, nil
			}
		}
		switch s.Type() {
		case avro.String:
			return "string", false, nil
		case avro.Bytes:
			return "bytes", false, nil
		case avro.Boolean:
			return "bool", false, nil
		case avro.Int:
			if lt == avro.Date {
				return "date", false, nil
			}
			return "int32", false, nil
		case avro.Long:
			switch lt {
			case avro.TimestampMillis, avro.TimestampMicros, avro.LocalTimestampMillis, avro.LocalTimestampMicros:
				return "timestamp", false, nil
			}
			return "int64", false, nil
		case avro.Float:
			return "float32", false, nil
		case avro.Double:
			return "float64", false, nil
		case avro.Null:
			return "", true, errors.New("a field of type null cannot be a column")
		}
	}
	return "", false, fmt.Errorf("unsupported Avro type %s", s.Type())
}

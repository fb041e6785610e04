// Package schema turns a table's declared columns into a Parquet schema with
// stable field ids, plus the tree of definition/repetition levels that the sink
// uses to write records straight into column buffers.
package schema

import (
	"fmt"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/lakesink/lakesink/lake/config"
)

// Kafka coordinate column names, present in every table.
const (
	ColTopic     = "_kafka_topic"
	ColPartition = "_kafka_partition"
	ColOffset    = "_kafka_offset"
	ColTimestamp = "_kafka_timestamp"
)

// Node is one column or nested field with the levels needed to shred values into it.
type Node struct {
	Name     string
	Type     *config.Type
	Optional bool
	FieldID  int
	// Path is the JSON path of a top-level column (dot separated in the config).
	Path []string
	// Leaf is the index of the first leaf column of this node; NumLeaves how many it spans.
	Leaf, NumLeaves int
	// RepLevel is the repetition level of the repeated group of a list or map node.
	RepLevel int
	// Children: struct fields in Parquet (name) order; list: [element]; map: [key, value].
	Children []*Node
	// Dictionary turns on dictionary encoding for a string leaf.
	Dictionary bool
}

// Schema is a compiled table schema.
type Schema struct {
	Table string
	// Columns holds the top-level columns in declared order, Kafka coordinates last.
	Columns []*Node
	// Parquet is the physical schema (columns ordered by name, as parquet-go orders groups).
	Parquet *parquet.Schema
	// NumLeaves is the number of leaf columns.
	NumLeaves int
	// Leaves describes each leaf column, in Parquet order.
	Leaves []Leaf
	// EventTime is the column that decides a record's partition.
	EventTime *Node
	// Topic, Partition, Offset and Timestamp are the Kafka coordinate columns.
	Topic, Partition, Offset, Timestamp *Node
	// Granularity is "hour" or "day".
	Granularity string
}

// Leaf is what the sink needs to store a leaf column's values compactly.
type Leaf struct {
	Kind      parquet.Kind
	MaxDef    int
	MaxRep    int
	TypeLen   int // fixed-length byte arrays
	ConvertTo parquet.Type
}

// Column returns the top-level column with the given name, or nil.
func (s *Schema) Column(name string) *Node {
	for _, c := range s.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Compile builds the schema of a validated table config.
func Compile(t *config.Table) (*Schema, error) {
	s := &Schema{Table: t.Name, Granularity: t.EventTime.Granularity}
	for _, c := range t.Columns {
		typ, err := config.ParseType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
		}
		n := &Node{Name: c.Name, Type: typ, Optional: !c.Required, FieldID: c.FieldID, Path: splitPath(c.Path),
			Dictionary: c.Dictionary == nil || *c.Dictionary}
		s.Columns = append(s.Columns, n)
	}
	s.Topic = &Node{Name: ColTopic, Type: &config.Type{Kind: config.KindString}, Dictionary: true}
	s.Partition = &Node{Name: ColPartition, Type: &config.Type{Kind: config.KindInt32}}
	s.Offset = &Node{Name: ColOffset, Type: &config.Type{Kind: config.KindInt64}}
	s.Timestamp = &Node{Name: ColTimestamp, Type: &config.Type{Kind: config.KindTimestamp}}
	s.Columns = append(s.Columns, s.Topic, s.Partition, s.Offset, s.Timestamp)
	assignFieldIDs(s.Columns)
	if t.EventTime.Source == "kafka" {
		s.EventTime = s.Timestamp
	} else {
		s.EventTime = s.Column(t.EventTime.Column)
	}
	group := parquet.Group{}
	for _, c := range s.Columns {
		group[c.Name] = buildNode(c)
	}
	s.Parquet = parquet.NewSchema(t.Name, group)
	// Leaf indices follow parquet-go's order: group fields sorted by name, depth first.
	byName := slices.Clone(s.Columns)
	sort.Slice(byName, func(i, j int) bool { return byName[i].Name < byName[j].Name })
	next := 0
	for _, c := range byName {
		next = assignLeaves(c, next, 0)
	}
	s.NumLeaves = next
	paths := s.Parquet.Columns()
	if len(paths) != next {
		return nil, fmt.Errorf("table %s: internal error: %d leaf columns, parquet schema has %d", t.Name, next, len(paths))
	}
	for _, p := range paths {
		lc, ok := s.Parquet.Lookup(p...)
		if !ok {
			return nil, fmt.Errorf("table %s: internal error: no leaf %v", t.Name, p)
		}
		typ := lc.Node.Type()
		s.Leaves = append(s.Leaves, Leaf{Kind: typ.Kind(), MaxDef: lc.MaxDefinitionLevel, MaxRep: lc.MaxRepetitionLevel,
			TypeLen: typ.Length()})
		if lc.MaxDefinitionLevel > 15 || lc.MaxRepetitionLevel > 15 {
			return nil, fmt.Errorf("table %s: column %v nests too deeply (at most 15 levels)", t.Name, p)
		}
	}
	return s, nil
}

func splitPath(p string) []string {
	if len(p) > 2 && p[:2] == "$." {
		p = p[2:]
	}
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

// assignFieldIDs numbers fields the way Iceberg assigns fresh ids: all fields of a
// struct first, in declared order, then the children of each field in turn.
// Explicit ids are kept; automatic ids skip them.
func assignFieldIDs(top []*Node) {
	used := map[int]bool{}
	var mark func(ns []*Node)
	mark = func(ns []*Node) {
		for _, n := range ns {
			if n.FieldID > 0 {
				used[n.FieldID] = true
			}
		}
	}
	mark(top)
	next := 1
	take := func() int {
		for used[next] {
			next++
		}
		used[next] = true
		return next
	}
	var visit func(ns []*Node)
	visit = func(ns []*Node) {
		for _, n := range ns {
			if n.FieldID == 0 {
				n.FieldID = take()
			}
		}
		for _, n := range ns {
			kids := childrenDeclared(n)
			visit(kids)
		}
	}
	visit(top)
}

// childrenDeclared creates (once) and returns the child nodes in declared order.
func childrenDeclared(n *Node) []*Node {
	if n.Children != nil {
		return n.Children
	}
	switch n.Type.Kind {
	case config.KindList:
		n.Children = []*Node{{Name: "element", Type: n.Type.Elem, Optional: true, Dictionary: true}}
	case config.KindMap:
		n.Children = []*Node{{Name: "key", Type: n.Type.Key, Dictionary: true}, {Name: "value", Type: n.Type.Value, Optional: true, Dictionary: true}}
	case config.KindStruct:
		for _, f := range n.Type.Fields {
			n.Children = append(n.Children, &Node{Name: f.Name, Type: f.Type, Optional: true, Path: []string{f.Name}, Dictionary: true})
		}
	}
	return n.Children
}

func buildNode(n *Node) parquet.Node {
	var pn parquet.Node
	switch n.Type.Kind {
	case config.KindString:
		pn = parquet.String()
		if n.Dictionary {
			pn = parquet.Encoded(pn, &parquet.RLEDictionary)
		}
	case config.KindBool:
		pn = parquet.Leaf(parquet.BooleanType)
	case config.KindInt32:
		pn = parquet.Int(32)
	case config.KindInt64:
		pn = parquet.Int(64)
	case config.KindFloat32:
		pn = parquet.Leaf(parquet.FloatType)
	case config.KindFloat64:
		pn = parquet.Leaf(parquet.DoubleType)
	case config.KindDecimal:
		pn = parquet.Decimal(n.Type.Scale, n.Type.Precision, DecimalPhysical(n.Type.Precision))
	case config.KindDate:
		pn = parquet.Date()
	case config.KindTimestamp:
		pn = parquet.Timestamp(parquet.Microsecond)
	case config.KindBytes:
		pn = parquet.Leaf(parquet.ByteArrayType)
	case config.KindList:
		pn = parquet.List(buildNode(n.Children[0]))
	case config.KindMap:
		pn = parquet.Map(buildNode(n.Children[0]), buildNode(n.Children[1]))
	case config.KindStruct:
		g := parquet.Group{}
		for _, c := range n.Children {
			g[c.Name] = buildNode(c)
		}
		pn = g
	}
	pn = parquet.FieldID(pn, n.FieldID)
	if n.Optional {
		pn = parquet.Optional(pn)
	} else {
		pn = parquet.Required(pn)
	}
	return pn
}

// DecimalPhysical returns the Iceberg-mandated physical type for a decimal precision.
func DecimalPhysical(precision int) parquet.Type {
	switch {
	case precision <= 9:
		return parquet.Int32Type
	case precision <= 18:
		return parquet.Int64Type
	}
	return parquet.FixedLenByteArrayType(DecimalBytes(precision))
}

// DecimalBytes is the minimal two's-complement width holding any unscaled value of a precision.
func DecimalBytes(precision int) int {
	// Smallest n such that 2^(8n-1) > 10^precision.
	bits := float64(precision)*3.321928094887362 + 1
	n := int(bits+7) / 8
	return n
}

// assignLeaves sets Leaf/NumLeaves in Parquet order and repetition levels.
func assignLeaves(n *Node, next, repDepth int) int {
	n.Leaf = next
	switch n.Type.Kind {
	case config.KindList, config.KindMap:
		n.RepLevel = repDepth + 1
		kids := n.Children
		if n.Type.Kind == config.KindMap {
			// parquet-go's Map orders key before value, as declared.
			kids = []*Node{n.Children[0], n.Children[1]}
		}
		for _, c := range kids {
			next = assignLeaves(c, next, repDepth+1)
		}
	case config.KindStruct:
		kids := slices.Clone(n.Children)
		sort.Slice(kids, func(i, j int) bool { return kids[i].Name < kids[j].Name })
		for _, c := range kids {
			next = assignLeaves(c, next, repDepth)
		}
		n.Children = kids
	default:
		next++
	}
	n.NumLeaves = next - n.Leaf
	return next
}

// WriterOptions returns the Parquet writer settings of the lake: zstd, statistics,
// page index, data page v1 (readable by every engine), and the schema's field ids.
// Statistics are the column chunks' min/max and the column index's per-page
// min/max, which is what Athena/Trino, Spark and DuckDB prune with. Pages carry no
// statistics in their headers: parquet-mr stopped writing those when the page
// index replaced them (PARQUET-1365), and computing them again for each page cost
// 7-8 % of the sink's encoding (BenchmarkEncodeSmallFile, BenchmarkDecodeEncode).
func (s *Schema) WriterOptions(extra ...parquet.WriterOption) []parquet.WriterOption {
	opts := []parquet.WriterOption{
		s.Parquet,
		parquet.Compression(&zstd.Codec{Level: zstd.SpeedDefault}),
		parquet.DataPageVersion(1),
		parquet.PageBufferSize(256 << 10),
		parquet.DataPageStatistics(false),
		parquet.CreatedBy("lakesink", "0.1.0", ""),
	}
	return append(opts, extra...)
}

// Renumber replaces every field id with the one id returns for the field's
// dotted path ("col", "col.element", "col.key", "col.value", "col.field"), the
// naming Iceberg uses, and rebuilds the Parquet schema. The compactor uses it to
// write the ids an Iceberg table assigned, which can differ from the config's
// after columns were added. A path id does not know is an error.
func (s *Schema) Renumber(id func(path string) (int, bool)) error {
	var walk func(prefix string, ns []*Node) error
	walk = func(prefix string, ns []*Node) error {
		for _, n := range ns {
			p := prefix + n.Name
			v, ok := id(p)
			if !ok {
				return fmt.Errorf("table %s: field %s has no id in the target schema", s.Table, p)
			}
			n.FieldID = v
			if err := walk(p+".", n.Children); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", s.Columns); err != nil {
		return err
	}
	group := parquet.Group{}
	for _, c := range s.Columns {
		group[c.Name] = buildNode(c)
	}
	s.Parquet = parquet.NewSchema(s.Table, group)
	return nil
}

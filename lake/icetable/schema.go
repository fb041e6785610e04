// Package icetable is the lake's access to Iceberg: it opens the configured
// catalog (SQL, Glue or REST) through iceberg-go, creates a table from its
// config (schema with field ids, hour()/day() partition spec, sort order,
// format v2 and the properties Athena reads), evolves it when optional columns
// are added or types widen as Iceberg allows, and maps the table's field ids back onto the Parquet schema the
// compactor writes.
package icetable

import (
	"fmt"
	"slices"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// IcebergSchema converts a compiled table schema into an Iceberg schema with the
// same field ids (Iceberg's fresh-id order, which iceberg-go keeps on create).
func IcebergSchema(s *schema.Schema) *iceberg.Schema {
	fields := make([]iceberg.NestedField, 0, len(s.Columns))
	for _, c := range s.Columns {
		fields = append(fields, nestedField(c))
	}
	return iceberg.NewSchema(0, fields...)
}

func nestedField(n *schema.Node) iceberg.NestedField {
	return iceberg.NestedField{ID: n.FieldID, Name: n.Name, Type: icebergType(n), Required: !n.Optional}
}

func icebergType(n *schema.Node) iceberg.Type {
	switch n.Type.Kind {
	case config.KindString:
		return iceberg.PrimitiveTypes.String
	case config.KindBool:
		return iceberg.PrimitiveTypes.Bool
	case config.KindInt32:
		return iceberg.PrimitiveTypes.Int32
	case config.KindInt64:
		return iceberg.PrimitiveTypes.Int64
	case config.KindFloat32:
		return iceberg.PrimitiveTypes.Float32
	case config.KindFloat64:
		return iceberg.PrimitiveTypes.Float64
	case config.KindDecimal:
		return iceberg.DecimalTypeOf(n.Type.Precision, n.Type.Scale)
	case config.KindDate:
		return iceberg.PrimitiveTypes.Date
	case config.KindTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	case config.KindBytes:
		return iceberg.PrimitiveTypes.Binary
	case config.KindList:
		e := n.Children[0]
		return &iceberg.ListType{ElementID: e.FieldID, Element: icebergType(e), ElementRequired: !e.Optional}
	case config.KindMap:
		k, v := n.Children[0], n.Children[1]
		return &iceberg.MapType{KeyID: k.FieldID, KeyType: icebergType(k), ValueID: v.FieldID, ValueType: icebergType(v), ValueRequired: !v.Optional}
	case config.KindStruct:
		kids := declaredOrder(n)
		fs := make([]iceberg.NestedField, 0, len(kids))
		for _, c := range kids {
			fs = append(fs, nestedField(c))
		}
		return &iceberg.StructType{FieldList: fs}
	}
	panic(fmt.Sprintf("icetable: column %s has unknown kind %d", n.Name, n.Type.Kind))
}

// declaredOrder returns a struct node's fields in the order the config declares
// them (the compiled schema keeps them in Parquet name order).
func declaredOrder(n *schema.Node) []*schema.Node {
	kids := slices.Clone(n.Children)
	pos := map[string]int{}
	for i, f := range n.Type.Fields {
		pos[f.Name] = i
	}
	slices.SortFunc(kids, func(a, b *schema.Node) int { return pos[a.Name] - pos[b.Name] })
	return kids
}

// PartitionSpec returns hour(event_time) or day(event_time) over the table's schema.
func PartitionSpec(s *schema.Schema, sch *iceberg.Schema) (iceberg.PartitionSpec, error) {
	f, ok := sch.FindFieldByName(s.EventTime.Name)
	if !ok {
		return iceberg.PartitionSpec{}, fmt.Errorf("table %s: event-time column %s is not in the Iceberg schema", s.Table, s.EventTime.Name)
	}
	var tr iceberg.Transform = iceberg.HourTransform{}
	if s.Granularity == "day" {
		tr = iceberg.DayTransform{}
	}
	return iceberg.NewPartitionSpec(iceberg.PartitionField{
		SourceIDs: []int{f.ID}, FieldID: 1000, Name: PartitionFieldName(s), Transform: tr,
	}), nil
}

// PartitionFieldName is the name of the table's single partition field, for
// example "created_at_hour".
func PartitionFieldName(s *schema.Schema) string {
	return s.EventTime.Name + "_" + s.Granularity
}

// SortOrder returns the table's sort order: the configured sort columns, then
// the Kafka coordinates (which also make duplicates adjacent).
func SortOrder(cfg *config.Table, sch *iceberg.Schema) (table.SortOrder, error) {
	var fields []table.SortField
	for _, name := range SortColumns(cfg) {
		f, ok := sch.FindFieldByName(name)
		if !ok {
			return table.SortOrder{}, fmt.Errorf("table %s: sort column %s is not in the Iceberg schema", cfg.Name, name)
		}
		fields = append(fields, table.SortField{SourceIDs: []int{f.ID}, Transform: iceberg.IdentityTransform{},
			Direction: table.SortASC, NullOrder: table.NullsFirst})
	}
	return table.NewSortOrder(1, fields)
}

// SortColumns lists the columns output files are sorted by: sort_by, then
// _kafka_topic, _kafka_partition, _kafka_offset (each once).
func SortColumns(cfg *config.Table) []string {
	out := slices.Clone(cfg.SortBy)
	for _, c := range []string{schema.ColTopic, schema.ColPartition, schema.ColOffset} {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

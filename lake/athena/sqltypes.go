package athena

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/lakesink/lakesink/lake/config"
)

// Athena has two SQL dialects: DDL (CREATE EXTERNAL TABLE, CREATE DATABASE) is Hive's, with
// backtick-quoted identifiers and Hive type names; DML and views (SELECT, CREATE VIEW) are
// Trino's, with double-quoted identifiers and Trino type names.
// https://docs.aws.amazon.com/athena/latest/ug/reserved-words.html
// https://docs.aws.amazon.com/athena/latest/ug/data-types.html

// ddlIdent quotes an identifier for a DDL statement. Athena requires backticks around names
// that begin with an underscore or are DDL keywords; quoting every name is always accepted.
func ddlIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// dmlIdent quotes an identifier for a SELECT or CREATE VIEW statement.
func dmlIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// literal quotes a string literal (both dialects).
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// plainField matches struct field names that Hive's DDL grammar accepts unquoted.
var plainField = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ddlReserved lists Athena's reserved DDL keywords (lower case). A struct field with one of
// these names must be quoted.
var ddlReserved = func() map[string]bool {
	const words = `all alter and array as authorization between bigint binary boolean both by case
cashe cast char column conf constraint commit create cross cube current current_date
current_timestamp cursor database date dayofweek decimal delete describe distinct div double drop
else end exchange exists extended external extract false fetch float floor following for foreign
from full function grant group grouping having if import in inner insert int integer intersect
interval into is join lateral left less like local macro map more none not null numeric of on only
or order out outer over partialscan partition percent preceding precision preserve primary
procedure range reads reduce regexp references revoke right rlike rollback rollup row rows select
set smallint start table tablesample then time timestamp to transform trigger true truncate
unbounded union uniquejoin update user using utc_timestamp values varchar views when where window
with`
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}()

// ddlField renders a struct field name inside a Hive type. Plain names stay bare (the form Glue
// stores and shows); names Hive's grammar would reject are backtick-quoted.
func ddlField(name string) string {
	if plainField.MatchString(name) && !ddlReserved[name] {
		return name
	}
	return ddlIdent(name)
}

// hiveType renders a column type in Athena's DDL syntax. Names are lower-cased: Athena (and
// Glue) lower-case every column and field name, and read Parquet columns by name ignoring case.
func hiveType(t *config.Type) string {
	switch t.Kind {
	case config.KindString:
		return "string"
	case config.KindBool:
		return "boolean"
	case config.KindInt32:
		return "int"
	case config.KindInt64:
		return "bigint"
	case config.KindFloat32:
		return "float"
	case config.KindFloat64:
		return "double"
	case config.KindDecimal:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale)
	case config.KindDate:
		return "date"
	case config.KindTimestamp:
		return "timestamp"
	case config.KindBytes:
		return "binary"
	case config.KindList:
		return "array<" + hiveType(t.Elem) + ">"
	case config.KindMap:
		return "map<" + hiveType(t.Key) + "," + hiveType(t.Value) + ">"
	case config.KindStruct:
		parts := make([]string, len(t.Fields))
		for i, f := range t.Fields {
			parts[i] = ddlField(strings.ToLower(f.Name)) + ":" + hiveType(f.Type)
		}
		return "struct<" + strings.Join(parts, ",") + ">"
	}
	panic(fmt.Sprintf("athena: unhandled column kind %d", t.Kind))
}

// viewTimestamp is the type the view gives timestamps: the Iceberg table's timestamptz
// (INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true) in the files) reads in Athena as a
// timestamp with time zone, the raw table's Hive timestamp as a timestamp without one, so the
// raw side is converted. Without a precision Trino means 3 (milliseconds), which is all the
// Hive table reads anyway; UNION ALL widens it to the Iceberg side's precision.
const viewTimestamp = "timestamp with time zone"

// trinoType renders a column type in Athena's DML (Trino) syntax, with timestamps as
// viewTimestamp. It is only used to CAST nested raw values that hold timestamps.
func trinoType(t *config.Type) string {
	switch t.Kind {
	case config.KindString:
		return "varchar"
	case config.KindBool:
		return "boolean"
	case config.KindInt32:
		return "integer"
	case config.KindInt64:
		return "bigint"
	case config.KindFloat32:
		return "real"
	case config.KindFloat64:
		return "double"
	case config.KindDecimal:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale)
	case config.KindDate:
		return "date"
	case config.KindTimestamp:
		return viewTimestamp
	case config.KindBytes:
		return "varbinary"
	case config.KindList:
		return "array(" + trinoType(t.Elem) + ")"
	case config.KindMap:
		return "map(" + trinoType(t.Key) + ", " + trinoType(t.Value) + ")"
	case config.KindStruct:
		parts := make([]string, len(t.Fields))
		for i, f := range t.Fields {
			parts[i] = dmlIdent(strings.ToLower(f.Name)) + " " + trinoType(f.Type)
		}
		return "row(" + strings.Join(parts, ", ") + ")"
	}
	panic(fmt.Sprintf("athena: unhandled column kind %d", t.Kind))
}

// hasTimestamp reports whether a type is or contains a timestamp.
func hasTimestamp(t *config.Type) bool {
	switch t.Kind {
	case config.KindTimestamp:
		return true
	case config.KindList:
		return hasTimestamp(t.Elem)
	case config.KindMap:
		return hasTimestamp(t.Value)
	case config.KindStruct:
		for _, f := range t.Fields {
			if hasTimestamp(f.Type) {
				return true
			}
		}
	}
	return false
}

// rawViewExpr is the raw side's select expression for a column, converted to the type the
// Iceberg side has. A top-level timestamp is pinned to UTC with with_timezone (no dependence on
// the session time zone); a nested one is CAST, which uses the session zone (UTC in Athena).
func rawViewExpr(alias, name string, t *config.Type) string {
	col := alias + "." + dmlIdent(name)
	switch {
	case t.Kind == config.KindTimestamp:
		return "with_timezone(" + col + ", 'UTC') AS " + dmlIdent(name)
	case hasTimestamp(t):
		return "CAST(" + col + " AS " + trinoType(t) + ") AS " + dmlIdent(name)
	}
	return col
}

// fieldCollision names two struct fields, at any depth, that differ only in case (Athena
// lower-cases them, so they would collide), or returns "".
func fieldCollision(t *config.Type) string {
	switch t.Kind {
	case config.KindList:
		return fieldCollision(t.Elem)
	case config.KindMap:
		return fieldCollision(t.Value)
	case config.KindStruct:
		seen := map[string]string{}
		for _, f := range t.Fields {
			l := strings.ToLower(f.Name)
			if other, ok := seen[l]; ok {
				return other + " and " + f.Name
			}
			seen[l] = f.Name
			if c := fieldCollision(f.Type); c != "" {
				return c
			}
		}
	}
	return ""
}

// mixedCaseFields names the first struct field, at any depth, spelled with upper-case letters.
func mixedCaseFields(cols []column) string {
	var walk func(path string, t *config.Type) string
	walk = func(path string, t *config.Type) string {
		switch t.Kind {
		case config.KindList:
			return walk(path, t.Elem)
		case config.KindMap:
			return walk(path, t.Value)
		case config.KindStruct:
			for _, f := range t.Fields {
				if f.Name != strings.ToLower(f.Name) {
					return path + "." + f.Name
				}
				if m := walk(path+"."+f.Name, f.Type); m != "" {
					return m
				}
			}
		}
		return ""
	}
	for _, c := range cols {
		if m := walk(c.name, c.typ); m != "" {
			return m
		}
	}
	return ""
}

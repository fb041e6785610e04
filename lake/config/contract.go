package config

import (
	"fmt"
	"strings"
)

// JSON coercions a table (coerce) or a column (columns[].coerce) may allow;
// docs/contracts.md describes each one.
const (
	// CoerceNumericStrings reads a string holding a JSON number ("42", "-3.5", "1e3")
	// exactly as the number itself, for int32, int64, float32, float64 and, with an
	// epoch timestamp format, timestamp columns. Decimal columns always read strings.
	CoerceNumericStrings = "numeric_strings"
	// CoerceBoolStrings reads the strings "true" and "false" into bool columns.
	CoerceBoolStrings = "bool_strings"
	// CoerceBoolNumbers reads the numbers 0 and 1 into bool columns.
	CoerceBoolNumbers = "bool_numbers"
)

// CoerceNames lists every coercion, for validation and error messages.
var CoerceNames = []string{CoerceNumericStrings, CoerceBoolStrings, CoerceBoolNumbers}

// Timestamp formats (timestamp_format per table, format per column): the unit of a
// JSON number in a timestamp column. RFC 3339 strings are read by every format.
const (
	TimestampRFC3339      = "rfc3339" // strings only: a number is rejected
	TimestampEpochSeconds = "epoch_seconds"
	TimestampEpochMillis  = "epoch_millis" // the default
	TimestampEpochMicros  = "epoch_micros"
)

// TimestampFormats lists every timestamp format, for validation and error messages.
var TimestampFormats = []string{TimestampRFC3339, TimestampEpochSeconds, TimestampEpochMillis, TimestampEpochMicros}

// Contract is the effective JSON contract of one column: the table's settings with
// the column's overrides applied.
type Contract struct {
	NumericStrings, BoolStrings, BoolNumbers bool
	// TimestampFormat is one of TimestampFormats.
	TimestampFormat string
}

// ContractOf returns the effective contract of the table's column c.
func (t *Table) ContractOf(c *Column) Contract {
	list := t.Coerce
	if c.Coerce != nil {
		list = c.Coerce
	}
	k := Contract{TimestampFormat: t.TimestampFormat}
	if c.Format != "" {
		k.TimestampFormat = c.Format
	}
	if k.TimestampFormat == "" {
		k.TimestampFormat = TimestampEpochMillis
	}
	for _, name := range list {
		switch name {
		case CoerceNumericStrings:
			k.NumericStrings = true
		case CoerceBoolStrings:
			k.BoolStrings = true
		case CoerceBoolNumbers:
			k.BoolNumbers = true
		}
	}
	return k
}

// validateContract checks the coerce and timestamp format keys of a table and its columns.
func (t *Table) validateContract(key string) error {
	if t.TimestampFormat == "" {
		t.TimestampFormat = TimestampEpochMillis
	}
	if err := oneOf(key+".timestamp_format", t.TimestampFormat, TimestampFormats...); err != nil {
		return err
	}
	if err := checkCoerce(key+".coerce", t.Coerce); err != nil {
		return err
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		ck := fmt.Sprintf("%s.columns[%d]", key, i)
		if err := checkCoerce(ck+".coerce", c.Coerce); err != nil {
			return err
		}
		if c.Format == "" {
			continue
		}
		if err := oneOf(ck+".format", c.Format, TimestampFormats...); err != nil {
			return err
		}
		if typ, err := ParseType(c.Type); err == nil && !typ.hasKind(KindTimestamp) {
			return keyErr(ck+".format", "only applies to timestamps, and column %q of type %s holds none", c.Name, c.Type)
		}
	}
	return nil
}

func checkCoerce(key string, list []string) error {
	for i, name := range list {
		if err := oneOf(fmt.Sprintf("%s[%d]", key, i), name, CoerceNames...); err != nil {
			return keyErr(fmt.Sprintf("%s[%d]", key, i), "%q is not a coercion: want one of %s (docs/contracts.md)", name, strings.Join(CoerceNames, ", "))
		}
	}
	return nil
}

// hasKind reports whether the type is, or nests, a value of kind k.
func (t *Type) hasKind(k Kind) bool {
	if t == nil {
		return false
	}
	if t.Kind == k {
		return true
	}
	for _, f := range t.Fields {
		if f.Type.hasKind(k) {
			return true
		}
	}
	return t.Elem.hasKind(k) || t.Key.hasKind(k) || t.Value.hasKind(k)
}

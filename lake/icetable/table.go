package icetable

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/schema"
)

// Properties are the table properties lakesink sets on tables it creates:
// Parquet with zstd (what Athena's write_compression maps to), the target file
// size, the retention the compactor's own snapshot expiry follows, and no
// commit replay: iceberg-go v0.7.0 (table.readRetryConfig in doCommit) reads
// commit.retry.num-retries from the table and, above 0, replays a conflicting
// commit on the new head, which would add a compaction's outputs on top of a
// rival's holding the same rows. Another writer can change the property, so
// the compactor also pins its commits to the snapshot it planned from.
func Properties(t *config.Table, comp *config.Compaction) iceberg.Properties {
	return iceberg.Properties{
		table.CommitNumRetriesKey:                    "0",
		"format-version":                             "2",
		"write.format.default":                       "parquet",
		"write.parquet.compression-codec":            "zstd",
		"write.target-file-size-bytes":               strconv.FormatInt(int64(t.TargetFileSize), 10),
		"write.metadata.delete-after-commit.enabled": "true",
		"write.metadata.previous-versions-max":       "100",
		"history.expire.min-snapshots-to-keep":       strconv.Itoa(comp.SnapshotRetainLast),
		"history.expire.max-snapshot-age-ms":         strconv.FormatInt(comp.SnapshotMaxAge.Milliseconds(), 10),
		"gc.enabled":                                 "true",
		"lakesink.managed":                           "true",
	}
}

// Location is where a table's data and metadata live: <warehouse>/<namespace>/<table>.
func (c *Catalog) Location(name string) string {
	return c.Warehouse + "/" + strings.Join(c.Namespace, "/") + "/" + name
}

// Ensure loads the table, creating it from the config when missing and adding
// optional columns the config gained since. It returns the table and a
// description of each change it made.
func (c *Catalog) Ensure(ctx context.Context, t *config.Table, comp *config.Compaction) (*table.Table, []string, error) {
	sch, err := schema.Compile(t)
	if err != nil {
		return nil, nil, err
	}
	ident := c.Ident(t.Name)
	tbl, err := c.Cat.LoadTable(ctx, ident)
	switch {
	case errors.Is(err, catalog.ErrNoSuchTable):
		tbl, created, err := c.create(ctx, t, comp, sch)
		if err != nil || !created {
			return tbl, nil, err
		}
		return tbl, []string{"created table " + strings.Join(ident, ".")}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("load table %s: %w", strings.Join(ident, "."), err)
	}
	return c.evolve(ctx, tbl, sch)
}

func (c *Catalog) create(ctx context.Context, t *config.Table, comp *config.Compaction, sch *schema.Schema) (*table.Table, bool, error) {
	isch := IcebergSchema(sch)
	spec, err := PartitionSpec(sch, isch)
	if err != nil {
		return nil, false, err
	}
	order, err := SortOrder(t, isch)
	if err != nil {
		return nil, false, err
	}
	ident := c.Ident(t.Name)
	tbl, err := c.Cat.CreateTable(ctx, ident, isch,
		catalog.WithLocation(c.Location(t.Name)),
		catalog.WithPartitionSpec(&spec),
		catalog.WithSortOrder(order),
		catalog.WithProperties(Properties(t, comp)))
	if errors.Is(err, catalog.ErrTableAlreadyExists) {
		// Another compactor created it first.
		tbl, err = c.Cat.LoadTable(ctx, ident)
		return tbl, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("create table %s: %w", strings.Join(ident, "."), err)
	}
	return tbl, true, nil
}

// ErrIncompatibleSchema means the config and the table disagree in a way
// Iceberg's schema evolution cannot fix (a new required column, a narrowed or
// changed type, a decimal scale change, an optional column made required); a
// human must decide.
var ErrIncompatibleSchema = errors.New("config and table schema are incompatible")

// columnChange is one change evolve makes to an existing field: a type
// widening Iceberg allows, or a required field made optional.
type columnChange struct {
	path     []string
	from, to iceberg.Type // set for a widening
	optional bool         // make the field optional
}

func (ch columnChange) String() string {
	name := strings.Join(ch.path, ".")
	if ch.to != nil {
		return fmt.Sprintf("widened column %s from %s to %s", name, ch.from, ch.to)
	}
	return "made column " + name + " optional"
}

// evolve brings the table's schema to the config's: it adds optional columns
// new in the config, widens the types of existing ones as Iceberg allows
// (int → long, float → double, decimal(P,S) → decimal(P',S) with P' > P) and
// makes required columns the config declares optional optional, all in one
// schema change. Any other difference is ErrIncompatibleSchema.
func (c *Catalog) evolve(ctx context.Context, tbl *table.Table, sch *schema.Schema) (*table.Table, []string, error) {
	cur := tbl.Schema()
	var add []*schema.Node
	var upd []columnChange
	for _, col := range sch.Columns {
		f, ok := cur.FindFieldByName(col.Name)
		if !ok {
			if !col.Optional {
				return nil, nil, fmt.Errorf("table %s: new column %s is required; Iceberg can only add optional columns (make it optional): %w",
					sch.Table, col.Name, ErrIncompatibleSchema)
			}
			add = append(add, col)
			continue
		}
		want := icebergType(col)
		ch, err := diffField(sch.Table, []string{col.Name}, f.Required, f.Type, !col.Optional, want)
		if err != nil {
			return nil, nil, err
		}
		upd = append(upd, ch...)
	}
	if len(add) == 0 && len(upd) == 0 {
		return tbl, nil, nil
	}
	tx := tbl.NewTransaction()
	up := tx.UpdateSchema(true, false)
	var changes []string
	for _, ch := range upd {
		var cu table.ColumnUpdate
		if ch.to != nil {
			cu.FieldType = iceberg.Optional[iceberg.Type]{Val: ch.to, Valid: true}
		}
		if ch.optional {
			cu.Required = iceberg.Optional[bool]{Val: false, Valid: true}
		}
		up = up.UpdateColumn(ch.path, cu)
		changes = append(changes, ch.String())
	}
	for _, col := range add {
		up = up.AddColumn([]string{col.Name}, icebergType(col), "", false, nil)
		changes = append(changes, "added column "+col.Name)
	}
	if err := up.Commit(); err != nil {
		return nil, nil, fmt.Errorf("evolve table %s (%s): %w", sch.Table, strings.Join(changes, ", "), err)
	}
	next, err := tx.Commit(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("commit schema change of table %s (%s): %w", sch.Table, strings.Join(changes, ", "), err)
	}
	return next, changes, nil
}

// diffField compares a table field (have, haveRequired) with the config's
// (want, wantRequired) at path and returns the changes that bring the table to
// the config, or ErrIncompatibleSchema naming the column and both types.
// Nested field ids are ignored (the table assigns its own); fields the table
// has and the config lacks inside a struct are kept.
func diffField(tableName string, path []string, haveRequired bool, have iceberg.Type, wantRequired bool, want iceberg.Type) ([]columnChange, error) {
	name := strings.Join(path, ".")
	incompatible := func() error {
		return fmt.Errorf("table %s: column %s is %s in the table but %s in the config: %w",
			tableName, name, have, want, ErrIncompatibleSchema)
	}
	var out []columnChange
	switch {
	case wantRequired && !haveRequired:
		return nil, fmt.Errorf("table %s: column %s is optional in the table but required in the config; Iceberg cannot make a column required (old rows may be null): %w",
			tableName, name, ErrIncompatibleSchema)
	case haveRequired && !wantRequired:
		out = append(out, columnChange{path: path, optional: true})
	}
	child := func(elem string, haveReq bool, h iceberg.Type, wantReq bool, w iceberg.Type) error {
		ch, err := diffField(tableName, append(slices.Clone(path), elem), haveReq, h, wantReq, w)
		out = append(out, ch...)
		return err
	}
	switch x := have.(type) {
	case *iceberg.ListType:
		y, ok := want.(*iceberg.ListType)
		if !ok {
			return nil, incompatible()
		}
		if err := child("element", x.ElementRequired, x.Element, y.ElementRequired, y.Element); err != nil {
			return nil, err
		}
	case *iceberg.MapType:
		y, ok := want.(*iceberg.MapType)
		if !ok || !sameType(x.KeyType, y.KeyType) {
			return nil, incompatible()
		}
		if err := child("value", x.ValueRequired, x.ValueType, y.ValueRequired, y.ValueType); err != nil {
			return nil, err
		}
	case *iceberg.StructType:
		y, ok := want.(*iceberg.StructType)
		if !ok {
			return nil, incompatible()
		}
		for _, wf := range y.FieldList {
			i := slices.IndexFunc(x.FieldList, func(hf iceberg.NestedField) bool { return hf.Name == wf.Name })
			if i < 0 {
				return nil, incompatible()
			}
			hf := x.FieldList[i]
			if err := child(wf.Name, hf.Required, hf.Type, wf.Required, wf.Type); err != nil {
				return nil, err
			}
		}
	default:
		switch {
		case have.Equals(want):
		case widens(have, want):
			out = append(out, columnChange{path: path, from: have, to: want})
		default:
			return nil, incompatible()
		}
	}
	return mergeChanges(out), nil
}

// mergeChanges folds a widening and a relaxation of the same field into one change.
func mergeChanges(chs []columnChange) []columnChange {
	for i := 0; i+1 < len(chs); i++ {
		a, b := &chs[i], chs[i+1]
		if slices.Equal(a.path, b.path) {
			if b.to != nil {
				a.from, a.to = b.from, b.to
			}
			a.optional = a.optional || b.optional
			chs = slices.Delete(chs, i+1, i+2)
			i--
		}
	}
	return chs
}

// widens reports whether Iceberg allows a field of type from to become type
// to: int → long, float → double, decimal(P,S) → decimal(P',S) with P' > P.
// (iceberg.PromoteType also allows string ↔ binary for reading files, which
// is no schema evolution.)
func widens(from, to iceberg.Type) bool {
	switch f := from.(type) {
	case iceberg.Int32Type:
		_, ok := to.(iceberg.Int64Type)
		return ok
	case iceberg.Float32Type:
		_, ok := to.(iceberg.Float64Type)
		return ok
	case iceberg.DecimalType:
		t, ok := to.(iceberg.DecimalType)
		return ok && t.Scale() == f.Scale() && t.Precision() > f.Precision()
	}
	return false
}

// sameType compares types ignoring nested field ids (the table assigns its own).
func sameType(a, b iceberg.Type) bool {
	switch x := a.(type) {
	case *iceberg.ListType:
		y, ok := b.(*iceberg.ListType)
		return ok && x.ElementRequired == y.ElementRequired && sameType(x.Element, y.Element)
	case *iceberg.MapType:
		y, ok := b.(*iceberg.MapType)
		return ok && x.ValueRequired == y.ValueRequired && sameType(x.KeyType, y.KeyType) && sameType(x.ValueType, y.ValueType)
	case *iceberg.StructType:
		y, ok := b.(*iceberg.StructType)
		return ok && structSubset(y, x)
	}
	return a.Equals(b)
}

// structSubset reports whether every field of want is in have with the same type.
func structSubset(want, have *iceberg.StructType) bool {
	for _, wf := range want.FieldList {
		found := false
		for _, hf := range have.FieldList {
			if hf.Name == wf.Name {
				found = sameType(hf.Type, wf.Type)
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// OutputSchema compiles the table config and renumbers it with the table's
// field ids, so written files match the table whatever order columns were added in.
func OutputSchema(tbl *table.Table, t *config.Table) (*schema.Schema, error) {
	sch, err := schema.Compile(t)
	if err != nil {
		return nil, err
	}
	cur := tbl.Schema()
	err = sch.Renumber(func(path string) (int, bool) {
		f, ok := cur.FindFieldByName(path)
		return f.ID, ok
	})
	if err != nil {
		return nil, err
	}
	return sch, nil
}

package icetable

import (
	"context"
	"errors"
	"fmt"
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
// adding optional columns cannot fix; a human must decide.
var ErrIncompatibleSchema = errors.New("config and table schema are incompatible")

func (c *Catalog) evolve(ctx context.Context, tbl *table.Table, sch *schema.Schema) (*table.Table, []string, error) {
	cur := tbl.Schema()
	var add []*schema.Node
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
		if !sameType(f.Type, want) {
			return nil, nil, fmt.Errorf("table %s: column %s is %s in the table but %s in the config: %w",
				sch.Table, col.Name, f.Type, want, ErrIncompatibleSchema)
		}
	}
	if len(add) == 0 {
		return tbl, nil, nil
	}
	tx := tbl.NewTransaction()
	up := tx.UpdateSchema(true, false)
	var changes []string
	for _, col := range add {
		up = up.AddColumn([]string{col.Name}, icebergType(col), "", false, nil)
		changes = append(changes, "added column "+col.Name)
	}
	if err := up.Commit(); err != nil {
		return nil, nil, fmt.Errorf("evolve table %s: %w", sch.Table, err)
	}
	next, err := tx.Commit(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("commit schema change of table %s: %w", sch.Table, err)
	}
	return next, changes, nil
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
		if !ok || len(x.FieldList) != len(y.FieldList) {
			return ok && structSubset(y, x)
		}
		return structSubset(y, x)
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

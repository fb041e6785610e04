package compaction_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
)

// widenColumns are the narrow columns TestWideningEvolvesTable starts with.
const widenColumns = "      - {name: i, type: int32}\n      - {name: f, type: float32}\n      - {name: d, type: \"decimal(10,2)\"}\n"

// widenRow is event i's values: i, f and d (unscaled, scale 2). Events 100
// to 199 hold values only the wide types can: i beyond int32, f with a
// float64's precision, d with more than 10 digits. d is negative for odd i
// (the re-encoded decimals must keep the sign).
func widenRow(i int) (int64, float64, int64) {
	sign := int64(1 - 2*(i%2))
	if narrow(i) {
		return int64(-1_000_000 * i), float64(i) + 0.5, sign * (int64(i)*10_000_000 + 25)
	}
	return int64(i) << 33, float64(i) + 1.0/3, sign * int64(i) * 1_000_000_000_000_000
}

// narrow reports whether event i is written with the narrow types.
func narrow(i int) bool { return i < 100 || i >= 200 }

// sinkWide writes events [from, to) with columns i, f and d into the raw zone.
func (l *lab) sinkWide(t *testing.T, cfg *config.Config, from, to int) {
	t.Helper()
	l.sinkJSON(t, cfg, from, to, func(j int) string {
		iv, fv, dv := widenRow(j)
		return fmt.Sprintf(`,"i":%d,"f":%v,"d":"%s"`, iv, fv, decimalText(dv, 2))
	})
}

// sinkJSON writes events [from, to) with event_id, ts, n and the JSON members
// more returns (starting with a comma) into the raw zone: events from 200 on
// fall in the hour before the lab's (compacted only before the widening).
func (l *lab) sinkJSON(t *testing.T, cfg *config.Config, from, to int, more func(int) string) {
	t.Helper()
	l.writeEvents(t, cfg, from, to, func(j int) time.Time {
		if j >= 200 {
			return l.hour.Add(time.Duration(j-200)*time.Second - time.Hour)
		}
		return l.hour.Add(time.Duration(j) * time.Second)
	}, more)
}

// decimalText renders an unscaled decimal with scale digits after the point.
func decimalText(unscaled int64, scale int) string {
	s := fmt.Sprintf("%0*d", scale+1, abs(unscaled))
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if unscaled < 0 {
		s = "-" + s
	}
	return s
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// widen sets the types of columns i, f and d in cfg's table.
func widen(t *testing.T, cfg *config.Config, types map[string]string) {
	t.Helper()
	for k := range cfg.Tables[0].Columns {
		c := &cfg.Tables[0].Columns[k]
		if ty, ok := types[c.Name]; ok {
			c.Type = ty
		}
	}
}

// TestWideningEvolvesTable: widening int32 → int64, float32 → float64 and
// decimal(10,2) → decimal(20,2) in the config (what DESIGN §3 promises:
// the widenings Iceberg allows) changes the types of the table's fields on the
// next run, keeping their ids; the raw files written before the change (narrow
// Parquet types) merge with those written after into the wide columns with
// exact values, read back by iceberg-go and, on the bed, by DuckDB; an hour
// compacted before the widening and not rewritten since (narrow data files in
// the wide table) reads the same.
func TestWideningEvolvesTable(t *testing.T) {
	l := newLab(t)
	v1 := l.config(t, widenColumns)
	l.sinkWide(t, v1, 0, 100)
	l.sinkWide(t, v1, 200, 220)
	if _, _, err := l.compact(t, v1); err != nil {
		t.Fatal(err)
	}
	// Late rows for the compacted hour, still narrow: written before the
	// config changed, merged after.
	l.sinkWide(t, v1, 100-10, 100) // already in the table: dropped as duplicates
	v2 := l.config(t, widenColumns)
	widen(t, v2, map[string]string{"i": "int64", "f": "float64", "d": "decimal(20,2)"})
	l.sinkWide(t, v2, 100, 150)
	sum, cat, err := l.compact(t, v2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"events: widened column i from int to long", "events: widened column f from float to double",
		"events: widened column d from decimal(10, 2) to decimal(20, 2)"}
	if fmt.Sprint(sum.Changes) != fmt.Sprint(want) {
		t.Errorf("changes %q, want %q", sum.Changes, want)
	}
	tbl, err := cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, f := range tbl.Schema().Fields() {
		ids[f.Name] = f.ID
	}
	for name, ty := range map[string]iceberg.Type{"i": iceberg.PrimitiveTypes.Int64, "f": iceberg.PrimitiveTypes.Float64, "d": iceberg.DecimalTypeOf(20, 2)} {
		f, ok := tbl.Schema().FindFieldByName(name)
		if !ok || !f.Type.Equals(ty) || f.Required {
			t.Errorf("field %s: %+v (found %v), want optional %s", name, f, ok, ty)
		}
	}
	for _, s := range tbl.Metadata().Schemas() {
		for _, f := range s.Fields() {
			if ids[f.Name] != f.ID {
				t.Errorf("schema %d: field %s has id %d, now %d", s.ID, f.Name, f.ID, ids[f.Name])
			}
		}
	}

	got := readWide(t, tbl)
	if len(got) != 170 {
		t.Errorf("table holds %d rows, want 170", len(got))
	}
	for j := range 220 {
		if j >= 150 && j < 200 {
			continue
		}
		iv, fv, dv := widenRow(j)
		if narrow(j) {
			fv = float64(float32(fv)) // written as float32
		}
		w := wideRow{iv, fv, decimalText(dv, 2)}
		if g, ok := got[int64(j)]; !ok || g != w {
			t.Errorf("row n=%d: %+v (present %v), want %+v", j, g, ok, w)
		}
	}

	// An independent reader: DuckDB's iceberg_scan of the current metadata.
	t.Run("duckdb", func(t *testing.T) {
		q := fmt.Sprintf("SELECT n, i, f, CAST(d AS VARCHAR) FROM iceberg_scan('%s') ORDER BY n", tbl.MetadataLocation())
		rows := testbed.DuckDB(t, q)
		if len(rows) != 170 {
			t.Fatalf("duckdb: %d rows, want 170", len(rows))
		}
		for k, r := range rows {
			j := k
			if k >= 150 {
				j = k + 50
			}
			iv, fv, dv := widenRow(j)
			if narrow(j) {
				fv = float64(float32(fv))
			}
			if fmt.Sprint(r) != fmt.Sprint([]any{float64(j), jsonInt(iv), fv, decimalText(dv, 2)}) {
				t.Errorf("duckdb row %d: %v, want n=%d i=%d f=%v d=%s", j, r, j, iv, fv, decimalText(dv, 2))
			}
		}
	})
}

// jsonInt is how testbed.DuckDB returns an integer: a float64 up to ±2^53,
// else its exact text.
func jsonInt(v int64) any {
	if v > 1<<53 || v < -(1<<53) {
		return fmt.Sprint(v)
	}
	return float64(v)
}

type wideRow struct {
	i int64
	f float64
	d string
}

// readWide scans the table and maps n to (i, f, d).
func readWide(t *testing.T, tbl *table.Table) map[int64]wideRow {
	t.Helper()
	return scanByN(t, tbl, []string{"n", "i", "f", "d"}, func(cols []arrow.Array) func(int) wideRow {
		n := cols[0].(*array.Int64)
		iv := cols[1].(*array.Int64)
		fv := cols[2].(*array.Float64)
		dv := cols[3].(*array.Decimal128)
		return func(k int) wideRow {
			u := dv.Value(k).BigInt()
			if !u.IsInt64() {
				t.Fatalf("n=%d: d unscaled %s beyond int64", n.Value(k), u)
			}
			return wideRow{iv.Value(k), fv.Value(k), decimalText(u.Int64(), 2)}
		}
	})
}

// TestNarrowingHalts: type changes Iceberg does not allow (narrowing, a
// different kind, a decimal scale change, optional → required) halt the run
// naming the column and both types, and leave the table as it was.
func TestNarrowingHalts(t *testing.T) {
	for _, tc := range []struct {
		name, col, typ, want string
		required             bool
	}{
		{"int64 to int32", "n", "int32", "column n is long in the table but int in the config", false},
		{"float32 to int64", "f", "int64", "column f is float in the table but long in the config", false},
		{"decimal scale", "d", "decimal(12,3)", "column d is decimal(10, 2) in the table but decimal(12, 3) in the config", false},
		{"decimal narrower", "d", "decimal(9,2)", "column d is decimal(10, 2) in the table but decimal(9, 2) in the config", false},
		{"required", "i", "int32", "column i is optional in the table but required in the config", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			v1 := l.config(t, widenColumns)
			l.sinkWide(t, v1, 0, 10)
			_, cat, err := l.compact(t, v1)
			if err != nil {
				t.Fatal(err)
			}
			before, err := cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
			if err != nil {
				t.Fatal(err)
			}
			v2 := l.config(t, widenColumns)
			widen(t, v2, map[string]string{tc.col: tc.typ})
			if tc.required {
				for k := range v2.Tables[0].Columns {
					if v2.Tables[0].Columns[k].Name == tc.col {
						v2.Tables[0].Columns[k].Required = true
					}
				}
			}
			_, cat, err = l.compact(t, v2)
			if !errors.Is(err, compaction.ErrHalt) || !errors.Is(err, icetable.ErrIncompatibleSchema) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("err %v; want a halt naming %q", err, tc.want)
			}
			after, err := cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
			if err != nil {
				t.Fatal(err)
			}
			if after.MetadataLocation() != before.MetadataLocation() {
				t.Errorf("table changed: metadata %s, was %s", after.MetadataLocation(), before.MetadataLocation())
			}
		})
	}
}

// TestWideningNestedAndRelaxing: a widening inside a struct, of a list's
// elements and of a map's values, and a required column made optional, evolve the table in one
// schema change; old and new rows read back exactly.
func TestWideningNestedAndRelaxing(t *testing.T) {
	l := newLab(t)
	cols := "      - {name: addr, type: \"struct<zip:int32,city:string>\"}\n      - {name: nums, type: \"list<int32>\"}\n      - {name: m, type: \"map<string,int32>\"}\n"
	more := func(j int) string {
		return fmt.Sprintf(`,"addr":{"zip":%d,"city":"c%d"},"nums":[%d,%d],"m":{"k":%d}`, nestedVal(j), j, nestedVal(j), -nestedVal(j), nestedVal(j)+1)
	}
	v1 := l.config(t, cols)
	l.sinkJSON(t, v1, 0, 50, more)
	if _, _, err := l.compact(t, v1); err != nil {
		t.Fatal(err)
	}
	v2 := l.config(t, strings.NewReplacer("zip:int32", "zip:int64", "list<int32>", "list<int64>", "string,int32", "string,int64").Replace(cols))
	v2.Tables[0].Columns[0].Required = false // event_id
	l.sinkJSON(t, v2, 50, 100, more)
	sum, cat, err := l.compact(t, v2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"events: made column event_id optional", "events: widened column addr.zip from int to long",
		"events: widened column nums.element from int to long", "events: widened column m.value from int to long"}
	if fmt.Sprint(sum.Changes) != fmt.Sprint(want) {
		t.Errorf("changes %q, want %q", sum.Changes, want)
	}
	tbl, err := cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := tbl.Schema().FindFieldByName("event_id"); f.Required {
		t.Errorf("event_id still required")
	}
	_, rdr, err := tbl.Scan(table.WithSelectedFields("n", "addr", "nums", "m")).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for rec, err := range rdr {
		if err != nil {
			t.Fatal(err)
		}
		n := rec.Column(0).(*array.Int64)
		addr := rec.Column(1).(*array.Struct)
		zip := addr.Field(0).(*array.Int64)
		nums := rec.Column(2).(*array.List)
		elems := nums.ListValues().(*array.Int64)
		m := rec.Column(3).(*array.Map)
		mv := m.Items().(*array.Int64)
		for k := range int(rec.NumRows()) {
			from, to := nums.ValueOffsets(k)
			mfrom, mto := m.ValueOffsets(k)
			got[n.Value(k)] = fmt.Sprint(zip.Value(k), elems.Int64Values()[from:to], mv.Int64Values()[mfrom:mto])
		}
		rec.Release()
	}
	if len(got) != 100 {
		t.Errorf("table holds %d rows, want 100", len(got))
	}
	for j := range 100 {
		v := nestedVal(j)
		if w := fmt.Sprint(v, []int64{v, -v}, []int64{v + 1}); got[int64(j)] != w {
			t.Errorf("row n=%d: %q, want %q", j, got[int64(j)], w)
		}
	}
}

// nestedVal is event j's zip, list element and map value (+1): an int32 before event 50, beyond after.
func nestedVal(j int) int64 {
	if j < 50 {
		return int64(-40_000_000 * j)
	}
	return int64(j) << 34
}

// TestWideningTrinoREST: TestWideningEvolvesTable's widening on the bed's S3
// with the REST catalog, read through Trino's Iceberg connector (what Athena
// runs): the table's columns are bigint, double and decimal(20,2), and every
// row, written before or after the widening, has its exact values.
func TestWideningTrinoREST(t *testing.T) {
	r := newRESTLab(t, "widen")
	conf := func(types map[string]string) *config.Config {
		cfg := r.config(t, 0, widenColumns)
		widen(t, cfg, types)
		return cfg
	}
	l, ns, table := r.lab, r.ns, r.table
	compact := func(cfg *config.Config) compaction.Summary { return r.compact(t, cfg) }

	v1 := conf(nil)
	l.sinkWide(t, v1, 0, 100)
	l.sinkWide(t, v1, 200, 220)
	compact(v1)
	v2 := conf(map[string]string{"i": "int64", "f": "float64", "d": "decimal(20,2)"})
	l.sinkWide(t, v2, 100, 150)
	if sum := compact(v2); len(sum.Changes) != 3 {
		t.Errorf("changes %q, want the three widenings", sum.Changes)
	}

	types := map[string]string{}
	for _, r := range testbed.Trino(t, "SELECT column_name, data_type FROM "+testbed.TrinoREST+".information_schema.columns WHERE table_schema = '"+ns+"' AND table_name = 'events'") {
		types[fmt.Sprint(r[0])] = fmt.Sprint(r[1])
	}
	if want := map[string]string{"i": "bigint", "f": "double", "d": "decimal(20,2)"}; types["i"] != want["i"] || types["f"] != want["f"] || types["d"] != want["d"] {
		t.Errorf("Trino column types %v, want %v", types, want)
	}
	rows := testbed.Trino(t, "SELECT n, i, f, CAST(d AS varchar) FROM "+table+" ORDER BY n")
	if len(rows) != 170 {
		t.Fatalf("trino: %d rows, want 170", len(rows))
	}
	for k, r := range rows {
		j := k
		if k >= 150 {
			j = k + 50
		}
		iv, fv, dv := widenRow(j)
		if narrow(j) {
			fv = float64(float32(fv))
		}
		gf, err := strconv.ParseFloat(fmt.Sprint(r[2]), 64)
		if got, want := fmt.Sprintf("%v %v %v", r[0], r[1], r[3]), fmt.Sprintf("%d %d %s", j, iv, decimalText(dv, 2)); got != want || err != nil || gf != fv {
			t.Errorf("trino row %d: %v, want n=%d i=%d f=%v d=%s", k, r, j, iv, fv, decimalText(dv, 2))
		}
	}
}

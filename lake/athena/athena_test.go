package athena_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/lake/athena"
	"github.com/lakesink/lakesink/lake/config"
)

var update = flag.Bool("update", false, "rewrite the golden testdata/athena/*.sql files")

const dir = "../../testdata/athena"

func load(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func cases(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("found %d cases in %s (%v)", len(files), dir, err)
	}
	return files
}

// TestGolden compares the output for each testdata/athena/<case>.yaml with <case>.sql.
// Run with -update to rewrite the golden files, then review the diff.
func TestGolden(t *testing.T) {
	for _, f := range cases(t) {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			got, err := athena.Generate(load(t, f), athena.Options{})
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".sql"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./lake/athena/ -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update and review the diff):\n%s", golden, firstDiff(string(want), got))
			}
		})
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return ""
}

// TestWellFormed checks every generated statement: balanced quotes and brackets, one ';' at
// the end, DDL quoting with backticks and DML quoting with double quotes, and only types
// Athena supports (Hive DDL types in CREATE EXTERNAL TABLE, Trino types in CASTs).
func TestWellFormed(t *testing.T) {
	for _, f := range cases(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := athena.Generate(load(t, f), athena.Options{})
			if err != nil {
				t.Fatal(err)
			}
			stmts := 0
			for _, block := range strings.Split(strings.TrimSuffix(out, "\n"), "\n\n") {
				if err := checkBlock(block); err != nil {
					t.Errorf("%v in:\n%s", err, block)
				}
				if !strings.HasPrefix(block, "--") {
					stmts++
				}
			}
			if stmts < 6 {
				t.Errorf("only %d statements", stmts)
			}
		})
	}
}

func TestTableOption(t *testing.T) {
	cfg := load(t, filepath.Join(dir, "local.yaml"))
	all, err := athena.Generate(cfg, athena.Options{})
	if err != nil {
		t.Fatal(err)
	}
	one, err := athena.Generate(cfg, athena.Options{Table: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(one, "events_raw") || !strings.Contains(one, "audit_raw") {
		t.Errorf("--table audit printed the wrong tables:\n%s", one)
	}
	if !strings.Contains(all, "events_raw") || !strings.Contains(all, "audit_raw") {
		t.Errorf("all tables: missing one")
	}
	_, err = athena.Generate(cfg, athena.Options{Table: "nope"})
	if !errors.Is(err, athena.ErrUnknownTable) || !strings.Contains(err.Error(), "events, audit") {
		t.Errorf("unknown table: got %v", err)
	}
}

func TestNameCollisions(t *testing.T) {
	base := `kafka: {brokers: ["b:9092"]}
local_dir: /tmp/lake
dead_letter: {topic: dlq}
tables:
`
	for name, tables := range map[string]string{
		"raw name": `  - {name: a, topics: [a], columns: [{name: id, type: string}]}
  - {name: a_raw, topics: [b], columns: [{name: id, type: string}]}
`,
		"view name": `  - {name: a_all, topics: [a], columns: [{name: id, type: string}]}
  - {name: a, topics: [b], columns: [{name: id, type: string}]}
`,
		"column case": `  - {name: a, topics: [a], columns: [{name: Id, type: string}, {name: id, type: string}]}
`,
		"field case": `  - {name: a, topics: [a], columns: [{name: s, type: "list<struct<Zip:string,zip:int32>>"}]}
`,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(base+tables), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = athena.Generate(cfg, athena.Options{})
			if !errors.Is(err, athena.ErrNameCollision) {
				t.Fatalf("got %v, want ErrNameCollision", err)
			}
		})
	}
}

// TestCheckerCatchesMistakes makes sure TestWellFormed's checker is not vacuous.
func TestCheckerCatchesMistakes(t *testing.T) {
	for _, bad := range []string{
		"SELECT 1",                                 // no ';'
		"SELECT (1;",                               // unbalanced
		"SELECT 'x;",                               // open quote
		"SELECT 1; SELECT 2;",                      // two statements
		"SELECT `a` FROM t;",                       // backticks in DML
		"CREATE DATABASE IF NOT EXISTS \"x\";",     // double quotes in DDL
		"SELECT CAST(x AS tinyint) FROM t;",        // not a type the view uses
		"SELECT CAST(x AS row(a varchar)) FROM t;", // unquoted row field
		"-- note\nSELECT 1;",                       // note and SQL in one block
		"CREATE EXTERNAL TABLE IF NOT EXISTS `d`.`t` (\n  `a` struct<b:string\n)\nPARTITIONED BY (`dt` string)\nLOCATION 's3://b/';",
		"CREATE EXTERNAL TABLE IF NOT EXISTS `d`.`t` (\n  `a` varchar\n)\nPARTITIONED BY (`dt` string)\nLOCATION 's3://b/';",
		"CREATE EXTERNAL TABLE IF NOT EXISTS `d`.`t` (\n  `a` decimal(39,2)\n)\nPARTITIONED BY (`dt` string)\nLOCATION 's3://b/';",
		"CREATE EXTERNAL TABLE IF NOT EXISTS `d`.`t` (\n  `a` struct<_b:int>\n)\nPARTITIONED BY (`dt` string)\nLOCATION 's3://b/';",
	} {
		if err := checkBlock(bad); err == nil {
			t.Errorf("checker accepted %q", bad)
		}
	}
	good := "CREATE EXTERNAL TABLE IF NOT EXISTS `d`.`t` (\n  `a` struct<`_b`:int,c:array<map<string,decimal(38,0)>>>\n)\nPARTITIONED BY (`dt` string)\nLOCATION 's3://b/x=${dt}/';"
	if err := checkBlock(good); err != nil {
		t.Errorf("checker rejected a good statement: %v", err)
	}
}

// TestRawTablesMatchDDL: what athena-ddl --apply registers in Glue (RawTables) is what the
// printed CREATE EXTERNAL TABLE says: the same columns and types, partition keys, location and
// TBLPROPERTIES, for every case with an S3 lake.
func TestRawTablesMatchDDL(t *testing.T) {
	for _, f := range cases(t) {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg := load(t, f)
			tables, err := athena.RawTables(cfg, athena.Options{})
			if cfg.S3 == nil {
				if !errors.Is(err, athena.ErrNotS3) {
					t.Fatalf("local lake: err %v, want ErrNotS3", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := athena.Generate(cfg, athena.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var ddls []string
			for _, blk := range strings.Split(out, "\n\n") {
				if strings.HasPrefix(blk, "CREATE EXTERNAL TABLE") {
					ddls = append(ddls, blk)
				}
			}
			if len(ddls) != len(tables) || len(tables) == 0 {
				t.Fatalf("%d raw tables, %d CREATE EXTERNAL TABLE statements", len(tables), len(ddls))
			}
			for i, rt := range tables {
				var b strings.Builder
				fmt.Fprintf(&b, "CREATE EXTERNAL TABLE IF NOT EXISTS `%s`.`%s` (\n", rt.Database, rt.Name)
				for j, c := range rt.Columns {
					sep := ","
					if j == len(rt.Columns)-1 {
						sep = ""
					}
					fmt.Fprintf(&b, "  `%s` %s%s\n", c[0], c[1], sep)
				}
				fmt.Fprintf(&b, ")\nCOMMENT '%s'\nPARTITIONED BY (", strings.ReplaceAll(rt.Comment, "'", "''"))
				for j, k := range rt.PartitionKeys {
					if j > 0 {
						b.WriteString(", ")
					}
					fmt.Fprintf(&b, "`%s` %s", k[0], k[1])
				}
				fmt.Fprintf(&b, ")\nSTORED AS PARQUET\nLOCATION '%s'\nTBLPROPERTIES (\n", rt.Location)
				for j, kv := range rt.Properties {
					sep := ","
					if j == len(rt.Properties)-1 {
						sep = ""
					}
					fmt.Fprintf(&b, "  '%s' = '%s'%s\n", kv[0], kv[1], sep)
				}
				b.WriteString(");")
				if b.String() != ddls[i] {
					t.Errorf("RawTables[%d] differs from the printed DDL:\n%s", i, firstDiff(ddls[i], b.String()))
				}
			}
		})
	}
}

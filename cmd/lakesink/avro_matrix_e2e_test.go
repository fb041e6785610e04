package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/lakesink/lakesink/internal/testbed"
)

// registerAvro registers an Avro schema under subject in the bed's real schema
// registry (Apicurio, Confluent API) and returns its id.
func registerAvro(t *testing.T, url, subject, schema string) int {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("register a version of %s in %s: %v", subject, url, err)
	}
	return ss.ID
}

// frame encodes v with the writer schema and prepends the Confluent header.
func frame(t *testing.T, id int, s avro.Schema, v any) []byte {
	t.Helper()
	body, err := avro.Marshal(s, v)
	if err != nil {
		t.Fatalf("encode with schema id %d: %v", id, err)
	}
	out := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], uint32(id))
	return append(out, body...)
}

// canon renders a value of a DuckDB result row (or of an expectation) as text, so that
// expectations written with Go's types compare exactly with what DuckDB returns.
func canon(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case []byte:
		return hex.EncodeToString(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// evolutionCase is one row of the evolution matrix (docs/avro.md): a table with its own
// topic and subject, writer versions interleaved record by record in one partition and
// one hour, and what the table must hold afterwards.
type evolutionCase struct {
	name string
	// columns are the table's columns besides id, ts, v (the writer version) and n (the
	// record's number), which every case has; fixed replaces them after the first run
	// (the incompatible case's fix).
	columns, fixed []string
	// fields are the writer fields besides those four, per version.
	fields []string
	// record gives the extra fields of record i written with version v (0-based).
	record func(i, v int) map[string]any
	// exprs select the checked values, want gives them for record i of version v.
	exprs []string
	want  func(i, v int) []any
	// deadLetters is how many records of the first run are dead-lettered (wrong_type).
	deadLetters int
	errField    string // the field the dead letters' reason names
}

const matrixN = 240 // records per case, within one hour

// nullIf returns nil when cond holds, else v (a union branch map or a plain value).
func nullIf(cond bool, v any) any {
	if cond {
		return nil
	}
	return v
}

func evolutionCases() []evolutionCase {
	u := func(branch string, v any) map[string]any { return map[string]any{branch: v} }
	return []evolutionCase{{
		name:    "add_optional_lacking",
		columns: nil,
		fields: []string{``, `,{"name":"extra","type":["null","string"],"default":null},
 {"name":"extra_rec","type":["null",{"type":"record","name":"X","fields":[{"name":"a","type":["null","long"]}]}],"default":null},
 {"name":"extra_enum","type":{"type":"enum","name":"XE","symbols":["A","B"]},"default":"A"}`},
		record: func(i, v int) map[string]any {
			if v == 0 {
				return nil
			}
			return map[string]any{"extra": nullIf(i%4 == 1, u("string", "x")), "extra_rec": nullIf(i%3 == 0, u("e2e.X", map[string]any{"a": nil})),
				"extra_enum": "B"}
		},
		exprs: []string{"v"},
		want:  func(_, v int) []any { return []any{v + 1} },
	}, {
		name:    "add_optional_has",
		columns: []string{"{name: note, type: string}"},
		fields:  []string{``, `,{"name":"note","type":["null","string"],"default":null}`},
		record: func(i, v int) map[string]any {
			if v == 0 {
				return nil
			}
			return map[string]any{"note": nullIf(i%5 == 0, u("string", fmt.Sprintf("note-%d", i)))}
		},
		exprs: []string{"note"},
		want: func(i, v int) []any {
			if v == 0 || i%5 == 0 {
				return []any{nil}
			}
			return []any{fmt.Sprintf("note-%d", i)}
		},
	}, {
		name:    "remove_field",
		columns: []string{"{name: gone, type: string}", "{name: gone_opt, type: int64}"},
		fields: []string{`,{"name":"gone","type":"string","default":"dflt"},{"name":"gone_opt","type":["null","long"],"default":null}`,
			``},
		record: func(i, v int) map[string]any {
			if v == 1 {
				return nil
			}
			return map[string]any{"gone": fmt.Sprintf("g-%d", i), "gone_opt": u("long", int64(i))}
		},
		exprs: []string{"gone", "gone_opt"},
		want: func(i, v int) []any {
			if v == 1 {
				return []any{nil, nil}
			}
			return []any{fmt.Sprintf("g-%d", i), i}
		},
	}, {
		name: "promotions",
		columns: []string{"{name: i2l, type: int64}", "{name: f2d, type: float64}", "{name: l2d, type: float64}",
			"{name: i2f, type: float32}", "{name: s2b, type: bytes}", "{name: b2s, type: string}"},
		fields: []string{
			`,{"name":"i2l","type":"int"},{"name":"f2d","type":"float"},{"name":"l2d","type":"long"},{"name":"i2f","type":"int"},{"name":"s2b","type":"string"},{"name":"b2s","type":"bytes"}`,
			`,{"name":"i2l","type":"long"},{"name":"f2d","type":"double"},{"name":"l2d","type":"double"},{"name":"i2f","type":"float"},{"name":"s2b","type":"bytes"},{"name":"b2s","type":"string"}`},
		record: func(i, v int) map[string]any {
			if v == 0 {
				return map[string]any{"i2l": -1000 * i, "f2d": float32(float64(i) + 0.1), "l2d": int64(i) * 3, "i2f": 16_777_000 + i,
					"s2b": fmt.Sprintf("s-%d", i), "b2s": []byte(fmt.Sprintf("b-%d", i))}
			}
			return map[string]any{"i2l": int64(i) << 40, "f2d": float64(i) + 0.1, "l2d": float64(i) + 0.5, "i2f": float32(i) + 0.25,
				"s2b": []byte(fmt.Sprintf("s-%d", i)), "b2s": fmt.Sprintf("b-%d", i)}
		},
		exprs: []string{"i2l", "f2d", "l2d", "i2f", "s2b", "b2s"},
		want: func(i, v int) []any {
			if v == 0 { // Avro's promotions: float → double is the float's exact value
				return []any{-1000 * i, float64(float32(float64(i) + 0.1)), i * 3, float32(16_777_000 + i), []byte(fmt.Sprintf("s-%d", i)), fmt.Sprintf("b-%d", i)}
			}
			return []any{int64(i) << 40, float64(i) + 0.1, float64(i) + 0.5, float32(i) + 0.25, []byte(fmt.Sprintf("s-%d", i)), fmt.Sprintf("b-%d", i)}
		},
	}, {
		name:    "enum_symbol",
		columns: []string{"{name: color, type: string}"},
		fields: []string{`,{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}}`,
			`,{"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}}`},
		record: func(i, v int) map[string]any {
			return map[string]any{"color": enumColor(i, v)}
		},
		exprs: []string{"color"},
		want:  func(i, v int) []any { return []any{enumColor(i, v)} },
	}, {
		name: "nested",
		columns: []string{`{name: addr, type: "struct<city:string,zip:int32>"}`, `{name: items, type: "list<struct<sku:string,qty:int32>>"}`,
			`{name: attrs, type: "map<string,struct<w:int64>>"}`},
		fields: []string{`,{"name":"addr","type":{"type":"record","name":"Addr","fields":[{"name":"city","type":"string"}]}},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"}]}}},
 {"name":"attrs","type":{"type":"map","values":{"type":"record","name":"Attr","fields":[{"name":"w","type":"long"}]}}}`,
			`,{"name":"addr","type":{"type":"record","name":"Addr","fields":[{"name":"city","type":"string"},{"name":"zip","type":["null","int"],"default":null}]}},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"},{"name":"qty","type":["null","int"],"default":null}]}}},
 {"name":"attrs","type":{"type":"map","values":{"type":"record","name":"Attr","fields":[{"name":"w","type":"long"},{"name":"note","type":["null","string"],"default":null}]}}}`},
		record: func(i, v int) map[string]any {
			addr := map[string]any{"city": fmt.Sprintf("c-%d", i)}
			it := []map[string]any{{"sku": fmt.Sprintf("a-%d", i)}, {"sku": fmt.Sprintf("b-%d", i)}}
			attr := map[string]any{"w": int64(i)}
			if v == 1 {
				addr["zip"] = u("int", 1000+i)
				it[0]["qty"], it[1]["qty"] = u("int", i), nil
				attr["note"] = nullIf(i%4 == 1, u("string", "n"))
			}
			return map[string]any{"addr": addr, "items": it, "attrs": map[string]any{"k": attr}}
		},
		exprs: []string{"addr.city", "addr.zip", "len(items)", "items[1].sku", "items[1].qty", "items[2].sku", "items[2].qty",
			"list_extract(map_values(attrs), 1).w", "list_extract(map_keys(attrs), 1)"},
		want: func(i, v int) []any {
			var zip, qty any
			if v == 1 {
				zip, qty = 1000+i, i
			}
			return []any{fmt.Sprintf("c-%d", i), zip, 2, fmt.Sprintf("a-%d", i), qty, fmt.Sprintf("b-%d", i), nil, i, "k"}
		},
	}, {
		name:    "union_order",
		columns: []string{"{name: us, type: string}", "{name: ul, type: int64}", "{name: ux, type: string}"},
		fields: []string{`,{"name":"us","type":["null","string"]},{"name":"ul","type":["null","long"]},{"name":"ux","type":["null","string","bytes"]}`,
			`,{"name":"us","type":["string","null"]},{"name":"ul","type":["long","null"]},{"name":"ux","type":["bytes","null","string"]}`},
		record: func(i, _ int) map[string]any {
			var ux any = u("string", fmt.Sprintf("x-%d", i))
			if i%2 == 1 {
				ux = u("bytes", []byte(fmt.Sprintf("x-%d", i)))
			}
			return map[string]any{"us": nullIf(i%3 == 0, u("string", fmt.Sprintf("s-%d", i))), "ul": nullIf(i%5 == 0, u("long", int64(i))),
				"ux": nullIf(i%7 == 0, ux)}
		},
		exprs: []string{"us", "ul", "ux"},
		want: func(i, _ int) []any {
			return []any{nullIf(i%3 == 0, fmt.Sprintf("s-%d", i)), nullIf(i%5 == 0, i), nullIf(i%7 == 0, fmt.Sprintf("x-%d", i))}
		},
	}, {
		name:    "incompatible",
		columns: []string{"{name: amount, type: int32, required: true}"},
		fixed:   []string{"{name: amount, type: int64, required: true}"},
		fields:  []string{`,{"name":"amount","type":"int"}`, `,{"name":"amount","type":"long"}`},
		record: func(i, v int) map[string]any {
			if v == 0 {
				return map[string]any{"amount": i}
			}
			return map[string]any{"amount": int64(i)<<33 + 7}
		},
		exprs: []string{"amount"},
		want: func(i, v int) []any {
			if v == 0 {
				return []any{i}
			}
			return []any{int64(i)<<33 + 7}
		},
		deadLetters: matrixN / 2,
		errField:    "amount",
	}}
}

func enumColor(i, v int) string {
	if v == 1 && i%4 == 1 {
		return "BLUE"
	}
	return []string{"RED", "GREEN"}[i%2]
}

// TestE2EAvroEvolutionMatrix runs every row of the evolution matrix (docs/avro.md)
// against the bed's real schema registry: for each change a table with its own topic,
// where the writer versions alternate record by record in one partition and one closed
// hour. One sink run takes them all; the compatible changes land without a dead letter,
// in one raw file per table; the incompatible change is dead-lettered with a reason
// naming the field and counted; the table is fixed, `lakesink dlq replay` produces the
// dead letters back, a second sink run lands them; one compaction commits every table,
// and DuckDB reads each back through Iceberg, value by value, and Trino row by row.
func TestE2EAvroEvolutionMatrix(t *testing.T) {
	start := time.Now()
	b := newBed(t, 1)
	regURL := testbed.Registry(t)
	cases := evolutionCases()
	ctx := context.Background()
	topics := make([]string, len(cases))
	for i, c := range cases {
		topics[i] = b.topic + "-" + strings.ReplaceAll(c.name, "_", "-")
	}
	if _, err := b.adm.CreateTopics(ctx, 1, 1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.adm.DeleteTopics(context.Background(), topics...) })

	// Register the versions and produce: version i%len, event times one second apart
	// inside the hour two hours ago.
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	for ci, c := range cases {
		ids := make([]int, len(c.fields))
		schemas := make([]avro.Schema, len(c.fields))
		for v, f := range c.fields {
			text := `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"v","type":"int"},{"name":"n","type":"long"}` + f + `]}`
			ids[v] = registerAvro(t, regURL, topics[ci]+"-value", text)
			schemas[v] = mustParse(t, text)
		}
		if len(c.fields) > 1 && ids[0] == ids[1] {
			t.Fatalf("%s: both versions got schema id %d", c.name, ids[0])
		}
		recs := make([]*kgo.Record, 0, matrixN)
		for i := range matrixN {
			v := i % len(c.fields)
			rec := map[string]any{"id": fmt.Sprintf("%s-%d", c.name, i), "ts": base.Add(time.Duration(i) * time.Second), "v": v + 1, "n": int64(i)}
			for k, x := range c.record(i, v) {
				rec[k] = x
			}
			recs = append(recs, &kgo.Record{Topic: topics[ci], Key: []byte(strconv.Itoa(i)), Value: frame(t, ids[v], schemas[v], rec)})
		}
		if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	writeConfig := func(fixed bool) string {
		y := readFile(t, b.config("flush: {max_age: 10m, max_file_bytes: 64MiB, memory_budget: 256MiB, shutdown_timeout: 60s}"))
		var sb strings.Builder
		sb.WriteString(y[:strings.Index(y, "tables:\n")])
		fmt.Fprintf(&sb, "schema_registry: {url: %q, timeout: 5s}\ntables:\n", regURL)
		for i, c := range cases {
			cols := c.columns
			if fixed && c.fixed != nil {
				cols = c.fixed
			}
			fmt.Fprintf(&sb, `  - name: %s
    topics: [%s]
    format: avro
    event_time: {column: ts}
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: v, type: int32, required: true}
      - {name: n, type: int64, required: true}
`, c.name, topics[i])
			for _, col := range cols {
				fmt.Fprintf(&sb, "      - %s\n", col)
			}
		}
		path := filepath.Join(t.TempDir(), "matrix.yaml")
		if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg, cfgFixed := writeConfig(false), writeConfig(true)
	metric := func(m map[string]float64, name, table string) float64 {
		return m[fmt.Sprintf(`lakesink_records_%s_total{table=%q}`, name, table)]
	}
	deadLettered := func(m map[string]float64, table string) float64 {
		var n float64
		for k, v := range m {
			if strings.HasPrefix(k, "lakesink_records_dead_lettered_total{") && strings.Contains(k, fmt.Sprintf("table=%q", table)) {
				n += v
			}
		}
		return n
	}
	// waitFor polls the sink's metrics until done; the caller then stops it (the only
	// flush: max_age is long) and checks that every offset was committed.
	waitFor := func(p *proc, what string, done func(m map[string]float64) bool) map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			m := p.metrics(t)
			if m != nil && done(m) {
				return m
			}
			for _, c := range cases { // more dead letters than expected: fail now
				if n := deadLettered(m, c.name); n > float64(c.deadLetters) {
					t.Fatalf("%s: %s: %v records dead-lettered, want %d", what, c.name, n, c.deadLetters)
				}
			}
			if exited, err := p.exitedErr(); exited {
				t.Fatalf("sink exited early: %v", err)
			}
			if time.Now().After(deadline) {
				var sb strings.Builder
				for k, v := range m {
					if strings.HasPrefix(k, "lakesink_records_") {
						fmt.Fprintf(&sb, "\n  %s %v", k, v)
					}
				}
				t.Fatalf("%s: not done within 3m:%s", what, sb.String())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// 1. One sink run over every case.
	p := b.start(cfg)
	m := waitFor(p, "first run", func(m map[string]float64) bool {
		for _, c := range cases {
			if metric(m, "decoded", c.name) != float64(matrixN-c.deadLetters) || deadLettered(m, c.name) != float64(c.deadLetters) {
				return false
			}
		}
		return true
	})
	p.stop(t)
	if !matrixCaughtUp(t, b, topics) {
		t.Fatal("first run: offsets not committed to the end after shutdown")
	}
	for _, c := range cases {
		if got := deadLettered(m, c.name); got != float64(c.deadLetters) {
			t.Errorf("%s: %v dead letters, want %d", c.name, got, c.deadLetters)
		}
		if c.deadLetters > 0 {
			if got := m[fmt.Sprintf(`lakesink_records_dead_lettered_total{reason="wrong_type",table=%q}`, c.name)]; got != float64(c.deadLetters) {
				t.Errorf("%s: %v dead letters counted as wrong_type, want %d", c.name, got, c.deadLetters)
			}
		}
		// The versions alternate record by record in one partition and hour: one file.
		glob := fmt.Sprintf("s3://%s/%sraw/%s/**/*.parquet", b.s3.Bucket, b.prefix, c.name)
		r := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(DISTINCT v), count(DISTINCT filename) FROM read_parquet('%s', filename = true)`, glob))[0]
		wantV := int64(len(c.fields))
		if c.deadLetters > 0 {
			wantV = 1
		}
		if toInt(t, r[0]) != int64(matrixN-c.deadLetters) || toInt(t, r[1]) != wantV || toInt(t, r[2]) != 1 {
			t.Errorf("%s raw zone: %v rows of %v versions in %v files; want %d rows of %d versions in 1 file", c.name, r[0], r[1], r[2], matrixN-c.deadLetters, wantV)
		}
	}

	// 2. The dead letters name the field; after the fix, dlq replay produces them back.
	checkDeadLetters(t, b, cases)
	code, out, errOut := b.lakesink(nil, "dlq", "replay", "-c", cfgFixed)
	t.Logf("dlq replay (exit %d): %s", code, strings.TrimSpace(out))
	if c := parseReplay(t, out); code != 0 || c.replayed != matrixN/2 || c.failing != 0 {
		t.Fatalf("dlq replay: exit %d %+v\n%s", code, c, errOut)
	}
	p = b.start(cfgFixed)
	m = waitFor(p, "run after the fix", func(m map[string]float64) bool {
		return metric(m, "decoded", "incompatible") == matrixN/2
	})
	p.stop(t)
	if !matrixCaughtUp(t, b, topics) {
		t.Fatal("run after the fix: offsets not committed to the end after shutdown")
	}
	for _, c := range cases {
		if got := deadLettered(m, c.name); got != 0 {
			t.Errorf("%s: %v dead letters after the fix", c.name, got)
		}
	}

	// 3. One compaction commits every table; DuckDB reads each back through Iceberg.
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	compactCfg := filepath.Join(t.TempDir(), "compact.yaml")
	if err := os.WriteFile(compactCfg, []byte(readFile(t, cfgFixed)+"catalog:\n"+catYAML+"\ncompaction:\n  lateness: 0s\n  raw_grace: 0s\n  max_wait: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &lakeFixture{b: b, src: b.prefix}
	if code, out := f.compactRun(t, compactCfg); code != 0 {
		t.Fatalf("compact exited %d:\n%s", code, out)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testbed.IcebergQ(t, testbed.IcebergQuery{Catalog: "sql", URI: uri, Warehouse: wh, Table: "lake." + c.name,
				IDColumn: "id", TimeColumn: "ts"})
			if s.Count != matrixN || s.DupKeys == nil || *s.DupKeys != 0 {
				t.Fatalf("iceberg table lake.%s: %s; want %d rows, no duplicate Kafka coordinates", c.name, s, matrixN)
			}
			rows := testbed.DuckDB(t, fmt.Sprintf(`SELECT n, v, %s FROM iceberg_scan('%s') ORDER BY n`, strings.Join(c.exprs, ", "), s.MetadataLocation))
			if len(rows) != matrixN {
				t.Fatalf("%d rows, want %d", len(rows), matrixN)
			}
			bad := 0
			for i, r := range rows {
				v := i % len(c.fields)
				want := append([]any{i, v + 1}, c.want(i, v)...)
				got, exp := make([]string, len(r)), make([]string, len(want))
				for k := range r {
					got[k] = canon(r[k])
				}
				for k := range want {
					exp[k] = canon(want[k])
				}
				if strings.Join(got, "|") != strings.Join(exp, "|") {
					if bad++; bad <= 5 {
						t.Errorf("row n=%d (version %d): (%s) = %v, want %v", i, v+1, "n, v, "+strings.Join(c.exprs, ", "), got, exp)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d rows differ", bad, matrixN)
			}
			// Trino (Athena's engine) reads the same table: every row, once.
			table := trinoRegister(t, s.MetadataLocation)
			r := testbed.Trino(t, "SELECT count(*), count(DISTINCT n), sum(n), count(DISTINCT _kafka_offset), min(v), max(v) FROM "+table)[0]
			got := make([]string, len(r))
			for i, x := range r {
				got[i] = fmt.Sprint(x) // json.Number
			}
			want := fmt.Sprint([]int{matrixN, matrixN, matrixN * (matrixN - 1) / 2, matrixN, 1, len(c.fields)})
			if fmt.Sprint(got) != want {
				t.Errorf("trino: count, distinct n, sum(n), distinct offsets, min(v), max(v) = %v, want %v", got, want)
			}
		})
	}
	t.Logf("evolution matrix: %d cases, %d records each, in %s", len(cases), matrixN, time.Since(start).Round(100*time.Millisecond))
}

// matrixCaughtUp reports whether the bed's group committed every topic to its end.
func matrixCaughtUp(t *testing.T, b *bed, topics []string) bool {
	t.Helper()
	ctx := context.Background()
	ends, err := b.adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return false
	}
	committed, err := b.adm.FetchOffsets(ctx, b.group)
	if err != nil {
		return false
	}
	ok := true
	ends.Each(func(e kadm.ListedOffset) {
		if c, found := committed.Lookup(e.Topic, e.Partition); !found || c.At != e.Offset {
			ok = false
		}
	})
	return ok
}

// checkDeadLetters reads the dead-letter topic: exactly the cases' expected dead
// letters, each with reason wrong_type and an error naming its field.
func checkDeadLetters(t *testing.T, b *bed, cases []evolutionCase) {
	t.Helper()
	want := 0
	for _, c := range cases {
		want += c.deadLetters
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(b.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	if len(got) != want {
		t.Fatalf("%d dead letters, want %d", len(got), want)
	}
	for _, r := range got {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		var c *evolutionCase
		for i := range cases {
			if strings.HasSuffix(h["lakesink.source.topic"], "-"+strings.ReplaceAll(cases[i].name, "_", "-")) {
				c = &cases[i]
			}
		}
		if c == nil || c.deadLetters == 0 {
			t.Fatalf("dead letter from an unexpected topic: headers %v", h)
		}
		if h["lakesink.reason"] != "wrong_type" || !strings.Contains(h["lakesink.error"], "field "+c.errField+":") {
			t.Fatalf("dead letter headers %v: want reason wrong_type and an error naming field %s", h, c.errField)
		}
	}
	t.Logf("dead letter: %s", func() string {
		for _, x := range got[0].Headers {
			if x.Key == "lakesink.error" {
				return string(x.Value)
			}
		}
		return ""
	}())
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	gluetypes "github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
)

// The Athena journey through Trino (Athena engine 3 is Trino with the Iceberg connector over
// Glue): a table with every column type is sunk from Kafka by the real binary, compacted by
// `lakesink compact` into each catalog (Glue on moto, REST, SQL on Postgres), and read back
// through the bed's Trino, which must see exactly what was produced.

// everyTableYAML declares the table "every": every column type lakesink has, nested structs
// with timestamps, optional columns (null in some rows); extra adds the optional column
// "extra" (schema evolution).
func everyTableYAML(topic string, notBefore time.Time, extra bool) string {
	y := fmt.Sprintf(`  - name: every
    topics: [%s]
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: d9, type: "decimal(9,2)"}
      - {name: d18, type: "decimal(18,6)"}
      - {name: d38, type: "decimal(38,10)"}
      - {name: day, type: date}
      - {name: qty, type: int32}
      - {name: seq, type: int64}
      - {name: ratio, type: float32}
      - {name: score, type: float64}
      - {name: paid, type: bool}
      - {name: payload, type: bytes}
      - {name: tags, type: "list<string>"}
      - {name: attrs, type: "map<string,string>"}
      - {name: addr, type: "struct<city:string,zip:int32>"}
      - {name: ship, type: "struct<carrier:string,at:timestamp,geo:struct<lat:float64,lon:float64>>"}
      - {name: note, type: string}
`, topic)
	if extra {
		y += "      - {name: extra, type: string}\n"
	}
	return y + fmt.Sprintf(`    event_time: {column: ts, granularity: hour, not_before: %s}
    sort_by: [ts]
`, notBefore.UTC().Format(time.RFC3339))
}

// everyEvent is one produced event of the table "every"; i is unique across the test.
type everyEvent struct {
	i     int
	ts    time.Time
	extra bool // carries the column "extra"
}

var cities = []string{"Berlin", "Lyon", "Osaka", "Recife", "Oslo"}

func (e everyEvent) id() string   { return fmt.Sprintf("ev-%06d", e.i) }
func (e everyEvent) nulls() bool  { return e.i%7 == 0 }
func (e everyEvent) d9() *big.Int { return big.NewInt(int64(e.i*37%100000 - 50000)) }
func (e everyEvent) d18() *big.Int {
	return big.NewInt(123456789012_000000 + int64(e.i)*1_000_003)
}
func (e everyEvent) d38() *big.Int {
	v, _ := new(big.Int).SetString("987654321098765432100000000000", 10) // 30 digits, scale 10
	return v.Add(v, big.NewInt(int64(e.i)*1234567891))
}
func (e everyEvent) day() time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, e.i%400)
}
func (e everyEvent) qty() int64    { return int64(e.i*13%1000 - 500) }
func (e everyEvent) seq() int64    { return 1<<40 + int64(e.i)*1000003 }
func (e everyEvent) ratio4() int64 { return int64(e.i % 64) } // ratio = ratio4/4
func (e everyEvent) score8() int64 { return int64(e.i%1000) - 160 }
func (e everyEvent) paid() bool    { return e.i%3 == 0 }
func (e everyEvent) payload() []byte {
	return []byte{byte(e.i), byte(e.i >> 8), 0xff, 0}
}
func (e everyEvent) tags() []string {
	out := []string{}
	for j := 0; j < e.i%4; j++ {
		out = append(out, fmt.Sprintf("t%d", (j+e.i)%5))
	}
	return out
}
func (e everyEvent) attrs() map[string]string {
	m := map[string]string{}
	for j := 0; j <= e.i%3; j++ {
		m[fmt.Sprintf("k%d", j)] = fmt.Sprintf("v%d-%d", e.i, j)
	}
	return m
}
func (e everyEvent) shipAt() time.Time {
	return e.ts.Add(90*time.Minute + time.Duration(e.i)*time.Microsecond)
}
func (e everyEvent) note() (string, bool) {
	return fmt.Sprintf("n%d", e.i), e.i%4 != 0
}

const tsJSON = "2006-01-02T15:04:05.000000Z07:00"

func (e everyEvent) json() []byte {
	m := map[string]any{"id": e.id(), "ts": e.ts.Format(tsJSON)}
	if !e.nulls() {
		m["d9"] = decText(e.d9(), 2)
		m["d18"] = decText(e.d18(), 6)
		m["d38"] = decText(e.d38(), 10)
		m["day"] = e.day().Format("2006-01-02")
		m["qty"] = e.qty()
		m["seq"] = e.seq()
		m["ratio"] = float64(e.ratio4()) / 4
		m["score"] = float64(e.score8()) / 8
		m["paid"] = e.paid()
		m["payload"] = base64.StdEncoding.EncodeToString(e.payload())
		m["tags"] = e.tags()
		m["attrs"] = e.attrs()
		m["addr"] = map[string]any{"city": cities[e.i%5], "zip": 10000 + e.i}
		m["ship"] = map[string]any{"carrier": fmt.Sprintf("c%d", e.i%3), "at": e.shipAt().Format(tsJSON),
			"geo": map[string]any{"lat": float64(e.i) / 8, "lon": -float64(e.i) / 4}}
		if n, ok := e.note(); ok {
			m["note"] = n
		}
	}
	if e.extra {
		m["extra"] = fmt.Sprintf("x%d", e.i)
	}
	b, _ := json.Marshal(m)
	return b
}

// decText renders an unscaled decimal as Trino prints it: plain, scale digits after the point.
func decText(unscaled *big.Int, scale int) string {
	neg := unscaled.Sign() < 0
	s := new(big.Int).Abs(unscaled).String()
	for len(s) <= scale {
		s = "0" + s
	}
	s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	if neg {
		s = "-" + s
	}
	return s
}

// trinoTS renders a timestamp as Trino prints a timestamp(6) with time zone in UTC.
func trinoTS(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") + " UTC" }

// everyCheck is one aggregate of the check query and its expected value.
type everyCheck struct {
	expr string
	want func(evs []everyEvent) string
}

// hashOf: SHA-256 (upper hex) of the non-null values of expr ordered by id, joined by ','.
func hashOf(expr string) string {
	return fmt.Sprintf("to_hex(sha256(to_utf8(array_join(array_agg(%s ORDER BY id) FILTER (WHERE %s IS NOT NULL), ','))))", expr, expr)
}

func hashWant(vals []string) string {
	sum := sha256.Sum256([]byte(strings.Join(vals, ",")))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// collect applies f to the events with non-null columns, ordered by id.
func collect(evs []everyEvent, f func(e everyEvent) (string, bool)) []string {
	s := append([]everyEvent(nil), evs...)
	sort.Slice(s, func(a, b int) bool { return s[a].id() < s[b].id() })
	var out []string
	for _, e := range s {
		if v, ok := f(e); ok {
			out = append(out, v)
		}
	}
	return out
}

func countOf(evs []everyEvent, ok func(e everyEvent) bool) string {
	n := 0
	for _, e := range evs {
		if ok(e) {
			n++
		}
	}
	return fmt.Sprint(n)
}

func sumOf(evs []everyEvent, f func(e everyEvent) int64) string {
	var n int64
	for _, e := range evs {
		if !e.nulls() {
			n += f(e)
		}
	}
	return fmt.Sprint(n)
}

func decSum(evs []everyEvent, f func(e everyEvent) *big.Int, scale int) string {
	s := new(big.Int)
	for _, e := range evs {
		if !e.nulls() {
			s.Add(s, f(e))
		}
	}
	return decText(s, scale)
}

func decMinMax(evs []everyEvent, f func(e everyEvent) *big.Int, scale int, max bool) string {
	var m *big.Int
	for _, e := range evs {
		if e.nulls() {
			continue
		}
		v := f(e)
		if m == nil || (max && v.Cmp(m) > 0) || (!max && v.Cmp(m) < 0) {
			m = v
		}
	}
	return decText(m, scale)
}

func tsMinMax(evs []everyEvent, f func(e everyEvent) time.Time, skipNulls, max bool) string {
	var m time.Time
	for _, e := range evs {
		if skipNulls && e.nulls() {
			continue
		}
		v := f(e)
		if m.IsZero() || (max && v.After(m)) || (!max && v.Before(m)) {
			m = v
		}
	}
	return trinoTS(m)
}

func notNull(e everyEvent) bool { return !e.nulls() }

// fraction is the microsecond digits of a timestamp(6) with time zone cast to varchar.
func fraction(col string) string {
	return fmt.Sprintf("sum(CAST(substr(CAST(%s AS varchar), 21, 6) AS bigint))", col)
}

// everyChecks covers every column type: counts (nulls), exact sums, minima and maxima, and
// order-sensitive hashes of the values as text.
var everyChecks = []everyCheck{
	{"count(*)", func(evs []everyEvent) string { return fmt.Sprint(len(evs)) }},
	{"count(DISTINCT id)", func(evs []everyEvent) string { return fmt.Sprint(len(evs)) }},
	{"min(ts)", func(evs []everyEvent) string {
		return tsMinMax(evs, func(e everyEvent) time.Time { return e.ts }, false, false)
	}},
	{"max(ts)", func(evs []everyEvent) string {
		return tsMinMax(evs, func(e everyEvent) time.Time { return e.ts }, false, true)
	}},
	{fraction("ts"), func(evs []everyEvent) string {
		var n int64
		for _, e := range evs {
			n += int64(e.ts.Nanosecond() / 1000)
		}
		return fmt.Sprint(n)
	}},
	{"sum(CAST(to_unixtime(date_trunc('second', ts)) AS bigint))", func(evs []everyEvent) string {
		var n int64
		for _, e := range evs {
			n += e.ts.Unix()
		}
		return fmt.Sprint(n)
	}},
	{"count(d9)", func(evs []everyEvent) string { return countOf(evs, notNull) }},
	{"sum(d9)", func(evs []everyEvent) string { return decSum(evs, everyEvent.d9, 2) }},
	{"min(d9)", func(evs []everyEvent) string { return decMinMax(evs, everyEvent.d9, 2, false) }},
	{"sum(d18)", func(evs []everyEvent) string { return decSum(evs, everyEvent.d18, 6) }},
	{"max(d18)", func(evs []everyEvent) string { return decMinMax(evs, everyEvent.d18, 6, true) }},
	{"sum(d38)", func(evs []everyEvent) string { return decSum(evs, everyEvent.d38, 10) }},
	{"max(d38)", func(evs []everyEvent) string { return decMinMax(evs, everyEvent.d38, 10, true) }},
	{"count(day)", func(evs []everyEvent) string { return countOf(evs, notNull) }},
	{"sum(date_diff('day', DATE '1970-01-01', day))", func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return e.day().Unix() / 86400 })
	}},
	{"CAST(max(day) AS varchar)", func(evs []everyEvent) string {
		var m time.Time
		for _, e := range evs {
			if !e.nulls() && e.day().After(m) {
				m = e.day()
			}
		}
		return m.Format("2006-01-02")
	}},
	{"sum(qty)", func(evs []everyEvent) string { return sumOf(evs, everyEvent.qty) }},
	{"sum(seq)", func(evs []everyEvent) string { return sumOf(evs, everyEvent.seq) }},
	{"CAST(sum(CAST(ratio AS double)) * 4 AS bigint)", func(evs []everyEvent) string { return sumOf(evs, everyEvent.ratio4) }},
	{"CAST(sum(score) * 8 AS bigint)", func(evs []everyEvent) string { return sumOf(evs, everyEvent.score8) }},
	{"count_if(paid)", func(evs []everyEvent) string {
		return countOf(evs, func(e everyEvent) bool { return !e.nulls() && e.paid() })
	}},
	{"count(paid)", func(evs []everyEvent) string { return countOf(evs, notNull) }},
	{"sum(length(payload))", func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return int64(len(e.payload())) })
	}},
	{hashOf("to_hex(payload)"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) { return strings.ToUpper(hex.EncodeToString(e.payload())), !e.nulls() }))
	}},
	{"sum(cardinality(tags))", func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return int64(len(e.tags())) })
	}},
	{hashOf("array_join(tags, '|')"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) { return strings.Join(e.tags(), "|"), !e.nulls() }))
	}},
	{"sum(cardinality(attrs))", func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return int64(len(e.attrs())) })
	}},
	{hashOf("array_join(array_sort(transform(map_entries(attrs), x -> x[1] || '=' || x[2])), '&')"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) {
			var kv []string
			for k, v := range e.attrs() {
				kv = append(kv, k+"="+v)
			}
			sort.Strings(kv)
			return strings.Join(kv, "&"), !e.nulls()
		}))
	}},
	{"sum(addr.zip)", func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return int64(10000 + e.i) })
	}},
	{hashOf("addr.city"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) { return cities[e.i%5], !e.nulls() }))
	}},
	{"count(ship)", func(evs []everyEvent) string { return countOf(evs, notNull) }},
	{"min(ship.at)", func(evs []everyEvent) string { return tsMinMax(evs, everyEvent.shipAt, true, false) }},
	{"max(ship.at)", func(evs []everyEvent) string { return tsMinMax(evs, everyEvent.shipAt, true, true) }},
	{fraction("ship.at"), func(evs []everyEvent) string {
		return sumOf(evs, func(e everyEvent) int64 { return int64(e.shipAt().Nanosecond() / 1000) })
	}},
	{"CAST(sum(ship.geo.lat) * 8 AS bigint)", func(evs []everyEvent) string { return sumOf(evs, func(e everyEvent) int64 { return int64(e.i) }) }},
	{"CAST(sum(ship.geo.lon) * 4 AS bigint)", func(evs []everyEvent) string { return sumOf(evs, func(e everyEvent) int64 { return -int64(e.i) }) }},
	{hashOf("ship.carrier"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) { return fmt.Sprintf("c%d", e.i%3), !e.nulls() }))
	}},
	{"count(note)", func(evs []everyEvent) string {
		return countOf(evs, func(e everyEvent) bool { _, ok := e.note(); return ok && !e.nulls() })
	}},
	{hashOf("note"), func(evs []everyEvent) string {
		return hashWant(collect(evs, func(e everyEvent) (string, bool) { n, ok := e.note(); return n, ok && !e.nulls() }))
	}},
}

// checkEvery compares Trino's aggregates over table (a qualified name) with the events.
func checkEvery(t *testing.T, table string, evs []everyEvent) {
	t.Helper()
	exprs := make([]string, len(everyChecks))
	for i, c := range everyChecks {
		exprs[i] = c.expr
	}
	rows := testbed.Trino(t, "SELECT "+strings.Join(exprs, ",\n  ")+"\nFROM "+table)
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows", table, len(rows))
	}
	for i, c := range everyChecks {
		if got, want := fmt.Sprint(rows[0][i]), c.want(evs); got != want {
			t.Errorf("%s: %s = %s, want %s", table, c.expr, got, want)
		}
	}
	// Every Kafka coordinate once, every hour with its rows.
	coords := testbed.Trino(t, "SELECT count(*) FROM (SELECT DISTINCT _kafka_topic, _kafka_partition, _kafka_offset FROM "+table+")")
	if got := fmt.Sprint(coords[0][0]); got != fmt.Sprint(len(evs)) {
		t.Errorf("%s: %s distinct Kafka coordinates, want %d", table, got, len(evs))
	}
	want := map[string]int{}
	for _, e := range evs {
		want[e.ts.UTC().Format("2006-01-02T15")]++
	}
	got := map[string]int{}
	for _, r := range testbed.Trino(t, "SELECT date_format(ts, '%Y-%m-%dT%H'), count(*) FROM "+table+" GROUP BY 1") {
		n, _ := r[1].(json.Number).Int64()
		got[r[0].(string)] = int(n)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: rows per hour %v, want %v", table, got, want)
	}
}

// everyStage is what one sink run added to the raw zone.
type everyStage struct {
	events []everyEvent
	keys   []string // raw files (keys under the sink's prefix)
}

// everyFixture: the events of the table "every" sunk by the real binary in four runs, each
// stage's raw files kept apart so that each catalog's copy of the lake can receive them one
// by one: (A) 3 closed hours, (B) late events into the middle hour, (C) events with the new
// optional column "extra" (config v2) into the last hour, (D) events of the open hour.
type everyFixture struct {
	f      *lakeFixture
	hours  [3]time.Time
	stages [4]everyStage
	v1, v2 string // tables sections
}

func newEveryFixture(t *testing.T) *everyFixture {
	t.Helper()
	testbed.TrinoURI(t) // skip (or fail under make test) before any work when Trino is absent
	b := newBed(t, 3)
	now := time.Now().UTC()
	ef := &everyFixture{f: &lakeFixture{b: b, src: b.prefix}}
	h0 := now.Truncate(time.Hour).Add(-4 * time.Hour)
	ef.hours = [3]time.Time{h0, h0.Add(time.Hour), h0.Add(2 * time.Hour)}
	notBefore := h0.Add(-24 * time.Hour)
	ef.v1, ef.v2 = everyTableYAML(b.topic, notBefore, false), everyTableYAML(b.topic, notBefore, true)
	// The microseconds within an hour of event i: spread, and never a round millisecond.
	within := func(i int) time.Duration {
		return time.Duration(int64(i)*791_911_337%3_599_000_000+1) * time.Microsecond
	}
	next := 0
	gen := func(n int, ts func(i int) time.Time, extra bool) []everyEvent {
		evs := make([]everyEvent, n)
		for k := range evs {
			i := next + k
			evs[k] = everyEvent{i: i, ts: ts(i), extra: extra}
		}
		next += n
		return evs
	}
	stage := func(s int, evs []everyEvent, tables string) {
		b.tables = tables
		recs := make([]*kgo.Record, len(evs))
		for k, e := range evs {
			recs[k] = &kgo.Record{Topic: b.topic, Partition: int32(e.i % 3), Value: e.json()}
		}
		if err := b.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		before := map[string]bool{}
		for _, st := range ef.stages[:s] {
			for _, k := range st.keys {
				before[k] = true
			}
		}
		p := b.start(b.config("flush: {max_age: 2s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"))
		b.waitCaughtUp(90*time.Second, p)
		p.stop(t)
		src := ef.f.s3(t, b.prefix)
		var keys []string
		if err := src.List(context.Background(), "raw/", func(o store.ObjectInfo) error {
			if !before[o.Key] {
				keys = append(keys, o.Key)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Fatalf("stage %c: the sink wrote no raw file", 'A'+s)
		}
		ef.stages[s] = everyStage{events: evs, keys: keys}
	}
	stage(0, gen(600, func(i int) time.Time { return ef.hours[i%3].Add(within(i)) }, false), ef.v1)
	stage(1, gen(60, func(i int) time.Time { return ef.hours[1].Add(within(i)) }, false), ef.v1)
	stage(2, gen(60, func(i int) time.Time { return ef.hours[2].Add(within(i)) }, true), ef.v2)
	// The open hour: event times a little before now (they may fall in the previous hour
	// when the test runs just after a full hour; no compaction runs after this stage).
	stage(3, gen(30, func(i int) time.Time { return now.Add(-time.Minute - time.Duration(i%997+1)*time.Microsecond) }, true), ef.v2)
	b.tables = ef.v1
	return ef
}

// events returns the events of stages [0, n).
func (ef *everyFixture) events(n int) []everyEvent {
	var out []everyEvent
	for _, s := range ef.stages[:n] {
		out = append(out, s.events...)
	}
	return out
}

// deliver copies a stage's raw files into a lake copy under prefix.
func (ef *everyFixture) deliver(t *testing.T, prefix string, s int) {
	t.Helper()
	src, dst := ef.f.s3(t, ef.f.src), ef.f.s3(t, prefix)
	for _, k := range ef.stages[s].keys {
		if err := copyObject(context.Background(), src, k, dst, k); err != nil {
			t.Fatal(err)
		}
	}
}

// compact runs lakesink compact with the tables section of stage s's config.
func (ef *everyFixture) compact(t *testing.T, prefix, catalog, tables string, env ...string) string {
	t.Helper()
	ef.f.b.tables = tables
	cfg := ef.f.compactConfig(t, prefix, catalog, "  raw_grace: 1h")
	code, out := ef.f.compactRun(t, cfg, env...)
	if code != 0 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	return cfg
}

func trinoInt(t *testing.T, sql string) int64 {
	t.Helper()
	rows := testbed.Trino(t, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: rows %v", sql, rows)
	}
	n, err := rows[0][0].(json.Number).Int64()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestE2ETrinoEveryCatalog: for each catalog (Glue on moto, REST, SQL on Postgres), the
// compacted table read through Trino holds exactly the produced events (every column type,
// Kafka coordinates, rows per hour); a one-hour filter reads one file; a late-data rewrite
// shows the new rows while time travel to the previous snapshot shows the old count; after
// an optional column is added, old and new files read together. For Glue, the Athena
// statements of `lakesink athena-ddl` that Trino shares with Athena run, the raw-zone table
// registered by `athena-ddl --apply` reads through the Hive connector with partition
// projection, and the view returns every event exactly once.
func TestE2ETrinoEveryCatalog(t *testing.T) {
	ef := newEveryFixture(t)
	b := ef.f.b
	wh := func(prefix string) string { return fmt.Sprintf("s3://%s/%swarehouse", b.s3.Bucket, prefix) }
	catalogs := []struct {
		name string // Trino catalog
		yaml func(prefix, ns string) string
		env  []string
	}{
		{testbed.TrinoGlue, func(prefix, ns string) string {
			return fmt.Sprintf("  type: glue\n  namespace: %s\n  warehouse: %s\n  glue: {region: us-east-1, endpoint: %s}", ns, wh(prefix), testbed.Glue(t))
		}, nil},
		{testbed.TrinoREST, func(prefix, ns string) string {
			return fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh(prefix), testbed.REST(t))
		}, nil},
		// Trino's sql catalog reads the bed's database lakesink itself, catalog name lakesink.
		{testbed.TrinoSQL, func(prefix, ns string) string {
			return fmt.Sprintf("  type: sql\n  name: %s\n  namespace: %s\n  warehouse: %s\n  sql: {driver: postgres, dsn_env: TEST_PG_DSN}",
				testbed.TrinoSQLCatalogName, ns, wh(prefix))
		}, []string{"TEST_PG_DSN=" + os.Getenv(testbed.EnvPostgresDSN)}},
	}
	for _, c := range catalogs {
		t.Run(c.name, func(t *testing.T) {
			prefix := testbed.UniqueName(t, "trino") + "/"
			ns := strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
			cat := c.yaml(prefix, ns)
			table := fmt.Sprintf("%s.%s.every", c.name, ns)
			t.Cleanup(func() {
				if _, err := testbed.TrinoExec(t, "DROP TABLE IF EXISTS "+table); err != nil {
					t.Logf("drop %s: %v", table, err)
				}
				if _, err := testbed.TrinoExec(t, "DROP SCHEMA IF EXISTS "+c.name+"."+ns); err != nil {
					t.Logf("drop schema %s.%s: %v", c.name, ns, err)
				}
			})

			// (A) three closed hours.
			ef.deliver(t, prefix, 0)
			ef.compact(t, prefix, cat, ef.v1, c.env...)
			checkEvery(t, table, ef.events(1))
			files := trinoInt(t, fmt.Sprintf(`SELECT count(*) FROM %s.%s."every$files"`, c.name, ns))
			h := ef.hours[1]
			hourFilter := fmt.Sprintf("ts >= TIMESTAMP '%s' AND ts < TIMESTAMP '%s'", trinoTS(h), trinoTS(h.Add(time.Hour)))
			all := testbed.TrinoScanSplits(t, "SELECT sum(qty), count(*) FROM "+table)
			one := testbed.TrinoScanSplits(t, "SELECT sum(qty), count(*) FROM "+table+" WHERE "+hourFilter)
			if files < 3 || fmt.Sprint(all) != fmt.Sprintf("[%d]", files) || fmt.Sprint(one) != "[1]" {
				t.Errorf("splits read: whole table %v (it has %d files), one hour %v: want every file, then 1", all, files, one)
			}
			if n := trinoInt(t, fmt.Sprintf(`SELECT count(*) FROM %s.%s."every$snapshots" WHERE summary['lakesink.job-id'] IS NOT NULL`, c.name, ns)); n == 0 {
				t.Errorf("no snapshot carries lakesink.job-id in its summary")
			}
			snapA := trinoInt(t, fmt.Sprintf(`SELECT snapshot_id FROM %s.%s."every$snapshots" ORDER BY committed_at DESC LIMIT 1`, c.name, ns))

			// (B) late events into a compacted hour: a new snapshot rewrites it.
			ef.deliver(t, prefix, 1)
			ef.compact(t, prefix, cat, ef.v1, c.env...)
			checkEvery(t, table, ef.events(2))
			if n := trinoInt(t, fmt.Sprintf("SELECT count(*) FROM %s FOR VERSION AS OF %d", table, snapA)); n != int64(len(ef.events(1))) {
				t.Errorf("time travel to snapshot %d: %d rows, want %d", snapA, n, len(ef.events(1)))
			}
			if n := trinoInt(t, fmt.Sprintf("SELECT count(*) FROM %s FOR VERSION AS OF %d WHERE %s", table, snapA, hourFilter)); n != 200 {
				t.Errorf("time travel to snapshot %d, late hour: %d rows, want 200", snapA, n)
			}

			// (C) config v2 adds the optional column extra; its events go into the last hour.
			ef.deliver(t, prefix, 2)
			cfg := ef.compact(t, prefix, cat, ef.v2, c.env...)
			checkEvery(t, table, ef.events(3))
			if n := trinoInt(t, "SELECT count(extra) FROM "+table); n != int64(len(ef.stages[2].events)) {
				t.Errorf("count(extra) = %d, want %d (the stage C events)", n, len(ef.stages[2].events))
			}
			old := fmt.Sprintf("ts >= TIMESTAMP '%s' AND ts < TIMESTAMP '%s'", trinoTS(ef.hours[0]), trinoTS(ef.hours[0].Add(time.Hour)))
			if n := trinoInt(t, "SELECT count(*) FROM "+table+" WHERE extra IS NULL AND "+old); n != 200 {
				t.Errorf("hour %s (files from before the new column): %d rows with extra NULL, want 200", ef.hours[0].Format(time.RFC3339), n)
			}
			if c.name == testbed.TrinoGlue {
				athenaJourney(t, ef, prefix, ns, cfg)
			}
		})
	}
}

// athenaJourney runs, on the Glue table of TestE2ETrinoEveryCatalog, what a user of Athena
// runs: `athena-ddl --apply` registers the raw-zone table in Glue, then the statements of
// `athena-ddl` that Trino shares with Athena (the SELECTs and the view over Iceberg and the
// open raw hours) run in Trino, and the view holds every event exactly once while the raw
// zone still has the files of the compacted hours (raw_grace) and the open hour's.
func athenaJourney(t *testing.T, ef *everyFixture, prefix, ns, cfg string) {
	t.Helper()
	ef.deliver(t, prefix, 3) // the open hour: raw only
	lake := ef.events(4)
	run := func(args ...string) string {
		cmd := exec.Command(binPath, args...)
		c := ef.f.b.s3
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+c.AccessKey, "AWS_SECRET_ACCESS_KEY="+c.SecretKey, "AWS_REGION="+c.Region)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lakesink %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("athena-ddl", "-c", cfg, "--apply"); !strings.Contains(out, "created table "+ns+".every_raw") {
		t.Fatalf("athena-ddl --apply printed %q, want it to create %s.every_raw", out, ns)
	}
	if out := run("athena-ddl", "-c", cfg, "--apply"); !strings.Contains(out, "updated table "+ns+".every_raw") {
		t.Fatalf("second athena-ddl --apply printed %q, want it to update %s.every_raw", out, ns)
	}
	t.Cleanup(func() {
		_, _ = testbed.TrinoExec(t, "DROP VIEW IF EXISTS glue."+ns+".every_all")
		_, _ = testbed.TrinoExec(t, "DROP VIEW IF EXISTS glue."+ns+".every_final")
		_, _ = testbed.TrinoExec(t, "DROP TABLE IF EXISTS gluehive."+ns+".every_raw") // external: no data deleted
	})
	ddl := run("athena-ddl", "-c", cfg)

	// The raw table in Glue has exactly the columns, types and TBLPROPERTIES of the printed
	// CREATE EXTERNAL TABLE (read back with the Glue API), and Trino sees those columns.
	var want, wantTypes []string
	wantProps := map[string]string{}
	for _, blk := range strings.Split(ddl, "\n\n") {
		if !strings.HasPrefix(blk, "CREATE EXTERNAL TABLE") {
			continue
		}
		props := false
		for _, l := range strings.Split(blk, "\n")[1:] {
			switch {
			case strings.HasPrefix(l, "  `") && !props:
				name, typ, _ := strings.Cut(strings.TrimSuffix(l[2:], ","), " ")
				want = append(want, strings.Trim(name, "`"))
				wantTypes = append(wantTypes, strings.ReplaceAll(typ, "`", ""))
			case l == "TBLPROPERTIES (":
				props = true
			case props && strings.HasPrefix(l, "  '"):
				k, v, _ := strings.Cut(strings.TrimSuffix(l[2:], ","), " = ")
				wantProps[strings.Trim(k, "'")] = strings.Trim(v, "'")
			}
		}
		want = append(want, "dt", "hour")
	}
	gt := glueTable(t, ns, "every_raw")
	var gotTypes []string
	for _, c := range gt.StorageDescriptor.Columns {
		gotTypes = append(gotTypes, *c.Type)
	}
	if strings.Join(gotTypes, ";") != strings.Join(wantTypes, ";") {
		t.Errorf("Glue column types of every_raw:\n%v\nthe DDL's:\n%v", gotTypes, wantTypes)
	}
	if len(wantProps) < 8 {
		t.Errorf("found %d TBLPROPERTIES in the DDL, want the projection properties", len(wantProps))
	}
	for k, v := range wantProps {
		if gt.Parameters[k] != v {
			t.Errorf("Glue parameter %s of every_raw = %q, the DDL says %q", k, gt.Parameters[k], v)
		}
	}
	var got []string
	for _, r := range testbed.Trino(t, "SELECT column_name FROM gluehive.information_schema.columns WHERE table_schema = '"+ns+"' AND table_name = 'every_raw' ORDER BY ordinal_position") {
		got = append(got, r[0].(string))
	}
	if len(want) < 10 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("every_raw in Glue has columns %v, the DDL %v", got, want)
	}

	// The raw zone through gluehive and partition projection: every file is still there.
	lo := ef.hours[0].Format("2006-01-02")
	rawTable := "gluehive." + ns + ".every_raw"
	if n := trinoInt(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE dt >= '%s'", rawTable, lo)); n != int64(len(lake)) {
		t.Errorf("%s: %d rows, want %d (every raw file)", rawTable, n, len(lake))
	}
	h := ef.hours[1]
	if n := trinoInt(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE dt = '%s' AND hour = '%s'", rawTable, h.Format("2006-01-02"), h.Format("15"))); n != 260 {
		t.Errorf("%s, hour %s: %d rows, want 260 (200 + 60 late)", rawTable, h.Format(time.RFC3339), n)
	}
	// The Iceberg table is reachable through gluehive too (redirection, as in Athena's one catalog).
	if n := trinoInt(t, "SELECT count(*) FROM gluehive."+ns+".every"); n != int64(len(ef.events(3))) {
		t.Errorf("gluehive.%s.every (redirected to the Iceberg catalog): %d rows, want %d", ns, n, len(ef.events(3)))
	}

	// The statements Trino shares with Athena, in the Glue database as Athena runs them.
	sess := testbed.TrinoSession{Catalog: testbed.TrinoGlue, Schema: ns}
	ran := 0
	for _, blk := range strings.Split(ddl, "\n\n") {
		blk = strings.TrimSpace(blk)
		if !strings.HasPrefix(blk, "SELECT") && !strings.HasPrefix(blk, "CREATE OR REPLACE VIEW") {
			continue
		}
		if _, err := sess.Exec(t, strings.TrimSuffix(blk, ";")); err != nil {
			t.Errorf("athena-ddl statement failed in Trino: %v\n%s", err, blk)
		}
		ran++
	}
	if ran < 4 {
		t.Fatalf("ran %d athena-ddl statements, want the Iceberg and raw SELECTs, the view and its SELECT", ran)
	}
	view := "glue." + ns + ".every_all"
	res := testbed.Trino(t, fmt.Sprintf("SELECT count(*), count(DISTINCT id), sum(d38), sum(qty) FROM %s WHERE dt >= '%s'", view, lo))
	wantRow := fmt.Sprint([]any{len(lake), len(lake), decSum(lake, everyEvent.d38, 10), sumOf(lake, everyEvent.qty)})
	if fmt.Sprint(res[0]) != wantRow {
		t.Errorf("view %s: count, distinct ids, sum(d38), sum(qty) = %v, want %v", view, res[0], wantRow)
	}
	if dups := testbed.Trino(t, fmt.Sprintf(`SELECT "_kafka_topic", "_kafka_partition", "_kafka_offset", count(*) FROM %s WHERE dt >= '%s' GROUP BY 1, 2, 3 HAVING count(*) > 1`, view, lo)); len(dups) != 0 {
		t.Errorf("view %s: %d Kafka coordinates more than once, e.g. %v", view, len(dups), dups[0])
	} // (d) The final view: the compactor closed every hour (wall-clock rule), so
	// every row of the Iceberg table is final.
	if n := trinoInt(t, "SELECT count(*) FROM glue."+ns+".every_final"); n != int64(len(ef.events(3))) {
		t.Errorf("view glue.%s.every_final: %d rows, want %d (every compacted hour is final)", ns, n, len(ef.events(3)))
	}
}

// trinoRegister puts an Iceberg table that any catalog wrote (e.g. the SQLite catalog of the
// compaction tests) in front of Trino: register_table in Trino's REST catalog, under a schema
// of its own, at the given metadata file. The registration (not the data) is removed when
// the test ends. It returns the table's qualified name.
func trinoRegister(t *testing.T, metadataLocation string) string {
	t.Helper()
	i := strings.LastIndex(metadataLocation, "/metadata/")
	if i < 0 {
		t.Fatalf("metadata location %q is not under <table>/metadata/", metadataLocation)
	}
	ns := strings.ReplaceAll(testbed.UniqueName(t, "reg"), "-", "_")
	testbed.Trino(t, "CREATE SCHEMA rest."+ns)
	testbed.Trino(t, fmt.Sprintf("CALL rest.system.register_table(schema_name => '%s', table_name => 'events', table_location => '%s', metadata_file_name => '%s')",
		ns, metadataLocation[:i], metadataLocation[i+len("/metadata/"):]))
	t.Cleanup(func() {
		_, _ = testbed.TrinoExec(t, fmt.Sprintf("CALL rest.system.unregister_table(schema_name => '%s', table_name => 'events')", ns))
		_, _ = testbed.TrinoExec(t, "DROP SCHEMA IF EXISTS rest."+ns)
	})
	return "rest." + ns + ".events"
}

// trinoCheckEvents reads a compacted table of the sink fixture through Trino: it must hold
// exactly the produced events (count, Kafka coordinates, rows per hour, the checksum of the
// ids), reading several columns of every data file (a missing file fails the query).
func trinoCheckEvents(t *testing.T, f *lakeFixture, table string) {
	t.Helper()
	rows := testbed.Trino(t, `SELECT count(*),
  lower(to_hex(sha256(to_utf8(array_join(array_agg(event_id ORDER BY event_id), chr(10)))))),
  count(amount) + count(device.os) + count(tags) + count(latency_ms) + count(user_agent) >= 0
FROM `+table)
	if got, want := fmt.Sprint(rows[0]), fmt.Sprint([]any{f.expect.Count, f.expect.IDSum, true}); got != want {
		t.Errorf("trino %s: count, id checksum = %s, want %s", table, got, want)
	}
	if n := trinoInt(t, "SELECT count(*) FROM (SELECT DISTINCT _kafka_topic, _kafka_partition, _kafka_offset FROM "+table+")"); n != f.expect.Count {
		t.Errorf("trino %s: %d distinct Kafka coordinates, want %d", table, n, f.expect.Count)
	}
	got := map[string]int64{}
	for _, r := range testbed.Trino(t, "SELECT date_format(ts, '%Y-%m-%dT%H'), count(*) FROM "+table+" GROUP BY 1") {
		got[r[0].(string)], _ = r[1].(json.Number).Int64()
	}
	if fmt.Sprint(got) != fmt.Sprint(f.expect.PerHour) {
		t.Errorf("trino %s: rows per hour %v, want %v", table, got, f.expect.PerHour)
	}
}

// TestE2ETrinoAfterExpiryAndOrphans: snapshot expiry (retain 1) and orphan removal, with
// every file in the table location aged past orphan_min_age and an orphan planted, leave a
// table Trino reads whole: the files expiry released and the orphan are gone, every file
// the table still references is there.
func TestE2ETrinoAfterExpiryAndOrphans(t *testing.T) {
	testbed.TrinoURI(t)
	f := sinkFixture(t)
	s3 := testbed.S3(t)
	if s3.Dir == "" {
		t.Skipf("needs %s (the S3 server's directory) to age files", testbed.EnvS3Dir)
	}
	prefix, lake := f.lakeFor(t)
	ns := strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
	wh := fmt.Sprintf("s3://%s/%swarehouse", f.b.s3.Bucket, prefix)
	cat := fmt.Sprintf("  type: rest\n  namespace: %s\n  warehouse: %s\n  rest: {uri: %s}", ns, wh, testbed.REST(t))
	cfg := f.compactConfig(t, prefix, cat, "  max_partitions_per_commit: 1\n  snapshot_retain_last: 1\n  snapshot_max_age: 1ms\n  orphan_min_age: 1h")
	table := "rest." + ns + ".events"
	t.Cleanup(func() {
		_, _ = testbed.TrinoExec(t, "DROP TABLE IF EXISTS "+table)
		_, _ = testbed.TrinoExec(t, "DROP SCHEMA IF EXISTS rest."+ns)
	})
	if code, out := f.compactRun(t, cfg); code != 0 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	// Late duplicates into two compacted hours: each run rewrites an hour (new snapshots,
	// and the replaced files become garbage once their snapshots expire).
	var keys []string
	_ = lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	plantDup(t, lake, keys[0], 1)
	plantDup(t, lake, keys[len(keys)-1], 1)
	for i := 0; ; i++ {
		code, out := f.compactRun(t, cfg)
		if code == 4 {
			break
		}
		if code != 0 || i == 10 {
			t.Fatalf("run %d: exit %d (not idle after %d runs):\n%s", i, code, i, out)
		}
	}
	if n := trinoInt(t, `SELECT count(*) FROM rest.`+ns+`."events$snapshots"`); n != 1 {
		t.Errorf("%d snapshots after expiry with snapshot_retain_last 1, want 1", n)
	}
	// Age every file of the table location past orphan_min_age (1h), plant an orphan, and
	// run once more: orphan removal sees everything as old enough.
	loc := strings.TrimPrefix(wh, "s3://"+s3.Bucket+"/") + "/" + ns + "/events"
	dir := s3.Dir + "/" + s3.Bucket + "/" + loc
	orphan := loc + "/data/orphan-planted.parquet"
	whStore := f.s3(t, "")
	if err := whStore.Create(context.Background(), orphan, strings.NewReader("not a parquet file")); err != nil {
		t.Fatal(err)
	}
	// Orphan cleanup runs at most once per orphan_min_age per table (it lists the whole
	// table location); the first run swept and recorded it: forget that record.
	if err := whStore.Delete(context.Background(), strings.TrimPrefix(wh, "s3://"+s3.Bucket+"/")+"/.lakesink/orphan-sweep/"+ns+".events"); err != nil {
		t.Fatal(err)
	}
	before := countFiles(t, dir)
	if out, err := exec.Command("find", dir, "-type", "f", "-exec", "touch", "-d", "3 hours ago", "{}", "+").CombinedOutput(); err != nil {
		t.Fatalf("age files: %v\n%s", err, out)
	}
	code, out := f.compactRun(t, cfg)
	if code != 0 && code != 4 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "orphans deleted") || strings.Contains(out, " 0 orphans deleted") {
		t.Errorf("the run deleted no orphan:\n%s", out)
	}
	if _, err := os.Stat(s3.Dir + "/" + s3.Bucket + "/" + orphan); !os.IsNotExist(err) {
		t.Errorf("the planted orphan %s is still there (%v)", orphan, err)
	}
	after := countFiles(t, dir)
	live := trinoInt(t, `SELECT count(*) FROM rest.`+ns+`."events$files"`)
	data := countFiles(t, dir+"/data", "-name", "*.parquet")
	t.Logf("table location: %d files before orphan removal, %d after; %d data files, %d live", before, after, data, live)
	// Expiry deleted the files the rewrites replaced, orphan removal the planted one: every
	// data file left is live, and Trino finds every live file.
	if int64(data) != live || live < 4 {
		t.Errorf("%d data files in the table location, %d live (want equal, at least one per hour)", data, live)
	}
	trinoCheckEvents(t, f, table)
}

// countFiles counts the files under dir (with extra find predicates).
func countFiles(t *testing.T, dir string, pred ...string) int {
	t.Helper()
	out, err := exec.Command("find", append([]string{dir, "-type", "f"}, pred...)...).Output()
	if err != nil {
		t.Fatalf("find %s: %v", dir, err)
	}
	return strings.Count(string(out), "\n")
}

// glueTable reads a table from the bed's Glue (moto) with the Glue API.
func glueTable(t *testing.T, db, name string) *gluetypes.Table {
	t.Helper()
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion("us-east-1"), awsconfig.WithBaseEndpoint(testbed.Glue(t)),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("lakesink", "lakesinksecret", "")))
	if err != nil {
		t.Fatal(err)
	}
	out, err := glue.NewFromConfig(cfg).GetTable(ctx, &glue.GetTableInput{DatabaseName: &db, Name: &name})
	if err != nil {
		t.Fatalf("glue GetTable %s.%s: %v", db, name, err)
	}
	return out.Table
}

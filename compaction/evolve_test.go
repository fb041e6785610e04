package compaction_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

// lab is a local lake with a SQLite catalog, both in a temp dir: what the demo
// runs on, with no server.
type lab struct {
	dir  string
	lake store.Store
	hour time.Time // a closed hour the events fall in
}

func newLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	lake, err := store.NewLocal(filepath.Join(dir, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	return &lab{dir: dir, lake: lake, hour: time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)}
}

// config returns the lab's config with the given extra column declarations.
func (l *lab) config(t *testing.T, extraColumns string) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
local_dir: %s
dead_letter: {topic: dlq}
catalog:
  type: sql
  namespace: lake
  sql: {driver: sqlite, dsn: %s}
compaction: {lateness: 0s, raw_grace: 0s}
tables:
  - name: events
    topics: [events]
    columns:
      - {name: event_id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: int64}
%s    event_time: {column: ts, granularity: hour}
    sort_by: [ts]
`, filepath.Join(l.dir, "lake"), filepath.Join(l.dir, "catalog.db"), extraColumns)
	cfg, err := config.Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sink writes events [from, to) of Kafka partition 0 into the raw zone through
// the sink's engine; note, when set, fills the column of that name.
func (l *lab) sink(t *testing.T, cfg *config.Config, from, to int, note string) {
	t.Helper()
	l.write(t, cfg, from, to, func(i int) int { return i }, note)
}

// sinkScrambled writes events [from, to) like sink, but event i at second
// (37·i mod 300) of the hour: offsets and event times in different orders.
func (l *lab) sinkScrambled(t *testing.T, cfg *config.Config, from, to int) {
	t.Helper()
	l.write(t, cfg, from, to, func(i int) int { return 37 * i % 300 }, "")
}

// write writes events [from, to) at second(i) of the lab's hour; note, when
// set, fills the note column.
func (l *lab) write(t *testing.T, cfg *config.Config, from, to int, second func(int) int, note string) {
	t.Helper()
	l.writeEvents(t, cfg, from, to,
		func(i int) time.Time { return l.hour.Add(time.Duration(second(i)) * time.Second) },
		func(i int) string {
			if note == "" {
				return ""
			}
			return fmt.Sprintf(`,"note":"%s-%d"`, note, i)
		})
}

// writeEvents writes events [from, to) of Kafka partition 0 into the raw zone
// through the sink's engine: event i has event_id, ts = at(i), n and the JSON
// members more(i) returns (starting with a comma).
func (l *lab) writeEvents(t *testing.T, cfg *config.Config, from, to int, at func(int) time.Time, more func(int) string) {
	t.Helper()
	ctx := context.Background()
	e, err := sink.NewEngine(cfg, l.lake, sink.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e.Start(ctx)
	defer e.Close()
	e.Assign("events", 0, int64(from), "")
	for i := from; i < to; i++ {
		ts := at(i).Format(time.RFC3339Nano)
		v := fmt.Sprintf(`{"event_id":"e-%d","ts":%q,"n":%d%s}`, i, ts, i, more(i))
		rec := &decode.Record{Topic: "events", Offset: int64(i), Timestamp: time.Now(), Value: []byte(v)}
		if out, err := e.Process(ctx, rec, 0); err != nil || out != sink.Buffered {
			t.Fatalf("event %d: outcome %v, %v", i, out, err)
		}
	}
	e.SealPartitions(nil, "test")
	if err := e.WaitDurable(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// compact runs one compaction over cfg.
func (l *lab) compact(t *testing.T, cfg *config.Config) (compaction.Summary, *icetable.Catalog, error) {
	t.Helper()
	c := l.compactor(t, cfg)
	sum, err := c.Run(context.Background(), "")
	return sum, c.Cat, err
}

// compactor returns a compactor over cfg with a catalog of its own.
func (l *lab) compactor(t *testing.T, cfg *config.Config) *compaction.Compactor {
	t.Helper()
	wh, err := store.NewLocal(strings.TrimPrefix(cfg.Catalog.Warehouse, "file://"))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := icetable.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return &compaction.Compactor{Cfg: cfg, Cat: cat, Lake: l.lake, Warehouse: wh, Log: slog.New(slog.DiscardHandler),
		Metrics: compaction.NewMetrics(prometheus.NewRegistry()), Now: time.Now}
}

// TestAddOptionalColumnEvolvesTable: a column added to the config (optional)
// becomes a new Iceberg field on the next run, with a fresh id and the old ids
// kept; rows written before read it as null, rows after with their values,
// including late rows merged into the already compacted hour.
func TestAddOptionalColumnEvolvesTable(t *testing.T) {
	l := newLab(t)
	v1 := l.config(t, "")
	l.sink(t, v1, 0, 100, "")
	sum, cat, err := l.compact(t, v1)
	if err != nil {
		t.Fatal(err)
	}
	if sum.RowsOut != 100 || len(sum.Changes) != 1 || !strings.Contains(sum.Changes[0], "created table") {
		t.Fatalf("first run: %d rows out, changes %q; want 100 rows and a created table", sum.RowsOut, sum.Changes)
	}
	tbl, err := cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, f := range tbl.Schema().Fields() {
		before[f.Name] = f.ID
	}

	v2 := l.config(t, "      - {name: note, type: string}\n")
	l.sink(t, v2, 100, 150, "late")
	sum, cat, err = l.compact(t, v2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"events: added column note"}; fmt.Sprint(sum.Changes) != fmt.Sprint(want) {
		t.Errorf("second run changes %q, want %q", sum.Changes, want)
	}
	tbl, err = cat.Cat.LoadTable(context.Background(), cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	maxBefore := 0
	for name, id := range before {
		f, ok := tbl.Schema().FindFieldByName(name)
		if !ok || f.ID != id {
			t.Errorf("field %s: id %d before, now %d (found %v)", name, id, f.ID, ok)
		}
		maxBefore = max(maxBefore, id)
	}
	note, ok := tbl.Schema().FindFieldByName("note")
	if !ok || note.Required || note.ID <= maxBefore {
		t.Fatalf("note field %+v (found %v): want optional with an id above %d", note, ok, maxBefore)
	}

	got := readNotes(t, tbl)
	if len(got) != 150 {
		t.Fatalf("table holds %d rows, want 150", len(got))
	}
	for i := range 150 {
		want := ""
		if i >= 100 {
			want = fmt.Sprintf("late-%d", i)
		}
		if v, ok := got[int64(i)]; !ok || v != want {
			t.Errorf("row n=%d: note %q (present %v), want %q", i, v, ok, want)
		}
	}

	// The next run only deletes the raw file merged last (raw_grace 0s: raw
	// files are deleted by the first run after their grace); then all is idle.
	if sum, _, err = l.compact(t, v2); err != nil || sum.Groups != 0 || len(sum.Changes) != 0 || sum.RawDeleted != 1 {
		t.Errorf("third run: %+v, %v; want one raw file deleted and nothing else", sum, err)
	}
	if sum, _, err = l.compact(t, v2); err != nil || !sum.Idle() {
		t.Errorf("fourth run: %+v, %v; want idle", sum, err)
	}
}

// readNotes scans the table and maps n to note ("" for null).
func readNotes(t *testing.T, tbl *table.Table) map[int64]string {
	t.Helper()
	return scanByN(t, tbl, []string{"n", "note"}, func(cols []arrow.Array) func(int) string {
		note := cols[1].(*array.String)
		return func(i int) string {
			if note.IsValid(i) {
				return note.Value(i)
			}
			return ""
		}
	})
}

// scanByN scans fields of tbl, the first of which must be n, and maps n to
// what row returns for each row (an n read twice is an error); prep is called
// once per record batch with its columns and returns row.
func scanByN[T any](t *testing.T, tbl *table.Table, fields []string, prep func(cols []arrow.Array) func(int) T) map[int64]T {
	t.Helper()
	_, rdr, err := tbl.Scan(table.WithSelectedFields(fields...)).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]T{}
	for rec, err := range rdr {
		if err != nil {
			t.Fatal(err)
		}
		n := rec.Column(0).(*array.Int64)
		row := prep(rec.Columns())
		for i := range int(rec.NumRows()) {
			if _, dup := out[n.Value(i)]; dup {
				t.Errorf("n=%d read twice", n.Value(i))
			}
			out[n.Value(i)] = row(i)
		}
		rec.Release()
	}
	return out
}

// TestIncompatibleSchemaHalts: a change Iceberg cannot take by adding an
// optional column (a new required column, a changed type) halts the run with
// the column named, and leaves the table as it was.
func TestIncompatibleSchemaHalts(t *testing.T) {
	for _, tc := range []struct {
		name, columns, want string
	}{
		{"required column", "      - {name: note, type: string, required: true}\n", "new column note is required"},
		{"changed type", "", "column n is long in the table but string in the config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			v1 := l.config(t, "")
			l.sink(t, v1, 0, 10, "")
			if _, _, err := l.compact(t, v1); err != nil {
				t.Fatal(err)
			}
			v2 := l.config(t, tc.columns)
			if tc.name == "changed type" {
				v2.Tables[0].Columns[2].Type = "string"
			}
			_, _, err := l.compact(t, v2)
			if !errors.Is(err, compaction.ErrHalt) || !errors.Is(err, icetable.ErrIncompatibleSchema) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("err %v; want a halt naming %q", err, tc.want)
			}
		})
	}
}

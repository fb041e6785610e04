package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/decode/registry"
	"github.com/lakesink/lakesink/internal/testbed"
)

const (
	avroV1 = `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"event_id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"n","type":"long"}]}`
	avroV2 = `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"event_id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"n","type":"long"},
 {"name":"note","type":["null","string"],"default":null}]}`
	// avroV3 is registered while the sink runs: its new field is ignored until a restart.
	avroV3 = `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"event_id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"n","type":"long"},
 {"name":"note","type":["null","string"],"default":null},
 {"name":"added_later","type":["null","string"],"default":null}]}`
	// avroBad changes n's type: registered under another subject, produced once.
	avroBad = `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"event_id","type":"string"},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"n","type":"string"}]}`
)

// TestE2EAvroSchemaFlipping: 100k Avro events whose producer flips between schema v1
// and v2 (v1 + an optional field) every 1,000 records, through the real sink with
// columns_from: registry. No loss, one file per (partition, hour) buffer exactly as a
// single-schema run, the new column present (null for v1 rows), and a record with an
// incompatible type change dead-lettered with its reason. A v3 registered while the
// sink runs lands too, its new optional field ignored whether null or not (logged and
// counted once). Everything goes through the bed's real schema registry. Then the raw
// zone is compacted and read back from Iceberg by PyIceberg and DuckDB.
func TestE2EAvroSchemaFlipping(t *testing.T) {
	const partitions = 2
	b := newBed(t, partitions)
	regURL := testbed.Registry(t) // the bed's Apicurio
	subject := b.topic + "-value"
	id1 := registerAvro(t, regURL, subject, avroV1)
	id2 := registerAvro(t, regURL, subject, avroV2)
	idBad := registerAvro(t, regURL, b.topic+"-other-value", avroBad)
	s1, s2, sBad := mustParse(t, avroV1), mustParse(t, avroV2), mustParse(t, avroBad)
	enc := func(id int, s avro.Schema, v any) []byte {
		body, err := avro.Marshal(s, v)
		if err != nil {
			t.Fatal(err)
		}
		out := []byte{0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(out[1:], uint32(id))
		return append(out, body...)
	}

	const n = 100_000
	const hours = 2
	base := time.Now().UTC().Truncate(time.Hour).Add(-hours * time.Hour)
	step := hours * time.Hour / n
	ctx := context.Background()
	var wantSum int64
	v2Rows := 0
	for i := range n {
		ts := base.Add(time.Duration(i) * step)
		rec := map[string]any{"event_id": fmt.Sprintf("ev-%06d", i), "ts": ts, "n": int64(i)}
		var v []byte
		if (i/1000)%2 == 1 {
			rec["note"] = map[string]any{"string": fmt.Sprintf("note-%d", i)}
			v = enc(id2, s2, rec)
			v2Rows++
		} else {
			v = enc(id1, s1, rec)
		}
		wantSum += int64(i)
		b.cl.Produce(ctx, &kgo.Record{Topic: b.topic, Partition: int32(i % partitions), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	bad := enc(idBad, sBad, map[string]any{"event_id": "bad", "ts": base, "n": "seven"})
	b.cl.Produce(ctx, &kgo.Record{Topic: b.topic, Partition: 0, Key: []byte("bad"), Value: bad}, nil)
	if err := b.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Long max_age and large files: the only seal is the shutdown, so a single-schema
	// run writes exactly one file per (partition, hour); any file split caused by the
	// schema flips shows up as more files.
	cfgPath := b.config("flush: {max_age: 10m, max_file_bytes: 64MiB, memory_budget: 256MiB, shutdown_timeout: 60s}")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	y := string(data)
	y = y[:strings.Index(y, "tables:\n")] + fmt.Sprintf(`schema_registry: {url: %q, timeout: 5s}
tables:
  - name: events
    topics: [%s]
    format: avro
    columns_from: registry
    event_time: {column: ts}
`, regURL, b.topic)
	cfgPath = filepath.Join(t.TempDir(), "avro.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	// check -c shows the derived columns, note among them.
	out, err := runBin(t, "check", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "name: note") || !strings.Contains(out, "name: event_id") {
		t.Fatalf("check: %v\n%s", err, out)
	}

	p := b.start(cfgPath)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		m := p.metrics(t)
		dec, dl := m[`lakesink_records_decoded_total{table="events"}`], m[`lakesink_records_dead_lettered_total{reason="wrong_type",table="events"}`]
		if dec == n && dl == 1 {
			break
		}
		if done, err := p.exitedErr(); done {
			t.Fatalf("sink exited early: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("decoded %v dead-lettered %v, want %d and 1", dec, dl, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A version with a new field registered while the sink runs: its records land
	// (the new field ignored, logged once, counted once per schema id), in the same files.
	id3 := registerAvro(t, regURL, subject, avroV3)
	s3 := mustParse(t, avroV3)
	const late = 1000
	for i := n; i < n+late; i++ {
		rec := map[string]any{"event_id": fmt.Sprintf("ev-%06d", i), "ts": base.Add(time.Duration(i-n) * step), "n": int64(i),
			"note": nil, "added_later": nullIf(i%2 == 0, map[string]any{"string": "x"})} // issue 20: null here was dead-lettered
		b.cl.Produce(ctx, &kgo.Record{Topic: b.topic, Partition: int32(i % partitions), Value: enc(id3, s3, rec)}, nil)
		wantSum += int64(i)
	}
	if err := b.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		m := p.metrics(t)
		if m[`lakesink_records_decoded_total{table="events"}`] == n+late {
			// Read the counter from a later scrape: one scrape gathers its metric families
			// concurrently, so it can show every late record decoded and still the counter
			// from before the first of them.
			if got := p.metrics(t)[`lakesink_avro_schemas_with_ignored_fields_total{table="events"}`]; got != 1 {
				t.Errorf("avro_schemas_with_ignored_fields_total = %v, want 1", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late records not decoded: %v", m[`lakesink_records_decoded_total{table="events"}`])
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.stop(t)
	if logs, _ := os.ReadFile(p.log); strings.Count(string(logs), "added_later") != 1 {
		t.Errorf("the ignored field is logged %d times, want once", strings.Count(string(logs), "added_later"))
	}
	if ok, lag := b.caughtUp(); !ok {
		t.Fatalf("offsets not committed to the end after shutdown: %s", lag)
	}

	glob := b.rawGlob()
	res := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(DISTINCT event_id), sum(n), count(note),
	  count(*) FILTER (WHERE note IS NOT NULL AND (n // 1000) %% 2 = 0), count(*) FILTER (WHERE note IS NULL AND (n // 1000) %% 2 = 1),
	  count(DISTINCT filename) FROM read_parquet('%s', filename = true)`, glob))
	row := res[0]
	rows, distinct, sum, notes := toInt(t, row[0]), toInt(t, row[1]), toInt(t, row[2]), toInt(t, row[3])
	wrongV1, wrongV2, files := toInt(t, row[4]), toInt(t, row[5]), toInt(t, row[6])
	t.Logf("raw zone: %d rows, %d distinct ids, sum(n) %d, %d notes, %d files", rows, distinct, sum, notes, files)
	if rows != n+late || distinct != n+late || sum != wantSum {
		t.Errorf("rows %d distinct %d sum %d, want %d, %d, %d", rows, distinct, sum, n+late, n+late, wantSum)
	}
	if notes != int64(v2Rows) || wrongV1 != 0 || wrongV2 != 0 {
		t.Errorf("notes %d (want %d), v1 rows with a note %d, v2 rows without %d", notes, v2Rows, wrongV1, wrongV2)
	}
	// One buffer per (partition, hour): the flips must not add files.
	if want := int64(partitions * hours); files != want {
		t.Errorf("%d raw files, want %d (one per partition and hour, as a single-schema run)", files, want)
	}
	for _, r := range testbed.DuckDB(t, fmt.Sprintf(`SELECT hour, count(DISTINCT filename) FROM read_parquet('%s', filename = true, hive_partitioning = true) GROUP BY 1 ORDER BY 1`, glob)) {
		t.Logf("hour %v: %v files", r[0], r[1])
		if toInt(t, r[1]) != partitions {
			t.Errorf("hour %v: %v files, want %d", r[0], r[1], partitions)
		}
	}

	// Compact into Iceberg (SQLite catalog); PyIceberg and DuckDB read it back exactly,
	// and DuckDB's iceberg_scan sees the v2 column, null for v1 rows.
	f := &lakeFixture{b: b, src: b.prefix}
	sum0 := testbed.DuckDB(t, fmt.Sprintf(`SELECT sha256(string_agg(event_id, chr(10) ORDER BY event_id)) FROM read_parquet('%s')`, glob))
	f.expect.Count, f.expect.IDSum = n+late, sum0[0][0].(string)
	catYAML, uri, wh := sqliteCatalog(t, b, b.prefix)
	compactCfg := filepath.Join(t.TempDir(), "compact.yaml")
	if err := os.WriteFile(compactCfg, []byte(y+"catalog:\n"+catYAML+"\ncompaction:\n  lateness: 0s\n  raw_grace: 0s\n  max_wait: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := f.compactRun(t, compactCfg); code != 0 {
		t.Fatalf("compact exited %d:\n%s", code, out)
	}
	reads := readIceberg(t, f, "sql", uri, wh, "lake.events", "")
	checkExact(t, f, reads)
	meta := reads[0].Metadata
	ice := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(note), count(*) FILTER (WHERE note IS NOT NULL AND (n // 1000) %% 2 = 0),
	  count(*) FILTER (WHERE note IS NULL AND (n // 1000) %% 2 = 1), min(note) FROM iceberg_scan('%s')`, meta))[0]
	t.Logf("iceberg (duckdb): %v rows, %v notes, min note %v", ice[0], ice[1], ice[4])
	if toInt(t, ice[0]) != n+late || toInt(t, ice[1]) != int64(v2Rows) || toInt(t, ice[2]) != 0 || toInt(t, ice[3]) != 0 || ice[4] != "note-1000" {
		t.Errorf("iceberg table: rows %v notes %v v1-with-note %v v2-without %v min %v; want %d, %d, 0, 0, note-1000",
			ice[0], ice[1], ice[2], ice[3], ice[4], n+late, v2Rows)
	}

	// The incompatible record is in the dead-letter topic with its reason.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(b.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var dead *kgo.Record
	for dead == nil && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) { dead = r })
	}
	if dead == nil {
		t.Fatal("no dead letter")
	}
	h := map[string]string{}
	for _, x := range dead.Headers {
		h[x.Key] = string(x.Value)
	}
	if h["lakesink.reason"] != "wrong_type" || !strings.Contains(h["lakesink.error"], "field n") || string(dead.Value) != string(bad) {
		t.Errorf("dead letter headers %v", h)
	}
	t.Logf("dead letter: %s", h["lakesink.error"])
}

func runBin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binPath, args...).CombinedOutput()
	return string(out), err
}

func mustParse(t *testing.T, text string) avro.Schema {
	t.Helper()
	s, err := registry.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

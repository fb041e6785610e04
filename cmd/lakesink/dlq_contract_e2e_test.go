package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/testbed"
)

// rewrite writes a copy of a config with each old text replaced by its new one
// (each must occur exactly once).
func (b *bed) rewrite(cfg, name string, pairs ...string) string {
	b.t.Helper()
	data, err := os.ReadFile(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	out := string(data)
	for i := 0; i < len(pairs); i += 2 {
		if n := strings.Count(out, pairs[i]); n != 1 {
			b.t.Fatalf("config has %d copies of %q, want 1", n, pairs[i])
		}
		out = strings.Replace(out, pairs[i], pairs[i+1], 1)
	}
	path := strings.TrimSuffix(cfg, ".yaml") + "-" + name + ".yaml"
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// TestE2EDLQContractReplay: each JSON contract failure a config change can fix
// (a numeric string, a boolean string, an epoch-seconds event time, an unknown
// field under strict) is dead-lettered with its reason by the sink on the old
// contract; after the contract is relaxed, one replay and the sink land every
// record exactly once, with the coerced values.
func TestE2EDLQContractReplay(t *testing.T) {
	const good, each = 500, 100
	const parts = 2
	b := newBed(t, parts)
	t.Cleanup(func() { _, _ = b.adm.DeleteGroup(context.Background(), b.group+"-dlq-replay") })
	base := b.config("flush: {max_age: 5s, shutdown_timeout: 30s}")
	topics := fmt.Sprintf("    topics: [%s]\n", b.topic)
	cfgOld := b.rewrite(base, "strict", topics, topics+"    strict: true\n")
	cfgNew := b.rewrite(base, "relaxed",
		topics, topics+"    coerce: [numeric_strings, bool_strings]\n",
		"{name: ts, type: timestamp, required: true}", "{name: ts, type: timestamp, required: true, format: epoch_seconds}")

	b.produce(good, 2, 12, parts)
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	ts := hour.Add(30 * time.Minute)
	var recs []*kgo.Record
	add := func(kind string, body func(i int) string) {
		for i := range each {
			id := fmt.Sprintf("%s-%d", kind, i)
			recs = append(recs, &kgo.Record{Topic: b.topic, Partition: int32(len(recs) % parts), Key: []byte(id),
				Value: []byte(fmt.Sprintf(`{"event_id":%q,"user_id":%d,%s}`, id, i, body(i)))})
		}
	}
	rfc := ts.Format(time.RFC3339)
	add("num", func(i int) string { return fmt.Sprintf(`"ts":%q,"quantity":"%d"`, rfc, i) })
	add("bool", func(i int) string { return fmt.Sprintf(`"ts":%q,"ok":"true"`, rfc) })
	add("epoch", func(i int) string { return fmt.Sprintf(`"ts":%d`, ts.Unix()+int64(i)) })
	add("extra", func(i int) string { return fmt.Sprintf(`"ts":%q,"coupon":"C-%d"`, rfc, i) })
	if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The strict contract without coercions dead-letters every one of them.
	p := b.start(cfgOld)
	b.waitCaughtUp(3*time.Minute, p)
	m := p.metrics(t)
	p.stop(t)
	for reason, want := range map[string]float64{"wrong_type": 2 * each, "time_out_of_range": each, "unknown_field": each} {
		if got := m[`lakesink_records_dead_lettered_total{reason="`+reason+`",table="events"}`]; got != want {
			t.Errorf("dead-lettered %s = %v, want %v", reason, got, want)
		}
	}

	// The relaxed contract takes them all back.
	code, out, errOut := b.lakesink(nil, "dlq", "replay", "-c", cfgNew)
	t.Logf("replay (exit %d):\n%s", code, out)
	if c := parseReplay(t, out); code != 0 || c.replayed != 4*each || c.failing != 0 {
		t.Fatalf("replay: exit %d %+v\n%s", code, c, errOut)
	}
	p = b.start(cfgNew)
	b.waitCaughtUp(3*time.Minute, p)
	m = p.metrics(t)
	p.stop(t)
	for k, v := range m {
		if strings.HasPrefix(k, "lakesink_records_dead_lettered_total{") && v != 0 {
			t.Errorf("the relaxed sink dead-lettered records: %s = %v", k, v)
		}
	}
	res := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(DISTINCT event_id),
	   count(*) FILTER (WHERE event_id LIKE 'num-%%' AND quantity = TRY_CAST(substr(event_id, 5) AS INTEGER)),
	   count(*) FILTER (WHERE event_id LIKE 'bool-%%' AND ok),
	   count(*) FILTER (WHERE event_id LIKE 'epoch-%%' AND epoch(ts) = %d + TRY_CAST(substr(event_id, 7) AS BIGINT)),
	   count(*) FILTER (WHERE event_id LIKE 'extra-%%' AND epoch(ts) = %d)
	 FROM read_parquet('%s', hive_partitioning = true, union_by_name = true)`, ts.Unix(), ts.Unix(), b.rawGlob()))
	got := make([]int64, len(res[0]))
	for i, v := range res[0] {
		got[i] = toInt(t, v)
	}
	t.Logf("raw zone: rows %d, distinct ids %d; coerced: numbers %d, booleans %d, epoch seconds %d, unknown field dropped %d",
		got[0], got[1], got[2], got[3], got[4], got[5])
	if want := int64(good + 4*each); got[0] != want || got[1] != want {
		t.Fatalf("raw zone rows %d, distinct ids %d; want %d each (exactly once)", got[0], got[1], want)
	}
	for i, name := range []string{"numeric strings", "boolean strings", "epoch seconds", "records with an unknown field"} {
		if got[2+i] != each {
			t.Errorf("%s landed with their values: %d, want %d", name, got[2+i], each)
		}
	}
}

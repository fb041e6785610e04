package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/testbed"
)

// withColumn writes a copy of the bed config with one more column in the table.
func (b *bed) withColumn(cfg, column string) string {
	b.t.Helper()
	data, err := os.ReadFile(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	const anchor = "      - {name: user_agent, type: string}\n"
	if !strings.Contains(string(data), anchor) {
		b.t.Fatalf("config has no %q line", anchor)
	}
	out := strings.Replace(string(data), anchor, anchor+"      - "+column+"\n", 1)
	path := strings.TrimSuffix(cfg, ".yaml") + "-" + strconv.Itoa(rand.IntN(1e9)) + ".yaml"
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// lakesink runs a short-lived lakesink command; env adds to its environment.
func (b *bed) lakesink(env []string, args ...string) (code int, stdout, stderr string) {
	b.t.Helper()
	cmd := exec.Command(binPath, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	err := cmd.Run()
	b.t.Logf("lakesink %s: %s", strings.Join(args[:2], " "), time.Since(start).Round(time.Millisecond))
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode() // -1 when killed by a signal
	default:
		b.t.Fatal(err)
	}
	return code, o.String(), e.String()
}

var replayLine = regexp.MustCompile(`read (\d+), (?:would replay|replayed) (\d+), still failing (\d+), filtered (\d+), already replayed (\d+), deferred (\d+)`)

type replayCounts struct{ read, replayed, failing, filtered, already, deferred int }

func parseReplay(t *testing.T, out string) replayCounts {
	t.Helper()
	m := replayLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in replay output:\n%s", out)
	}
	n := make([]int, 6)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return replayCounts{n[0], n[1], n[2], n[3], n[4], n[5]}
}

// replayedInSource counts the records of the source topic carrying
// lakesink.replayed-from, and the distinct dead letters they came from, reading
// with the given isolation level.
func (b *bed) replayedInSource(committed bool) (records, distinct int) {
	b.t.Helper()
	ctx := context.Background()
	ends, err := b.adm.ListEndOffsets(ctx, b.topic)
	if err != nil {
		b.t.Fatal(err)
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(b.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords())
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	pos := map[int32]int64{}
	done := func() bool {
		for _, e := range ends[b.topic] {
			if pos[e.Partition] < e.Offset {
				return false
			}
		}
		return true
	}
	seen := map[string]bool{}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !done() && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			for _, h := range r.Headers {
				if h.Key == "lakesink.replayed-from" {
					records++
					seen[string(h.Value)] = true
				}
			}
		})
	}
	if !done() {
		b.t.Fatalf("could not read %s to its end", b.topic)
	}
	return records, len(seen)
}

// TestE2EDLQReplay: records rejected for a column type are dead-lettered; the
// config is fixed; replays (one killed before its commit, one after, one at a
// random moment) produce them back; the sink lands every event exactly once and
// the records still failing stay in the dead-letter topic.
func TestE2EDLQReplay(t *testing.T) {
	const good, typed, old, broken = 2000, 3000, 20, 10
	const parts = 3
	b := newBed(t, parts)
	t.Cleanup(func() { _, _ = b.adm.DeleteGroup(context.Background(), b.group+"-dlq-replay") })
	base := b.config("flush: {max_age: 5s, shutdown_timeout: 30s}")
	cfgOld := b.withColumn(base, "{name: order_ref, type: int64}")
	cfgNew := b.withColumn(base, "{name: order_ref, type: string}")

	b.produce(good, 2, 11, parts)
	ctx := context.Background()
	ts := time.Now().UTC().Add(-30 * time.Minute).Format(time.RFC3339)
	kafkaTS := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	var recs []*kgo.Record
	add := func(id, value string) {
		i := len(recs)
		recs = append(recs, &kgo.Record{Topic: b.topic, Partition: int32(i % parts), Key: []byte(id), Value: []byte(value),
			Timestamp: kafkaTS, Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}})
	}
	for i := range typed {
		add(fmt.Sprintf("typed-%d", i), fmt.Sprintf(`{"event_id":"typed-%d","ts":"%s","user_id":%d,"order_ref":"A-%d"}`, i, ts, i, i))
	}
	for i := range old {
		add(fmt.Sprintf("old-%d", i), fmt.Sprintf(`{"event_id":"old-%d","ts":"1970-01-01T00:00:00Z","user_id":1}`, i))
	}
	for i := range broken {
		add(fmt.Sprintf("broken-%d", i), fmt.Sprintf(`{"event_id":"broken-%d`, i))
	}
	if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// 1. The sink with the old config lands the good events and dead-letters the rest.
	p := b.start(cfgOld)
	b.waitCaughtUp(3*time.Minute, p)
	m := p.metrics(t)
	p.stop(t)
	for reason, want := range map[string]float64{"wrong_type": typed, "time_out_of_range": old, "malformed_json": broken} {
		if got := m[`lakesink_records_dead_lettered_total{reason="`+reason+`",table="events"}`]; got != want {
			t.Errorf("dead-lettered %s = %v, want %v", reason, got, want)
		}
	}
	code, out, errOut := b.lakesink(nil, "dlq", "stats", "-c", cfgOld)
	t.Logf("dlq stats (exit %d):\n%s", code, out)
	if code != 0 || !regexp.MustCompile(`events\s+wrong_type\s+3000`).MatchString(out) || !regexp.MustCompile(`total\s+3030`).MatchString(out) {
		t.Fatalf("dlq stats: exit %d\n%s\n%s", code, out, errOut)
	}

	// 2. A dry run with the fixed config says what would happen and changes nothing.
	code, out, errOut = b.lakesink(nil, "dlq", "replay", "-c", cfgNew, "--dry-run")
	t.Logf("dry run (exit %d): %s", code, out)
	if c := parseReplay(t, out); code != 0 || c.replayed != typed || c.failing != old+broken {
		t.Fatalf("dry run: exit %d %+v\n%s", code, c, errOut)
	}
	// A filter keeps the others for later: reason time_out_of_range only replays nothing.
	code, out, errOut = b.lakesink(nil, "dlq", "replay", "-c", cfgNew, "--reason", "time_out_of_range")
	t.Logf("filtered replay (exit %d): %s", code, out)
	if c := parseReplay(t, out); code != 0 || c.replayed != 0 || c.failing != old || c.filtered != typed+broken {
		t.Fatalf("filtered replay: exit %d %+v\n%s", code, c, errOut)
	}

	// 3. Replays killed before a commit, after a commit, and at a random moment.
	code, out, errOut = b.lakesink([]string{"LAKESINK_TEST_KILL_AT=dlq-before-commit"}, "dlq", "replay", "-c", cfgNew, "--batch", "400")
	if code != -1 {
		t.Fatalf("replay with kill before commit: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = b.lakesink([]string{"LAKESINK_TEST_KILL_AT=dlq-after-commit"}, "dlq", "replay", "-c", cfgNew, "--batch", "400")
	if code != -1 {
		t.Fatalf("replay with kill after commit: exit %d\n%s\n%s", code, out, errOut)
	}
	if n, _ := b.replayedInSource(true); n == 0 || n >= typed {
		t.Fatalf("after a replay killed after its first commit, %d replayed records are committed", n)
	}
	for range 3 { // small transactions, killed at random moments
		cmd := exec.Command(binPath, "dlq", "replay", "-c", cfgNew, "--batch", "20")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	all, _ := b.replayedInSource(false)
	committed, _ := b.replayedInSource(true)
	t.Logf("after five killed replays: %d replayed records in the log, %d of them committed", all, committed)
	if all <= committed {
		t.Errorf("no aborted replay records in the log: the kill before commit did not leave an open transaction")
	}

	// 4. The replay that finishes; then the sink with the fixed config lands them.
	code, out, errOut = b.lakesink(nil, "dlq", "replay", "-c", cfgNew)
	t.Logf("replay (exit %d):\n%s", code, out)
	c := parseReplay(t, out)
	if code != 0 || c.failing != old+broken || c.replayed+committed != typed {
		t.Fatalf("replay: exit %d %+v (committed before %d)\n%s", code, c, committed, errOut)
	}
	for _, want := range []string{"still failing reason=time_out_of_range: 20", "still failing reason=malformed_json: 10", "e.g. dead letter"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q", want)
		}
	}
	if n, d := b.replayedInSource(true); n != typed || d != typed {
		t.Fatalf("committed replayed records in %s: %d (%d distinct dead letters), want %d", b.topic, n, d, typed)
	}

	p = b.start(cfgNew)
	b.waitCaughtUp(3*time.Minute, p)
	m = p.metrics(t)
	p.stop(t)
	if got := m[`lakesink_records_dead_lettered_total{reason="wrong_type",table="events"}`]; got != 0 {
		t.Errorf("the fixed sink dead-lettered %v replayed records", got)
	}
	res := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(DISTINCT event_id),
	   count(DISTINCT (_kafka_topic, _kafka_partition, _kafka_offset)),
	   count(*) FILTER (WHERE event_id LIKE 'typed-%%'), count(DISTINCT event_id) FILTER (WHERE event_id LIKE 'typed-%%'),
	   count(*) FILTER (WHERE event_id LIKE 'typed-%%' AND CAST(order_ref AS VARCHAR) = 'A-' || substr(event_id, 7)),
	   count(*) FILTER (WHERE event_id LIKE 'typed-%%' AND epoch_us(_kafka_timestamp) = %d)
	 FROM read_parquet('%s', hive_partitioning = true, union_by_name = true)`, kafkaTS.UnixMicro(), b.rawGlob()))
	got := make([]int64, len(res[0]))
	for i, v := range res[0] {
		got[i] = toInt(t, v)
	}
	t.Logf("raw zone: rows %d, distinct event ids %d, distinct coordinates %d, typed rows %d (distinct %d, order_ref kept %d, timestamp kept %d)",
		got[0], got[1], got[2], got[3], got[4], got[5], got[6])
	if want := int64(good + typed); got[0] != want || got[1] != want || got[2] != want {
		t.Fatalf("raw zone rows %d, distinct ids %d, distinct coordinates %d; want %d each (exactly once)", got[0], got[1], got[2], want)
	}
	if got[3] != typed || got[4] != typed || got[5] != typed || got[6] != typed {
		t.Fatalf("typed rows %v, want %d each", got[3:], typed)
	}

	// 5. A second replay replays nothing and still reports the unfixed ones.
	code, out, _ = b.lakesink(nil, "dlq", "replay", "-c", cfgNew)
	t.Logf("second replay (exit %d): %s", code, out)
	if c := parseReplay(t, out); code != 0 || c.replayed != 0 || c.failing != old+broken || c.read != old+broken {
		t.Fatalf("second replay: exit %d %+v", code, c)
	}
	if ok, lag := b.caughtUp(); !ok {
		t.Fatalf("the sink's commits are not at the end of %s: %s", b.topic, lag)
	}
}

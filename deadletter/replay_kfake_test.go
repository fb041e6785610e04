package deadletter_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/lake/config"
)

// replayCluster starts an in-process Kafka with topics src and dlq of the given
// partition counts and returns its addresses, a config with table events over src
// (columns event_id, ts, n) and a client producing to chosen partitions.
func replayCluster(t *testing.T, srcPartitions, dlqPartitions int) ([]string, *config.Config, *kgo.Client) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(srcPartitions), "src"), kfake.SeedTopics(int32(dlqPartitions), "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	cfg, err := config.Parse(fmt.Appendf(nil, `kafka: {brokers: [%s], group: g}
local_dir: %s
dead_letter: {topic: dlq}
tables:
  - name: events
    topics: [src]
    columns:
      - {name: event_id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: string}
    event_time: {column: ts, granularity: hour}
`, strings.Join(addrs, ","), t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return addrs, cfg, cl
}

// TestReplayFiltersAndLedger runs replays against an in-process Kafka: a filtered
// replay keeps the other dead letters for later, a dry run changes nothing, a full
// replay produces each decodable dead letter back once, and a rerun replays nothing.
func TestReplayFiltersAndLedger(t *testing.T) {
	addrs, cfg, cl := replayCluster(t, 2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	now := time.Now().UTC()
	ts := now.Add(-time.Hour).Format(time.RFC3339)
	origTS := time.UnixMilli(now.Add(-2 * time.Hour).UnixMilli())
	dead := func(i int, reason, value string, at time.Time) *kgo.Record {
		return &kgo.Record{Topic: "dlq", Key: []byte("k" + strconv.Itoa(i)), Value: []byte(value), Timestamp: origTS,
			Headers: []kgo.RecordHeader{
				{Key: "origin", Value: []byte("app")},
				{Key: deadletter.HeaderReason, Value: []byte(reason)},
				{Key: deadletter.HeaderError, Value: []byte("...")},
				{Key: deadletter.HeaderTable, Value: []byte("events")},
				{Key: deadletter.HeaderTopic, Value: []byte("src")},
				{Key: deadletter.HeaderPartition, Value: []byte(strconv.Itoa(i % 2))},
				{Key: deadletter.HeaderOffset, Value: []byte(strconv.Itoa(100 + i))},
				{Key: deadletter.HeaderTime, Value: []byte(at.Format(time.RFC3339Nano))},
			}}
	}
	good := func(i int) string { return fmt.Sprintf(`{"event_id":"e%d","ts":"%s","n":"x"}`, i, ts) }
	early, late := now.Add(-3*time.Hour), now.Add(-time.Minute)
	recs := []*kgo.Record{
		dead(0, "wrong_type", good(0), early),
		dead(1, "time_out_of_range", good(1), early),
		dead(2, "malformed_json", `{"event_id":`, early),
		dead(3, "wrong_type", good(3), late),
		dead(4, "time_out_of_range", good(4), late),
		dead(5, "wrong_type", good(5), late),
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	replay := func(o deadletter.ReplayOptions) *deadletter.ReplaySummary {
		t.Helper()
		s, err := deadletter.Replay(ctx, cfg, o)
		if err != nil {
			t.Fatalf("replay %+v: %v", o, err)
		}
		return s
	}
	check := func(name string, s *deadletter.ReplaySummary, replayed, failing, filtered, already int64) {
		t.Helper()
		if s.Replayed != replayed || s.StillFailing() != failing || s.Filtered != filtered || s.AlreadyReplayed != already {
			t.Fatalf("%s: %+v; want replayed %d, failing %d, filtered %d, already %d", name, s, replayed, failing, filtered, already)
		}
	}
	// wrong_type written before the cut: only dead letter 0.
	check("filtered", replay(deadletter.ReplayOptions{Reasons: []string{"wrong_type"}, Until: now.Add(-time.Hour)}), 1, 0, 5, 0)
	// The position is now dead letter 1 (the first one kept); 0 is not read again.
	check("dry run", replay(deadletter.ReplayOptions{DryRun: true}), 4, 1, 0, 0)
	check("dry run again", replay(deadletter.ReplayOptions{DryRun: true}), 4, 1, 0, 0)
	check("since", replay(deadletter.ReplayOptions{Since: now.Add(-time.Hour), Table: "events"}), 3, 0, 2, 0)
	check("all", replay(deadletter.ReplayOptions{}), 1, 1, 0, 3)
	check("again", replay(deadletter.ReplayOptions{}), 0, 1, 0, 3)

	// The source topic holds each decodable dead letter once, as it was.
	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("src"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := map[string]*kgo.Record{}
	for len(got) < 5 && ctx.Err() == nil {
		pctx, c := context.WithTimeout(ctx, 2*time.Second)
		fs := rd.PollFetches(pctx)
		c()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if got[string(r.Key)] != nil {
				t.Errorf("%s produced back twice", r.Key)
			}
			got[string(r.Key)] = r
		})
		if n == 0 {
			break
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d records produced back, want 5 (all but the malformed one)", len(got))
	}
	for i, r := range got {
		if r.Key == nil || i == "k2" {
			t.Fatalf("unexpected record %s", i)
		}
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
			if strings.HasPrefix(x.Key, "lakesink.") && x.Key != deadletter.HeaderReplayedFrom {
				t.Errorf("%s: header %s not stripped", i, x.Key)
			}
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(i, "k"))
		if h["origin"] != "app" || !strings.HasPrefix(h[deadletter.HeaderReplayedFrom], "dlq/0/") || !r.Timestamp.Equal(origTS) ||
			r.Partition != int32(n%2) || string(r.Value) != good(n) {
			t.Errorf("%s: headers %v, timestamp %v, partition %d", i, h, r.Timestamp, r.Partition)
		}
	}
}

// TestReplayDedupesBySourceRecord: the sink dead-letters a source record twice when
// it crashes between the dead letter's acknowledgement and its offset commit. A
// replay produces each source record (lakesink.source.topic|partition|offset) back
// once, whether both copies are judged in one run or the second copy arrives after
// the first was replayed by an earlier run.
func TestReplayDedupesBySourceRecord(t *testing.T) {
	addrs, cfg, cl := replayCluster(t, 1, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	// dead is a dead letter, in dead-letter partition p, of source record src/0/offset.
	dead := func(p int32, offset int) *kgo.Record {
		return &kgo.Record{Topic: "dlq", Partition: p, Key: []byte("k" + strconv.Itoa(offset)),
			Value: fmt.Appendf(nil, `{"event_id":"e%d","ts":"%s"}`, offset, ts),
			Headers: []kgo.RecordHeader{
				{Key: deadletter.HeaderReason, Value: []byte("wrong_type")},
				{Key: deadletter.HeaderTable, Value: []byte("events")},
				{Key: deadletter.HeaderTopic, Value: []byte("src")},
				{Key: deadletter.HeaderPartition, Value: []byte("0")},
				{Key: deadletter.HeaderOffset, Value: []byte(strconv.Itoa(offset))},
				{Key: deadletter.HeaderTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			}}
	}
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	replay := func(name string, o deadletter.ReplayOptions, replayed, duplicates int64) {
		t.Helper()
		s, err := deadletter.Replay(ctx, cfg, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Replayed != replayed || s.Duplicates != duplicates {
			t.Fatalf("%s: %+v; want replayed %d, duplicates %d", name, s, replayed, duplicates)
		}
	}
	// Both copies of source offset 100 in one run, in two dead-letter partitions.
	produce(dead(0, 100), dead(1, 100))
	replay("dry run", deadletter.ReplayOptions{DryRun: true}, 1, 1)
	replay("one run", deadletter.ReplayOptions{}, 1, 1)
	// Source offset 101 replayed; its second copy arrives after, in the other partition.
	produce(dead(0, 101))
	replay("first copy", deadletter.ReplayOptions{}, 1, 0)
	produce(dead(1, 101), dead(1, 100))
	replay("later copies", deadletter.ReplayOptions{}, 0, 2)
	// A filtered run keeps source offset 102 for later; its copy in a later run too.
	produce(dead(0, 102))
	replay("filtered", deadletter.ReplayOptions{Table: "other"}, 0, 0)
	produce(dead(1, 102))
	replay("after the filter", deadletter.ReplayOptions{}, 1, 1)
	replay("again", deadletter.ReplayOptions{}, 0, 0)

	rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("src"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("src", 0)
	got := map[string]int{}
	for pos := int64(0); pos < end.Offset; {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos = r.Offset + 1
			if !r.Attrs.IsControl() {
				got[string(r.Key)]++
			}
		})
	}
	if len(got) != 3 || got["k100"] != 1 || got["k101"] != 1 || got["k102"] != 1 {
		t.Fatalf("source topic holds %v, want k100, k101 and k102 once each", got)
	}
}

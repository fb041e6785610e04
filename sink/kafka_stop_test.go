package sink

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

// TestSinkStopsWhenTheRegistryStaysAway: a record whose writer schema the registry
// cannot give past schema_registry.max_wait (its id is unknown to it) stops Run with
// that error, promptly, with nothing committed and nothing dead-lettered, although
// the record before it is held in a buffer: the revoke that closing the client runs
// drops it (the upload workers are stopped: flushing would wait out
// flush.shutdown_timeout, a minute).
func TestSinkStopsWhenTheRegistryStaysAway(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a"), kfake.SeedTopics(1, "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	y := strings.Replace(decodetest.AvroTable, "/tmp/x", t.TempDir(), 1)
	y = strings.Replace(y, `kafka: {brokers: ["b:9092"]}`, `kafka: {brokers: ["`+brokers[0]+`"], group: g, commit_interval: 100ms}`, 1)
	cfg, err := config.Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.NewLocal(cfg.LocalDir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, st, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	src := &decodetest.Schemas{ByID: map[int]string{2: decodetest.WriterMicros}}
	s.eng.UseSchemaSource(src)
	s.eng.tables.SetRegistryWait(300 * time.Millisecond)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	good := decodetest.Frame(t, 2, decodetest.WriterMicros, map[string]any{"id": "m", "ts": time.Now().UTC().Add(-time.Hour), "extra": nil})
	unknown := append([]byte{0, 0, 0, 0, 99}, good[5:]...)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "a", Value: good}, &kgo.Record{Topic: "a", Value: unknown}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer from the schema registry") || !strings.Contains(err.Error(), "schema id 99 is unknown") {
			t.Fatalf("Run = %v, want the registry error", err)
		}
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatal("Run did not return within 15s of the registry giving up")
	}
	adm := kadm.NewClient(cl)
	offs, err := adm.FetchOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("a", 0); ok && o.At > 0 {
		t.Errorf("committed offset %d past the record the registry could not give", o.At)
	}
	ends, err := adm.ListEndOffsets(context.Background(), "dlq")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("dlq", 0); o.Offset != 0 {
		t.Errorf("%d dead letters, want none", o.Offset)
	}
}

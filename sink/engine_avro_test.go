package sink

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/decode/decodetest"
	"github.com/lakesink/lakesink/lake/config"
)

var now = time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)

// The engine neither buffers nor rejects (dead-letters) a record whose schema the
// registry cannot deliver, and does not move past it; Prepare retries until it can.
func TestEngineAvroRegistryOutage(t *testing.T) {
	cfg, err := config.Parse([]byte(strings.Replace(decodetest.AvroTable, "/tmp/x", t.TempDir(), 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	e, err := NewEngine(cfg, nil, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	src := &decodetest.Schemas{ByID: map[int]string{2: decodetest.WriterMicros}}
	src.Failing.Store(true)
	e.UseSchemaSource(src)
	e.tables.SetRegistryWait(300 * time.Millisecond)
	e.Assign("a", 0, -1, "")
	v := decodetest.Frame(t, 2, decodetest.WriterMicros, map[string]any{"id": "m", "ts": time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), "extra": nil})
	e.now = func() time.Time { return now }
	rec := &decode.Record{Topic: "a", Partition: 0, Offset: 5, Timestamp: now, Value: v}
	if err := e.Prepare(context.Background(), rec); err == nil || !strings.Contains(err.Error(), "no answer from the schema registry") {
		t.Fatalf("Prepare during an outage: %v", err)
	}
	out, err := e.Process(context.Background(), rec, 0)
	if out == Rejected || err == nil || !decode.IsTransient(err) {
		t.Fatalf("Process during an outage: outcome %v err %v, want a transient error and no rejection", out, err)
	}
	if next := e.Next()["a"][0]; next != 0 {
		t.Fatalf("next offset moved to %d past a record that was not handled", next)
	}
	if got := testutil.ToFloat64(m.RegistryErrors); got < 1 {
		t.Errorf("schema_registry_errors_total = %v", got)
	}
	src.Failing.Store(false)
	if err := e.Prepare(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Process(context.Background(), rec, 0); out != Buffered || err != nil {
		t.Fatalf("after the outage: %v %v", out, err)
	}
}

package icetable_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	icebergio "github.com/apache/iceberg-go/io"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
)

// TestWithIOBoundsIcebergS3: iceberg-go's own S3 file IO (the one that reads a
// table's metadata JSON and manifests), opened under Catalog.WithIO, gives up on
// an attempt whose connection goes silent after s3.request_timeout and retries
// it, counting the abandoned attempt, as lakesink's store does. The server reads
// the first GET and never answers; the second gets the object.
func TestWithIOBoundsIcebergS3(t *testing.T) {
	const body = `{"format-version": 2}`
	var gets atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "only GET here", http.StatusMethodNotAllowed)
			return
		}
		if gets.Add(1) == 1 {
			<-release // silent: no answer, no close
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: the hung handler returns, then Close
	t.Setenv("AWS_ACCESS_KEY_ID", "id")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")

	y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
s3: {bucket: b, region: us-east-1, endpoint: %q, path_style: true, request_timeout: 1s, max_attempts: 3}
dead_letter: {topic: dlq}
catalog:
  type: sql
  namespace: lake
  warehouse: s3://b/warehouse
  sql: {driver: sqlite, dsn: %q}
tables:
  - name: events
    topics: [events]
    columns:
      - {name: ts, type: timestamp, required: true}
    event_time: {column: ts, granularity: hour}
`, srv.URL, filepath.Join(t.TempDir(), "catalog.db"))
	cfg, err := config.Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	var stalls atomic.Int64
	cat, err := icetable.OpenWith(context.Background(), cfg, icetable.Options{OnS3Stall: func() { stalls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	// A bound for the test only: without WithIO's bounds the read would wait
	// for this, and fail below on the count.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const loc = "s3://b/warehouse/lake.db/events/metadata/00000-x.metadata.json"
	fs, err := icebergio.LoadFS(cat.WithIO(ctx), cat.Props, loc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open(loc)
	if err != nil {
		t.Fatalf("open %s with the first GET's connection silent: %v (GETs %d, timed-out attempts %d)", loc, err, gets.Load(), stalls.Load())
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", loc, err)
	}
	if string(got) != body {
		t.Fatalf("read %q, want %q", got, body)
	}
	if stalls.Load() != 1 || gets.Load() != 2 {
		t.Fatalf("%d timed-out attempt(s) over %d GETs, want the first GET abandoned and the second answered", stalls.Load(), gets.Load())
	}
}

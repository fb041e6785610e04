package compaction_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/store"
)

// restLab is a lab on the bed: the raw zone and the warehouse on its S3
// server under a prefix of the test's own, the table "events" in a namespace
// of its own in the bed's REST catalog (or Glue on moto), which Trino reads
// as TrinoREST (TrinoGlue).
type restLab struct {
	*lab
	s3 testbed.S3Config
	// catalog is the Trino catalog (TrinoREST or TrinoGlue); uri the REST
	// catalog's URI or Glue's endpoint.
	catalog, uri string
	prefix       string
	ns           string
	// table is the table's name in Trino (catalog.namespace.events).
	table string
	hc    *http.Client
}

// newRESTLab is newTrinoLab on the REST catalog.
func newRESTLab(t *testing.T, name string) *restLab {
	t.Helper()
	return newTrinoLab(t, name, testbed.TrinoREST)
}

// newTrinoLab sets up a restLab on the catalog Trino reads as catalog
// (TrinoREST or TrinoGlue), skipping, or failing under LAKESINK_REQUIRE_BED,
// before any work without Trino; the table and its namespace are dropped
// through Trino when the test ends.
func newTrinoLab(t *testing.T, name, catalog string) *restLab {
	t.Helper()
	testbed.TrinoURI(t)
	r := &restLab{s3: testbed.S3(t), catalog: catalog}
	switch catalog {
	case testbed.TrinoREST:
		r.uri = testbed.REST(t)
	case testbed.TrinoGlue:
		r.uri = testbed.Glue(t)
	default:
		t.Fatalf("no lab for Trino catalog %s", catalog)
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": r.s3.AccessKey, "AWS_SECRET_ACCESS_KEY": r.s3.SecretKey, "AWS_REGION": r.s3.Region} {
		t.Setenv(k, v)
	}
	// For goleak: the stores' client, and the default transport iceberg-go's
	// REST catalog and S3 I/O and the Trino client use (cleanups run last first).
	r.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(func() {
		r.hc.CloseIdleConnections()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})
	r.prefix = testbed.UniqueName(t, name) + "/"
	r.ns = strings.ReplaceAll(testbed.UniqueName(t, "ns"), "-", "_")
	r.table = catalog + "." + r.ns + ".events"
	t.Cleanup(func() {
		if _, err := testbed.TrinoExec(t, "DROP TABLE IF EXISTS "+r.table); err != nil {
			t.Logf("drop %s: %v", r.table, err)
		}
		if _, err := testbed.TrinoExec(t, "DROP SCHEMA IF EXISTS "+catalog+"."+r.ns); err != nil {
			t.Logf("drop schema %s: %v", r.ns, err)
		}
	})
	r.lab = &lab{dir: t.TempDir(), lake: r.store(t, r.prefix), hour: time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)}
	return r
}

// store is the bed's S3 bucket under prefix p.
func (r *restLab) store(t *testing.T, p string) store.Store {
	t.Helper()
	st, err := store.NewS3(context.Background(), store.S3Config{Bucket: r.s3.Bucket, Prefix: p, Region: r.s3.Region,
		Endpoint: r.s3.Endpoint, PathStyle: true, HTTPClient: r.hc})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// config is the lab's config (compaction with lateness 0 and raw_grace
// grace) with the extra column declarations.
func (r *restLab) config(t *testing.T, grace time.Duration, extraColumns string) *config.Config {
	t.Helper()
	cat := fmt.Sprintf("rest: {uri: %q}", r.uri)
	if r.catalog == testbed.TrinoGlue {
		cat = fmt.Sprintf("glue: {region: %s, endpoint: %q}", r.s3.Region, r.uri)
	}
	y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
s3: {bucket: %s, prefix: %s, region: %s, endpoint: %q, path_style: true}
dead_letter: {topic: dlq}
catalog:
  type: %s
  namespace: %s
  warehouse: s3://%s/%swarehouse
  %s
compaction: {lateness: 0s, raw_grace: %s}
tables:
  - name: events
    topics: [events]
    columns:
      - {name: event_id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: int64}
%s    event_time: {column: ts, granularity: hour}
    sort_by: [ts]
`, r.s3.Bucket, r.prefix, r.s3.Region, r.s3.Endpoint, strings.SplitN(cat, ":", 2)[0], r.ns, r.s3.Bucket, r.prefix, cat, grace, extraColumns)
	cfg, err := config.Parse([]byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// compactor returns a compactor over cfg with a catalog of its own, closed
// when the test ends.
func (r *restLab) compactor(t *testing.T, cfg *config.Config) *compaction.Compactor {
	t.Helper()
	cat, err := icetable.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return &compaction.Compactor{Cfg: cfg, Cat: cat, Lake: r.lake, Warehouse: r.store(t, r.prefix+"warehouse/"),
		Log: slog.New(slog.DiscardHandler), Metrics: compaction.NewMetrics(prometheus.NewRegistry()), Now: time.Now}
}

// compact runs one compaction over cfg; the test fails on an error.
func (r *restLab) compact(t *testing.T, cfg *config.Config) compaction.Summary {
	t.Helper()
	sum, err := r.compactor(t, cfg).Run(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

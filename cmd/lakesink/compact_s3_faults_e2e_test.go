package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// behindS3Proxy copies the fixture's raw zone under a prefix of its own and
// writes a compactor config (SQLite catalog, extra compaction YAML) whose S3
// endpoint, for the raw zone and the table's files alike, is a fault proxy.
// It returns the proxy, the config and the catalog's URI and warehouse.
func (f *lakeFixture) behindS3Proxy(t *testing.T, extra string) (proxy *faultProxy, cfg, uri, wh string) {
	t.Helper()
	proxy, cfg, cat := f.behindS3ProxyOn(t, "sqlite", extra)
	return proxy, cfg, cat.uri, cat.warehouse
}

// behindS3ProxyOn is behindS3Proxy with a catalog of the given kind (see
// lakeFixture.catalog).
func (f *lakeFixture) behindS3ProxyOn(t *testing.T, kind, extra string) (*faultProxy, string, e2eCatalog) {
	t.Helper()
	prefix, _ := f.lakeFor(t)
	proxy := newFaultProxy(t, f.b.s3.Endpoint)
	cat := f.catalog(t, kind, prefix)
	direct := readFile(t, f.compactConfig(t, prefix, cat.yaml, extra))
	if !strings.Contains(direct, "endpoint: "+f.b.s3.Endpoint) {
		t.Fatalf("the config does not name the S3 endpoint %s", f.b.s3.Endpoint)
	}
	cfg := writeTemp(t, "compact-proxied.yaml", strings.Replace(direct, "endpoint: "+f.b.s3.Endpoint, "endpoint: "+proxy.URL, 1))
	return proxy, cfg, cat
}

// TestE2ECompactS3ReadFaults: S3 answers 503 to every read of the table's
// data files (the compactor reads each output's footer back to register it).
// That is a retryable failure (exit 1), never a halt (exit 3); once S3 is
// well again, the next run ends with the table exact.
func TestE2ECompactS3ReadFaults(t *testing.T) {
	f := sinkFixture(t)
	proxy, proxied, uri, wh := f.behindS3Proxy(t, "")
	proxy.setHook(func(r *http.Request, _ []byte) fault {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.URL.Path, "/warehouse/") &&
			strings.Contains(r.URL.Path, "/data/") && strings.HasSuffix(r.URL.Path, ".parquet") {
			return fail503
		}
		return pass
	})
	code, out, m := f.compactRunFor(t, 5*time.Minute, proxied)
	if proxy.injected(fail503) == 0 {
		t.Fatalf("no read of a table data file went through the proxy:\n%s", out)
	}
	if code != 1 {
		t.Fatalf("compact exit %d with S3 answering 503, want 1 (retryable):\n%s", code, out)
	}
	if m[`lakesink_compaction_halted`] != 0 {
		t.Errorf("lakesink_compaction_halted = %v after a transient S3 failure, want 0", m[`lakesink_compaction_halted`])
	}
	proxy.setHook(nil)
	if code, out, _ := f.compactRunFor(t, 5*time.Minute, proxied); code != 0 {
		t.Fatalf("compact exit %d once S3 answers again:\n%s", code, out)
	}
	checkExact(t, f, readIceberg(t, f, "sql", uri, wh, "lake.events", ""))
}

// TestE2ECompactS3ReadHang: S3 accepts the reads of the raw files and never
// answers. compaction.read_timeout (3 s here, under s3.request_timeout's 30 s
// per attempt) bounds each input read, and the run ends retryable (exit 1), not
// hung and not halted.
func TestE2ECompactS3ReadHang(t *testing.T) {
	f := sinkFixture(t)
	proxy, proxied, _, _ := f.behindS3Proxy(t, "  read_timeout: 3s")
	proxy.setHook(func(r *http.Request, _ []byte) fault {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/raw/") && strings.HasSuffix(r.URL.Path, ".parquet") {
			return hang
		}
		return pass
	})
	defer proxy.setHook(nil)
	start := time.Now()
	code, out, _ := f.compactRunFor(t, 2*time.Minute, proxied)
	if proxy.injected(hang) == 0 {
		t.Fatalf("no read of a raw file went through the proxy:\n%s", out)
	}
	if code != 1 {
		t.Fatalf("compact exit %d with S3 hanging, want 1 (retryable):\n%s", code, out)
	}
	t.Logf("a hung S3 ended the run (exit 1) in %s", time.Since(start).Round(time.Second))
}

// boundedS3 rewrites a compactor config so each S3 attempt gives up after 2 s
// of silence and a request is tried twice: a hung request then costs seconds,
// not the default 10 × 30 s.
func boundedS3(t *testing.T, cfg string) string {
	t.Helper()
	y := readFile(t, cfg)
	if !strings.Contains(y, "  path_style: true\n") {
		t.Fatal("the config has no s3.path_style line to add the S3 bounds after")
	}
	y = strings.Replace(y, "  path_style: true\n", "  path_style: true\n  request_timeout: 2s\n  max_attempts: 2\n", 1)
	return writeTemp(t, "compact-bounded.yaml", y)
}

// icebergMetadata reports whether r is a request for one of the table's Iceberg
// metadata objects (metadata JSON, manifest lists, manifests), which
// iceberg-go's own file IO reads and writes, not lakesink's store.
func icebergMetadata(r *http.Request) bool {
	p := r.URL.Path
	return strings.Contains(p, "/warehouse/") && strings.Contains(p, "/metadata/") &&
		(strings.HasSuffix(p, ".metadata.json") || strings.HasSuffix(p, ".avro"))
}

// TestE2ECompactS3MetadataHang: S3 accepts iceberg-go's own requests for the
// table's metadata and never answers them. s3.request_timeout must bound those
// as it bounds lakesink's: the run ends retryable (exit 1, not halted), with
// the abandoned attempts counted, instead of hanging until the CronJob's
// deadline. On the SQLite, Glue and REST catalogs (PostgreSQL is SQLite's
// code), three paths:
//   - commit: the first run writes the new manifests (PUT of metadata/*.avro),
//     outside compaction.commit_timeout, which covers only the catalog commit;
//   - load: once the table exists, a run loads it (GET of its
//     metadata/*.metadata.json; Glue's catalog reads it with an aws.Config of
//     its own, and the REST catalog sends it in its answer: not tried there);
//   - manifests: the orphan sweep reads every manifest list and manifest
//     (GET of metadata/*.avro).
func TestE2ECompactS3MetadataHang(t *testing.T) {
	f := sinkFixture(t)
	for _, kind := range []string{"sqlite", "glue", "rest"} {
		t.Run(kind, func(t *testing.T) { f.metadataHang(t, kind) })
	}
}

func (f *lakeFixture) metadataHang(t *testing.T, kind string) {
	proxy, proxied, cat := f.behindS3ProxyOn(t, kind, "")
	proxied = boundedS3(t, proxied)
	defer proxy.setHook(nil)
	ended := func(path string, code int, out string, m map[string]float64, took time.Duration) {
		t.Helper()
		if proxy.injected(hang) == 0 {
			t.Fatalf("%s: no request for an Iceberg metadata object went through the proxy:\n%s", path, out)
		}
		if code != 1 {
			t.Fatalf("%s: compact exit %d with S3 hanging on Iceberg metadata, want 1 (retryable):\n%s", path, code, out)
		}
		if m[`lakesink_compaction_halted`] != 0 {
			t.Errorf("%s: lakesink_compaction_halted = %v after a transient S3 hang, want 0", path, m[`lakesink_compaction_halted`])
		}
		if m[`lakesink_compaction_s3_request_timeouts_total`] == 0 {
			t.Errorf("%s: lakesink_compaction_s3_request_timeouts_total is 0: no S3 attempt timed out", path)
		}
		t.Logf("%s: %d hung request(s) ended the run (exit 1) in %s, %v timed-out attempts", path, proxy.injected(hang),
			took.Round(time.Second), m[`lakesink_compaction_s3_request_timeouts_total`])
	}

	proxy.setHook(func(r *http.Request, _ []byte) fault {
		if r.Method == http.MethodPut && icebergMetadata(r) && strings.HasSuffix(r.URL.Path, ".avro") {
			return hang
		}
		return pass
	})
	start := time.Now()
	code, out, m := f.compactRunFor(t, 2*time.Minute, proxied, cat.env...)
	ended("commit (PUT of a manifest)", code, out, m, time.Since(start))

	proxy.setHook(nil)
	if code, out, _ := f.compactRunFor(t, 5*time.Minute, proxied, cat.env...); code != 0 {
		t.Fatalf("compact exit %d once S3 answers again:\n%s", code, out)
	}
	checkExact(t, f, readIceberg(t, f, cat.typ, cat.uri, cat.warehouse, cat.table, ""))

	// Reads: the metadata JSON (LoadTable, the first read of a run); then only
	// the manifest lists and manifests, which the orphan sweep reads all of
	// (LoadTable passes): a maintenance run with the sweep made due again.
	warehouse := f.s3(t, strings.TrimPrefix(cat.warehouse, "s3://"+f.b.s3.Bucket+"/")+"/")
	for _, c := range []struct {
		path  string
		ext   string
		extra []string
	}{
		{"load (GET of the table's metadata JSON)", ".metadata.json", nil},
		{"orphan sweep (GET of a manifest list or manifest)", ".avro", []string{"--maintenance-only"}},
	} {
		if kind == "rest" && c.ext == ".metadata.json" {
			continue // the REST catalog answers LoadTable with the metadata: no GET of it here
		}
		if c.extra != nil {
			if err := warehouse.Delete(context.Background(), ".lakesink/orphan-sweep/"+cat.table); err != nil {
				t.Fatalf("make the orphan sweep due: %v", err)
			}
		}
		hung := proxy.injected(hang)
		proxy.setHook(func(r *http.Request, _ []byte) fault {
			if (r.Method == http.MethodGet || r.Method == http.MethodHead) && icebergMetadata(r) && strings.HasSuffix(r.URL.Path, c.ext) {
				return hang
			}
			return pass
		})
		start = time.Now()
		code, out, m = f.compactRunFor(t, 2*time.Minute, proxied, append(c.extra, cat.env...)...)
		if proxy.injected(hang) == hung {
			t.Fatalf("%s: no read of an Iceberg metadata object (*%s) went through the proxy:\n%s", c.path, c.ext, out)
		}
		ended(c.path, code, out, m, time.Since(start))
	}
}

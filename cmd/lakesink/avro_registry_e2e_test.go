package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/testbed"
)

// registryProxy is a TCP proxy on loopback in front of the bed's schema registry; while
// down it accepts and closes every connection, as a registry that is down or
// restarting does. Close stops it and every connection it holds.
type registryProxy struct {
	ln    net.Listener
	to    string
	up    atomic.Bool
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newRegistryProxy(t *testing.T, target string) *registryProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &registryProxy{ln: ln, to: u.Host, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// url is the proxied form of the registry URL target.
func (p *registryProxy) url(target string) string {
	u, _ := url.Parse(target)
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *registryProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *registryProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			s, err := net.DialTimeout("tcp", p.to, 5*time.Second)
			if err != nil {
				return
			}
			defer s.Close()
			p.track(c, true)
			p.track(s, true)
			defer p.track(c, false)
			defer p.track(s, false)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
			<-done
		}()
	}
}

// down refuses new connections and cuts the open ones.
func (p *registryProxy) down() {
	p.up.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *registryProxy) close() {
	p.ln.Close()
	p.down()
	p.wg.Wait()
}

// TestE2EAvroRegistryUnavailable: the rows of the evolution matrix that are not about
// the record. A registry that is down, and a schema id the registry does not know, are
// retried and then stop the sink; nothing is dead-lettered and no offset is committed
// past the record, so a restart replays it. The registry is the bed's Apicurio behind a
// proxy that the test takes down and brings back.
func TestE2EAvroRegistryUnavailable(t *testing.T) {
	b := newBed(t, 1)
	regURL := testbed.Registry(t)
	proxy := newRegistryProxy(t, regURL)
	schema := `{"type":"record","name":"Event","namespace":"e2e","fields":[
 {"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"n","type":"long"}]}`
	id := registerAvro(t, regURL, b.topic+"-value", schema)
	s := mustParse(t, schema)
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	const good = 10
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range good {
		produce(&kgo.Record{Topic: b.topic, Value: frame(t, id, s, map[string]any{"id": fmt.Sprint(i), "ts": base.Add(time.Duration(i) * time.Second), "n": int64(i)})})
	}
	y := readFile(t, b.config("flush: {max_age: 2s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"))
	y = y[:strings.Index(y, "tables:\n")] + fmt.Sprintf(`schema_registry: {url: %q, timeout: 2s, max_wait: 6s}
tables:
  - name: events
    topics: [%s]
    format: avro
    event_time: {column: ts}
    columns:
      - {name: id, type: string, required: true}
      - {name: ts, type: timestamp, required: true}
      - {name: n, type: int64, required: true}
`, proxy.url(regURL), b.topic)
	cfg := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	noDeadLetters := func(when string) {
		t.Helper()
		ends, err := b.adm.ListEndOffsets(ctx, b.dlq)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(e kadm.ListedOffset) {
			if e.Offset != 0 {
				t.Errorf("%s: %d records in the dead-letter topic, want none", when, e.Offset)
			}
		})
	}
	committed := func() int64 {
		t.Helper()
		offs, err := b.adm.FetchOffsets(ctx, b.group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup(b.topic, 0); ok {
			return o.At
		}
		return -1
	}
	// waitExit waits for the sink to stop by itself with an error naming the cause.
	waitExit := func(p *proc, within time.Duration, want ...string) {
		t.Helper()
		select {
		case <-p.exited:
		case <-time.After(within):
			t.Fatalf("the sink did not stop within %s", within)
		}
		logs := readFile(t, p.log)
		if p.err == nil {
			t.Fatalf("the sink exited cleanly, want an error; log:\n%s", logs)
		}
		for _, w := range want {
			if !strings.Contains(logs, w) {
				t.Errorf("sink log lacks %q:\n%s", w, logs)
			}
		}
		if n := strings.Count(logs, "schema registry unreachable or schema id unknown; retrying"); n < 2 {
			t.Errorf("the sink retried %d times before stopping, want at least 2", n)
		}
	}

	// 1. Registry down for longer than max_wait: retried, then the sink stops.
	start := time.Now()
	p := b.start(cfg)
	waitExit(p, time.Minute, "no answer from the schema registry for 6s", fmt.Sprintf("schema id %d", id))
	t.Logf("registry down: the sink stopped after %s", time.Since(start).Round(100*time.Millisecond))
	noDeadLetters("registry down")
	if c := committed(); c > 0 {
		t.Errorf("committed offset %d after the registry was down, want nothing committed", c)
	}

	// 2. Down when the sink starts, back within max_wait: the records land.
	p = b.start(cfg)
	deadline := time.Now().Add(time.Minute)
	for p.metrics(t)["lakesink_schema_registry_errors_total"] < 2 {
		if exited, err := p.exitedErr(); exited {
			t.Fatalf("sink exited: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the sink did not retry the registry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	proxy.up.Store(true)
	b.waitCaughtUp(time.Minute, p)
	if m := p.metrics(t); m[`lakesink_records_decoded_total{table="events"}`] != good {
		t.Errorf("decoded %v records after the registry came back, want %d", m[`lakesink_records_decoded_total{table="events"}`], good)
	}

	// 3. A schema id the registry does not know: retried, then the sink stops, and the
	// record after it is not committed either.
	const unknownID = 2_000_000_007
	produce(&kgo.Record{Topic: b.topic, Value: frame(t, unknownID, s, map[string]any{"id": "unknown", "ts": base, "n": int64(-1)})},
		&kgo.Record{Topic: b.topic, Value: frame(t, id, s, map[string]any{"id": "after", "ts": base, "n": int64(-2)})})
	waitExit(p, time.Minute, fmt.Sprintf("schema id %d is unknown", unknownID), "no answer from the schema registry for 6s")
	noDeadLetters("unknown schema id")
	if c := committed(); c != good {
		t.Errorf("committed offset %d after the unknown schema id, want %d (the unknown record's)", c, good)
	}
	res := testbed.DuckDB(t, fmt.Sprintf(`SELECT count(*), count(DISTINCT id), sum(n) FROM read_parquet('%s')`, b.rawGlob()))[0]
	if toInt(t, res[0]) != good || toInt(t, res[1]) != good || toInt(t, res[2]) != good*(good-1)/2 {
		t.Errorf("raw zone: %v rows, %v ids, sum(n) %v; want the %d good records", res[0], res[1], res[2], good)
	}
}

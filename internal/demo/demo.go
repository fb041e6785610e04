// Package demo runs the whole pipeline embedded: an in-process Kafka cluster (kfake),
// a local-directory lake, sample events, the sink, and a report of what landed.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
	"github.com/lakesink/lakesink/sink"
)

// Options configure a demo run.
type Options struct {
	Dir        string // lake directory; emptied first
	Events     int    // good events to produce
	Hours      int    // event-time hours they span
	Partitions int32
	Out        io.Writer
	Log        *slog.Logger
}

const (
	topic    = "events"
	dlqTopic = "events-dlq"
	group    = "lakesink-demo"
)

// Config returns the demo's sink configuration for a broker and a lake directory.
func Config(brokers []string, dir string) (*config.Config, error) {
	y := fmt.Sprintf(`kafka:
  brokers: [%s]
  group: %s
  commit_interval: 1s
local_dir: %s
dead_letter:
  topic: %s
compaction:
  lateness: 1m
flush:
  max_age: 10s
  memory_budget: 256MiB
  max_file_bytes: 64MiB
  shutdown_timeout: 30s
tables:
%s`, strings.Join(brokers, ", "), group, dir, dlqTopic, gen.TableYAML("events", topic))
	return config.Parse([]byte(y), os.Getenv)
}

// Run produces the sample events, sinks them into Options.Dir and prints a report.
func Run(ctx context.Context, o Options) error {
	start := time.Now()
	if err := os.RemoveAll(o.Dir); err != nil {
		return fmt.Errorf("clean demo dir: %w", err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(o.Partitions, topic), kfake.SeedTopics(1, dlqTopic))
	if err != nil {
		return fmt.Errorf("start in-process kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	fmt.Fprintf(o.Out, "▶ in-process Kafka at %s, topic %q with %d partitions\n", brokers[0], topic, o.Partitions)

	bad, err := produce(ctx, brokers, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "▶ produced %d events over %d event-time hours (with late and out-of-order events) and %d bad records\n",
		o.Events, o.Hours, bad)

	cfg, err := Config(brokers, o.Dir)
	if err != nil {
		return err
	}
	st, err := store.NewLocal(o.Dir)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	m := sink.NewMetrics(reg)
	sk, err := sink.New(cfg, st, m, o.Log)
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	sinkStart := time.Now()
	go func() { done <- sk.Run(sctx) }()
	adm, closeAdm, err := admin(brokers)
	if err != nil {
		stop()
		return err
	}
	defer closeAdm()
	if err := waitConsumed(ctx, adm, sk, done); err != nil {
		stop()
		return err
	}
	// Everything is consumed: stop the sink the way SIGTERM does (flush, commit, leave).
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	lag, err := commitLag(ctx, adm)
	if err != nil {
		return fmt.Errorf("commit lag after shutdown: %w", err)
	}
	if lag != 0 {
		return fmt.Errorf("after shutdown the group's commit lags the end by %d records", lag)
	}
	fmt.Fprintf(o.Out, "▶ sink consumed everything, flushed, committed and left the group in %s\n", time.Since(sinkStart).Round(time.Millisecond))
	if err := report(o.Out, o.Dir); err != nil {
		return err
	}
	dl := testutilSum(reg, "lakesink_records_dead_lettered_total")
	fmt.Fprintf(o.Out, "▶ dead-lettered records: %.0f (topic %q, reason in headers)\n", dl, dlqTopic)
	if err := compact(ctx, o, cfg, st); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "▶ demo finished in %s; the lake is in %s\n", time.Since(start).Round(time.Millisecond), o.Dir)
	return nil
}

func produce(ctx context.Context, brokers []string, o Options) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	g := gen.New(42, time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(o.Hours)*time.Hour), time.Duration(o.Hours)*time.Hour)
	var firstErr error
	results := make(chan error, 1)
	for i := range o.Events {
		v, _ := g.Event(i, o.Events)
		r := &kgo.Record{Topic: topic, Value: append([]byte(nil), v...), Partition: int32(i) % o.Partitions}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case results <- err:
				default:
				}
			}
		})
	}
	badRecords := []string{
		`{"event_id": "broken`,
		`{"ts":"2026-11-24T10:00:00Z","user_id":1}`,
		`{"event_id":"x","ts":"2026-11-24T10:00:00Z","user_id":"not a number"}`,
		`{"event_id":"x","ts":"yesterday","user_id":1}`,
		`{"event_id":"x","ts":"1970-01-01T00:00:00Z","user_id":1}`,
	}
	for _, b := range badRecords {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(b)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	select {
	case firstErr = <-results:
	default:
	}
	return len(badRecords), firstErr
}

func admin(brokers []string) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// waitConsumed waits until the sink has consumed every record produced.
func waitConsumed(ctx context.Context, adm *kadm.Client, sk *sink.Sink, done <-chan error) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	deadline := time.After(5 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return fmt.Errorf("sink stopped early: %w", err)
		case <-deadline:
			return errors.New("demo: sink did not consume everything within 5 minutes")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		next := sk.Engine().Next()[topic]
		caught := true
		ends.Each(func(e kadm.ListedOffset) {
			if next[e.Partition] < e.Offset {
				caught = false
			}
		})
		if caught {
			return nil
		}
	}
}

// commitLag is the number of records between the group's commits and the end offsets.
func commitLag(ctx context.Context, adm *kadm.Client) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return -1, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return -1, err
	}
	var lag int64
	ends.Each(func(e kadm.ListedOffset) {
		c, _ := committed.Lookup(e.Topic, e.Partition)
		lag += e.Offset - max(c.At, 0)
	})
	return lag, nil
}

type partStat struct {
	files int
	rows  int64
	bytes int64
}

func report(w io.Writer, dir string) error {
	stats := map[string]*partStat{}
	var total partStat
	err := filepath.WalkDir(filepath.Join(dir, "raw"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		pf, err := parquet.OpenFile(f, info.Size())
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		s := stats[rel]
		if s == nil {
			s = &partStat{}
			stats[rel] = s
		}
		s.files++
		s.rows += pf.NumRows()
		s.bytes += info.Size()
		total.files++
		total.rows += pf.NumRows()
		total.bytes += info.Size()
		return nil
	})
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "▶ raw zone:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partition\tfiles\trows\tbytes\t")
	for _, k := range keys {
		s := stats[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k, s.files, s.rows, s.bytes)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t\n", total.files, total.rows, total.bytes)
	return tw.Flush()
}

func testutilSum(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

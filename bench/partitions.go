package main

// The partitions measure: the real `lakesink sink` process draining the same number
// of events spread over 10, 1,000 or 5,000 hours of event time (months), at a fixed
// memory budget. Events come in random hour order and each hour lives in one Kafka
// partition, so about as many (table, hour, partition) buffers are open at once as
// there are hours. Throughput is events per CPU-second of the child (rusage);
// peak RSS is the child's VmHWM (watchRSS).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/store"
)

// PartitionsResult is one run of the partitions measure.
type PartitionsResult struct {
	Result
	Hours          int     `json:"hours"`
	PeakOpen       int     `json:"peak_open_partitions"`
	BudgetMiB      int     `json:"budget_mib"`
	PeakBufferMiB  float64 `json:"peak_buffered_mib"`
	Flushes        float64 `json:"flushes"`
	MemoryFlushes  float64 `json:"memory_flushes"`
	ThroughputRel  float64 `json:"throughput_vs_first"` // events/CPU-s relative to the first (fewest hours) run
	RSSOverBudget  float64 `json:"rss_over_budget_mib"`
	RSSWithinLimit bool    `json:"rss_within_budget_plus_64mib"`
}

// parseHours reads the -partitions flag ("10,1000,5000"); empty means none.
func parseHours(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-partitions: %q is not a positive number of hours", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// partitions runs the measure once per entry of hours, n events each.
func partitions(bin string, n int, hours []int, budgetMiB int) ([]PartitionsResult, error) {
	var out []PartitionsResult
	for _, h := range hours {
		r, err := partitionsRun(bin, n, h, budgetMiB)
		if err != nil {
			return nil, fmt.Errorf("%d hours: %w", h, err)
		}
		if len(out) > 0 {
			r.ThroughputRel = r.EventsPerCPUs / out[0].EventsPerCPUs
		} else {
			r.ThroughputRel = 1
		}
		out = append(out, r)
		fmt.Fprintf(os.Stderr, "bench: %d hours: %d files, %.0f events/CPU-s (%.2f of the first), peak RSS %.0f MiB, peak buffered %.1f MiB\n",
			h, r.Files, r.EventsPerCPUs, r.ThroughputRel, r.PeakRSSMiB, r.PeakBufferMiB)
	}
	return out, nil
}

func printPartitions(rs []PartitionsResult) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "open hours\tpeak open buffers\tevents\tfiles\tmemory flushes\tevents/CPU-s\tvs first\tpeak buffered MiB\tpeak RSS MiB\tRSS ≤ budget+64MiB\t\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.1f\t%.0f\t%v\t\n", r.Hours, r.PeakOpen, r.Events, r.Flushes, r.MemoryFlushes,
			r.EventsPerCPUs, r.ThroughputRel, r.PeakBufferMiB, r.PeakRSSMiB, r.RSSWithinLimit)
	}
	tw.Flush()
	fmt.Printf("(budget %d MiB; target: peak RSS ≤ budget + 64 MiB and events/CPU-s ≥ 0.90 × the first run)\n\n", rs[0].BudgetMiB)
}

func partitionsRun(bin string, n, hours, budgetMiB int) (PartitionsResult, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-parts%d-%d", hours, time.Now().UnixNano())
	const parts = 6
	cl, adm, done, err := benchTopic(ctx, name, parts, map[string]*string{"retention.ms": ptr("-1")},
		append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, bulkProducer...)...)
	if err != nil {
		return PartitionsResult{}, err
	}
	defer done()

	// Event k is generated as event perm[k] of n: its time falls in a random hour of the
	// span, and its hour picks the Kafka partition. No late events: every hour is one buffer.
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours) * time.Hour)
	g := gen.New(uint64(hours), start, time.Duration(hours)*time.Hour)
	g.LateFraction = 0
	perm := rand.New(rand.NewPCG(7, uint64(hours))).Perm(n)
	var total int64
	fmt.Fprintf(os.Stderr, "bench: pre-filling topic %s (%d events over %d hours)\n", name, n, hours)
	for _, i := range perm {
		v, ts := g.Event(i, n)
		total += int64(len(v))
		h := int32(ts.Sub(start) / time.Hour)
		cl.Produce(ctx, &kgo.Record{Topic: name, Partition: h % parts, Value: append([]byte(nil), v...)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return PartitionsResult{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: draining %d events over %d hours with %s\n", n, hours, bin)
	sk, err := startSink(bin, name,
		fmt.Sprintf("{max_file_bytes: 64MiB, memory_budget: %dMiB, max_age: 5m, max_open_partitions: 20000}", budgetMiB))
	if err != nil {
		return PartitionsResult{}, err
	}
	defer sk.stop()
	var peakOpen, peakBuffered, memFlushes float64
	wall, cpu, rss, err := sk.drain(ctx, adm, name, n, func(page string) {
		peakOpen = max(peakOpen, metric(page, "lakesink_open_partitions "))
		peakBuffered = max(peakBuffered, metric(page, "lakesink_buffered_bytes "))
		memFlushes = max(memFlushes, metric(page, `lakesink_flushes_total{trigger="memory"} `))
	})
	if err != nil {
		return PartitionsResult{}, err
	}
	// Every flush is one file; the shutdown flush is not counted by the last scrape,
	// so count the files written.
	var flushes float64
	if files, err := countObjects(name + "/"); err == nil {
		flushes = float64(files)
	}
	r := PartitionsResult{Result: result(fmt.Sprintf("partitions: %d open hours, budget %d MiB", hours, budgetMiB), n, total, wall, cpu, rss),
		Hours: hours, PeakOpen: int(peakOpen), BudgetMiB: budgetMiB, PeakBufferMiB: peakBuffered / (1 << 20),
		Flushes: flushes, MemoryFlushes: memFlushes}
	r.Files = int(flushes)
	r.RSSOverBudget = r.PeakRSSMiB - float64(budgetMiB)
	r.RSSWithinLimit = r.PeakRSSMiB > 0 && r.PeakRSSMiB <= float64(budgetMiB+64) // never sampled: not within
	return r, nil
}

// countObjects counts the objects under prefix in the test bed's bucket.
func countObjects(prefix string) (int, error) {
	ctx := context.Background()
	st, err := store.NewS3(ctx, benchS3(prefix))
	if err != nil {
		return 0, err
	}
	n := 0
	err = st.List(ctx, "raw/", func(store.ObjectInfo) error { n++; return nil })
	return n, err
}

// partitionEvents is the number of events of each partitions run (PARTITION_EVENTS).
func partitionEvents() int {
	if n, err := strconv.Atoi(os.Getenv("PARTITION_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 500_000
}

// runPartitions runs the partitions measure for the -partitions flag and prints its table.
func runPartitions(bin, flagValue string, budgetMiB int) ([]PartitionsResult, error) {
	hours, err := parseHours(flagValue)
	if err != nil || len(hours) == 0 {
		return nil, err
	}
	return partitions(bin, partitionEvents(), hours, budgetMiB)
}

// partitionsOnly runs only the partitions measure and stores it under "partitions" in
// the JSON results at out, keeping the other measures already there.
func partitionsOnly(bin, flagValue string, budgetMiB int, out string) error {
	rs, err := runPartitions(bin, flagValue, budgetMiB)
	if err != nil {
		return err
	}
	printPartitions(rs)
	return mergeResults(out, "partitions", rs)
}

// mergeResults stores v under key in the JSON results at out, keeping the other
// measures already there.
func mergeResults(out, key string, v any) error {
	doc := map[string]any{}
	if data, err := os.ReadFile(out); err == nil {
		_ = json.Unmarshal(data, &doc)
	}
	doc[key] = v
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(doc, "", "  ")
	return os.WriteFile(out, data, 0o644)
}

package main

// The shuffled measure (issue 18): small events (~110 bytes of JSON) produced in
// random event-time order over ~1,426 hours into 6 Kafka partitions, so that every
// (hour, partition) pair, ~8,556 of them, has a buffer open at once, drained by the
// real `lakesink sink` with hour partitions, memory_budget 256MiB and max_age 60s:
// once with the default flush settings, once with a max_open_partitions cap. The
// ideal is one file per (hour, partition) pair per max_age window of the drain.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ShuffledResult is one run of the shuffled measure.
type ShuffledResult struct {
	Result
	Config     string  `json:"config"`
	Hours      int     `json:"hours"`
	Pairs      int     `json:"hour_partition_pairs"`
	Ideal      int     `json:"ideal_files"`
	FilesRatio float64 `json:"files_vs_ideal"`
	BudgetMiB  int     `json:"budget_mib"`
	PeakOpen   int     `json:"peak_open_partitions"`
	// Flushes by trigger, from the last metrics page before the shutdown flush.
	Flushes map[string]float64 `json:"flushes_by_trigger"`
}

const (
	shuffledParts  = 6
	shuffledBudget = 256
	shuffledMaxAge = 60 * time.Second
)

// shuffledTable is the table of the small events, with hour partitions.
func shuffledTable(topic string) string { return sparseTable(topic, "hour") }

// sparseTable is the table of the small events with the given granularity.
func sparseTable(topic, gran string) string {
	return fmt.Sprintf(`  - name: events
    topics: [%s]
    columns:
      - {name: id, type: string, required: true, dictionary: false}
      - {name: ts, type: timestamp, required: true}
      - {name: user, type: int64}
      - {name: type, type: string}
      - {name: value, type: float64}
      - {name: country, type: string}
    event_time: {column: ts, granularity: %s}
`, topic, gran)
}

// smallEvent is event i: ~110 bytes of JSON at event time ts.
func smallEvent(b []byte, r *rand.Rand, i int, ts time.Time) []byte {
	b = append(b[:0], `{"id":"e-`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","ts":"`...)
	b = ts.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","user":`...)
	b = strconv.AppendInt(b, r.Int64N(5_000_000), 10)
	b = append(b, `,"type":"`...)
	b = append(b, []string{"page_view", "click", "purchase", "search"}[r.IntN(4)]...)
	b = append(b, `","value":`...)
	b = strconv.AppendFloat(b, math.Round(r.Float64()*100_000)/100, 'f', -1, 64)
	b = append(b, `,"country":"`...)
	b = append(b, []string{"DE", "US", "FR", "GB", "JP", "BR"}[r.IntN(6)]...)
	b = append(b, `"}`...)
	return b
}

// shuffled runs the measure with the default flush settings and with each cap.
func shuffled(bin string, n, hours int, caps []int) ([]ShuffledResult, error) {
	configs := []string{""}
	for _, c := range caps {
		configs = append(configs, fmt.Sprintf("max_open_partitions: %d", c))
	}
	var out []ShuffledResult
	for _, c := range configs {
		r, err := shuffledRun(bin, n, hours, c)
		if err != nil {
			return nil, fmt.Errorf("shuffled %q: %w", c, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func shuffledRun(bin string, n, hours int, extra string) (ShuffledResult, error) {
	return sparseRun(bin, n, hours, extra, false, "hour")
}

// sparseRun produces n small events over hours of event time into 6 partitions, in
// random order or (ordered) in event-time order, and drains them with a sink of the
// given granularity and extra flush settings.
func sparseRun(bin string, n, hours int, extra string, ordered bool, gran string) (ShuffledResult, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-shuffled-%d", time.Now().UnixNano())
	cl, adm, done, err := benchTopic(ctx, name, shuffledParts, map[string]*string{"retention.ms": ptr("-1")},
		append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, bulkProducer...)...)
	if err != nil {
		return ShuffledResult{}, err
	}
	defer done()
	start := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours) * time.Hour)
	r := rand.New(rand.NewPCG(18, uint64(hours)))
	pairs := map[[2]int]bool{}
	var total int64
	var b []byte
	times := make([]time.Duration, n)
	for i := range times {
		times[i] = time.Duration(r.Int64N(int64(hours) * int64(time.Hour)))
	}
	if ordered {
		slices.Sort(times)
	}
	fmt.Fprintf(os.Stderr, "bench: pre-filling topic %s (%d events over %d hours, ordered: %v)\n", name, n, hours, ordered)
	for i := range n {
		ts := start.Add(times[i])
		p := r.IntN(shuffledParts)
		period := int(ts.Sub(start) / time.Hour)
		if gran == "day" {
			period = int(ts.Unix() / 86400)
		}
		pairs[[2]int{period, p}] = true
		b = smallEvent(b, r, i, ts)
		total += int64(len(b))
		cl.Produce(ctx, &kgo.Record{Topic: name, Partition: int32(p), Value: append([]byte(nil), b...)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return ShuffledResult{}, err
	}
	// A capped run ends with thousands of small files to upload: give the shutdown time.
	flush := fmt.Sprintf("{memory_budget: %dMiB, max_age: %s, shutdown_timeout: 2m", shuffledBudget, shuffledMaxAge)
	if extra != "" {
		flush += ", " + extra
	}
	flush += "}"
	fmt.Fprintf(os.Stderr, "bench: draining %d shuffled events with flush %s\n", n, flush)
	sk, err := startSinkTables(bin, name, flush, sparseTable(name, gran))
	if err != nil {
		return ShuffledResult{}, err
	}
	defer sk.stop()
	var peakOpen float64
	flushes := map[string]float64{}
	wall, cpu, rss, err := sk.drain(ctx, adm, name, n, func(page string) {
		peakOpen = max(peakOpen, metric(page, "lakesink_open_partitions "))
		for _, t := range []string{"age", "memory", "open_partitions", "metadata", "size"} {
			flushes[t] = max(flushes[t], metric(page, `lakesink_flushes_total{trigger="`+t+`"} `))
		}
	})
	if err != nil {
		return ShuffledResult{}, err
	}
	files, err := countObjects(name + "/")
	if err != nil {
		return ShuffledResult{}, err
	}
	windows := max(1, int(math.Ceil(wall.Seconds()/shuffledMaxAge.Seconds())))
	label := "default"
	if extra != "" {
		label = extra
	}
	if ordered {
		label = "time order, " + gran + " partitions"
	}
	res := ShuffledResult{Result: result("shuffled: "+label, n, total, wall, cpu, rss), Config: label, Hours: hours,
		Pairs: len(pairs), Ideal: len(pairs) * windows, BudgetMiB: shuffledBudget, PeakOpen: int(peakOpen), Flushes: flushes}
	res.Files = files
	res.FilesRatio = float64(files) / float64(res.Ideal)
	fmt.Fprintf(os.Stderr, "bench: shuffled %s: %d files (ideal %d, %.2f×), %.1f CPU-s, peak RSS %.0f MiB, flushes %v\n",
		label, files, res.Ideal, res.FilesRatio, res.CPUSeconds, res.PeakRSSMiB, flushes)
	return res, nil
}

func printShuffled(rs []ShuffledResult) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "shuffled config\tevents\t(hour, partition)\tfiles\tideal\tvs ideal\tpeak open\tCPU-s\twall s\tpeak RSS MiB\t\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%d\t%.1f\t%.1f\t%.0f\t\n", r.Config, r.Events, r.Pairs, r.Files, r.Ideal, r.FilesRatio,
			r.PeakOpen, r.CPUSeconds, r.WallSeconds, r.PeakRSSMiB)
	}
	tw.Flush()
	fmt.Printf("(hour partitions, budget %d MiB, max_age %s; target for the default config: files ≤ 1.2 × ideal, peak RSS ≤ budget + 64 MiB)\n\n",
		shuffledBudget, shuffledMaxAge)
}

// shuffledTargets are the figures for the default-config run (the first).
func shuffledTargets(rs []ShuffledResult) []Target {
	if len(rs) == 0 {
		return nil
	}
	d := rs[0]
	return []Target{
		atMost(fmt.Sprintf("shuffled, default config: files / ideal (%d events, %d hours)", d.Events, d.Hours), 1.2, d.FilesRatio),
		atMost(fmt.Sprintf("shuffled, default config: peak RSS MiB (budget %dMiB + 64MiB)", d.BudgetMiB), float64(d.BudgetMiB+64), d.PeakRSSMiB),
	}
}

// shuffledOnly runs only the shuffled measure, prints it with its targets and stores
// it under "shuffled" in the JSON results at out, keeping the other measures there.
func shuffledOnly(bin string, n, hours int, capsFlag, out string) error {
	caps, err := parseHours(capsFlag)
	if err != nil {
		return fmt.Errorf("-shuffled-caps: %w", err)
	}
	rs, err := shuffled(bin, n, hours, caps)
	if err != nil {
		return err
	}
	printShuffled(rs)
	hvd, err := hourVsDay(bin, n, hours)
	if err != nil {
		return err
	}
	for _, t := range append(shuffledTargets(rs), hourVsDayTarget(hvd)) {
		fmt.Printf("%s: want %s %s, measured %s: %s\n", t.Name, t.Op, num(t.Want), num(t.Measured), t.Status)
	}
	if err := mergeResults(out, "hour_vs_day", hvd); err != nil {
		return err
	}
	return mergeResults(out, "shuffled", rs)
}

// HourVsDay is the per-file cost measure on the sink: the same time-ordered events
// with hour partitions (one file per (hour, partition)) and with day partitions.
type HourVsDay struct {
	Hour  ShuffledResult `json:"hour"`
	Day   ShuffledResult `json:"day"`
	Ratio float64        `json:"cpu_hour_vs_day"`
	// PerFileMs is the extra CPU of the hour run per extra file.
	PerFileMs float64 `json:"extra_cpu_ms_per_extra_file"`
}

// hourVsDay runs the sink on n time-ordered small events over hours, with hour and
// then day partitions, default flush settings but max_age 60s and budget 256MiB.
func hourVsDay(bin string, n, hours int) (HourVsDay, error) {
	h, err := sparseRun(bin, n, hours, "", true, "hour")
	if err != nil {
		return HourVsDay{}, err
	}
	d, err := sparseRun(bin, n, hours, "", true, "day")
	if err != nil {
		return HourVsDay{}, err
	}
	r := HourVsDay{Hour: h, Day: d, Ratio: h.CPUSeconds / d.CPUSeconds}
	if h.Files > d.Files {
		r.PerFileMs = 1000 * (h.CPUSeconds - d.CPUSeconds) / float64(h.Files-d.Files)
	}
	fmt.Printf("time-ordered, hour vs day partitions: %d vs %d files, %.1f vs %.1f CPU-s (%.2f×), %.2f ms of CPU per extra file\n\n",
		h.Files, d.Files, h.CPUSeconds, d.CPUSeconds, r.Ratio, r.PerFileMs)
	return r, nil
}

func hourVsDayTarget(r HourVsDay) Target {
	return atMost(fmt.Sprintf("time-ordered events, CPU-s hour / day partitions (%d vs %d files)", r.Hour.Files, r.Day.Files), 2, r.Ratio)
}

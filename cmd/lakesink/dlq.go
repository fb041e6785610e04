package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lakesink/lakesink/deadletter"
)

const dlqUsage = `Usage:
  lakesink dlq replay -c FILE [--reason R[,R]] [--table T] [--since RFC3339] [--until RFC3339] [--dry-run] [--group NAME]
      produce the dead letters that decode with the current config back to their source topic
      (exactly once: records and the replay position commit in one Kafka transaction)
  lakesink dlq stats -c FILE
      count the dead letters by table and reason
`

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return &configError{errors.New("dlq: a subcommand is required (replay, stats)")}
	}
	switch args[0] {
	case "replay":
		return cmdDLQReplay(ctx, args[1:], stdout, stderr)
	case "stats":
		return cmdDLQStats(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stderr, dlqUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, dlqUsage)
	return &configError{fmt.Errorf("dlq: unknown subcommand %q", args[0])}
}

func cmdDLQReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	reasons := fs.String("reason", "", "replay only dead letters with these reasons (comma separated; lakesink.reason)")
	table := fs.String("table", "", "replay only dead letters of this table (lakesink.table)")
	since := fs.String("since", "", "replay only dead letters written at or after this time (RFC 3339; lakesink.time)")
	until := fs.String("until", "", "replay only dead letters written before this time (RFC 3339; lakesink.time)")
	dry := fs.Bool("dry-run", false, "judge the dead letters and print the summary; produce and commit nothing")
	group := fs.String("group", "", "replay consumer group holding the replay position (default: kafka.group + \"-dlq-replay\")")
	batch := fs.Int("batch", 1000, "dead letters per transaction")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	opt := deadletter.ReplayOptions{Group: *group, Table: *table, DryRun: *dry, Batch: *batch, Hook: killHook()}
	if *reasons != "" {
		for r := range strings.SplitSeq(*reasons, ",") {
			if r = strings.TrimSpace(r); r != "" {
				opt.Reasons = append(opt.Reasons, r)
			}
		}
	}
	for _, f := range []struct {
		name string
		val  string
		dst  *time.Time
	}{{"--since", *since, &opt.Since}, {"--until", *until, &opt.Until}} {
		if f.val == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.val)
		if err != nil {
			return &configError{fmt.Errorf("%s: %w", f.name, err)}
		}
		*f.dst = t
	}
	opt.Log = newLogger(stderr, cfg.Log.Level)
	start := time.Now()
	sum, err := deadletter.Replay(ctx, cfg, opt)
	if errors.Is(err, deadletter.ErrReplaySetup) {
		return &configError{err}
	}
	if sum != nil {
		printReplaySummary(stdout, sum, *dry, err != nil, time.Since(start))
	}
	return err
}

func printReplaySummary(w io.Writer, s *deadletter.ReplaySummary, dry, failed bool, took time.Duration) {
	verb := "replayed"
	if dry {
		verb = "would replay"
	}
	if failed {
		fmt.Fprintln(w, "dlq replay stopped early: work of the last, uncommitted transaction is counted below but was aborted")
	}
	fmt.Fprintf(w, "dlq replay: read %d, %s %d, still failing %d, filtered %d, already replayed %d, deferred %d, duplicates %d (%d transactions, %s)\n",
		s.Read, verb, s.Replayed, s.StillFailing(), s.Filtered, s.AlreadyReplayed, s.Deferred, s.Duplicates, s.Transactions, took.Round(time.Millisecond))
	for _, t := range slices.Sorted(maps.Keys(s.ReplayedByTable)) {
		fmt.Fprintf(w, "  %s table=%s: %d\n", verb, t, s.ReplayedByTable[t])
	}
	for _, r := range slices.Sorted(maps.Keys(s.Failing)) {
		fmt.Fprintf(w, "  still failing reason=%s: %d\n", r, s.Failing[r])
	}
	for _, e := range s.Examples {
		fmt.Fprintf(w, "    e.g. dead letter %d/%d (from %s): %s\n", e.Partition, e.Offset, e.SourceTopic, e.Error)
	}
	if s.Deferred > 0 {
		fmt.Fprintln(w, "  deferred: too many kept dead letters interleaved with replayed ones for the replay position; fix the config for more of them, or narrow the filters, and run again")
	}
}

func cmdDLQStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	counts, total, err := deadletter.Stats(ctx, cfg, newLogger(stderr, cfg.Log.Level))
	if errors.Is(err, deadletter.ErrReplaySetup) {
		return &configError{err}
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tREASON\tCOUNT\tFIRST\tLAST")
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Table, c.Reason, c.Count, fmtTime(c.First), fmtTime(c.Last))
	}
	fmt.Fprintf(tw, "total\t\t%d\t\t\n", total)
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// Command lakesink lands Kafka events in an S3 data lake that Athena can query. It
// only parses flags, loads the config, wires the packages and handles signals; the
// work is in sink, compaction, deadletter, audit and lake/athena. Its subcommands:
//
//	lakesink sink -c config.yaml        run the Kafka → Parquet sink (long-running)
//	lakesink compact -c config.yaml     merge closed partitions into Iceberg (CronJob; --dry-run: plan only)
//	lakesink dlq replay -c config.yaml  replay dead letters that the current config decodes, exactly once
//	lakesink dlq stats -c config.yaml   count dead letters by table and reason
//	lakesink audit -c config.yaml       check every committed offset is in exactly one place (exit 1: findings)
//	lakesink athena-ddl -c config.yaml  print the Athena SQL of the tables (Iceberg, raw zone, view)
//	lakesink check -c config.yaml       validate the config and print the effective settings
//	lakesink demo                       run the whole pipeline embedded and print what landed
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `lakesink: Kafka events into an S3 data lake.

Usage:
  lakesink sink  -c FILE    consume Kafka and write hourly Parquet files to the raw zone
  lakesink compact -c FILE  merge closed partitions into the Iceberg table (--dry-run: plan only)
  lakesink check -c FILE    validate a config file and print the effective configuration
  lakesink athena-ddl -c FILE [--table NAME]  print Athena SQL: Iceberg table, raw-zone table, exactly-once view
  lakesink dlq replay -c FILE [--reason R] [--table T] [--since T] [--until T] [--dry-run]
                            produce dead letters that now decode back to their source topic, exactly once
  lakesink dlq stats -c FILE  count dead letters by table and reason
  lakesink audit -c FILE [--table T] [--since T] [--json]
                            check that every committed offset is in exactly one place (raw zone,
                            table, dead letters): lost offsets, duplicated rows, missing files
                            (exit 1: findings, 3: could not finish)
  lakesink demo [-dir DIR]  run Kafka (in-process), the sink and a report, all embedded

Run 'lakesink COMMAND -h' for the flags of a command.
`

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "sink":
		err = cmdSink(ctx, rest, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "compact":
		err = cmdCompact(ctx, rest, stdout, stderr)
	case "athena-ddl":
		err = cmdAthenaDDL(ctx, rest, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, rest, stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "lakesink: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(*auditResult)):
		var r *auditResult
		errors.As(err, &r)
		return r.code
	case errors.As(err, new(*compactResult)):
		var r *compactResult
		errors.As(err, &r)
		return r.code
	case errors.As(err, new(*configError)):
		fmt.Fprintf(stderr, "lakesink %s: %v\n", cmd, err)
		return exitConfig
	default:
		fmt.Fprintf(stderr, "lakesink %s: %v\n", cmd, err)
		return exitError
	}
}

// configError marks errors the operator must fix in the config or the flags.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

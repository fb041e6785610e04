package main

import (
	"context"
	"flag"
	"io"

	"github.com/lakesink/lakesink/internal/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".demo/lake", "directory of the demo lake (emptied first)")
	events := fs.Int("events", 100_000, "good events to produce")
	hours := fs.Int("hours", 6, "event-time hours the events span")
	level := fs.String("log-level", "warn", "log level of the sink")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return demo.Run(ctx, demo.Options{Dir: *dir, Events: *events, Hours: *hours, Partitions: 6, Out: stdout,
		Log: newLogger(stderr, *level)})
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/lakesink/lakesink/lake/athena"
)

// cmdAthenaDDL prints the Athena SQL for the config's tables: the Iceberg table (or how to
// get it into Glue), a Hive table over the raw zone with partition projection, and a view
// over both that shows every event exactly once. See docs/athena.md.
func cmdAthenaDDL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_ = ctx // pure: nothing is looked up in AWS
	fs := flag.NewFlagSet("athena-ddl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	table := fs.String("table", "", "print only this table (default: every table of the config)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lakesink athena-ddl -c FILE [--table NAME]\n\n"+
			"Prints the Athena statements for each table: (a) the compacted Iceberg table,\n"+
			"(b) <table>_raw over the raw zone (partition projection), (c) the view <table>_all.\n\n")
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &configError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	out, err := athena.Generate(cfg, athena.Options{Table: *table})
	switch {
	case errors.Is(err, athena.ErrUnknownTable):
		return &configError{fmt.Errorf("--table: %w", err)}
	case errors.Is(err, athena.ErrNameCollision):
		return &configError{err}
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out)
	return err
}

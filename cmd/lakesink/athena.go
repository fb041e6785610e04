package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/glue"

	"github.com/lakesink/lakesink/lake/athena"
	"github.com/lakesink/lakesink/lake/config"
)

// cmdAthenaDDL prints the Athena SQL for the config's tables: the Iceberg table (or how to
// get it into Glue), a Hive table over the raw zone with partition projection, and a view
// over both that shows every event exactly once. With --apply (Glue catalogs only) it
// registers the raw-zone tables in Glue instead of printing. See docs/athena.md.
func cmdAthenaDDL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("athena-ddl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	table := fs.String("table", "", "print only this table (default: every table of the config)")
	apply := fs.Bool("apply", false, "register (b), the raw-zone tables with their partition projection, in the AWS Glue\n"+
		"Data Catalog of catalog.glue through the Glue API instead of printing (catalog.type glue only)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lakesink athena-ddl -c FILE [--table NAME] [--apply]\n\n"+
			"Prints the Athena statements for each table: (a) the compacted Iceberg table,\n"+
			"(b) <table>_raw over the raw zone (partition projection), (c) the view <table>_all.\n"+
			"--apply creates or updates (b) in Glue (the Iceberg table (a) is the compactor's; the\n"+
			"view (c) must be created in Athena, whose view format Glue's API does not offer).\n\n")
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &configError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *apply {
		return applyGlue(ctx, cfg, *table, stdout)
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

// applyGlue registers the raw-zone tables in the Glue catalog of the config.
func applyGlue(ctx context.Context, cfg *config.Config, table string, stdout io.Writer) error {
	if cfg.Catalog.Type != "glue" {
		return &configError{fmt.Errorf("--apply needs catalog.type glue (it is %s): Athena reads only the Glue Data Catalog; print the DDL without --apply and run it in Athena", cfg.Catalog.Type)}
	}
	tables, err := athena.RawTables(cfg, athena.Options{Table: table})
	switch {
	case errors.Is(err, athena.ErrUnknownTable):
		return &configError{fmt.Errorf("--table: %w", err)}
	case errors.Is(err, athena.ErrNameCollision), errors.Is(err, athena.ErrNotS3):
		return &configError{err}
	case err != nil:
		return err
	}
	g := cfg.Catalog.Glue
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(g.Region)}
	if g.Endpoint != "" {
		opts = append(opts, awsconfig.WithBaseEndpoint(g.Endpoint))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("load AWS config for glue: %w", err)
	}
	done, err := athena.ApplyGlue(ctx, glue.NewFromConfig(awsCfg), g.CatalogID, tables)
	if len(done) > 0 {
		fmt.Fprintln(stdout, strings.Join(done, "\n"))
	}
	return err
}

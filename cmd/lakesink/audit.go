package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/audit"
	"github.com/lakesink/lakesink/internal/kafkaopt"
	"github.com/lakesink/lakesink/lake/icetable"
)

// Exit codes of lakesink audit: exitOK clean, exitError (1) findings,
// exitConfig (2) usage or config error, exitAuditFailed the audit could not
// finish (Kafka, S3 or the catalog failed: no verdict).
const exitAuditFailed = 3

// auditResult carries audit's exit code through run's error handling; the
// message, if any, is printed already.
type auditResult struct{ code int }

func (r *auditResult) Error() string { return fmt.Sprintf("exit %d", r.code) }

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := audit1(ctx, args, stdout, stderr)
	var cfgErr *configError
	var res *auditResult
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp), errors.As(err, &cfgErr), errors.As(err, &res):
		return err
	}
	fmt.Fprintf(stderr, "lakesink audit: could not finish, no verdict: %v\n", err)
	return &auditResult{exitAuditFailed}
}

// audit1 runs one audit; cmdAudit maps its errors to exit codes.
func audit1(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("table", "", "audit only this table")
	since := fs.String("since", "", "audit only offsets of records at or after this time (RFC 3339, or a duration back from now such as 24h)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of the summary table")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	var opt audit.Options
	opt.Table = *only
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return &configError{err}
		}
		opt.Since = t
	}
	if err := cfg.ValidateCompaction(); err != nil {
		return &configError{err}
	}
	lake, err := openStore(ctx, cfg, nil, nil)
	if err != nil {
		return &configError{err}
	}
	wh, err := openWarehouse(ctx, cfg, nil)
	if err != nil {
		return err
	}
	cat, err := icetable.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open catalog: %w", err)
	}
	defer cat.Close()
	kopts, err := kafkaopt.ClientOptions(&cfg.Kafka)
	if err != nil {
		return &configError{err}
	}
	kopts = append(kopts, kgo.WithLogger(kafkaopt.Logger(newLogger(stderr, cfg.Log.Level))))
	a := &audit.Auditor{Cfg: cfg, Lake: lake, Warehouse: wh, Cat: cat, Kafka: kopts}
	rep, err := a.Run(ctx, opt)
	if errors.Is(err, audit.ErrUnknownTable) {
		return &configError{err}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Findings() {
		return &auditResult{exitError}
	}
	return nil
}

// parseSince reads --since: an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-12-01T00:00:00Z) or a duration (24h)", s)
	}
	return t, nil
}

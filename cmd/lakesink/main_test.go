package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheckCommand(t *testing.T) {
	t.Setenv("TEST_KAFKA_PASSWORD", "hunter2")
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"valid", []string{"check", "-c", "../../testdata/config/full.good.yaml"}, exitOK, "config is valid", ""},
		{"bad key", []string{"check", "-c", "../../testdata/config/unknown-nested.bad.yaml"}, exitConfig, "", "kafka.tls.ca_fil: unknown key"},
		{"missing file", []string{"check", "-c", "nope.yaml"}, exitConfig, "", "nope.yaml"},
		{"no -c", []string{"check"}, exitConfig, "", "-c FILE is required"},
		{"unknown command", []string{"frobnicate"}, exitConfig, "", "unknown command"},
		{"help", []string{"--help"}, exitOK, "", "Usage:"},
		{"athena-ddl --apply, SQL catalog", []string{"athena-ddl", "-c", "../../testdata/athena/sql-catalog.yaml", "--apply"}, exitConfig, "", "--apply needs catalog.type glue"},
		{"athena-ddl --apply, local lake", []string{"athena-ddl", "-c", "../../testdata/athena/local.yaml", "--apply"}, exitConfig, "", ""},
		{"athena-ddl --apply, unknown table", []string{"athena-ddl", "-c", "../../testdata/athena/glue-hour-nested.yaml", "--apply", "--table", "nope"}, exitConfig, "", "--table: unknown table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), "hunter2") {
				t.Fatal("the SASL password was printed")
			}
		})
	}
}

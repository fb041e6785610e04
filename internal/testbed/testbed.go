// Package testbed gives tests the servers of the local test bed started by
// deploy/local/bed.sh (no Docker): a real Kafka broker, a real S3 server (versitygw) and
// DuckDB, in a project-local Python venv, as an independent reader of what was written.
//
// The bed is found through the LAKESINK_TEST_* environment variables that
// `deploy/local/bed.sh env` prints; `make test` starts the bed and sets them. When they are
// unset, a test that asks for the bed is skipped, or fails when LAKESINK_REQUIRE_BED=1 (as
// under `make test`), so a missing bed can never pass silently in CI. With -short every
// accessor skips.
//
// Only the standard library is used.
package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NotRunning is the message of a test skipped (or failed) because the bed is not running.
const NotRunning = "test bed not running: run make test or deploy/local/bed.sh up"

// Environment variables set by `deploy/local/bed.sh env`.
const (
	EnvKafkaBrokers = "LAKESINK_TEST_KAFKA_BROKERS"       // comma-separated host:port list
	EnvKafkaSCRAM   = "LAKESINK_TEST_KAFKA_SCRAM_BROKERS" // the SASL_PLAINTEXT (SCRAM) listener
	EnvS3Endpoint   = "LAKESINK_TEST_S3_ENDPOINT"         // http://127.0.0.1:19000
	EnvS3AccessKey  = "LAKESINK_TEST_S3_ACCESS_KEY"       // lakesink
	EnvS3SecretKey  = "LAKESINK_TEST_S3_SECRET_KEY"       // lakesinksecret
	EnvS3Region     = "LAKESINK_TEST_S3_REGION"           // us-east-1
	EnvS3Bucket     = "LAKESINK_TEST_S3_BUCKET"           // lakesink-test
	EnvS3Dir        = "LAKESINK_TEST_S3_DIR"              // versitygw's POSIX root (optional)
	EnvPython       = "LAKESINK_TEST_PYTHON"              // the venv's python
	EnvDuckQ        = "LAKESINK_TEST_DUCKQ"               // deploy/local/duckq.py
	EnvRequireBed   = "LAKESINK_REQUIRE_BED"              // "1": a missing bed fails the test
)

// DuckDBTimeout bounds one DuckDB query run by DuckDB.
var DuckDBTimeout = 5 * time.Minute

// need returns the values of the named variables, or skips/fails the test if one is unset.
func need(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test bed; skipped with -short")
	}
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = os.Getenv(n)
		if vals[i] == "" {
			if os.Getenv(EnvRequireBed) == "1" {
				t.Fatalf("%s (%s is unset)", NotRunning, n)
			}
			t.Skipf("%s (%s is unset)", NotRunning, n)
		}
	}
	return vals
}

// Kafka returns the bootstrap brokers (host:port) of the bed's Kafka: a single KRaft node
// with auto topic creation off and 6 partitions by default, so a test creates its topics
// (named with UniqueName).
func Kafka(t testing.TB) []string {
	t.Helper()
	return splitList(need(t, EnvKafkaBrokers)[0])
}

// KafkaSCRAM returns the bed broker's SASL_PLAINTEXT listener (SCRAM-SHA-256/512). It has
// no users: tests create theirs through the admin API on the plaintext listener (Kafka).
func KafkaSCRAM(t testing.TB) []string {
	t.Helper()
	return splitList(need(t, EnvKafkaSCRAM)[0])
}

func splitList(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// S3Config locates the bed's S3 server, its credentials and its test bucket.
type S3Config struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:19000 (use path-style addressing).
	Endpoint string
	// AccessKey and SecretKey are the fixed test credentials.
	AccessKey, SecretKey string
	// Region is the signing region (us-east-1).
	Region string
	// Bucket is a bucket that exists and that tests share: put each test's objects under a
	// key prefix from UniqueName.
	Bucket string
	// Dir is the server's POSIX root: the object Key of Bucket is the file Dir/Bucket/Key.
	// Empty if the bed did not say (LAKESINK_TEST_S3_DIR unset).
	Dir string
}

// S3 returns the bed's S3 server.
func S3(t testing.TB) S3Config {
	t.Helper()
	v := need(t, EnvS3Endpoint, EnvS3AccessKey, EnvS3SecretKey, EnvS3Region, EnvS3Bucket)
	return S3Config{Endpoint: v[0], AccessKey: v[1], SecretKey: v[2], Region: v[3], Bucket: v[4], Dir: os.Getenv(EnvS3Dir)}
}

// DuckDB runs sql in DuckDB (deploy/local/duckq.py in the bed's venv), with httpfs set up
// for the bed's S3 server so that read_parquet('s3://<bucket>/...') and iceberg_scan work,
// and returns the result rows. Values are decoded from JSON: numbers are float64; integers
// beyond ±2^53, DECIMALs and non-finite floats are exact strings; timestamps, dates and
// times are ISO 8601 strings (time zone UTC); BLOBs are lowercase hex; NULL is nil. The
// test fails, showing DuckDB's error, if the query fails.
func DuckDB(t testing.TB, sql string) [][]any {
	t.Helper()
	v := need(t, EnvPython, EnvDuckQ)
	s3 := S3(t)
	ctx, cancel := context.WithTimeout(context.Background(), DuckDBTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v[0], v[1], "--s3-endpoint", s3.Endpoint, "--sql", sql)
	cmd.Env = append(os.Environ(),
		EnvS3AccessKey+"="+s3.AccessKey, EnvS3SecretKey+"="+s3.SecretKey, EnvS3Region+"="+s3.Region)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb query failed: %v\nsql: %s\n%s", err, sql, strings.TrimSpace(stderr.String()))
	}
	var rows [][]any
	for _, line := range bytes.Split(stdout.Bytes(), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var row []any
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("duckdb output line %q: %v\nsql: %s", line, err, sql)
		}
		rows = append(rows, row)
	}
	return rows
}

// UniqueName returns prefix-<test name>-<random> in lowercase letters, digits and '-', at
// most 100 characters: unique per test and per run, and valid as a Kafka topic, a consumer
// group and an S3 key prefix, so tests sharing the bed never see each other's data.
func UniqueName(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := sanitize(t.Name())
	if len(name) > 60 {
		name = strings.Trim(name[:60], "-")
	}
	parts := make([]string, 0, 3)
	if p := sanitize(prefix); p != "" {
		if len(p) > 30 {
			p = strings.Trim(p[:30], "-")
		}
		parts = append(parts, p)
	}
	if name != "" {
		parts = append(parts, name)
	}
	return strings.Join(append(parts, hex.EncodeToString(b[:])), "-")
}

// sanitize lowercases s and turns every run of other characters than [a-z0-9] into '-'.
func sanitize(s string) string {
	var sb strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
			dash = false
		} else if !dash {
			sb.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(sb.String(), "-")
}

// Package testbed gives tests the servers of the local test bed (deploy/local/bed.sh):
// a real Kafka broker, a real S3 server and DuckDB as an independent reader.
// Without the bed a test is skipped, or fails when LAKESINK_REQUIRE_BED=1 (make test).
package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const notRunning = "test bed not running: run `make test`, or `deploy/local/bed.sh up` and `eval \"$(deploy/local/bed.sh env)\"`"

func need(t testing.TB, names ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test bed; skipped with -short")
	}
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = os.Getenv(n)
		if vals[i] == "" {
			if os.Getenv("LAKESINK_REQUIRE_BED") == "1" {
				t.Fatalf("%s (%s is unset)", notRunning, n)
			}
			t.Skipf("%s (%s is unset)", notRunning, n)
		}
	}
	return vals
}

// Kafka returns the bootstrap brokers of the bed's Kafka.
func Kafka(t testing.TB) []string {
	t.Helper()
	return strings.Split(need(t, "LAKESINK_TEST_KAFKA_BROKERS")[0], ",")
}

// KafkaSCRAM returns the bed broker's SASL_PLAINTEXT listener (SCRAM-SHA-256/512);
// tests create their users through the admin API on the plaintext listener.
func KafkaSCRAM(t testing.TB) []string {
	t.Helper()
	return strings.Split(need(t, "LAKESINK_TEST_KAFKA_SCRAM_BROKERS")[0], ",")
}

// S3Config locates the bed's S3 server and its test bucket.
type S3Config struct {
	Endpoint, AccessKey, SecretKey, Region, Bucket string
}

// S3 returns the bed's S3 server.
func S3(t testing.TB) S3Config {
	t.Helper()
	v := need(t, "LAKESINK_TEST_S3_ENDPOINT", "LAKESINK_TEST_S3_ACCESS_KEY", "LAKESINK_TEST_S3_SECRET_KEY",
		"LAKESINK_TEST_S3_REGION", "LAKESINK_TEST_S3_BUCKET")
	return S3Config{Endpoint: v[0], AccessKey: v[1], SecretKey: v[2], Region: v[3], Bucket: v[4]}
}

// DuckDB runs one SQL query in DuckDB (with httpfs pointed at the bed's S3 server)
// and returns its rows; values come back as JSON numbers, strings, booleans or nil.
func DuckDB(t testing.TB, sql string) [][]any {
	t.Helper()
	v := need(t, "LAKESINK_TEST_PYTHON", "LAKESINK_TEST_DUCKQ")
	s3 := S3(t)
	cmd := exec.Command(v[0], v[1], "--sql", sql)
	cmd.Env = append(os.Environ(), "LAKESINK_TEST_S3_ENDPOINT="+s3.Endpoint)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb query failed: %v\nsql: %s\n%s", err, sql, stderr.String())
	}
	var rows [][]any
	for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var row []any
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("duckdb output %q: %v", line, err)
		}
		rows = append(rows, row)
	}
	return rows
}

var unsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// UniqueName returns a name for topics, groups and key prefixes that is unique to
// this test and this run.
func UniqueName(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := unsafe.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return prefix + "-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b[:])
}

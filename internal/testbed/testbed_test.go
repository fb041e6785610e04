package testbed

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	a, b := UniqueName(t, "E2E_x"), UniqueName(t, "E2E_x")
	if a == b {
		t.Fatalf("two names are equal: %s", a)
	}
	if !strings.HasPrefix(a, "e2e-x-testuniquename-") || !valid.MatchString(a) {
		t.Fatalf("bad name %q", a)
	}
	t.Run("Sub/test with spaces+plus", func(t *testing.T) {
		n := UniqueName(t, strings.Repeat("p", 80))
		if !valid.MatchString(n) || len(n) > 100 || !strings.Contains(n, "-sub-test-with-spaces-plus-") {
			t.Fatalf("bad name %q (%d)", n, len(n))
		}
	})
	if n := UniqueName(t, ""); !strings.HasPrefix(n, "testuniquename-") {
		t.Fatalf("bad name %q", n)
	}
}

// TestBed checks that the bed's servers answer (skipped without the bed).
func TestBed(t *testing.T) {
	for _, b := range Kafka(t) {
		c, err := net.DialTimeout("tcp", b, 5*time.Second)
		if err != nil {
			t.Fatalf("kafka %s: %v", b, err)
		}
		c.Close()
	}
	for _, b := range KafkaSCRAM(t) {
		c, err := net.DialTimeout("tcp", b, 5*time.Second)
		if err != nil {
			t.Fatalf("kafka SCRAM listener %s: %v", b, err)
		}
		c.Close()
	}
	s3 := S3(t)
	if s3.Endpoint == "" || s3.Bucket == "" {
		t.Fatalf("incomplete S3 config %+v", s3)
	}
	rows := DuckDB(t, "SELECT 42, 'x', NULL, 2::HUGEINT ** 1 > 1, 9007199254740993::BIGINT")
	if len(rows) != 1 || len(rows[0]) != 5 || rows[0][0] != float64(42) || rows[0][1] != "x" || rows[0][2] != nil ||
		rows[0][3] != true || rows[0][4] != "9007199254740993" {
		t.Fatalf("DuckDB rows %#v", rows)
	}
}

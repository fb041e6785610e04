package config_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/config"
)

func env(k string) string {
	if k == "TEST_KAFKA_PASSWORD" {
		return "s3cret"
	}
	return ""
}

func TestGoodConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/config/*.good.yaml")
	if len(files) < 2 {
		t.Fatalf("found %d good fixtures", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Load(f, env)
			if err != nil {
				t.Fatal(err)
			}
			out, err := cfg.Redacted()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), "s3cret") {
				t.Fatalf("secret printed:\n%s", out)
			}
		})
	}
}

func TestDefaultsKeptForOmittedKeys(t *testing.T) {
	cfg, err := config.Load("../../testdata/config/minimal.good.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	tb := cfg.Tables[0]
	if tb.EventTime.Granularity != "hour" || tb.EventTime.Source != "kafka" || tb.Format != "json" {
		t.Errorf("table defaults lost: %+v", tb)
	}
	if tb.Columns[0].Path != "id" {
		t.Errorf("column path default = %q, want id", tb.Columns[0].Path)
	}
	if cfg.Flush.MaxAge != 5*time.Minute || cfg.Flush.MemoryBudget != 512*config.MiB || cfg.Kafka.Group != "lakesink" {
		t.Errorf("defaults lost: %+v %+v", cfg.Flush, cfg.Kafka)
	}
	full, err := config.Load("../../testdata/config/full.good.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if full.S3.UploadConcurrency != 4 || full.S3.MaxAttempts != 10 || full.S3.RequestTimeout != 30*time.Second {
		t.Errorf("s3 defaults lost: %+v", full.S3)
	}
	if full.Kafka.SASL.Password != "s3cret" {
		t.Errorf("password not read from env")
	}
}

// Each bad fixture starts with "# want: <text>"; loading it must fail with that text.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/config/*.bad.yaml")
	if len(files) < 20 {
		t.Fatalf("found only %d bad fixtures", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wantLine(t, f)
			_, err := config.Load(f, env)
			if err == nil {
				t.Fatalf("loaded without error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q\ndoes not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), filepath.Base(f)) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func wantLine(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	want, ok := strings.CutPrefix(sc.Text(), "# want: ")
	if !ok {
		t.Fatalf("%s: first line must be '# want: <error text>'", path)
	}
	return want
}

func TestParseType(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "string", want: "string"},
		{in: "Decimal(10, 2)", want: "decimal(10,2)"},
		{in: "list<struct<a:int64, b:list<string>>>", want: "list<struct<a:int64,b:list<string>>>"},
		{in: "map<string,double>", want: "map<string,float64>"},
		{in: "map<int64,string>", err: "map keys must be string"},
		{in: "decimal(5,6)", err: "scale 0..precision"},
		{in: "struct<a:string,a:int32>", err: "duplicate struct field"},
		{in: "list<string", err: "expected '>'"},
		{in: "string extra", err: "unexpected"},
	} {
		got, err := config.ParseType(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseType(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseType(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestMaxLatenessDefaultsToCompactionLateness(t *testing.T) {
	full, err := config.Load("../../testdata/config/full.good.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if got := full.MaxLateness(&full.Tables[0]); got != 10*time.Minute {
		t.Errorf("max_lateness of %s = %s, want the 10m set", full.Tables[0].Name, got)
	}
	if got := full.MaxLateness(&full.Tables[1]); got != full.Compaction.Lateness {
		t.Errorf("max_lateness of %s = %s, want compaction.lateness %s", full.Tables[1].Name, got, full.Compaction.Lateness)
	}
	if full.Compaction.MaxWait != 6*time.Hour {
		t.Errorf("compaction.max_wait = %s, want 6h", full.Compaction.MaxWait)
	}
}

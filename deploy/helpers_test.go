package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// repoRoot is the lakesink repository (the parent of this module).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Dir(filepath.Dir(file))
}

// deployDir is this module's directory.
func deployDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deploy")
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// lakesinkBinary builds the real binary once per test process exactly as the container
// image does (deploy/Dockerfile): `CGO_ENABLED=0 make build BIN=...` in the repository root,
// i.e. `go build -o BIN ./cmd/lakesink` with the Makefile's GOFLAGS. The tests therefore run
// the artifact that ships. LAKESINK_TEST_BIN names an already built binary to use instead.
func lakesinkBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("LAKESINK_TEST_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		binDir, binErr = os.MkdirTemp("", "lakesink-deploy-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "lakesink")
		start := time.Now()
		cmd := exec.Command("make", "--no-print-directory", "build", "BIN="+binPath)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("CGO_ENABLED=0 make build: %w\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "built lakesink (CGO_ENABLED=0 make build) in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runLakesink runs the binary with args and returns its exit code and combined output.
func runLakesink(t testing.TB, env []string, args ...string) (int, string) {
	t.Helper()
	bin := lakesinkBinary(t) // may build it: not part of the run's time limit
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run lakesink %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

// checkConfig validates a lakesink config file with `lakesink check`, the binary's own
// strict loader (unknown keys, bad values and cross-key rules all fail).
func checkConfig(t testing.TB, name string, data []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lakesink.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runLakesink(t, nil, "check", "-c", path); code != 0 {
		t.Errorf("%s: lakesink check exited %d:\n%s", name, code, out)
	}
}

// lakesinkConfig is the part of the lakesink config the deployment files must agree with.
type lakesinkConfig struct {
	Kafka struct {
		Brokers []string `json:"brokers"`
		Group   string   `json:"group"`
	} `json:"kafka"`
	S3 *struct {
		Bucket string `json:"bucket"`
		Region string `json:"region"`
	} `json:"s3"`
	Flush struct {
		MemoryBudget    string `json:"memory_budget"`
		ShutdownTimeout string `json:"shutdown_timeout"`
	} `json:"flush"`
	HTTP struct {
		Listen string `json:"listen"`
	} `json:"http"`
	Catalog struct {
		Type      string `json:"type"`
		Namespace string `json:"namespace"`
	} `json:"catalog"`
	Compaction struct {
		PushgatewayURL string `json:"pushgateway_url"`
	} `json:"compaction"`
	Tables []struct {
		Name   string   `json:"name"`
		Topics []string `json:"topics"`
	} `json:"tables"`
}

func parseLakesinkConfig(t testing.TB, data []byte) lakesinkConfig {
	t.Helper()
	var c lakesinkConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("parse lakesink config: %v", err)
	}
	return c
}

// shutdownTimeout is flush.shutdown_timeout with the binary's default.
func (c lakesinkConfig) shutdownTimeout(t testing.TB) time.Duration {
	if c.Flush.ShutdownTimeout == "" {
		return 60 * time.Second
	}
	d, err := time.ParseDuration(c.Flush.ShutdownTimeout)
	if err != nil {
		t.Fatalf("flush.shutdown_timeout: %v", err)
	}
	return d
}

// memoryBudget is flush.memory_budget in bytes, with the binary's default.
func (c lakesinkConfig) memoryBudget(t testing.TB) int64 {
	if c.Flush.MemoryBudget == "" {
		return 512 << 20
	}
	n, err := parseByteSize(c.Flush.MemoryBudget)
	if err != nil {
		t.Fatalf("flush.memory_budget: %v", err)
	}
	return n
}

func (c lakesinkConfig) topics() []string {
	var out []string
	for _, tb := range c.Tables {
		out = append(out, tb.Topics...)
	}
	return out
}

// parseByteSize parses the config's sizes: a number with an optional KiB/MiB/GiB/KB/MB/GB/B unit.
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	s = strings.TrimSpace(s)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var n int64
			if _, err := fmt.Sscanf(strings.TrimSpace(num), "%d", &n); err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return n * u.mult, nil
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n, nil
}

func yamlUnmarshal(data []byte, v any) error { return yaml.Unmarshal(data, v) }

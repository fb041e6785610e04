package deploy_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// The compose file is loaded with compose-go (the library `docker compose` uses), with
// schema validation, and checked for what the stack needs to work: the lakesink services
// build this repository's image, their config passes `lakesink check` and points at the
// services that exist, and every server is under a permissive licence.
func TestComposeStack(t *testing.T) {
	dir := deployDir(t)
	ctx := context.Background()
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}, loader.WithProfiles([]string{"*"}), func(o *loader.Options) { o.SetProjectName("lakesink", true) })
	if err != nil {
		t.Fatalf("compose-go: %v", err)
	}
	for _, name := range []string{"kafka", "kafka-init", "s3", "s3-init", "postgres", "sink", "compact", "produce", "prometheus", "pushgateway"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %q", name)
		}
	}
	agpl := regexp.MustCompile(`(?i)minio|garage|grafana`)
	for name, s := range p.Services {
		if agpl.MatchString(s.Image) {
			t.Errorf("service %s uses %s: keep the stack Apache/BSD/PostgreSQL-licensed", name, s.Image)
		}
		if s.Image != "" && !strings.Contains(s.Image, ":") {
			t.Errorf("service %s: image %s has no tag", name, s.Image)
		}
	}
	for _, name := range []string{"sink", "compact"} {
		s := p.Services[name]
		if s.Build == nil {
			t.Fatalf("%s does not build the image", name)
		}
		if got := filepath.Clean(s.Build.Context); got != repoRoot(t) {
			t.Errorf("%s build context %s, want the repository root %s", name, got, repoRoot(t))
		}
		if s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s dockerfile %q, want deploy/Dockerfile", name, s.Build.Dockerfile)
		}
		// The config file it mounts exists and is valid.
		var cfgPath string
		for _, v := range s.Volumes {
			if v.Target == "/etc/lakesink/lakesink.yaml" {
				cfgPath = v.Source
			}
		}
		if cfgPath == "" {
			t.Fatalf("%s mounts no /etc/lakesink/lakesink.yaml", name)
		}
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkConfig(t, name+" config", raw)
		cfg := parseLakesinkConfig(t, raw)
		if !slices.Contains(s.Command, "-c") || !slices.Contains(s.Command, "/etc/lakesink/lakesink.yaml") {
			t.Errorf("%s command %q does not read the mounted config", name, s.Command)
		}
		for _, b := range cfg.Kafka.Brokers {
			host, _, _ := strings.Cut(b, ":")
			if _, ok := p.Services[host]; !ok {
				t.Errorf("%s config broker %s is not a compose service", name, b)
			}
		}
		if cfg.S3 == nil {
			t.Fatalf("%s: the compose config should use the s3 service", name)
		}
		var c struct {
			S3 struct {
				Endpoint string `json:"endpoint"`
			} `json:"s3"`
			Catalog struct {
				SQL struct {
					DSNEnv string `json:"dsn_env"`
				} `json:"sql"`
			} `json:"catalog"`
		}
		must(t, yamlUnmarshal(raw, &c))
		u, err := url.Parse(c.S3.Endpoint)
		if err != nil || p.Services[u.Hostname()].Name == "" {
			t.Errorf("%s config s3.endpoint %q is not a compose service", name, c.S3.Endpoint)
		}
		if env := c.Catalog.SQL.DSNEnv; env != "" {
			if v := s.Environment[env]; v == nil || *v == "" {
				t.Errorf("%s: catalog.sql.dsn_env names %s, which the service does not set", name, env)
			}
		}
		if name == "compact" && !slices.Contains(s.Command, "--idle-exit-code=0") {
			t.Errorf("compact command %q: an idle run must exit 0", s.Command)
		}
		if cfg.Compaction.PushgatewayURL != "" {
			u, err := url.Parse(cfg.Compaction.PushgatewayURL)
			if err != nil || p.Services[u.Hostname()].Name == "" {
				t.Errorf("compaction.pushgateway_url %q is not a compose service", cfg.Compaction.PushgatewayURL)
			}
		}
	}
	if s := p.Services["sink"]; s.StopGracePeriod == nil {
		t.Error("sink needs a stop_grace_period longer than flush.shutdown_timeout")
	}
	for _, f := range []string{"compose/prometheus.yml", "compose/events.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCIWorkflow checks the GitHub Actions workflow runs what .ci/run runs (make test) with
// the Go caches, and builds the image from deploy/Dockerfile without pushing on pull requests.
func TestCIWorkflow(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", "ci.yml"))
	must(t, err)
	type step struct {
		Name string            `yaml:"name"`
		ID   string            `yaml:"id"`
		If   string            `yaml:"if"`
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		With map[string]any    `yaml:"with"`
		Env  map[string]string `yaml:"env"`
	}
	var wf struct {
		Name        string            `yaml:"name"`
		On          map[string]any    `yaml:"on"`
		Permissions map[string]string `yaml:"permissions"`
		Concurrency map[string]any    `yaml:"concurrency"`
		Jobs        map[string]struct {
			Needs          any               `yaml:"needs"`
			RunsOn         string            `yaml:"runs-on"`
			TimeoutMinutes int               `yaml:"timeout-minutes"`
			Permissions    map[string]string `yaml:"permissions"`
			Steps          []step            `yaml:"steps"`
		} `yaml:"jobs"`
	}
	// yaml.v3: YAML 1.2 booleans, so the key "on" stays a string, as GitHub reads it.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&wf); err != nil {
		t.Fatalf("ci.yml: %v", err)
	}
	for _, ev := range []string{"push", "pull_request"} {
		if _, ok := wf.On[ev]; !ok {
			t.Errorf("workflow does not run on %s", ev)
		}
	}
	ciRun, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	must(t, err)
	var makeTest, goCache, image bool
	pinned := regexp.MustCompile(`^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+)*|[0-9a-f]{40})$`)
	for jn, job := range wf.Jobs {
		if job.TimeoutMinutes == 0 {
			t.Errorf("job %s has no timeout-minutes", jn)
		}
		for _, s := range job.Steps {
			if s.Uses != "" && !pinned.MatchString(s.Uses) {
				t.Errorf("job %s: action %q is not pinned to a version", jn, s.Uses)
			}
			if strings.TrimSpace(s.Run) == "make test" && strings.Contains(string(ciRun), "make test") {
				makeTest = true
			}
			if strings.HasPrefix(s.Uses, "actions/setup-go@") && s.With["cache"] == true {
				goCache = true
			}
			if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
				image = true
				if s.With["file"] != "deploy/Dockerfile" || s.With["context"] != "." {
					t.Errorf("image build uses file %v context %v, want deploy/Dockerfile and .", s.With["file"], s.With["context"])
				}
				if push, _ := s.With["push"].(string); !strings.Contains(push, "pull_request") {
					t.Errorf("image push %v: must not push on pull requests", s.With["push"])
				}
			}
		}
	}
	if !makeTest {
		t.Error("no job runs make test (what .ci/run runs)")
	}
	if !goCache {
		t.Error("setup-go runs without the Go module and build cache")
	}
	if !image {
		t.Error("no job builds the image with docker/build-push-action")
	}
}

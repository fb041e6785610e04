package deploy_test

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No container engine runs here, so the image is checked by reading the Dockerfile: its
// build stage must run the Makefile's `build` target (static, for the target platform),
// and the final stage must hold that one binary, non-root. The binary the other tests run
// is built the same way (lakesinkBinary), and is checked here to be static with the
// expected build settings.

// dockerInstruction is one instruction of a Dockerfile, continuation lines joined.
type dockerInstruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) [][]dockerInstruction {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var stages [][]dockerInstruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			stages = append(stages, nil) // ARGs before the first FROM
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(string(data), "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "#") {
			continue
		}
		if body, ok := strings.CutSuffix(trim, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trim)
		flush()
	}
	flush()
	return stages
}

// makeRecipe returns the recipe lines of a Makefile target.
func makeRecipe(t *testing.T, target string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	must(t, err)
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, target+":"):
			in = true
		case in && strings.HasPrefix(line, "\t"):
			out = append(out, strings.TrimSpace(line))
		case in:
			return out
		}
	}
	return out
}

func TestDockerfileBuildsWhatMakeBuilds(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(deployDir(t), "Dockerfile"))
	var froms []dockerInstruction
	for _, st := range stages {
		if len(st) > 0 && st[0].cmd == "FROM" {
			froms = append(froms, st[0])
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found %d stages", len(froms))
	}

	// The Makefile's build target compiles ./cmd/lakesink into $(BIN) with GOFLAGS from
	// the Makefile; the image must run exactly that target.
	recipe := makeRecipe(t, "build")
	if len(recipe) != 1 || !regexp.MustCompile(`^\$\(GO\) build -o \$\(BIN\) \./cmd/lakesink$`).MatchString(recipe[0]) {
		t.Fatalf("Makefile build recipe %q changed: update the Dockerfile check (and the Dockerfile) to match", recipe)
	}
	build := stages[len(stages)-2]
	var makeRun string
	for _, in := range build {
		if in.cmd == "RUN" && regexp.MustCompile(`\bmake build\b`).MatchString(in.args) {
			makeRun = in.args
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			t.Errorf("the build stage runs go build directly (%q): run make build so the flags cannot drift", in.args)
		}
	}
	if makeRun == "" {
		t.Fatal("the build stage does not run make build")
	}
	m := regexp.MustCompile(`\bBIN=(\S+)`).FindStringSubmatch(makeRun)
	if m == nil {
		t.Fatalf("make build without BIN=: %q", makeRun)
	}
	binInBuild := m[1]
	if !strings.Contains(makeRun, "CGO_ENABLED=0") {
		t.Errorf("make build must run with CGO_ENABLED=0 (a static binary for distroless/static): %q", makeRun)
	}
	if !strings.Contains(makeRun, "GOOS=$TARGETOS") || !strings.Contains(makeRun, "GOARCH=$TARGETARCH") {
		t.Errorf("make build should target $TARGETOS/$TARGETARCH (multi-platform builds): %q", makeRun)
	}

	// Go version of the builder = the go directive of go.mod.
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	must(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	argLine := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\d+\.\d+)`).FindStringSubmatch(joinArgs(stages))
	if goLine == nil || argLine == nil || goLine[1] != argLine[1] {
		t.Errorf("Dockerfile GO_VERSION %v, go.mod go %v", argLine, goLine)
	}

	// Final stage: distroless static (or scratch), the one binary, non-root.
	final := stages[len(stages)-1]
	base := final[0].args
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static or scratch", base)
	}
	var copies []string
	user, entry := "", ""
	for _, in := range final[1:] {
		switch in.cmd {
		case "COPY", "ADD":
			copies = append(copies, in.args)
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "RUN":
			t.Errorf("final stage runs %q: a distroless image has no shell", in.args)
		}
	}
	if len(copies) != 1 {
		t.Fatalf("final stage copies %v: want the binary only", copies)
	}
	f := strings.Fields(copies[0])
	if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") || f[1] != binInBuild {
		t.Errorf("final stage COPY %q: want --from=<build stage> %s <dest>", copies[0], binInBuild)
	}
	if len(f) == 3 && entry != `["`+f[2]+`"]` {
		t.Errorf("ENTRYPOINT %s: want [%q]", entry, f[2])
	}
	if !slices.Contains([]string{"65532", "65532:65532", "nonroot", "nonroot:nonroot"}, user) {
		t.Errorf("USER %q: want the distroless nonroot user (65532)", user)
	}

	// The build context: the ignore file keeps the bed, build output and VCS data out,
	// and keeps every Go source in.
	ign, err := os.ReadFile(filepath.Join(deployDir(t), "Dockerfile.dockerignore"))
	must(t, err)
	patterns := strings.Fields(regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(string(ign), ""))
	for _, want := range []string{".git", ".bed", "bin"} {
		if !slices.Contains(patterns, want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "Makefile", "cmd", "lake", "sink", "decode", "deadletter", "internal", "compaction", "bench"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, keep); ok {
				t.Errorf("Dockerfile.dockerignore pattern %q excludes %s, which the build needs", p, keep)
			}
		}
	}
}

func joinArgs(stages [][]dockerInstruction) string {
	var b strings.Builder
	for _, st := range stages {
		for _, in := range st {
			b.WriteString(in.cmd + " " + in.args + "\n")
		}
	}
	return b.String()
}

// TestImageBinaryIsStatic checks the binary built the image's way (CGO_ENABLED=0 make
// build): statically linked, the lakesink command, no cgo.
func TestImageBinaryIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	if os.Getenv("LAKESINK_TEST_BIN") != "" {
		t.Skip("LAKESINK_TEST_BIN is set: the binary was not built the image's way")
	}
	bin := lakesinkBinary(t)
	f, err := elf.Open(bin)
	must(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked and will not run on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	info, err := buildinfo.ReadFile(bin)
	must(t, err)
	if info.Path != "github.com/lakesink/lakesink/cmd/lakesink" {
		t.Errorf("built %s, want github.com/lakesink/lakesink/cmd/lakesink", info.Path)
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("CGO_ENABLED=%s", s.Value)
		}
	}
}

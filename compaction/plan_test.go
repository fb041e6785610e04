package compaction

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/layout"
)

var update = flag.Bool("update", false, "rewrite the expected output of the planner's text cases")

// TestPlanCases runs testdata/compaction/plan_*.txt: each case lists parameters,
// raw files and table files, then "----" and the plan the planner must print.
// Cases are separated by lines of "====".
func TestPlanCases(t *testing.T) {
	paths, err := filepath.Glob("../testdata/compaction/plan_*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no planner cases found: %v", err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cases := strings.Split(string(data), "\n====\n")
		var out []string
		for i, c := range cases {
			in, want, ok := strings.Cut(c, "\n----")
			if !ok {
				t.Fatalf("%s case %d: no ---- line", path, i+1)
			}
			got, err := runPlanCase(in)
			if err != nil {
				t.Fatalf("%s case %d: %v", path, i+1, err)
			}
			if *update {
				out = append(out, in+"\n----\n"+got)
				continue
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("%s case %d:\n%s\ngot:\n%s\nwant:\n%s", filepath.Base(path), i+1, in, got, want)
			}
		}
		if *update {
			if err := os.WriteFile(path, []byte(strings.Join(out, "\n====\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func runPlanCase(in string) (string, error) {
	p := Params{Granularity: layout.Hour, SmallRatio: 0.75, Target: 100}
	var raw []RawFile
	var files []TableFile
	held := Held{}
	hour := func(s string) (layout.Period, error) {
		tm, err := time.Parse("2006-01-02T15", s)
		if err != nil {
			return 0, err
		}
		return layout.PeriodOf(p.Granularity, tm.UnixMicro()), nil
	}
	for n, line := range strings.Split(in, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		kv := map[string]string{}
		for _, a := range f[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				kv[k] = v
			}
		}
		bad := func(err error) error { return fmt.Errorf("line %d %q: %v", n+1, line, err) }
		switch f[0] {
		case "params":
			var err error
			if p.Now, err = time.Parse(time.RFC3339, kv["now"]); err != nil {
				return "", bad(err)
			}
			if p.Lateness, err = time.ParseDuration(kv["lateness"]); err != nil {
				return "", bad(err)
			}
			if p.Grace, err = time.ParseDuration(kv["grace"]); err != nil {
				return "", bad(err)
			}
			if v, ok := kv["target"]; ok {
				p.Target, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := kv["max_periods"]; ok {
				p.MaxPeriods, _ = strconv.Atoi(v)
			}
			if v, ok := kv["through"]; ok {
				if p.Through, err = time.Parse(time.RFC3339, v); err != nil {
					return "", bad(err)
				}
			}
		case "raw": // raw HOUR topic.partition.first size=N [last=M|unknown] (last defaults to first)
			per, err := hour(f[1])
			if err != nil {
				return "", bad(err)
			}
			parts := strings.Split(f[2], ".")
			pn, _ := strconv.Atoi(parts[1])
			first, _ := strconv.ParseInt(parts[2], 10, 64)
			size, _ := strconv.ParseInt(kv["size"], 10, 64)
			last := first
			switch v := kv["last"]; v {
			case "":
			case "unknown":
				last = LastUnknown
			default:
				if last, err = strconv.ParseInt(v, 10, 64); err != nil {
					return "", bad(err)
				}
			}
			raw = append(raw, RawFile{Key: f[2], Topic: parts[0], Partition: int32(pn), First: first, Last: last, Size: size, Period: per})
		case "table", "held":
			// table HOUR NAME size=N [covers=... committed=...]: a table file, and
			// what the coverage index holds from the commit that added it.
			// held HOUR covers=t/p/first-last,... committed=RFC3339|unknown: what
			// the index holds, whatever files hold it now (another engine's
			// rewrite replaced the file the commit added).
			per, err := hour(f[1])
			if err != nil {
				return "", bad(err)
			}
			if f[0] == "table" {
				size, _ := strconv.ParseInt(kv["size"], 10, 64)
				files = append(files, TableFile{Path: f[2], Period: per, Size: size})
			}
			var committed time.Time
			if c := kv["committed"]; c != "" && c != "unknown" {
				if committed, err = time.Parse(time.RFC3339, c); err != nil {
					return "", bad(err)
				}
			}
			if c := kv["covers"]; c != "" {
				for _, r := range strings.Split(c, ",") {
					var topic string
					var part int32
					var rg Range
					if _, err := fmt.Sscanf(strings.ReplaceAll(r, "/", " "), "%s %d %d-%d", &topic, &part, &rg.First, &rg.Last); err != nil {
						return "", bad(err)
					}
					held.Add(per, topic, part, rg, committed)
				}
			}
		default:
			return "", bad(fmt.Errorf("unknown directive %q", f[0]))
		}
	}
	plan := Build(p, raw, files, held)
	var b strings.Builder
	for _, g := range plan.Groups {
		fmt.Fprintf(&b, "group %s bytes=%d\n", g.Period.Start(p.Granularity).Format("2006-01-02T15"), g.Bytes)
		for _, r := range g.Raw {
			fmt.Fprintf(&b, "  raw %s\n", r.Key)
		}
		for _, f := range g.Table {
			fmt.Fprintf(&b, "  table %s\n", f.Path)
		}
	}
	for _, r := range plan.Delete {
		fmt.Fprintf(&b, "delete %s\n", r.Key)
	}
	fmt.Fprintf(&b, "covered=%d open=%d skipped=%d\n", plan.Covered, plan.Open, plan.Skipped)
	if plan.Deferred > 0 {
		fmt.Fprintf(&b, "deferred=%d first=%s\n", plan.Deferred, plan.FirstDeferred.Start(p.Granularity).Format("2006-01-02T15"))
	}
	return b.String(), nil
}

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestE2ECompactMaxDuration: on the fixture's 4 closed hours with one
// partition per commit, `lakesink compact --max-duration 1ns` (past as soon
// as the first commit is in) stops between commits: exit 0, one commit,
// "more to do" in the summary and lakesink_compaction_more_to_do 1. The next
// run without a bound makes the other 3 commits in one go, and the table
// holds every event exactly once.
func TestE2ECompactMaxDuration(t *testing.T) {
	f := sinkFixture(t)
	prefix, _ := f.lakeFor(t)
	catYAML, uri, wh := sqliteCatalog(t, f.b, prefix)
	cfg := f.compactConfig(t, prefix, catYAML, "  max_partitions_per_commit: 1")
	hours := len(f.expect.PerHour)
	if hours < 2 {
		t.Fatalf("fixture spans %d hours, want at least 2", hours)
	}
	code, out, m := f.compactRunFor(t, 5*time.Minute, cfg, "--max-duration=1ns")
	if code != 0 || !strings.Contains(out, "more to do") || !strings.Contains(out, " in 1 commit(s)") {
		t.Fatalf("bounded run: exit %d, want 0 with 1 commit and more to do:\n%s", code, out)
	}
	if m["lakesink_compaction_more_to_do"] != 1 {
		t.Fatalf("bounded run: lakesink_compaction_more_to_do = %v, want 1", m["lakesink_compaction_more_to_do"])
	}
	code, out, m = f.compactRunFor(t, 5*time.Minute, cfg)
	if code != 0 || strings.Contains(out, "more to do") || !strings.Contains(out, fmt.Sprintf(" in %d commit(s)", hours-1)) {
		t.Fatalf("second run: exit %d, want 0 with %d commits and nothing more to do:\n%s", code, hours-1, out)
	}
	if m["lakesink_compaction_more_to_do"] != 0 {
		t.Fatalf("second run: lakesink_compaction_more_to_do = %v, want 0", m["lakesink_compaction_more_to_do"])
	}
	if !strings.Contains(out, "progress table=events partitions=") {
		t.Errorf("second run printed no per-commit progress:\n%s", out)
	}
	checkExact(t, f, readIceberg(t, f, "sql", uri, wh, "lake.events", ""))
}

package layout_test

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
)

var dirRE = map[layout.Granularity]*regexp.Regexp{
	layout.Hour: regexp.MustCompile(`^dt=-?[0-9]{4,}-[0-9]{2}-[0-9]{2}/hour=[0-9]{2}$`),
	layout.Day:  regexp.MustCompile(`^dt=-?[0-9]{4,}-[0-9]{2}-[0-9]{2}$`),
}

// FuzzPartitionDir: for any event time the partition directory is one dt= segment (plus
// hour=), the period contains the time and round-trips; and for any table name the
// configuration accepts, every raw key of the table stays under raw/<table>/ as a clean
// path that parses back to the table. (FuzzRawKey covers topics, partitions and offsets.)
// Event times beyond ±9e18 µs cannot reach the layout: the decoder bounds epoch values
// there and event_time.not_before / max_future reject them.
func FuzzPartitionDir(f *testing.F) {
	f.Add("events", int64(1764000000000000), false)
	f.Add("../../etc", int64(-1), true)
	f.Add("a/b", int64(9_000_000_000_000_000_000), false)
	f.Add("t", int64(-9_000_000_000_000_000_000), true)
	f.Add("x_"+strings.Repeat("y", 126), int64(-9223372036854775808), false)
	f.Add("\xff", int64(9223372036854775807), true)
	f.Add("raw", int64(253402300799999999), false)   // 9999-12-31T23:59:59.999999Z
	f.Add("Events", int64(-62135596800000000), true) // 0001-01-01
	f.Fuzz(func(t *testing.T, table string, micros int64, day bool) {
		g := layout.Hour
		if day {
			g = layout.Day
		}
		p := layout.PeriodOf(g, micros)
		dir := layout.Dir(g, p)
		if !dirRE[g].MatchString(dir) {
			t.Fatalf("Dir(%d) = %q", micros, dir)
		}
		if micros >= -9e18 && micros <= 9e18 {
			start := p.Start(g).UnixMicro()
			if start > micros || micros-start >= g.Micros() || layout.PeriodOf(g, start) != p {
				t.Fatalf("period %d (start %d) does not hold %d", p, start, micros)
			}
		}
		if !strings.HasPrefix(layout.RawPrefix(table), "raw/") || !strings.HasSuffix(layout.RawPrefix(table), "/") {
			t.Fatalf("RawPrefix(%q) = %q", table, layout.RawPrefix(table))
		}
		name, ok := acceptedTableName(table)
		if !ok {
			return
		}
		key := layout.RawKey(name, g, p, "topic", 0, 0)
		if !strings.HasPrefix(key, "raw/"+name+"/dt=") || path.Clean(key) != key || strings.Count(key, "/") != 3+map[bool]int{false: 1, true: 0}[day] {
			t.Fatalf("table %q: key %q escapes or is not clean", name, key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("table %q: key %q has segment %q", name, key, seg)
			}
		}
		if y := p.Start(g).Year(); y >= 0 && y <= 9999 {
			rf, err := layout.ParseRawKey(g, key)
			if err != nil || rf.Table != name || rf.Period != p {
				t.Fatalf("ParseRawKey(%q) = %+v, %v", key, rf, err)
			}
		}
	})
}

// acceptedTableName returns the name the configuration keeps for a table declared as
// name, if it accepts the table at all.
func acceptedTableName(name string) (string, bool) {
	q, err := json.Marshal(name) // JSON strings are YAML double-quoted scalars
	if err != nil {
		return "", false
	}
	doc := "kafka: {brokers: [\"b:9092\"]}\nlocal_dir: /tmp/lake\ndead_letter: {topic: dlq}\n" +
		"tables: [{name: " + string(q) + ", topics: [a], columns: [{name: id, type: string}]}]\n"
	cfg, err := config.Parse([]byte(doc), func(string) string { return "" })
	if err != nil {
		return "", false
	}
	return cfg.Tables[0].Name, true
}

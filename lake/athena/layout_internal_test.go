package athena

import (
	"path"
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
)

// TestTemplateMatchesLayout fills the raw table's storage.location.template with the values
// Athena projects for a period and checks the result is the directory layout.RawKey writes
// that period's files to.
func TestTemplateMatchesLayout(t *testing.T) {
	const doc = `kafka: {brokers: ["b:9092"]}
s3: {bucket: bkt, prefix: some/prefix, region: eu-west-1}
dead_letter: {topic: dlq}
tables:
  - {name: hourly, topics: [h], columns: [{name: ts, type: timestamp}], event_time: {column: ts}}
  - {name: daily, topics: [d], columns: [{name: dt, type: string}], event_time: {source: kafka, granularity: day}}
`
	cfg, err := config.Parse([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 13, 59, 59, 0, time.UTC)
	for i := range cfg.Tables {
		tb := &cfg.Tables[i]
		p, err := newPlan(cfg, tb)
		if err != nil {
			t.Fatal(err)
		}
		period := layout.PeriodOf(p.gran, at.UnixMicro())
		key := layout.RawKey(tb.Name, p.gran, period, "topic.with.dots", 3, 42)
		// What Athena substitutes: dt formatted yyyy-MM-dd, hour as a 2-digit integer.
		loc := strings.ReplaceAll(p.rawTemplate(), "${"+p.dt+"}", "2026-11-24")
		if p.hour != "" {
			loc = strings.ReplaceAll(loc, "${"+p.hour+"}", "13")
		}
		want := "s3://bkt/some/prefix/" + path.Dir(key) + "/"
		if loc != want {
			t.Errorf("table %s: template gives %s, the sink writes under %s", tb.Name, loc, want)
		}
		if !strings.HasPrefix(loc, p.rawRoot) {
			t.Errorf("table %s: partition location %s is not under LOCATION %s", tb.Name, loc, p.rawRoot)
		}
	}
}

// TestTypesCoverEveryKind makes sure a new column kind cannot slip past the type mappings.
func TestTypesCoverEveryKind(t *testing.T) {
	for k := config.KindString; k <= config.KindStruct; k++ {
		typ := &config.Type{Kind: k, Precision: 10, Scale: 2}
		leaf := &config.Type{Kind: config.KindTimestamp}
		switch k {
		case config.KindList:
			typ.Elem = leaf
		case config.KindMap:
			typ.Key, typ.Value = &config.Type{Kind: config.KindString}, leaf
		case config.KindStruct:
			typ.Fields = []config.Field{{Name: "f", Type: leaf}}
		}
		if hiveType(typ) == "" || trinoType(typ) == "" {
			t.Errorf("kind %d has no Athena type", k)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", time.Hour: "1h",
		168 * time.Hour: "168h", 90 * time.Minute: "1h30m", 30 * time.Second: "30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

package layout_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lakesink/lakesink/lake/layout"
)

func TestPeriodMatchesIcebergTransforms(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		g    layout.Granularity
		want int64
		dir  string
	}{
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), layout.Hour, 0, "dt=1970-01-01/hour=00"},
		{time.Date(1970, 1, 1, 1, 59, 59, 999999000, time.UTC), layout.Hour, 1, "dt=1970-01-01/hour=01"},
		{time.Date(1969, 12, 31, 23, 30, 0, 0, time.UTC), layout.Hour, -1, "dt=1969-12-31/hour=23"},
		{time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC), layout.Hour, 498757, "dt=2026-11-24/hour=13"},
		{time.Date(2026, 11, 24, 13, 5, 0, 0, time.UTC), layout.Day, 20416 + 365, "dt=2026-11-24"},
	} {
		p := layout.PeriodOf(tc.g, tc.t.UnixMicro())
		if tc.g == layout.Hour && int64(p) != tc.want {
			t.Errorf("hour(%s) = %d, want %d", tc.t, p, tc.want)
		}
		if got := layout.Dir(tc.g, p); got != tc.dir {
			t.Errorf("Dir(%s) = %q, want %q", tc.t, got, tc.dir)
		}
		if !p.Start(tc.g).After(tc.t) && p.Start(tc.g).Add(time.Duration(tc.g.Micros())*time.Microsecond).After(tc.t) {
			continue
		}
		t.Errorf("period %d of %s does not contain it", p, tc.t)
	}
}

func TestRawKeyRoundTrip(t *testing.T) {
	for _, g := range []layout.Granularity{layout.Hour, layout.Day} {
		p := layout.PeriodOf(g, time.Date(2026, 11, 24, 13, 0, 0, 0, time.UTC).UnixMicro())
		key := layout.RawKey("events", g, p, "my.topic-v2", 7, 12345)
		if !strings.HasSuffix(key, "/my.topic-v2.7.00000000000000012345.parquet") || strings.Contains(key, "+") {
			t.Fatalf("key %q", key)
		}
		f, err := layout.ParseRawKey(g, key)
		if err != nil {
			t.Fatal(err)
		}
		want := layout.RawFile{Table: "events", Period: p, Topic: "my.topic-v2", Partition: 7, FirstOffset: 12345}
		if f != want {
			t.Fatalf("parsed %+v, want %+v", f, want)
		}
	}
	for _, bad := range []string{"raw/events/dt=2026-11-24/hour=24/t.1.2.parquet", "raw/events/dt=x/hour=01/t.1.2.parquet",
		"raw/events/dt=2026-11-24/hour=01/t.parquet", "other/events/dt=2026-11-24/hour=01/t.1.2.parquet", "raw/events/dt=2026-11-24/hour=01/t.1.2.csv"} {
		if _, err := layout.ParseRawKey(layout.Hour, bad); err == nil {
			t.Errorf("ParseRawKey(%q) accepted", bad)
		}
	}
}

// FuzzRawKey: whatever the topic name and offsets, a key stays under its table's
// prefix, has no empty or dot segments, and parses back to what built it.
func FuzzRawKey(f *testing.F) {
	f.Add("events", int32(0), int64(0), int64(0))
	f.Add("my.topic-v2_x", int32(99), int64(1)<<62, int64(-1))
	f.Add("..", int32(1), int64(5), int64(1764000000000000))
	f.Fuzz(func(t *testing.T, topic string, partition int32, offset, micros int64) {
		if !validTopic(topic) || partition < 0 || offset < 0 {
			t.Skip()
		}
		for _, g := range []layout.Granularity{layout.Hour, layout.Day} {
			p := layout.PeriodOf(g, micros)
			key := layout.RawKey("events", g, p, topic, partition, offset)
			if !strings.HasPrefix(key, "raw/events/dt=") {
				t.Fatalf("key %q escapes the table prefix", key)
			}
			for _, seg := range strings.Split(key, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("key %q has segment %q", key, seg)
				}
			}
			f, err := layout.ParseRawKey(g, key)
			if err != nil {
				// Years beyond 9999 do not format as YYYY; such event times are rejected
				// long before (event_time.max_future), so only the prefix matters here.
				if y := p.Start(g).Year(); y >= 0 && y <= 9999 {
					t.Fatalf("ParseRawKey(%q): %v", key, err)
				}
				continue
			}
			if f.Topic != topic || f.Partition != partition || f.FirstOffset != offset || f.Period != p {
				t.Fatalf("round trip of %q: %+v", key, f)
			}
		}
	})
}

// validTopic is Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..".
func validTopic(s string) bool {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

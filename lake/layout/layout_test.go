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

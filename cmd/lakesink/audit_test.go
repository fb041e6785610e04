package main

import (
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "90m", want: now.Add(-90 * time.Minute)},
		{in: "2026-12-01T00:00:00Z", want: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{in: "2026-12-01T01:00:00+01:00", want: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{in: "-1h", err: true},
		{in: "yesterday", err: true},
		{in: "2026-12-01", err: true},
	} {
		got, err := parseSince(c.in, now)
		if (err != nil) != c.err || !got.Equal(c.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (error %v)", c.in, got, err, c.want, c.err)
		}
	}
}

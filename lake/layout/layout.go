// Package layout names the lake's objects: event-time periods (UTC hours or days,
// the same buckets as Iceberg's hour() and day() transforms) and raw-zone keys.
package layout

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Granularity is the width of a partition period.
type Granularity int

// Granularities.
const (
	Hour Granularity = iota + 1
	Day
)

// ParseGranularity reads "hour" or "day".
func ParseGranularity(s string) (Granularity, error) {
	switch s {
	case "hour":
		return Hour, nil
	case "day":
		return Day, nil
	}
	return 0, fmt.Errorf("unknown granularity %q (want hour or day)", s)
}

// Micros is the length of one period in microseconds.
func (g Granularity) Micros() int64 {
	if g == Day {
		return 86_400_000_000
	}
	return 3_600_000_000
}

// Period is a partition period: the number of hours (or days) since the Unix epoch,
// exactly the value of Iceberg's hour() (or day()) transform.
type Period int64

// PeriodOf returns the period holding a timestamp in microseconds since the epoch.
// Negative times round down, as Iceberg's transforms do.
func PeriodOf(g Granularity, micros int64) Period {
	w := g.Micros()
	p := micros / w
	if micros%w < 0 {
		p--
	}
	return Period(p)
}

// Start returns the first instant of the period.
func (p Period) Start(g Granularity) time.Time {
	return time.UnixMicro(int64(p) * g.Micros()).UTC()
}

// Dir returns the Hive-style partition path of a period: "dt=2026-11-24/hour=13"
// for hours, "dt=2026-11-24" for days.
func Dir(g Granularity, p Period) string {
	t := p.Start(g)
	if g == Day {
		return "dt=" + t.Format("2006-01-02")
	}
	return "dt=" + t.Format("2006-01-02") + "/hour=" + t.Format("15")
}

// RawPrefix is where a table's raw zone starts: "raw/<table>/".
func RawPrefix(table string) string { return "raw/" + table + "/" }

// RawKey is the key of a raw file: raw/<table>/<partition dir>/<topic>.<partition>.<firstOffset>.parquet.
// The first offset is zero-padded to 20 digits so keys sort in offset order. A replay of the
// same records after a crash produces the same key, which is what makes the sink idempotent.
// (Dots, not the "+" of Kafka Connect: some S3 clients, DuckDB's among them, read "+" in a
// key as a space. Topic names may contain dots too; the name is parsed from the right.)
func RawKey(table string, g Granularity, p Period, topic string, partition int32, firstOffset int64) string {
	var b strings.Builder
	b.Grow(64 + len(table) + len(topic))
	b.WriteString(RawPrefix(table))
	b.WriteString(Dir(g, p))
	b.WriteByte('/')
	b.WriteString(topic)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(int64(partition), 10))
	b.WriteByte('.')
	fmt.Fprintf(&b, "%020d", firstOffset)
	b.WriteString(".parquet")
	return b.String()
}

// CheckpointTopicPrefix is where the sink's offset checkpoints of one consumer group
// and topic live: "checkpoints/<group>/<topic>/" (the group path-escaped: a group
// name may hold a slash).
func CheckpointTopicPrefix(group, topic string) string {
	return "checkpoints/" + url.PathEscape(group) + "/" + topic + "/"
}

// CheckpointPrefix is where the sink's offset checkpoints of one consumer group and
// topic-partition live: "checkpoints/<group>/<topic>/<partition>/", below
// CheckpointTopicPrefix.
func CheckpointPrefix(group, topic string, partition int32) string {
	return CheckpointTopicPrefix(group, topic) + strconv.FormatInt(int64(partition), 10) + "/"
}

// CheckpointKey is the key of one offset checkpoint: the durable ranges above commit
// point offset, written before the offset commit whose metadata names the key.
// unique makes every checkpoint a fresh object, never an overwrite of one a commit
// may still point to.
func CheckpointKey(group, topic string, partition int32, offset int64, unique string) string {
	return CheckpointPrefix(group, topic, partition) + fmt.Sprintf("%020d", offset) + "-" + unique + ".ls1"
}

// RawFile is a parsed raw-zone key.
type RawFile struct {
	Table       string
	Period      Period
	Topic       string
	Partition   int32
	FirstOffset int64
}

// ParseRawKey parses a key written by RawKey.
func ParseRawKey(g Granularity, key string) (RawFile, error) {
	var f RawFile
	rest, ok := strings.CutPrefix(key, "raw/")
	if !ok {
		return f, fmt.Errorf("raw key %q: not under raw/", key)
	}
	parts := strings.Split(rest, "/")
	want := 4
	if g == Day {
		want = 3
	}
	if len(parts) != want {
		return f, fmt.Errorf("raw key %q: want %d path segments", key, want+1)
	}
	f.Table = parts[0]
	dt, ok := strings.CutPrefix(parts[1], "dt=")
	if !ok {
		return f, fmt.Errorf("raw key %q: missing dt=", key)
	}
	t, err := time.Parse("2006-01-02", dt)
	if err != nil {
		return f, fmt.Errorf("raw key %q: %w", key, err)
	}
	if g == Hour {
		h, ok := strings.CutPrefix(parts[2], "hour=")
		hh, err := strconv.Atoi(h)
		if !ok || err != nil || hh < 0 || hh > 23 || len(h) != 2 {
			return f, fmt.Errorf("raw key %q: bad hour= segment", key)
		}
		t = t.Add(time.Duration(hh) * time.Hour)
	}
	f.Period = PeriodOf(g, t.UnixMicro())
	name, ok := strings.CutSuffix(parts[len(parts)-1], ".parquet")
	if !ok {
		return f, fmt.Errorf("raw key %q: not a .parquet file", key)
	}
	i := strings.LastIndexByte(name, '.')
	j := strings.LastIndexByte(name[:max(i, 0)], '.')
	if i <= 0 || j <= 0 {
		return f, fmt.Errorf("raw key %q: want <topic>.<partition>.<offset>.parquet", key)
	}
	f.Topic = name[:j]
	p, err1 := strconv.ParseInt(name[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(name[i+1:], 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return f, fmt.Errorf("raw key %q: bad partition or offset", key)
	}
	f.Partition, f.FirstOffset = int32(p), o
	return f, nil
}

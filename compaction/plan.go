package compaction

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lakesink/lakesink/lake/layout"
)

// RawFile is a file of the raw zone, as listed (the planner reads no file).
type RawFile struct {
	Key       string
	Topic     string
	Partition int32
	First     int64
	// Last is the file's last offset, from its footer (LastUnknown when not read).
	Last     int64
	Size     int64
	Modified time.Time
	Period   layout.Period
}

// LastUnknown is RawFile.Last of a file whose footer was not read.
const LastUnknown int64 = -1

// TableFile is a live data file of the Iceberg table.
type TableFile struct {
	Path   string
	Period layout.Period
	Size   int64
	Rows   int64
}

// Group is one unit of merge work: inputs of one period that become one or more
// outputs near the target size.
type Group struct {
	Period layout.Period
	Raw    []RawFile
	Table  []TableFile
	Bytes  int64
}

// Plan is what a run will do for one table.
type Plan struct {
	Groups []Group
	// Delete lists raw files whose rows were committed at least the grace period ago.
	Delete []RawFile
	// Covered counts raw files already in the table but still inside the grace period.
	Covered int
	// Open counts raw files in periods not yet closed by the watermark.
	Open int
	// Skipped counts closed periods with files but nothing to gain.
	Skipped int
	// Deferred counts closed periods with work left for a later commit
	// because the plan reached MaxPeriods: the run loops while it is above 0.
	Deferred int
	// FirstDeferred is the earliest deferred period (when Deferred > 0): the
	// table is final only before it.
	FirstDeferred layout.Period
}

// Params are the planner's settings.
type Params struct {
	Now         time.Time
	Granularity layout.Granularity
	// Lateness is added to a period's end before it counts as closed.
	Lateness time.Duration
	// Through, when set, also bounds closing: a period closes only if it
	// ends at or before Through (watermark.Through: the watermarks of every
	// source partition, bounded by compaction.max_wait).
	Through time.Time
	// Target is the output file size.
	Target int64
	// SmallRatio: table files below SmallRatio*Target are merged again.
	SmallRatio float64
	// Grace is how long committed raw files are kept.
	Grace time.Duration
	// MaxPeriods bounds the periods one plan touches (one commit); 0 means no bound.
	MaxPeriods int
}

// Closed reports whether a period is closed: it ended Lateness ago by the wall
// clock, and at or before Through when that is set.
func (p Params) Closed(period layout.Period) bool {
	end := period.Start(p.Granularity).Add(time.Duration(p.Granularity.Micros()) * time.Microsecond)
	return !end.Add(p.Lateness).After(p.Now) && (p.Through.IsZero() || !end.After(p.Through))
}

// Build plans one table: which raw files are new (held tells which the table
// already holds, whatever files hold them now), how inputs are packed into
// groups, and which raw files can go. It is pure: same inputs, same plan.
func Build(p Params, raw []RawFile, files []TableFile, held Held) Plan {
	var plan Plan
	rawBy := map[layout.Period][]RawFile{}
	for _, r := range raw {
		rawBy[r.Period] = append(rawBy[r.Period], r)
	}
	filesBy := map[layout.Period][]TableFile{}
	for _, f := range files {
		filesBy[f.Period] = append(filesBy[f.Period], f)
	}
	periods := make([]layout.Period, 0, len(rawBy)+len(filesBy))
	for per := range rawBy {
		periods = append(periods, per)
	}
	for per := range filesBy {
		if _, ok := rawBy[per]; !ok {
			periods = append(periods, per)
		}
	}
	slices.Sort(periods)
	touched := 0
	for _, per := range periods {
		if !p.Closed(per) {
			plan.Open += len(rawBy[per])
			continue
		}
		var fresh []RawFile
		for _, r := range rawBy[per] {
			committed, ok := covered(held[per][r.Topic][r.Partition], r)
			switch {
			case !ok:
				fresh = append(fresh, r)
			case !committed.IsZero() && committed.Add(p.Grace).After(p.Now):
				plan.Covered++
			default:
				plan.Delete = append(plan.Delete, r)
			}
		}
		var small []TableFile
		for _, f := range filesBy[per] {
			if float64(f.Size) < p.SmallRatio*float64(p.Target) {
				small = append(small, f)
			}
		}
		if len(fresh) == 0 && len(small) < 2 {
			if len(filesBy[per]) > 0 || len(rawBy[per]) > 0 {
				plan.Skipped++
			}
			continue
		}
		if p.MaxPeriods > 0 && touched == p.MaxPeriods {
			// Left for the next commit; its raw files count as waiting.
			plan.Open += len(fresh)
			if plan.Deferred == 0 {
				plan.FirstDeferred = per
			}
			plan.Deferred++
			continue
		}
		touched++
		plan.Groups = append(plan.Groups, pack(per, fresh, small, p.Target)...)
	}
	return plan
}

// covered reports whether the table holds every row of r: its whole offset
// range [First, Last] lies in the union of the spans held for r's period,
// topic and partition (a file rewritten under the same key by a sink that
// replayed from an old commit holds more rows than the file first merged
// under that key). It also returns when the last of the spans it needs was
// committed (zero if unknown). A raw file whose last offset is unknown is
// never covered.
func covered(held []Span, r RawFile) (time.Time, bool) {
	if r.Last < r.First {
		return time.Time{}, false
	}
	var spans []Span
	for _, s := range held {
		if s.Last >= r.First && s.First <= r.Last {
			spans = append(spans, s)
		}
	}
	slices.SortFunc(spans, func(a, b Span) int { return cmp.Compare(a.First, b.First) })
	next := r.First // the lowest offset of r not yet seen covered
	var committed time.Time
	for _, s := range spans {
		if s.First > next {
			break
		}
		if s.Last >= next {
			next = s.Last + 1
			if s.Committed.After(committed) {
				committed = s.Committed
			}
		}
		if next > r.Last {
			return committed, true
		}
	}
	return time.Time{}, false
}

// unit is what packing moves as a whole: all new raw files of one Kafka
// partition (so duplicates of each other meet in one merge) or one table file.
type unit struct {
	name  string
	raw   []RawFile
	table *TableFile
	bytes int64
}

// pack bins units first-fit decreasing into groups of at most target bytes
// (a unit larger than target gets a group of its own). A group holding only a
// single table file would rewrite it for nothing and is dropped.
func pack(per layout.Period, fresh []RawFile, small []TableFile, target int64) []Group {
	byTP := map[string]*unit{}
	var units []*unit
	for _, r := range fresh {
		name := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
		u := byTP[name]
		if u == nil {
			u = &unit{name: name}
			byTP[name] = u
			units = append(units, u)
		}
		u.raw = append(u.raw, r)
		u.bytes += r.Size
	}
	for i := range small {
		units = append(units, &unit{name: small[i].Path, table: &small[i], bytes: small[i].Size})
	}
	slices.SortFunc(units, func(a, b *unit) int {
		if c := cmp.Compare(b.bytes, a.bytes); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	var groups []Group
	for _, u := range units {
		placed := false
		for i := range groups {
			if groups[i].Bytes+u.bytes <= target {
				groups[i].add(u)
				placed = true
				break
			}
		}
		if !placed {
			g := Group{Period: per}
			g.add(u)
			groups = append(groups, g)
		}
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g.Raw) == 0 && len(g.Table) < 2 {
			continue
		}
		slices.SortFunc(g.Raw, func(a, b RawFile) int { return strings.Compare(a.Key, b.Key) })
		slices.SortFunc(g.Table, func(a, b TableFile) int { return strings.Compare(a.Path, b.Path) })
		out = append(out, g)
	}
	return out
}

func (g *Group) add(u *unit) {
	g.Raw = append(g.Raw, u.raw...)
	if u.table != nil {
		g.Table = append(g.Table, *u.table)
	}
	g.Bytes += u.bytes
}

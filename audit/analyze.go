package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lakesink/lakesink/lake/layout"
)

// RawFile is a raw file as its key and footer describe it.
type RawFile struct {
	Key    string
	Period layout.Period
	Range  Range // footer: first kept offset to last offset
	Rows   int64 // footer: number of rows
}

// TableRange is one range of a live table file's coverage footer.
type TableRange struct {
	File   string // the data file's path (URI)
	Period layout.Period
	Range  Range
}

// PartitionInput is everything gathered about one topic-partition.
type PartitionInput struct {
	TableName string
	Topic     string
	Partition int32
	// LogStart is the partition's log start offset; Stable its last stable
	// offset (what read_committed reads up to).
	LogStart, Stable int64
	// Window is the audited range: from max(log start, --since) to the
	// committed offset - 1. Empty (Last < First) when nothing is committed.
	Window   Range
	Raw      []RawFile
	Coverage []TableRange
	// DeadLetters counts dead letters by source offset.
	DeadLetters map[int64]int
}

// Probe reads data where a range is in doubt. Both functions are called only
// for ranges and files the footers cannot settle.
type Probe struct {
	// DataOffsets returns the offsets of r that hold data records
	// (read_committed; markers and aborted records excluded).
	DataOffsets func(ctx context.Context, topic string, partition int32, r Range) (Set, error)
	// FileOffsets returns the _kafka_offset of every row of the data file
	// (raw key or table path) that belongs to topic/partition, repeats kept.
	FileOffsets func(ctx context.Context, file, topic string, partition int32) ([]int64, error)
}

// Dup is a set of offsets held twice.
type Dup struct {
	// Where says what holds them twice: "raw" (raw files), "raw+dead-letter",
	// or "table" (table files).
	Where string `json:"where"`
	// Offsets are the offsets held more than once; Rows the extra copies.
	Offsets []Range  `json:"offsets"`
	Rows    int64    `json:"rows"`
	Files   []string `json:"files"`
}

// PartitionReport is the audit of one topic-partition.
type PartitionReport struct {
	Table       string `json:"table"`
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	LogStart    int64  `json:"log_start"`
	Committed   int64  `json:"committed"` // -1: the group has no commit
	Window      Range  `json:"window"`
	RawFiles    int    `json:"raw_files"`
	TableRanges int    `json:"table_ranges"`
	DeadLetters int    `json:"dead_letters"`
	// Lost lists the committed data offsets in no place; LostCount counts them.
	Lost      []Range `json:"lost"`
	LostCount int64   `json:"lost_count"`
	Dups      []Dup   `json:"dups"`
	DupRows   int64   `json:"dup_rows"`
	// DeadLetterRepeats counts extra dead letters of one source offset (a note).
	DeadLetterRepeats int64 `json:"dead_letter_repeats"`
	// Doubts counts the ranges and files read to settle doubts.
	KafkaReads int `json:"kafka_reads"`
	FileReads  int `json:"file_reads"`
}

// Analyze audits one partition. Only what is in doubt reaches probe.
func Analyze(ctx context.Context, in *PartitionInput, probe Probe) (*PartitionReport, error) {
	rep := &PartitionReport{Table: in.TableName, Topic: in.Topic, Partition: in.Partition, LogStart: in.LogStart,
		Window: in.Window, RawFiles: len(in.Raw), TableRanges: len(in.Coverage), DeadLetters: len(in.DeadLetters),
		Committed: in.Window.Last + 1, Lost: []Range{}, Dups: []Dup{}}
	window := NewSet(in.Window)
	offsets := map[string][]int64{}
	fileOffsets := func(file string) ([]int64, error) {
		if o, ok := offsets[file]; ok {
			return o, nil
		}
		o, err := probe.FileOffsets(ctx, file, in.Topic, in.Partition)
		if err != nil {
			return nil, err
		}
		rep.FileReads++
		offsets[file] = o
		return o, nil
	}
	dataOffsets := func(r Range) (Set, error) {
		r.First = max(r.First, in.LogStart)
		r.Last = min(r.Last, in.Stable-1)
		if r.Len() == 0 {
			return nil, nil
		}
		rep.KafkaReads++
		return probe.DataOffsets(ctx, in.Topic, in.Partition, r)
	}
	var dlq []Range
	for o, n := range in.DeadLetters {
		dlq = append(dlq, Range{o, o})
		if n > 1 && window.Contains(o) {
			rep.DeadLetterRepeats += int64(n - 1)
		}
	}
	dlqSet := NewSet(dlq...)
	var tableRanges []Range
	for _, tr := range in.Coverage {
		tableRanges = append(tableRanges, tr.Range)
	}
	tableSet := NewSet(tableRanges...)

	// Table: two live files covering the same raw range of the same period.
	if err := tableDups(in, window, fileOffsets, rep); err != nil {
		return nil, err
	}

	// Raw zone: components of the raw ranges and dead letters. A component no
	// table coverage touches is complete evidence: its rows plus dead letters
	// must equal its offsets (less markers and aborted records).
	rawRanges := make([]Range, 0, len(in.Raw)+len(dlq))
	for _, r := range in.Raw {
		rawRanges = append(rawRanges, r.Range)
	}
	rawRanges = append(rawRanges, dlq...)
	var lost Set
	for _, c := range Components(rawRanges) {
		if len(NewSet(c.Extent).Intersect(window)) == 0 {
			continue
		}
		var files []RawFile
		var rows, dead int64
		for _, i := range c.Members {
			if i < len(in.Raw) {
				files = append(files, in.Raw[i])
				rows += in.Raw[i].Rows
			} else {
				dead++
			}
		}
		samePeriodOverlap := false
		byPeriod := map[layout.Period][]Range{}
		for _, f := range files {
			byPeriod[f.Period] = append(byPeriod[f.Period], f.Range)
		}
		for _, rs := range byPeriod {
			if len(Overlaps(rs)) > 0 {
				samePeriodOverlap = true
			}
		}
		countable := c.Extent.First >= in.LogStart && len(NewSet(c.Extent).Intersect(tableSet)) == 0
		balanced := rows+dead == c.Extent.Len()
		if !samePeriodOverlap && (!countable || balanced) {
			continue
		}
		// In doubt: count every offset the component's files hold.
		held := map[int64]int{}
		var involved []string
		for _, f := range files {
			got, err := fileOffsets(f.Key)
			if err != nil {
				return nil, err
			}
			for _, o := range got {
				held[o]++
			}
		}
		var twice, withDead []Range
		for o, n := range held {
			if n > 1 {
				twice = append(twice, Range{o, o})
			}
			if in.DeadLetters[o] > 0 {
				withDead = append(withDead, Range{o, o})
			}
		}
		if d := NewSet(twice...).Intersect(window); len(d) > 0 {
			involved = filesHolding(files, offsets, d)
			rows := countIn(held, d, 1)
			rep.Dups = append(rep.Dups, Dup{Where: "raw", Offsets: d, Rows: rows, Files: involved})
			rep.DupRows += rows
		}
		if d := NewSet(withDead...).Intersect(window); len(d) > 0 {
			rep.Dups = append(rep.Dups, Dup{Where: "raw+dead-letter", Offsets: d, Rows: d.Len(), Files: filesHolding(files, offsets, d)})
			rep.DupRows += d.Len()
		}
		distinct := int64(len(held))
		for o := range in.DeadLetters {
			if held[o] == 0 && c.Extent.First <= o && o <= c.Extent.Last {
				distinct++
			}
		}
		if countable && distinct < c.Extent.Len() {
			data, err := dataOffsets(c.Extent)
			if err != nil {
				return nil, err
			}
			var heldRanges []Range
			for o := range held {
				heldRanges = append(heldRanges, Range{o, o})
			}
			lost = lost.Union(data.Minus(NewSet(heldRanges...)).Minus(dlqSet))
		}
	}

	// Holes: offsets in no raw range, no coverage range and no dead letter.
	accounted := NewSet(rawRanges...).Union(tableSet)
	for _, h := range window.Minus(accounted) {
		data, err := dataOffsets(h)
		if err != nil {
			return nil, err
		}
		lost = lost.Union(data)
	}
	lost = lost.Intersect(window)
	rep.Lost, rep.LostCount = lost, lost.Len()
	if rep.Lost == nil {
		rep.Lost = []Range{}
	}
	return rep, nil
}

// tableDups finds offsets two live table files of one period both cover and
// counts the rows they share.
func tableDups(in *PartitionInput, window Set, fileOffsets func(string) ([]int64, error), rep *PartitionReport) error {
	byPeriod := map[layout.Period][]TableRange{}
	for _, tr := range in.Coverage {
		byPeriod[tr.Period] = append(byPeriod[tr.Period], tr)
	}
	periods := make([]layout.Period, 0, len(byPeriod))
	for p := range byPeriod {
		periods = append(periods, p)
	}
	slices.Sort(periods)
	for _, p := range periods {
		trs := byPeriod[p]
		slices.SortFunc(trs, func(a, b TableRange) int { return cmp.Compare(a.Range.First, b.Range.First) })
		for i := range trs {
			for j := i + 1; j < len(trs) && trs[j].Range.First <= trs[i].Range.Last; j++ {
				if trs[i].File == trs[j].File {
					continue
				}
				both := NewSet(trs[i].Range).Intersect(NewSet(trs[j].Range)).Intersect(window)
				if len(both) == 0 {
					continue
				}
				a, err := fileOffsets(trs[i].File)
				if err != nil {
					return err
				}
				b, err := fileOffsets(trs[j].File)
				if err != nil {
					return err
				}
				inA := map[int64]bool{}
				for _, o := range a {
					if both.Contains(o) {
						inA[o] = true
					}
				}
				var shared []Range
				for _, o := range b {
					if inA[o] {
						shared = append(shared, Range{o, o})
					}
				}
				if len(shared) == 0 {
					continue
				}
				s := NewSet(shared...)
				rep.Dups = append(rep.Dups, Dup{Where: "table", Offsets: s, Rows: s.Len(), Files: []string{trs[i].File, trs[j].File}})
				rep.DupRows += s.Len()
			}
		}
	}
	return nil
}

// countIn sums, over the offsets of s, the copies held beyond keep.
func countIn(held map[int64]int, s Set, keep int) int64 {
	var n int64
	for o, c := range held {
		if c > keep && s.Contains(o) {
			n += int64(c - keep)
		}
	}
	return n
}

// filesHolding lists the files (of those read) holding an offset of s.
func filesHolding(files []RawFile, offsets map[string][]int64, s Set) []string {
	var out []string
	for _, f := range files {
		for _, o := range offsets[f.Key] {
			if s.Contains(o) {
				out = append(out, f.Key)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// String is a one-line description of a dup for the summary.
func (d Dup) String() string {
	return fmt.Sprintf("%d rows held twice (%s) at offsets %s in %s", d.Rows, d.Where, fmtSet(d.Offsets), strings.Join(d.Files, ", "))
}

// fmtSet formats up to 5 ranges of s, then how many more.
func fmtSet(s []Range) string {
	var parts []string
	for i, r := range s {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… %d more ranges", len(s)-5))
			break
		}
		parts = append(parts, r.String())
	}
	return strings.Join(parts, ",")
}

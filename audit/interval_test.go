package audit_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/lakesink/lakesink/audit"
)

type R = audit.Range

func set(rs ...R) audit.Set {
	if len(rs) == 0 {
		return nil
	}
	return audit.Set(rs)
}

func TestNewSet(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []R
		want audit.Set
	}{
		{"empty", nil, nil},
		{"reversed dropped", []R{{5, 4}}, nil},
		{"one", []R{{3, 7}}, set(R{3, 7})},
		{"unsorted disjoint", []R{{10, 12}, {1, 2}}, set(R{1, 2}, R{10, 12})},
		{"adjacent merge", []R{{1, 2}, {3, 4}}, set(R{1, 4})},
		{"overlap merge", []R{{1, 5}, {3, 9}}, set(R{1, 9})},
		{"contained", []R{{1, 9}, {3, 4}}, set(R{1, 9})},
		{"gap of one stays", []R{{1, 2}, {4, 5}}, set(R{1, 2}, R{4, 5})},
		{"points", []R{{7, 7}, {5, 5}, {6, 6}}, set(R{5, 7})},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := audit.NewSet(c.in...); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("NewSet(%v) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

func TestSetOps(t *testing.T) {
	for _, c := range []struct {
		name                string
		a, b                audit.Set
		minus, inter, union audit.Set
	}{
		{"disjoint", set(R{0, 4}), set(R{10, 14}), set(R{0, 4}), nil, set(R{0, 4}, R{10, 14})},
		{"hole in the middle", set(R{0, 9}), set(R{3, 5}), set(R{0, 2}, R{6, 9}), set(R{3, 5}), set(R{0, 9})},
		{"cover all", set(R{3, 5}), set(R{0, 9}), nil, set(R{3, 5}), set(R{0, 9})},
		{"edges", set(R{0, 9}), set(R{0, 0}, R{9, 9}), set(R{1, 8}), set(R{0, 0}, R{9, 9}), set(R{0, 9})},
		{"many holes", set(R{0, 20}), set(R{2, 3}, R{5, 5}, R{18, 30}), set(R{0, 1}, R{4, 4}, R{6, 17}), set(R{2, 3}, R{5, 5}, R{18, 20}), set(R{0, 30})},
		{"b spans two of a", set(R{0, 4}, R{8, 12}), set(R{3, 9}), set(R{0, 2}, R{10, 12}), set(R{3, 4}, R{8, 9}), set(R{0, 12})},
		{"empty a", nil, set(R{1, 2}), nil, nil, set(R{1, 2})},
		{"empty b", set(R{1, 2}), nil, set(R{1, 2}), nil, set(R{1, 2})},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.a.Minus(c.b); !reflect.DeepEqual(got, c.minus) {
				t.Errorf("%v minus %v = %v, want %v", c.a, c.b, got, c.minus)
			}
			if got := c.a.Intersect(c.b); !reflect.DeepEqual(got, c.inter) {
				t.Errorf("%v ∩ %v = %v, want %v", c.a, c.b, got, c.inter)
			}
			if got := c.a.Union(c.b); !reflect.DeepEqual(got, c.union) {
				t.Errorf("%v ∪ %v = %v, want %v", c.a, c.b, got, c.union)
			}
			if got, want := c.a.Minus(c.b).Len()+c.a.Intersect(c.b).Len(), c.a.Len(); got != want {
				t.Errorf("|a\\b|+|a∩b| = %d, want |a| = %d", got, want)
			}
		})
	}
}

func TestContains(t *testing.T) {
	s := set(R{2, 4}, R{8, 8})
	for o, want := range map[int64]bool{1: false, 2: true, 4: true, 5: false, 7: false, 8: true, 9: false} {
		if got := s.Contains(o); got != want {
			t.Errorf("%v contains %d = %v, want %v", s, o, got, want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []R
		want audit.Set
	}{
		{"none", []R{{0, 4}, {5, 9}}, nil},
		{"shared edge", []R{{0, 5}, {5, 9}}, set(R{5, 5})},
		{"same range twice", []R{{3, 7}, {3, 7}}, set(R{3, 7})},
		{"copy shifted by one", []R{{100, 199}, {101, 199}}, set(R{101, 199})},
		{"three, two pairs", []R{{0, 10}, {5, 15}, {12, 20}}, set(R{5, 10}, R{12, 15})},
		{"nested", []R{{0, 100}, {10, 20}, {30, 40}}, set(R{10, 20}, R{30, 40})},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := audit.Overlaps(c.in); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Overlaps(%v) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

func TestComponents(t *testing.T) {
	got := audit.Components([]R{{10, 12}, {0, 3}, {4, 6}, {20, 20}, {11, 15}, {5, 8}, {15, 16}})
	want := []audit.Component{
		{Extent: R{0, 3}, Members: []int{1}},         // touches the next one: counted alone
		{Extent: R{4, 8}, Members: []int{2, 5}},      // overlap
		{Extent: R{10, 16}, Members: []int{0, 4, 6}}, // a chain of overlaps
		{Extent: R{20, 20}, Members: []int{3}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Components = %+v, want %+v", got, want)
	}
}

// partition is a Kafka partition and data files written as data: which
// offsets hold data records, and which offsets each file holds.
type partition struct {
	data  audit.Set          // offsets holding data records (the rest are markers or aborted)
	files map[string][]int64 // file → offsets of its rows
}

func (p partition) probe(read *[]R) audit.Probe {
	return audit.Probe{
		DataOffsets: func(_ context.Context, _ string, _ int32, r audit.Range) (audit.Set, error) {
			*read = append(*read, r)
			return p.data.Intersect(audit.NewSet(r)), nil
		},
		FileOffsets: func(_ context.Context, file, _ string, _ int32) ([]int64, error) {
			o, ok := p.files[file]
			if !ok {
				return nil, fmt.Errorf("no file %s", file)
			}
			return o, nil
		},
	}
}

func offs(first, last int64, skip ...int64) []int64 {
	var out []int64
	for o := first; o <= last; o++ {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == o
		}
		if !skipped {
			out = append(out, o)
		}
	}
	return out
}

// raw builds a raw file holding offs, in period per.
func raw(key string, per int64, o []int64) audit.RawFile {
	return audit.RawFile{Key: key, Period: layoutPeriod(per), Range: R{o[0], o[len(o)-1]}, Rows: int64(len(o))}
}

func TestAnalyze(t *testing.T) {
	all := func(n int64) audit.Set { return set(R{0, n - 1}) }
	for _, c := range []struct {
		name      string
		part      partition
		in        audit.PartitionInput
		lost      audit.Set
		dupRows   int64
		dupWhere  string
		kafkaRead int
		readOnly  []R // when set: exactly the Kafka ranges read
	}{
		{
			name: "clean raw zone: two periods interleaved, counts add up, nothing read",
			part: partition{data: all(10)},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{
				raw("a", 1, []int64{0, 1, 3, 4, 6}), raw("b", 2, []int64{2, 5, 7, 8, 9})}},
		},
		{
			name: "a raw file deleted at the end: a hole, read from Kafka, lost",
			part: partition{data: all(10)},
			in:   audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 4))}},
			lost: set(R{5, 9}), kafkaRead: 1,
		},
		{
			name: "hole of a transaction marker and aborted records: read, not lost",
			part: partition{data: set(R{0, 4}, R{8, 9})},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{
				raw("a", 1, offs(0, 4)), raw("b", 1, offs(8, 9))}},
			kafkaRead: 1,
		},
		{
			name:      "marker inside a raw file's range: counts short, read, not lost",
			part:      partition{data: set(R{0, 4}, R{6, 9}), files: map[string][]int64{"a": offs(0, 9, 5)}},
			in:        audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 9, 5))}},
			kafkaRead: 1,
		},
		{
			name: "marker in one of consecutive files: only that file's stretch is read",
			part: partition{data: set(R{0, 6}, R{8, 14}), files: map[string][]int64{"b": offs(5, 9, 7)}},
			in: audit.PartitionInput{Window: R{0, 14}, Raw: []audit.RawFile{
				raw("a", 1, offs(0, 4)), raw("b", 1, offs(5, 9, 7)), raw("c", 1, offs(10, 14))}},
			kafkaRead: 1, readOnly: []R{{5, 9}},
		},
		{
			name: "dead letter inside a raw range: counts add up",
			part: partition{data: all(10)},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 9, 4))},
				DeadLetters: map[int64]int{4: 1}},
		},
		{
			name: "dead letter dropped: counts short, read, lost",
			part: partition{data: all(10), files: map[string][]int64{"a": offs(0, 9, 4)}},
			in:   audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 9, 4))}},
			lost: set(R{4, 4}), kafkaRead: 1,
		},
		{
			name: "raw file of one period deleted inside another's range: counts short, lost",
			part: partition{data: all(10), files: map[string][]int64{"a": {0, 1, 3, 4, 6, 9}}},
			in:   audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, []int64{0, 1, 3, 4, 6, 9})}},
			lost: set(R{2, 2}, R{5, 5}, R{7, 8}), kafkaRead: 1,
		},
		{
			name: "copy of a raw file under another name: dup rows",
			part: partition{data: all(10), files: map[string][]int64{"a": offs(0, 9), "a2": offs(0, 9)}},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{
				raw("a", 1, offs(0, 9)), raw("a2", 1, offs(0, 9))}},
			dupRows: 10, dupWhere: "raw",
		},
		{
			name: "copy above the commit point: not audited",
			part: partition{data: all(20), files: map[string][]int64{"a": offs(0, 9), "b": offs(10, 19), "b2": offs(10, 19)}},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{
				raw("a", 1, offs(0, 9)), raw("b", 1, offs(10, 19)), raw("b2", 1, offs(10, 19))}},
		},
		{
			name: "record both in a raw file and dead-lettered",
			part: partition{data: all(10), files: map[string][]int64{"a": offs(0, 9)}},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 9))},
				DeadLetters: map[int64]int{3: 1}},
			dupRows: 1, dupWhere: "raw+dead-letter",
		},
		{
			name: "raw and table hold the same range: not a dup (raw waits for its grace)",
			part: partition{data: all(10)},
			in: audit.PartitionInput{Window: R{0, 9}, Raw: []audit.RawFile{raw("a", 1, offs(0, 9))},
				Coverage: []audit.TableRange{{File: "t1", Period: 1, Range: R{0, 9}}}},
		},
		{
			name: "two table files cover the same range of one period: dup rows",
			part: partition{data: all(10), files: map[string][]int64{"t1": offs(0, 9), "t2": offs(0, 9)}},
			in: audit.PartitionInput{Window: R{0, 9}, Coverage: []audit.TableRange{
				{File: "t1", Period: 1, Range: R{0, 9}}, {File: "t2", Period: 1, Range: R{0, 9}}}},
			dupRows: 10, dupWhere: "table",
		},
		{
			name: "table files of two periods overlap: normal",
			part: partition{data: all(10)},
			in: audit.PartitionInput{Window: R{0, 9}, Coverage: []audit.TableRange{
				{File: "t1", Period: 1, Range: R{0, 6}}, {File: "t2", Period: 2, Range: R{4, 9}}}},
		},
		{
			name: "compacted and deleted raw: table coverage accounts, nothing read",
			part: partition{data: all(20)},
			in: audit.PartitionInput{Window: R{0, 19}, Raw: []audit.RawFile{raw("b", 2, offs(10, 19))},
				Coverage: []audit.TableRange{{File: "t1", Period: 1, Range: R{0, 9}}}},
		},
		{
			name: "--since and log start clip the window",
			part: partition{data: all(20)},
			in:   audit.PartitionInput{LogStart: 5, Window: R{12, 19}, Raw: []audit.RawFile{raw("a", 1, offs(5, 15))}},
			lost: set(R{16, 19}), kafkaRead: 1,
		},
		{
			name: "nothing committed: nothing audited",
			part: partition{data: all(10)},
			in:   audit.PartitionInput{Window: R{0, -1}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			in.Topic, in.TableName = "events", "events"
			if in.Stable == 0 {
				in.Stable = c.part.data[len(c.part.data)-1].Last + 1
			}
			var read []R
			rep, err := audit.Analyze(context.Background(), &in, c.part.probe(&read))
			if err != nil {
				t.Fatal(err)
			}
			if c.lost == nil {
				c.lost = audit.Set{}
			}
			if !reflect.DeepEqual(audit.Set(rep.Lost), c.lost) || rep.LostCount != c.lost.Len() {
				t.Errorf("lost %v (%d), want %v", rep.Lost, rep.LostCount, c.lost)
			}
			if rep.DupRows != c.dupRows {
				t.Errorf("dup rows %d (%+v), want %d", rep.DupRows, rep.Dups, c.dupRows)
			}
			if c.dupWhere != "" && (len(rep.Dups) != 1 || rep.Dups[0].Where != c.dupWhere) {
				t.Errorf("dups %+v, want one in %s", rep.Dups, c.dupWhere)
			}
			if rep.KafkaReads != c.kafkaRead || len(read) != c.kafkaRead {
				t.Errorf("read %d Kafka ranges (%v), want %d", rep.KafkaReads, read, c.kafkaRead)
			}
			if c.readOnly != nil && !reflect.DeepEqual(read, c.readOnly) {
				t.Errorf("read Kafka ranges %v, want %v", read, c.readOnly)
			}
		})
	}
}

package audit

import (
	"cmp"
	"fmt"
	"slices"
)

// Range is an inclusive range of Kafka offsets, [First, Last].
type Range struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// Len is the number of offsets in r (0 when r is reversed).
func (r Range) Len() int64 { return max(0, r.Last-r.First+1) }

// String formats r as "first-last", or "first" for a single offset.
func (r Range) String() string {
	if r.First == r.Last {
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Set is a set of offsets held as sorted, disjoint, non-adjacent ranges. The
// zero value is the empty set. Methods never modify their arguments.
type Set []Range

// NewSet returns the union of rs (in any order, overlapping or not).
func NewSet(rs ...Range) Set {
	in := make([]Range, 0, len(rs))
	for _, r := range rs {
		if r.First <= r.Last {
			in = append(in, r)
		}
	}
	slices.SortFunc(in, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	var out Set
	for _, r := range in {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Len is the number of offsets in s.
func (s Set) Len() int64 {
	var n int64
	for _, r := range s {
		n += r.Len()
	}
	return n
}

// Union returns s ∪ o.
func (s Set) Union(o Set) Set { return NewSet(append(slices.Clone(s), o...)...) }

// Intersect returns s ∩ o.
func (s Set) Intersect(o Set) Set {
	var out Set
	i, j := 0, 0
	for i < len(s) && j < len(o) {
		lo, hi := max(s[i].First, o[j].First), min(s[i].Last, o[j].Last)
		if lo <= hi {
			out = append(out, Range{lo, hi})
		}
		if s[i].Last < o[j].Last {
			i++
		} else {
			j++
		}
	}
	return out
}

// Minus returns s \ o: the holes o leaves in s.
func (s Set) Minus(o Set) Set {
	var out Set
	j := 0
	for _, r := range s {
		cur := r.First
		for j < len(o) && o[j].Last < cur {
			j++
		}
		k := j
		for k < len(o) && o[k].First <= r.Last {
			if o[k].First > cur {
				out = append(out, Range{cur, o[k].First - 1})
			}
			cur = max(cur, o[k].Last+1)
			k++
		}
		if cur <= r.Last {
			out = append(out, Range{cur, r.Last})
		}
	}
	return out
}

// Contains reports whether offset is in s.
func (s Set) Contains(offset int64) bool {
	i, ok := slices.BinarySearchFunc(s, offset, func(r Range, o int64) int {
		switch {
		case r.Last < o:
			return -1
		case r.First > o:
			return 1
		}
		return 0
	})
	return ok && i < len(s)
}

// Overlaps returns the offsets held by two or more of rs: what any two of them
// share. rs may hold the same range twice (then all of it is returned).
func Overlaps(rs []Range) Set {
	type edge struct {
		at    int64
		delta int
	}
	edges := make([]edge, 0, 2*len(rs))
	for _, r := range rs {
		if r.First <= r.Last {
			edges = append(edges, edge{r.First, 1}, edge{r.Last + 1, -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		return cmp.Or(cmp.Compare(a.at, b.at), a.delta-b.delta) // ends before starts at one offset
	})
	var out []Range
	depth := 0
	var start int64
	for _, e := range edges {
		before := depth
		depth += e.delta
		switch {
		case before < 2 && depth >= 2:
			start = e.at
		case before >= 2 && depth < 2:
			out = append(out, Range{start, e.at - 1})
		}
	}
	return NewSet(out...)
}

// Components groups rs into chains of overlapping ranges: ranges that share an
// offset (directly or through others) end up in one component; ranges that
// merely touch ([0,4] and [5,9]) do not, so that every component's offsets are
// held only by its own ranges and can be counted alone. It returns each
// component's extent and the indexes (into rs) of its ranges, in offset order.
func Components(rs []Range) []Component {
	idx := make([]int, 0, len(rs))
	for i, r := range rs {
		if r.First <= r.Last {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(rs[a].First, rs[b].First) })
	var out []Component
	for _, i := range idx {
		r := rs[i]
		if n := len(out); n > 0 && r.First <= out[n-1].Extent.Last {
			c := &out[n-1]
			c.Extent.Last = max(c.Extent.Last, r.Last)
			c.Members = append(c.Members, i)
			continue
		}
		out = append(out, Component{Extent: r, Members: []int{i}})
	}
	return out
}

// Component is one connected part of a union of ranges.
type Component struct {
	Extent  Range
	Members []int
}

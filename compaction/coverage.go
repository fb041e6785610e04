package compaction

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// Coverage records which raw files a table file holds the rows of: for each
// Kafka topic and partition, the [first, last] offset range of every raw file
// consumed. It travels in the footer of every output (key CoverageKey) and is
// how a later run knows a raw file is already in the table — even after the
// snapshot that added it expired — and drops rows of replayed duplicates.
//
// A raw file of a (topic, partition, period) holds every record of that period
// between its first and last offset, so an offset inside a consumed range of
// the same period is a row the table already has.
type Coverage map[string]map[int32][]Range

// Range is an inclusive offset range of one raw file.
type Range struct{ First, Last int64 }

// CoverageKey is the Parquet footer key holding an output's Coverage as JSON.
const CoverageKey = "lakesink.coverage"

// JobKey is the Parquet footer key naming the compaction job that wrote a file.
const JobKey = "lakesink.job"

// Add records a consumed raw file.
func (c Coverage) Add(topic string, partition int32, r Range) {
	ps := c[topic]
	if ps == nil {
		ps = map[int32][]Range{}
		c[topic] = ps
	}
	for _, have := range ps[partition] {
		if have == r {
			return
		}
	}
	ps[partition] = append(ps[partition], r)
}

// Merge adds every range of o.
func (c Coverage) Merge(o Coverage) {
	for t, ps := range o {
		for p, rs := range ps {
			for _, r := range rs {
				c.Add(t, p, r)
			}
		}
	}
}

// Holds reports whether offset lies in a consumed range.
func (c Coverage) Holds(topic string, partition int32, offset int64) bool {
	for _, r := range c[topic][partition] {
		if offset >= r.First && offset <= r.Last {
			return true
		}
	}
	return false
}

// Files counts the consumed raw files.
func (c Coverage) Files() int {
	n := 0
	for _, ps := range c {
		for _, rs := range ps {
			n += len(rs)
		}
	}
	return n
}

// Offsets returns, per "topic/partition", the lowest and highest offset covered
// (the lineage a snapshot summary carries).
func (c Coverage) Offsets() map[string][2]int64 {
	out := map[string][2]int64{}
	for t, ps := range c {
		for p, rs := range ps {
			lo, hi := rs[0].First, rs[0].Last
			for _, r := range rs[1:] {
				lo, hi = min(lo, r.First), max(hi, r.Last)
			}
			out[t+"/"+strconv.Itoa(int(p))] = [2]int64{lo, hi}
		}
	}
	return out
}

// MarshalJSON writes {"topic":{"0":[[first,last],...]}} with ranges sorted.
func (c Coverage) MarshalJSON() ([]byte, error) {
	out := map[string]map[string][][2]int64{}
	for t, ps := range c {
		m := map[string][][2]int64{}
		for p, rs := range ps {
			rs = slices.Clone(rs)
			slices.SortFunc(rs, func(a, b Range) int { return int(a.First - b.First) })
			pairs := make([][2]int64, len(rs))
			for i, r := range rs {
				pairs[i] = [2]int64{r.First, r.Last}
			}
			m[strconv.Itoa(int(p))] = pairs
		}
		out[t] = m
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Coverage) UnmarshalJSON(b []byte) error {
	var in map[string]map[string][][2]int64
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*c = Coverage{}
	for t, ps := range in {
		for p, pairs := range ps {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil {
				return fmt.Errorf("coverage: partition %q: %w", p, err)
			}
			for _, pr := range pairs {
				if pr[0] > pr[1] {
					return fmt.Errorf("coverage: %s/%s range [%d,%d] is reversed", t, p, pr[0], pr[1])
				}
				c.Add(t, int32(n), Range{pr[0], pr[1]})
			}
		}
	}
	return nil
}

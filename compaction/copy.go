package compaction

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Row groups copied without re-encoding. A large input row group (a busy
// topic's raw file of tens of MB, or a table file merged again because late
// rows came for its hour) that is already in the output's order needs no
// decoding, sorting or encoding: the merge hands it to parquet-go's
// Writer.WriteRowGroup, which splices its compressed pages, statistics and page
// index into the output when codec, encodings and page version match (else it
// re-encodes that row group column by column). The merge decodes only its sort
// and Kafka-coordinate columns, to prove that copying keeps every guarantee:
//
//   - the input file's schema is the output's (equal Parquet nodes) and every
//     column chunk uses the output's codec;
//   - its rows are strictly increasing on the sort columns, which end with
//     topic, partition and offset: no two rows are one record;
//   - (raw files) no row is already in the table (the coverage filter);
//   - its key range [first, last] holds no row of any other input and overlaps
//     no other copied row group, inclusive: a row equal on every sort column
//     (the same record read twice) is an overlap.
//
// A row group whose first sort column's range (chunk statistics) meets that of
// a row group read before it is merged at once. One that fails the overlap
// checks later is merged like any other (it is read again in full: "demoted"). When the sorter spills, every candidate is
// demoted: the k-way merge of spilled runs has no place to splice one in.

// span is a row group's range on the first sort column, from its column
// chunk's statistics; all marks a range not known (it overlaps every other).
type span struct {
	min, max parquet.Value
	all      bool
}

// spanOf returns row group rg's span (all when the file's schema is not the
// output's, the statistics are missing, or the column has nulls, which sort
// first and are not in the bounds).
func (s *sorter) spanOf(rg parquet.RowGroup, copyable bool) span {
	if !copyable || len(s.t.keyCols) == 0 {
		return span{all: true}
	}
	fc, ok := rg.ColumnChunks()[s.t.keyCols[0]].(*parquet.FileColumnChunk)
	if !ok {
		return span{all: true}
	}
	lo, hi, ok := fc.Bounds()
	if !ok || fc.NullCount() > 0 {
		return span{all: true}
	}
	return span{min: lo.Clone(), max: hi.Clone()}
}

// overlapsSeen reports whether sp meets (inclusive) the span of a row group
// read before: a candidate that does would be demoted once the merge saw that
// row group's rows, so it is merged at once (no decode of its keys first, no
// second read).
func (s *sorter) overlapsSeen(sp span) bool {
	typ := s.kc.types[0]
	for _, o := range s.seen {
		if sp.all || o.all || typ.Compare(sp.min, o.max) <= 0 && typ.Compare(o.min, sp.max) <= 0 {
			return true
		}
	}
	return false
}

// passThrough is an input row group the merge copies into an output as it is.
type passThrough struct {
	in   inputFile
	ft   *fetched // the file, held in memory; nil: opened again to copy
	rg   int      // row group index in the file
	rows int64
	// keys holds the row group's first and last rows' sort keys (rows 0 and 1).
	keys *colTable
}

// copyMin is the uncompressed size from which a row group is worth copying
// (smaller ones would make small output row groups): half a row group.
func (m *Merger) copyMin() int64 { return max(1, m.RowGroupSize/2) }

// copyable reports whether the row groups of f may be copied: the option is on
// and f has the output's schema.
func (m *Merger) copyable(f *parquet.File) bool {
	return m.CopyRowGroups && parquet.EqualNodes(f.Schema(), m.Schema.Parquet)
}

// eligible reports whether row group rgi of f is worth checking for a copy:
// large enough and compressed with the outputs' codec.
func (s *sorter) eligible(f *parquet.File, rgi int) bool {
	meta := f.Metadata().RowGroups
	if rgi >= len(meta) || meta[rgi].TotalByteSize < s.m.copyMin() || meta[rgi].NumRows < 2 {
		return false
	}
	codec := s.m.outCodec()
	for _, c := range meta[rgi].Columns {
		if c.MetaData.Codec != codec {
			return false
		}
	}
	return true
}

// passThrough decides whether row group rg of an input (eligible) is copied:
// it decodes its key columns and checks their order and (raw files) the
// filter. It returns nil when the row group must be merged.
func (s *sorter) passThrough(rgi int, rg parquet.RowGroup, in *input) (*passThrough, error) {
	kt, err := newTable(s.m.Schema, s.m.SortBy)
	if err != nil {
		return nil, err
	}
	n := int(rg.NumRows())
	chunks := rg.ColumnChunks()
	load := slices.Clone(kt.keyCols)
	for _, ci := range []int{kt.topic, kt.part, kt.off} {
		if !slices.Contains(load, ci) {
			load = append(load, ci)
		}
	}
	for _, ci := range load {
		if err := kt.cols[ci].addChunk(chunks[ci], s.vals); err != nil {
			return nil, fmt.Errorf("column %d: %w", ci, err)
		}
		if got := kt.cols[ci].numRows(); got != n {
			return nil, fmt.Errorf("column %d holds %d rows, want %d", ci, got, n)
		}
	}
	kt.rows = n
	for r := 1; r < n; r++ {
		if kt.compareKeys(r-1, r) >= 0 {
			return nil, nil
		}
	}
	last := in.last
	for r := range n {
		topic, part, off := kt.coords(r)
		last = max(last, off)
		if in.filter == nil {
			continue
		}
		if in.topic == nil || string(topic) != in.topicStr {
			in.topic, in.topicStr = topic, string(topic)
		}
		if in.filter.Holds(in.topicStr, part, off) {
			return nil, nil
		}
	}
	in.last = last
	in.res.RowsIn += int64(n)
	in.kept += int64(n)
	s.n += int64(n)
	// Keep the first and last keys only.
	kb, _ := newTable(s.m.Schema, s.m.SortBy)
	for _, ci := range kt.keyCols {
		kb.cols[ci].add(kt.cols[ci].value(0, ci))
		kb.cols[ci].add(kt.cols[ci].value(n-1, ci))
	}
	kb.rows = 2
	return &passThrough{rg: rgi, rows: int64(n), keys: kb}, nil
}

// outCodec is the outputs' codec.
func (m *Merger) outCodec() format.CompressionCodec {
	if m.Codec != nil {
		return m.Codec.CompressionCodec()
	}
	return format.Zstd // schema.WriterOptions' default
}

// firstAtOrAfter returns the position in the sorted rows perm of t of the first
// row whose key is at or after row k of keys.
func firstAtOrAfter(t *colTable, perm []uint32, keys *colTable, k int) int {
	return sort.Search(len(perm), func(i int) bool { return keys.compareAcross(k, t, int(perm[i])) <= 0 })
}

// settle sorts and dedupes the held rows and decides which pass-throughs are
// copied: those whose key range holds no held row and overlaps no other. The
// others are demoted (read into the held rows) and the check runs again. It
// returns the sorted rows and the pass-throughs to copy, in key order; when
// demoting made the sorter spill, every pass-through is demoted and both are
// nil (the caller merges the spilled runs).
func (s *sorter) settle(ctx context.Context, pts []*passThrough) ([]uint32, []*passThrough, error) {
	slices.SortFunc(pts, func(a, b *passThrough) int { return a.keys.compareAcross(0, b.keys, 0) })
	for {
		if len(s.runs) > 0 {
			for _, pt := range pts {
				if err := s.demote(ctx, pt); err != nil {
					return nil, nil, err
				}
			}
			return nil, nil, nil
		}
		perm, dups := s.t.sorted(s.perm)
		s.dups += dups
		s.perm = perm
		var keep, out []*passThrough
		for i, pt := range pts {
			overlap := i > 0 && pts[i-1].keys.compareAcross(1, pt.keys, 0) >= 0 ||
				i+1 < len(pts) && pt.keys.compareAcross(1, pts[i+1].keys, 0) >= 0
			if p := firstAtOrAfter(s.t, perm, pt.keys, 0); p < len(perm) && pt.keys.compareAcross(1, s.t, int(perm[p])) >= 0 {
				overlap = true
			}
			if overlap {
				out = append(out, pt)
			} else {
				keep = append(keep, pt)
			}
		}
		if len(out) == 0 {
			return perm, keep, nil
		}
		for _, pt := range out {
			if err := s.demote(ctx, pt); err != nil {
				return nil, nil, err
			}
		}
		pts = keep
	}
}

// withFile calls fn with the pass-through's file: the one held, or the input
// opened again (and closed after).
func (m *Merger) withFile(ctx context.Context, pt *passThrough, fn func(f *parquet.File) error) error {
	if pt.ft != nil {
		return fn(pt.ft.f)
	}
	if m.ReadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.ReadTimeout)
		defer cancel()
	}
	ft := openFile(ctx, pt.in, true)
	defer ft.close()
	if ft.err != nil {
		return ft.err
	}
	if err := fn(ft.f); err != nil {
		return readFailure(pt.in.st.URI(pt.in.key), ft.tracked, err)
	}
	return nil
}

// demote reads a pass-through's rows into the held rows (already counted when
// it was taken).
func (s *sorter) demote(ctx context.Context, pt *passThrough) error {
	s.demoted++
	return s.m.withFile(ctx, pt, func(f *parquet.File) error {
		cols, _ := columnPlan(s.m.Schema.Parquet, f.Schema())
		first := s.t.rows
		if err := s.t.addRowGroup(f.RowGroups()[pt.rg], cols, s.vals); err != nil {
			return err
		}
		for r := first; r < s.t.rows; r++ {
			s.perm = append(s.perm, uint32(r))
		}
		if s.t.memBytes()+int64(4*cap(s.perm)) >= s.m.Budget {
			return s.spill()
		}
		return nil
	})
}

// writeMerged writes the sorted rows perm of t and the pass-throughs pts (in
// key order, none overlapping a row of perm) in one order.
func (o *outputs) writeMerged(t *colTable, perm []uint32, pts []*passThrough) error {
	for _, pt := range pts {
		p := firstAtOrAfter(t, perm, pt.keys, 0)
		if err := o.writeTable(t, perm[:p]); err != nil {
			return err
		}
		perm = perm[p:]
		if err := o.copyRowGroup(pt); err != nil {
			return err
		}
	}
	return o.writeTable(t, perm)
}

// copyRowGroup writes a pass-through's row group into the current output.
func (o *outputs) copyRowGroup(pt *passThrough) error {
	if o.cur == nil {
		if err := o.open(); err != nil {
			return err
		}
	}
	err := o.m.withFile(o.ctx, pt, func(f *parquet.File) error {
		n, err := o.cur.WriteRowGroup(f.RowGroups()[pt.rg])
		if err == nil && n != pt.rows {
			err = fmt.Errorf("copied %d rows, want %d", n, pt.rows)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: copy row group %d of %s: %w", o.key, pt.rg, pt.in.st.URI(pt.in.key), err)
	}
	o.rows += pt.rows
	o.copied++
	if o.cw.n >= o.m.Target {
		return o.finishFile()
	}
	return nil
}

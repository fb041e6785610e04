package compaction

import (
	"fmt"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestReserveRoomForTheGroup: after reserve, the rows projected fit without
// a slice of the table being allocated again, and a projection over the
// limit reserves at most the limit.
func TestReserveRoomForTheGroup(t *testing.T) {
	fill := func(tb *colTable, from, to int) {
		for i := from; i < to; i++ {
			tb.cols[0].add(parquet.Int64Value(int64(i)))
			tb.cols[1].add(parquet.ByteArrayValue(fmt.Appendf(nil, "row-%06d", i)).Level(0, 1, 1))
			tb.rows++
		}
	}
	tb := &colTable{cols: []column{{kind: parquet.Int64}, {kind: parquet.ByteArray, maxDef: 1}}}
	fill(tb, 0, 10)
	tb.reserve(1000, 1<<30)
	num, data, end, def := &tb.cols[0].num[0], &tb.cols[1].data[0], &tb.cols[1].end[0], &tb.cols[1].def[0]
	fill(tb, 10, 1000)
	if &tb.cols[0].num[0] != num || &tb.cols[1].data[0] != data || &tb.cols[1].end[0] != end || &tb.cols[1].def[0] != def {
		t.Fatal("a column was allocated again while adding the rows reserved for")
	}

	small := &colTable{cols: []column{{kind: parquet.Int64}, {kind: parquet.ByteArray, maxDef: 1}}}
	fill(small, 0, 10)
	const limit = 4 << 10
	small.reserve(1_000_000, limit)
	if got := small.memBytes(); got > limit {
		t.Errorf("reserved %d bytes, limit %d", got, limit)
	}
	if got := cap(small.cols[0].num); got <= 10 {
		t.Errorf("reserved room for %d values under the limit, want more than the 10 held", got)
	}
}

package compaction

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/apache/iceberg-go"

	"github.com/lakesink/lakesink/lake/layout"
)

// fakeManifest is a data manifest of an hour-partitioned table as the
// manifest list describes it: its path, length and partition bounds.
type fakeManifest struct {
	iceberg.ManifestFile
	path   string
	length int64
	lo, hi time.Time
}

func (f fakeManifest) FilePath() string                         { return f.path }
func (f fakeManifest) Length() int64                            { return f.length }
func (f fakeManifest) ManifestContent() iceberg.ManifestContent { return iceberg.ManifestContentData }
func (f fakeManifest) Partitions() []iceberg.FieldSummary {
	enc := func(t time.Time) *[]byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(t.Unix()/3600))
		return &b
	}
	return []iceberg.FieldSummary{{LowerBound: enc(f.lo), UpperBound: enc(f.hi)}}
}

// TestUnsettledManifestsClusterByMonth: a merge rewrites the small manifests
// of a month that has more than one, a manifest spanning months with the small
// ones of the months it spans, and leaves a month's only small manifest and
// full manifests alone; excess counts what the merge removes.
func TestUnsettledManifestsClusterByMonth(t *testing.T) {
	day := func(m time.Month, d int) time.Time { return time.Date(2026, m, d, 5, 0, 0, 0, time.UTC) }
	const target = 8 << 20
	mfs := []iceberg.ManifestFile{
		fakeManifest{path: "jan-full", length: target, lo: day(1, 1), hi: day(1, 31)},
		fakeManifest{path: "jan-small", length: 1 << 20, lo: day(1, 2), hi: day(1, 20)},
		fakeManifest{path: "feb-a", length: 4 << 10, lo: day(2, 3), hi: day(2, 3)},
		fakeManifest{path: "feb-b", length: 4 << 10, lo: day(2, 4), hi: day(2, 4)},
		fakeManifest{path: "feb-c", length: 4 << 10, lo: day(2, 5), hi: day(2, 5)},
		fakeManifest{path: "mar-apr", length: 4 << 10, lo: day(3, 30), hi: day(4, 2)},
		fakeManifest{path: "apr-only", length: 4 << 10, lo: day(4, 9), hi: day(4, 9)},
		fakeManifest{path: "may-only", length: 4 << 10, lo: day(5, 9), hi: day(5, 9)},
	}
	rewrite, excess := unsettledManifests(mfs, layout.Hour, target)
	var got []string
	for p := range rewrite {
		got = append(got, p)
	}
	slices.Sort(got)
	want := []string{"apr-only", "feb-a", "feb-b", "feb-c", "mar-apr"}
	if !slices.Equal(got, want) || excess != 3 {
		t.Fatalf("rewrite %v, excess %d; want %v, 3 (feb's two extra, the spanning one)", got, excess, want)
	}
	// After the merge each month has one small manifest: nothing to do.
	settled := []iceberg.ManifestFile{mfs[0], mfs[1], mfs[7],
		fakeManifest{path: "feb", length: 12 << 10, lo: day(2, 3), hi: day(2, 5)},
		fakeManifest{path: "mar", length: 4 << 10, lo: day(3, 30), hi: day(3, 31)},
		fakeManifest{path: "apr", length: 8 << 10, lo: day(4, 1), hi: day(4, 9)},
	}
	if rewrite, excess := unsettledManifests(settled, layout.Hour, target); len(rewrite) != 0 || excess != 0 {
		t.Fatalf("after the merge: rewrite %v, excess %d; want none", rewrite, excess)
	}
}

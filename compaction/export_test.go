package compaction

import (
	"github.com/apache/iceberg-go"

	"github.com/lakesink/lakesink/lake/layout"
)

// ManifestBound exposes manifestBound to the black-box tests.
var ManifestBound = manifestBound

// ExcessManifests counts the data manifests a merge would remove.
func ExcessManifests(mfs []iceberg.ManifestFile, g layout.Granularity, target int64) int {
	_, n := unsettledManifests(mfs, g, target)
	return n
}

// ManifestPeriods exposes manifestPeriods.
var ManifestPeriods = manifestPeriods

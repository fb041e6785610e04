package compaction

// ManifestBound exposes manifestBound to the black-box tests.
var ManifestBound = manifestBound

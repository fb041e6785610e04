package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCompactShardFlags: bad --shard / --shards / JOB_COMPLETION_INDEX /
// maintenance combinations fail at start, naming the flag or variable.
func TestCompactShardFlags(t *testing.T) {
	for _, tc := range []struct {
		name, index string
		args        []string
		err         string
	}{
		{"shard out of range", "", []string{"--shard", "3/3"}, "--shard: shard \"3/3\": the index must be in [0, 3)"},
		{"shard not I/N", "", []string{"--shard", "2"}, "--shard: shard \"2\": want I/N"},
		{"both", "0", []string{"--shard", "0/2", "--shards", "2"}, "--shard and --shards exclude each other"},
		{"no index", "", []string{"--shards", "3"}, "--shards 3: JOB_COMPLETION_INDEX is not set"},
		{"index not a number", "x", []string{"--shards", "3"}, "JOB_COMPLETION_INDEX \"x\" is not an integer"},
		{"index out of range", "3", []string{"--shards", "3"}, "--shards 3 with JOB_COMPLETION_INDEX 3: the index must be in [0, 3)"},
		{"negative shards", "", []string{"--shards", "-1"}, "--shards -1: must be at least 1"},
		{"maintenance both ways", "", []string{"--maintenance-only", "--no-maintenance"}, "exclude each other"},
		{"maintenance-only sharded", "1", []string{"--maintenance-only", "--shards", "2"}, "--maintenance-only runs once per table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_KAFKA_PASSWORD", "hunter2")
			t.Setenv("JOB_COMPLETION_INDEX", tc.index)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"compact", "-c", "../../testdata/config/full.good.yaml"}, tc.args...), &stdout, &stderr)
			if code != exitConfig || !strings.Contains(stderr.String(), tc.err) {
				t.Fatalf("exit %d (want %d), stderr %q, want it to contain %q", code, exitConfig, stderr.String(), tc.err)
			}
		})
	}
	if sh, err := shardOf("", 4, "3"); err != nil || sh.String() != "3/4" {
		t.Fatalf("--shards 4 with JOB_COMPLETION_INDEX=3: %v, %v; want 3/4", sh, err)
	}
}

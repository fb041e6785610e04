package main

import (
	"context"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/store"
)

// TestE2EOffsetResetMidFile is the runbook's "Replaying from an offset" with a
// reset that lands inside a raw file (as a --to-datetime reset almost always does):
// the replay writes the re-read records again under a new key, so the raw zone
// holds them twice and the audit reports the duplicated rows; the compactor drops
// the duplicates by Kafka coordinates, and after a compaction the table holds every
// record once and the audit is clean.
func TestE2EOffsetResetMidFile(t *testing.T) {
	s := newScenario(t, testbed.Kafka(t), 1, "")
	const n = 10_000
	s.produceMix(n, 1, 0, 1)
	p := s.start(s.cfg)
	s.waitCaughtUp(2*time.Minute, p)
	p.stop(t)
	// A reset offset strictly inside a raw file: the middle of the largest one.
	var firsts []int64
	lake := (&lakeFixture{b: s.bed}).s3(t, s.prefix)
	if err := lake.List(context.Background(), "raw/", func(o store.ObjectInfo) error {
		parts := strings.Split(strings.TrimSuffix(path.Base(o.Key), ".parquet"), ".")
		f, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if err != nil {
			t.Fatalf("raw key %s: %v", o.Key, err)
		}
		firsts = append(firsts, f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(firsts)
	reset, widest := int64(-1), int64(1)
	for i, f := range firsts {
		end := int64(n) // one past the file's last offset
		if i+1 < len(firsts) {
			end = firsts[i+1]
		}
		if end-f > widest {
			reset, widest = f+(end-f)/2, end-f
		}
	}
	if reset < 0 {
		t.Fatalf("no raw file of two records or more among %v", firsts)
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: s.topic, Partition: 0, At: reset, LeaderEpoch: -1})
	if _, err := s.adm.CommitOffsets(context.Background(), s.group, os); err != nil {
		t.Fatal(err)
	}
	p = s.start(s.cfg)
	s.waitCaughtUp(2*time.Minute, p)
	m := p.metrics(t)
	p.stop(t)
	rows, distinct, _ := s.lakeCounts()
	code, rep, _ := s.runAudit(s.cfg)
	t.Logf("raw files before the reset start at %v; reset to %d: raw zone %d rows, %d distinct; records skipped/conflicts %v; audit exit %d, %d duplicated rows, %d lost",
		firsts, reset, rows, distinct, replays(m), code, rep.DupRows, rep.Lost)
	if want := int64(n) - reset; distinct != n || rows != n+want || code != 1 || rep.DupRows != want || rep.Lost != 0 {
		t.Fatalf("after a reset to %d: raw %d rows, %d distinct, audit exit %d with %d duplicated and %d lost rows; want %d, %d, exit 1, %d, 0",
			reset, rows, distinct, code, rep.DupRows, rep.Lost, n+want, n, want)
	}
	// The first compaction merges the raw files, dropping the duplicates; the raw
	// files are deleted by a later run, past raw_grace (0s here), and only then is
	// the audit clean.
	s.compact()
	if code, rep, _ := s.runAudit(s.cfg); code != 1 || rep.DupRows != int64(n)-reset {
		t.Fatalf("after the first compaction: audit exit %d, %d duplicated rows; want 1 and %d (the raw files are still there)", code, rep.DupRows, int64(n)-reset)
	}
	s.compact()
	o := s.verify()
	if o.Raw != 0 || o.Table != n {
		t.Fatalf("after the second compaction: %s; want raw 0 and %d rows in the table", o, n)
	}
}

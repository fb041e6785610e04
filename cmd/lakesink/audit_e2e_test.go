package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/audit"
	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// runAudit runs lakesink audit --json and returns its exit code and report.
func (b *bed) runAudit(cfg string, args ...string) (int, *audit.Report, string) {
	b.t.Helper()
	env := []string{"AWS_ACCESS_KEY_ID=" + b.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + b.s3.SecretKey, "AWS_REGION=" + b.s3.Region}
	code, stdout, stderr := b.lakesink(env, append([]string{"audit", "-c", cfg, "--json"}, args...)...)
	if code != 0 && code != 1 {
		b.t.Fatalf("lakesink audit exit %d:\n%s%s", code, stdout, stderr)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		b.t.Fatalf("audit output %q: %v\n%s", stdout, err, stderr)
	}
	return code, &rep, stdout
}

// wantClean fails unless the audit exits 0 with no finding.
func (b *bed) wantClean(step, cfg string) *audit.Report {
	b.t.Helper()
	code, rep, out := b.runAudit(cfg)
	if code != 0 || rep.Findings() || len(rep.Partitions) == 0 {
		b.t.Fatalf("%s: audit exit %d, want 0 and no findings:\n%s", step, code, out)
	}
	return rep
}

// lostOffsets lists every lost offset of the report, as "partition/offset".
func lostOffsets(rep *audit.Report) []string {
	var out []string
	for _, p := range rep.Partitions {
		for _, r := range p.Lost {
			for o := r.First; o <= r.Last; o++ {
				out = append(out, fmt.Sprintf("%d/%d", p.Partition, o))
			}
		}
	}
	return out
}

// TestE2EAudit: after a clean sink run and a clean compaction the audit finds
// nothing — with dead letters inside raw files' ranges and an aborted and a
// committed transaction in the source topic (markers and aborted records are
// not data) — and it finds each planted fault: a raw file copied under another
// first offset (duplicated rows), a raw file deleted (lost), a dead letter
// dropped (lost), a table data file deleted (missing) and a table data file
// registered twice (duplicated rows).
func TestE2EAudit(t *testing.T) {
	const parts = 2
	b := newBed(t, parts)
	ctx := context.Background()
	b.produce(1000, 3, 11, parts)
	// Bad records in the middle of both partitions: dead letters inside raw ranges.
	for i := range 6 {
		r := &kgo.Record{Topic: b.topic, Partition: int32(i % parts), Value: []byte(`{"not": "an event"`)}
		if err := b.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// An aborted and a committed transaction on partition 0.
	txn, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.TransactionalID(b.topic+"-txn"),
		kgo.DefaultProduceTopic(b.topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	g := gen.New(12, time.Now().UTC().Truncate(time.Hour).Add(-2*time.Hour), time.Hour)
	for _, commit := range []bool{false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			v, _ := g.Event(i, 5)
			if err := txn.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: append([]byte(nil), v...)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	b.produce(1000, 3, 13, parts)
	p := b.start(b.config("flush: {max_age: 2s, max_file_bytes: 8MiB, memory_budget: 128MiB, shutdown_timeout: 30s}"))
	b.waitCaughtUp(90*time.Second, p)
	p.stop(t)

	f := &lakeFixture{b: b, src: b.prefix}
	lake := f.s3(t, b.prefix)
	catYAML, _, _ := sqliteCatalog(t, b, b.prefix)
	cfg := f.compactConfig(t, b.prefix, catYAML, "  raw_grace: 1h")

	// 1. The sink's raw zone alone: clean, and the transaction's markers and
	// aborted records were read from Kafka (in doubt) and not reported.
	rep := b.wantClean("raw zone after the sink", cfg)
	var dead int
	for _, pr := range rep.Partitions {
		dead += pr.DeadLetters
		if pr.Partition == 0 && pr.KafkaReads == 0 {
			t.Errorf("partition 0 holds transaction markers and aborted records, but the audit read no range from Kafka: %+v", pr)
		}
	}
	if dead != 6 {
		t.Fatalf("audit saw %d dead letters, want 6", dead)
	}
	var keys []string
	if err := lake.List(ctx, "raw/", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) < 4 {
		t.Fatalf("raw zone has %d files, want at least 4", len(keys))
	}

	// 2. A copy of a raw file under another first offset: its rows are duplicated.
	victim := keys[1]
	ft, err := rawfile.ReadFooter(ctx, lake, victim)
	if err != nil {
		t.Fatal(err)
	}
	plantDup(t, lake, victim, 1)
	copyKey := dupKey(victim, 1)
	code, rep, out := b.runAudit(cfg)
	if code != 1 || rep.DupRows != ft.Rows || rep.Lost != 0 {
		t.Fatalf("raw copy of %s (%d rows): audit exit %d, %d dup rows, %d lost; want 1, %d, 0:\n%s", victim, ft.Rows, code, rep.DupRows, rep.Lost, ft.Rows, out)
	}
	if err := lake.Delete(ctx, copyKey); err != nil {
		t.Fatal(err)
	}

	// 3. A raw file deleted: its rows are lost.
	backup := "backup/" + path.Base(victim)
	if err := copyObject(ctx, lake, victim, lake, backup); err != nil {
		t.Fatal(err)
	}
	if err := lake.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	code, rep, out = b.runAudit(cfg)
	if code != 1 || rep.Lost != ft.Rows || rep.DupRows != 0 {
		t.Fatalf("raw file %s (%d rows) deleted: audit exit %d, %d lost, %d dup rows; want 1, %d, 0:\n%s", victim, ft.Rows, code, rep.Lost, rep.DupRows, ft.Rows, out)
	}
	// --since after every record: nothing is audited, so nothing is lost.
	code, rep, out = b.runAudit(cfg, "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if code != 0 || rep.Lost != 0 {
		t.Fatalf("--since in the future: audit exit %d, %d lost; want 0, 0:\n%s", code, rep.Lost, out)
	}
	if err := copyObject(ctx, lake, backup, lake, victim); err != nil {
		t.Fatal(err)
	}
	b.wantClean("raw file restored", cfg)

	// 4. A dead letter dropped: the audit reads a copy of the dead-letter topic
	// without one of them (a source offset inside a raw file's range).
	dropped := b.copyDeadLetters(1)
	dropCfg := b.rewrite(cfg, "dlq", "dead_letter: {topic: "+b.dlq+"}", "dead_letter: {topic: "+b.dlq+"-copy}")
	code, rep, out = b.runAudit(dropCfg)
	if got := lostOffsets(rep); code != 1 || !slices.Equal(got, []string{dropped}) || rep.DupRows != 0 {
		t.Fatalf("dead letter of %s dropped: audit exit %d, lost %v, %d dup rows; want 1, [%s], 0:\n%s", dropped, code, got, rep.DupRows, dropped, out)
	}

	// 5. Compacted (raw files kept for their grace): raw and table hold the same
	// offsets, which is not a duplicate.
	if code, out := f.compactRun(t, cfg); code != 0 {
		t.Fatalf("compact exit %d:\n%s", code, out)
	}
	rep = b.wantClean("after compaction", cfg)
	if rep.Cost.TableFiles == 0 {
		t.Fatalf("audit read no table file after compaction: %+v", rep.Cost)
	}

	// 6. A referenced table data file deleted: missing.
	c, err := config.Load(cfg, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": b.s3.AccessKey, "AWS_SECRET_ACCESS_KEY": b.s3.SecretKey, "AWS_REGION": b.s3.Region} {
		t.Setenv(k, v)
	}
	cat, err := icetable.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	tbl, err := cat.Cat.LoadTable(ctx, cat.Ident("events"))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil || len(tasks) == 0 {
		t.Fatalf("table files: %d, %v", len(tasks), err)
	}
	dataFile, rows := tasks[0].File.FilePath(), tasks[0].File.Count()
	root := "s3://" + b.s3.Bucket + "/" + b.prefix
	dataKey := strings.TrimPrefix(dataFile, root)
	if dataKey == dataFile {
		t.Fatalf("data file %s is not under %s", dataFile, root)
	}
	if err := copyObject(ctx, lake, dataKey, lake, "backup/table.parquet"); err != nil {
		t.Fatal(err)
	}
	if err := lake.Delete(ctx, dataKey); err != nil {
		t.Fatal(err)
	}
	code, rep, out = b.runAudit(cfg)
	if code != 1 || len(rep.Missing) != 1 || rep.Missing[0].Path != dataFile || rep.Lost != 0 {
		t.Fatalf("data file %s deleted: audit exit %d, missing %v, %d lost; want 1, [%s], 0:\n%s", dataFile, code, rep.Missing, rep.Lost, dataFile, out)
	}
	if err := copyObject(ctx, lake, "backup/table.parquet", lake, dataKey); err != nil {
		t.Fatal(err)
	}
	b.wantClean("table file restored", cfg)

	// 7. The same data registered twice (a copy added by a second commit).
	twin := strings.TrimSuffix(dataKey, ".parquet") + "-twin.parquet"
	if err := copyObject(ctx, lake, dataKey, lake, twin); err != nil {
		t.Fatal(err)
	}
	tx := tbl.NewTransaction()
	if err := tx.AddFiles(ctx, []string{root + twin}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	code, rep, out = b.runAudit(cfg)
	if code != 1 || rep.DupRows != rows || rep.Lost != 0 {
		t.Fatalf("data file %s (%d rows) registered twice: audit exit %d, %d dup rows, %d lost; want 1, %d, 0:\n%s", dataFile, rows, code, rep.DupRows, rep.Lost, rows, out)
	}
	for _, pr := range rep.Partitions {
		for _, d := range pr.Dups {
			if d.Where != "table" {
				t.Errorf("dup %+v: want where=table", d)
			}
		}
	}
	// The text report says the same.
	env := []string{"AWS_ACCESS_KEY_ID=" + b.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + b.s3.SecretKey, "AWS_REGION=" + b.s3.Region}
	code, text, _ := b.lakesink(env, "audit", "-c", cfg, "--table", "events")
	if code != 1 || !strings.Contains(text, "audit FINDINGS") || !strings.Contains(text, "DUP ") {
		t.Fatalf("text report exit %d:\n%s", code, text)
	}
	t.Logf("text report:\n%s", text)
	if code, _, stderr := b.lakesink(env, "audit", "-c", cfg, "--table", "nope"); code != 2 {
		t.Fatalf("--table nope: exit %d, want 2:\n%s", code, stderr)
	}
	// No verdict is not a clean verdict: an unreadable dead-letter topic exits 3.
	absent := b.rewrite(cfg, "absent", "dead_letter: {topic: "+b.dlq+"}", "dead_letter: {topic: "+b.dlq+"-absent}")
	if code, stdout, stderr := b.lakesink(env, "audit", "-c", absent); code != 3 || !strings.Contains(stderr, b.dlq+"-absent") {
		t.Fatalf("dead-letter topic absent: exit %d, want 3 naming the topic:\n%s%s", code, stdout, stderr)
	}
}

// dupKey is the key plantDup(key, delta) writes.
func dupKey(key string, delta int64) string {
	dir, base := path.Dir(key), path.Base(key)
	parts := strings.Split(strings.TrimSuffix(base, ".parquet"), ".")
	first, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	parts[len(parts)-1] = fmt.Sprintf("%020d", first+delta)
	return dir + "/" + strings.Join(parts, ".") + ".parquet"
}

// copyDeadLetters copies the dead-letter topic to <dlq>-copy without its
// skip-th record and returns the dropped record's source "partition/offset".
func (b *bed) copyDeadLetters(skip int) string {
	b.t.Helper()
	ctx := context.Background()
	dst := b.dlq + "-copy"
	if _, err := b.adm.CreateTopic(ctx, 1, 1, nil, dst); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _, _ = b.adm.DeleteTopics(context.Background(), dst) })
	ends, err := b.adm.ListEndOffsets(ctx, b.dlq)
	if err != nil {
		b.t.Fatal(err)
	}
	end, _ := ends.Lookup(b.dlq, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(b.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var dropped string
	var next int64
	for next < end.Offset && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if int(r.Offset) == skip {
				var p, o string
				for _, h := range r.Headers {
					switch h.Key {
					case deadletter.HeaderPartition:
						p = string(h.Value)
					case deadletter.HeaderOffset:
						o = string(h.Value)
					}
				}
				dropped = p + "/" + o
				return
			}
			c := &kgo.Record{Topic: dst, Key: r.Key, Value: r.Value, Headers: r.Headers}
			if err := b.cl.ProduceSync(ctx, c).FirstErr(); err != nil {
				b.t.Fatal(err)
			}
		})
	}
	if next < end.Offset || dropped == "" {
		b.t.Fatalf("copied the dead-letter topic to %d of %d, dropped %q", next, end.Offset, dropped)
	}
	return dropped
}

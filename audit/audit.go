package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/deadletter"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// Auditor checks the lake of one config against Kafka.
type Auditor struct {
	Cfg *config.Config
	// Lake is the raw zone's store; Warehouse the store rooted at
	// catalog.warehouse (table data files); Cat the table catalog (nil: the
	// tables are not checked, only the raw zone).
	Lake, Warehouse store.Store
	Cat             *icetable.Catalog
	// Kafka are the base client options (brokers, TLS, SASL).
	Kafka []kgo.Opt
	// Concurrency bounds footer reads in flight (default 16).
	Concurrency int
}

// Options narrow an audit.
type Options struct {
	// Table audits only this table (default: every table of the config).
	Table string
	// Since audits only offsets of records at or after this time (zero: all).
	Since time.Time
}

// Report is the result of an audit.
type Report struct {
	Partitions []*PartitionReport `json:"partitions"`
	// Missing lists data files the tables reference that are not in storage.
	Missing []MissingFile `json:"missing_files"`
	// TwiceReferenced lists data files one snapshot references more than once.
	TwiceReferenced []Dup `json:"twice_referenced"`
	// Notes are observations that are not findings.
	Notes []string `json:"notes"`
	Cost  Cost     `json:"cost"`
	// Lost, DupRows and MissingFiles total the findings.
	Lost         int64 `json:"lost"`
	DupRows      int64 `json:"dup_rows"`
	MissingFiles int   `json:"missing_file_count"`
}

// MissingFile is a referenced data file not found in storage.
type MissingFile struct {
	Table string `json:"table"`
	Path  string `json:"path"`
}

// Cost says what the audit read.
type Cost struct {
	RawFiles    int   `json:"raw_files"`
	TableFiles  int   `json:"table_files"`
	DeadLetters int64 `json:"dead_letters"`
	// StoreRequests counts the lake's and warehouse's lists, opens (a HEAD on
	// S3) and ranged reads; the catalog's metadata and manifest reads (through
	// iceberg-go's own I/O) come on top.
	StoreRequests   int64   `json:"store_requests"`
	PagesReadFiles  int     `json:"files_pages_read"`
	KafkaRangesRead int     `json:"kafka_ranges_read"`
	Seconds         float64 `json:"seconds"`
}

// Findings reports whether the audit found anything wrong.
func (r *Report) Findings() bool { return r.Lost > 0 || r.DupRows > 0 || r.MissingFiles > 0 }

// ErrUnknownTable means Options.Table names no table of the config.
var ErrUnknownTable = errors.New("no such table in the config")

// Run audits the tables.
func (a *Auditor) Run(ctx context.Context, opt Options) (*Report, error) {
	// iceberg-go's own S3 requests (metadata, manifests) bounded as the store's.
	ctx = a.Cat.WithIO(ctx)
	start := time.Now()
	var tables []config.Table
	for _, t := range a.Cfg.Tables {
		if opt.Table == "" || opt.Table == t.Name {
			tables = append(tables, t)
		}
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("--table %q: %w", opt.Table, ErrUnknownTable)
	}
	if a.Cat != nil && a.Warehouse == nil {
		return nil, errors.New("audit: a catalog needs its warehouse store")
	}
	lake, wh := &countingStore{Store: a.Lake}, (*countingStore)(nil)
	if a.Warehouse != nil {
		wh = &countingStore{Store: a.Warehouse}
	}
	cl, err := kgo.NewClient(a.Kafka...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rep := &Report{Partitions: []*PartitionReport{}, Missing: []MissingFile{}, TwiceReferenced: []Dup{}, Notes: []string{}}
	var topics []string
	for _, t := range tables {
		topics = append(topics, t.Topics...)
	}
	// Order matters against a running sink and compactor: commits first (the
	// sink acknowledges dead letters and uploads raw files before it commits
	// past them), then dead letters, then the raw zone, then the table (the
	// compactor commits before it deletes raw files).
	windows := make([][]partWindow, len(tables))
	for i, t := range tables {
		if windows[i], err = a.windows(ctx, adm, t.Topics, opt.Since); err != nil {
			return nil, fmt.Errorf("table %s: %w", t.Name, err)
		}
	}
	dead, n, err := a.readDeadLetters(ctx, adm, topics)
	if err != nil {
		return nil, err
	}
	rep.Cost.DeadLetters = n
	probe := Probe{
		DataOffsets: func(ctx context.Context, topic string, partition int32, r Range) (Set, error) {
			return readData(ctx, a.Kafka, topic, partition, r)
		},
	}
	for i, t := range tables {
		if err := a.table(ctx, &t, windows[i], lake, wh, dead, probe, rep); err != nil {
			return nil, err
		}
	}
	for _, p := range rep.Partitions {
		rep.Lost += p.LostCount
		rep.DupRows += p.DupRows
		rep.Cost.PagesReadFiles += p.FileReads
		rep.Cost.KafkaRangesRead += p.KafkaReads
	}
	for _, d := range rep.TwiceReferenced {
		rep.DupRows += d.Rows
	}
	rep.MissingFiles = len(rep.Missing)
	rep.Cost.StoreRequests = lake.requests()
	if wh != nil {
		rep.Cost.StoreRequests += wh.requests()
	}
	rep.Cost.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// table audits one table.
func (a *Auditor) table(ctx context.Context, t *config.Table, parts []partWindow, lake, wh *countingStore,
	dead map[string]map[int32]map[int64]int, probe Probe, rep *Report) error {
	g, err := layout.ParseGranularity(t.EventTime.Granularity)
	if err != nil {
		return fmt.Errorf("table %s: %w", t.Name, err)
	}
	raw, err := a.rawFiles(ctx, lake, t, g, rep)
	if err != nil {
		return err
	}
	rep.Cost.RawFiles += len(raw)
	var cov []coveredFile
	if a.Cat != nil {
		cov, err = a.tableFiles(ctx, wh, t, rep)
		if err != nil {
			return err
		}
	}
	rep.Cost.TableFiles += len(cov)
	byFile := map[string]string{} // table path → warehouse key
	for _, c := range cov {
		byFile[c.path] = c.key
	}
	probe.FileOffsets = func(ctx context.Context, file, topic string, partition int32) ([]int64, error) {
		if key, ok := byFile[file]; ok {
			return readOffsets(ctx, wh, key, topic, partition)
		}
		return readOffsets(ctx, lake, file, topic, partition)
	}
	type tp struct {
		topic     string
		partition int32
	}
	rawOf := map[tp][]RawFile{}
	for _, r := range raw {
		k := tp{r.ft.Topic, r.ft.Partition}
		rawOf[k] = append(rawOf[k], RawFile{Key: r.key, Period: r.period, Range: Range{r.ft.First, r.ft.Last}, Rows: r.ft.Rows})
	}
	covOf := map[tp][]TableRange{}
	for _, c := range cov {
		for topic, ps := range c.cov {
			for p, rgs := range ps {
				for _, rg := range rgs {
					covOf[tp{topic, p}] = append(covOf[tp{topic, p}], TableRange{File: c.path, Period: c.period, Range: Range{rg.First, rg.Last}})
				}
			}
		}
	}
	for _, pw := range parts {
		k := tp{pw.topic, pw.partition}
		in := &PartitionInput{TableName: t.Name, Topic: pw.topic, Partition: pw.partition, LogStart: pw.start,
			Stable: pw.stable, Window: pw.window, DeadLetters: dead[pw.topic][pw.partition], Raw: rawOf[k], Coverage: covOf[k]}
		pr, err := Analyze(ctx, in, probe)
		if err != nil {
			return fmt.Errorf("table %s, %s/%d: %w", t.Name, pw.topic, pw.partition, err)
		}
		if !pw.committed {
			pr.Committed = -1
		}
		rep.Partitions = append(rep.Partitions, pr)
	}
	return nil
}

// partWindow is one partition's offsets and audited window.
type partWindow struct {
	topic         string
	partition     int32
	start, stable int64
	window        Range
	committed     bool
}

// windows lists each partition's log start, last stable offset and committed
// window (three Kafka requests for all its partitions, four with --since).
func (a *Auditor) windows(ctx context.Context, adm *kadm.Client, topics []string, since time.Time) ([]partWindow, error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", strings.Join(topics, ","), err)
	}
	stables, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list stable offsets of %s: %w", strings.Join(topics, ","), err)
	}
	commits, err := adm.FetchOffsetsForTopics(ctx, a.Cfg.Kafka.Group, topics...)
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", a.Cfg.Kafka.Group, err)
	}
	var after kadm.ListedOffsets
	if !since.IsZero() {
		if after, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...); err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", since.Format(time.RFC3339), err)
		}
	}
	var out []partWindow
	for _, topic := range topics {
		ps, ok := starts[topic]
		if !ok {
			return nil, fmt.Errorf("topic %s: not found", topic)
		}
		ids := make([]int32, 0, len(ps))
		for p := range ps {
			ids = append(ids, p)
		}
		slices.Sort(ids)
		for _, p := range ids {
			s := ps[p]
			if s.Err != nil {
				return nil, fmt.Errorf("start offset of %s/%d: %w", topic, p, s.Err)
			}
			st, ok := stables.Lookup(topic, p)
			if !ok || st.Err != nil {
				return nil, fmt.Errorf("stable offset of %s/%d: %v", topic, p, st.Err)
			}
			pw := partWindow{topic: topic, partition: p, start: s.Offset, stable: st.Offset}
			from := s.Offset
			if after != nil {
				if o, ok := after.Lookup(topic, p); ok && o.Err == nil {
					if o.Offset < 0 {
						from = max(from, st.Offset)
					} else {
						from = max(from, o.Offset)
					}
				}
			}
			pw.window = Range{from, from - 1}
			if c, ok := commits.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
				pw.committed = true
				pw.window.Last = c.At - 1
			}
			out = append(out, pw)
		}
	}
	return out, nil
}

// readDeadLetters reads the dead-letter topic up to its last stable offsets
// and counts dead letters by source topic, partition and offset.
func (a *Auditor) readDeadLetters(ctx context.Context, adm *kadm.Client, topics []string) (map[string]map[int32]map[int64]int, int64, error) {
	dlq := a.Cfg.DeadLetter.Topic
	out := map[string]map[int32]map[int64]int{}
	want := map[string]bool{}
	for _, t := range topics {
		want[t] = true
		out[t] = map[int32]map[int64]int{}
	}
	starts, err := adm.ListStartOffsets(ctx, dlq)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("list start offsets of dead-letter topic %s: %w", dlq, err)
	}
	if len(starts[dlq]) == 0 {
		return nil, 0, fmt.Errorf("dead-letter topic %s has no partitions (does it exist?)", dlq)
	}
	ends, err := adm.ListCommittedOffsets(ctx, dlq)
	if err != nil {
		return nil, 0, fmt.Errorf("list stable offsets of dead-letter topic %s: %w", dlq, err)
	}
	from := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition → last offset to read
	for p, s := range starts[dlq] {
		e, ok := ends.Lookup(dlq, p)
		if s.Err != nil || !ok || e.Err != nil {
			return nil, 0, fmt.Errorf("offsets of dead-letter partition %s/%d: %v %v", dlq, p, s.Err, e.Err)
		}
		if e.Offset > s.Offset {
			from[p] = kgo.NewOffset().At(s.Offset)
			left[p] = e.Offset - 1
		}
	}
	if len(from) == 0 {
		return out, 0, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(a.Kafka),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{dlq: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, 0, fmt.Errorf("kafka client for %s: %w", dlq, err)
	}
	defer cl.Close()
	var n int64
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("read dead-letter topic %s: %w", dlq, err)
		}
		for _, fe := range fs.Errors() {
			return nil, 0, fmt.Errorf("read dead-letter topic %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := left[r.Partition]
			if !ok || r.Offset > last {
				return
			}
			if r.Offset == last {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var topic string
			part, off := int64(-1), int64(-1)
			for _, h := range r.Headers {
				switch h.Key {
				case deadletter.HeaderTopic:
					topic = string(h.Value)
				case deadletter.HeaderPartition:
					part, _ = strconv.ParseInt(string(h.Value), 10, 32)
				case deadletter.HeaderOffset:
					off, _ = strconv.ParseInt(string(h.Value), 10, 64)
				}
			}
			if !want[topic] || part < 0 || off < 0 {
				return
			}
			m := out[topic][int32(part)]
			if m == nil {
				m = map[int64]int{}
				out[topic][int32(part)] = m
			}
			m[off]++
			n++
		})
	}
	return out, n, nil
}

type rawEntry struct {
	key    string
	period layout.Period
	ft     rawfile.Footer
}

// rawFiles lists the table's raw zone and reads every file's footer.
func (a *Auditor) rawFiles(ctx context.Context, lake *countingStore, t *config.Table, g layout.Granularity, rep *Report) ([]rawEntry, error) {
	var out []rawEntry
	err := lake.List(ctx, layout.RawPrefix(t.Name), func(o store.ObjectInfo) error {
		if !strings.HasSuffix(o.Key, ".parquet") {
			return nil
		}
		k, err := layout.ParseRawKey(g, o.Key)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("skipped %s: %v", o.Key, err))
			return nil
		}
		out = append(out, rawEntry{key: o.Key, period: k.Period})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list raw zone of %s: %w", t.Name, err)
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(1, a.concurrency()))
	for i := range out {
		eg.Go(func() error {
			ft, err := rawfile.ReadFooter(ectx, lake, out[i].key)
			if store.IsNotFound(err) {
				return nil // deleted since the listing (compaction's cleaner)
			}
			if err != nil {
				return fmt.Errorf("footer of raw file %s: %w", out[i].key, err)
			}
			out[i].ft = ft
			k, _ := layout.ParseRawKey(g, out[i].key)
			if k.Topic != ft.Topic || k.Partition != ft.Partition || k.FirstOffset != ft.First {
				mu.Lock()
				rep.Notes = append(rep.Notes, fmt.Sprintf("raw file %s: its name says %s/%d from %d, its footer %s/%d from %d",
					out[i].key, k.Topic, k.Partition, k.FirstOffset, ft.Topic, ft.Partition, ft.First))
				mu.Unlock()
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(rep.Notes, strings.Compare)
	kept := out[:0]
	for _, r := range out {
		if r.ft.Topic != "" {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

func (a *Auditor) concurrency() int {
	if a.Concurrency > 0 {
		return a.Concurrency
	}
	return 16
}

// coveredFile is a live table data file and its coverage footer.
type coveredFile struct {
	path, key string
	period    layout.Period
	cov       compaction.Coverage
}

// tableFiles lists the current snapshot's data files (manifests) and reads
// each file's coverage footer. A missing file is a finding; a file without a
// coverage footer (written by another engine) has its Kafka columns read.
func (a *Auditor) tableFiles(ctx context.Context, wh *countingStore, t *config.Table, rep *Report) ([]coveredFile, error) {
	ident := a.Cat.Ident(t.Name)
	tbl, err := a.Cat.Cat.LoadTable(ctx, ident)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("table %s does not exist yet: only the raw zone was audited", strings.Join(ident, ".")))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load table %s: %w", strings.Join(ident, "."), err)
	}
	if tbl.CurrentSnapshot() == nil {
		return nil, nil
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list data files of table %s: %w", strings.Join(ident, "."), err)
	}
	root := wh.URI("")
	seen := map[string]int64{}
	var files []coveredFile
	for _, task := range tasks {
		df := task.File
		path := df.FilePath()
		if _, ok := seen[path]; ok {
			rep.TwiceReferenced = append(rep.TwiceReferenced, Dup{Where: "table", Rows: df.Count(), Files: []string{path}, Offsets: []Range{}})
			continue
		}
		seen[path] = df.Count()
		key, ok := strings.CutPrefix(path, root)
		if !ok {
			return nil, fmt.Errorf("table %s: data file %s is outside the warehouse %s", t.Name, path, root)
		}
		per, err := compaction.PeriodOf(df)
		if err != nil {
			return nil, fmt.Errorf("table %s: data file %s: %w", t.Name, path, err)
		}
		files = append(files, coveredFile{path: path, key: key, period: per})
	}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(1, a.concurrency()))
	for i := range files {
		eg.Go(func() error {
			f := &files[i]
			cov, err := readCoverage(ectx, wh, f.key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case store.IsNotFound(err):
				rep.Missing = append(rep.Missing, MissingFile{Table: t.Name, Path: f.path})
				return nil
			case err != nil:
				return fmt.Errorf("table %s: %w", t.Name, err)
			case cov == nil:
				rep.Notes = append(rep.Notes, fmt.Sprintf("table file %s has no %s footer: its Kafka columns were read", f.path, compaction.CoverageKey))
			}
			f.cov = cov
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(rep.Missing, func(a, b MissingFile) int { return strings.Compare(a.Path, b.Path) })
	for i := range files {
		if files[i].cov == nil {
			cov, err := coverageFromColumns(ctx, wh, files[i].key)
			if err != nil {
				if store.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("table %s: %w", t.Name, err)
			}
			files[i].cov = cov
		}
	}
	return files, nil
}

// readCoverage reads a table file's coverage footer; nil when it has none.
func readCoverage(ctx context.Context, st store.Store, key string) (compaction.Coverage, error) {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), rawfile.FooterOnly...)
	if err != nil {
		return nil, fmt.Errorf("open parquet %s: %w", st.URI(key), err)
	}
	v, ok := f.Lookup(compaction.CoverageKey)
	if !ok {
		return nil, nil
	}
	var cov compaction.Coverage
	if err := json.Unmarshal([]byte(v), &cov); err != nil {
		return nil, fmt.Errorf("table file %s: footer key %s: %w", st.URI(key), compaction.CoverageKey, err)
	}
	return cov, nil
}

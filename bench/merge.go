package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/internal/gen"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// MergeSize is the merge measure at one raw file size: the real `lakesink
// compact` over raw files of about that size on the S3 server, against the
// compactor's own bound (the same files merged in process from memory into
// memory: no S3, no catalog).
type MergeSize struct {
	Label string `json:"label"`
	// S3LatencyMs is the latency a proxy added to each of the compactor's S3 requests.
	S3LatencyMs float64 `json:"s3_latency_ms"`
	FileBytes   int64   `json:"file_bytes"`
	Files       int     `json:"files"`
	Compact     Result  `json:"compact"`
	Bound       Result  `json:"bound"`
	// Ordered is set for files of a topic in time order (no late events):
	// the compactor copies their row groups (RowGroupsCopied), and Reencode
	// is the same compaction with compaction.copy_row_groups: false.
	Ordered         bool    `json:"ordered,omitempty"`
	RowGroupsCopied int     `json:"row_groups_copied"`
	Reencode        *Result `json:"reencode,omitempty"`
	// Ratio is the compactor's MB per CPU-second over the bound's.
	Ratio float64 `json:"ratio"`
}

// mergeSizes runs the merge measure at each size of sizes (a comma-separated
// list of byte sizes: "28KB,1MB,64MB"; a size ending in "-ordered" has no late
// events, so its files are in the table's order) over about totalMB of raw files each;
// the compactor reaches S3 through a proxy that holds each request for
// latency.
//
// With profile set, each compactor run writes a CPU profile to profile-SIZE.
func mergeSizes(bin, sizes string, totalMB int, latency time.Duration, profile string) ([]MergeSize, error) {
	var out []MergeSize
	for _, s := range strings.Split(sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		size, ordered := strings.CutSuffix(s, "-ordered")
		b, err := config.ParseByteSize(size)
		if err != nil {
			return nil, fmt.Errorf("-merge-sizes: %w", err)
		}
		prof := ""
		if profile != "" {
			prof = profile + "-" + s
		}
		m, err := mergeSize(bin, s, int64(b), int64(totalMB)*1e6, latency, prof, ordered)
		if err != nil {
			return nil, fmt.Errorf("merge measure at %s files: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// mergeSize writes about total bytes of raw files of about fileBytes each (one
// Kafka partition, one hour of event time: one merge group) to the S3 server
// with the sink's engine, then measures the bound and the compactor on them.
func mergeSize(bin, label string, fileBytes, total int64, latency time.Duration, profile string, ordered bool) (MergeSize, error) {
	ctx := context.Background()
	name := fmt.Sprintf("bench-merge-%d", time.Now().UnixNano())
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return MergeSize{}, err
	}
	defer os.RemoveAll(dir)
	s3cfg := benchS3(name + "/")
	st, err := store.NewS3(ctx, s3cfg)
	if err != nil {
		return MergeSize{}, err
	}
	proxy, err := newSlowProxy(s3cfg.Endpoint, latency)
	if err != nil {
		return MergeSize{}, err
	}
	defer proxy.srv.Close()
	cfg, cfgPath, err := compactConfig(name, dir, s3cfg, proxy.url, "{lateness: 0s}")
	if err != nil {
		return MergeSize{}, err
	}
	// The sink must not cut a file before the seal does.
	cfg.Flush.MaxFileBytes, cfg.Flush.MemoryBudget = 8*config.GiB, 8*config.GiB
	g := gen.New(7, time.Now().UTC().Truncate(time.Hour).Add(-3*time.Hour), time.Hour)
	if ordered {
		g.LateFraction = 0
	}
	perEvent, err := rawBytesPerEvent(ctx, cfg, dir, g)
	if err != nil {
		return MergeSize{}, err
	}
	n := max(1, int(float64(total)/perEvent))
	every := max(1, int(float64(fileBytes)/perEvent))
	fmt.Fprintf(os.Stderr, "bench: merge measure: %d events (%.0f raw bytes each) in files of %d events under s3://%s/%s/\n",
		n, perEvent, every, s3cfg.Bucket, name)
	if err := writeRaw(ctx, cfg, st, n, 1, every, func(i int) []byte { v, _ := g.Event(i, n); return v }); err != nil {
		return MergeSize{}, err
	}
	mem := &memStore{objs: map[string][]byte{}}
	groups := map[layout.Period][]compaction.RawFile{}
	var size int64
	files := 0
	err = st.List(ctx, "raw/", func(o store.ObjectInfo) error {
		k, err := layout.ParseRawKey(layout.Hour, o.Key)
		if err != nil {
			return err
		}
		data, err := st.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		mem.objs[o.Key] = data
		groups[k.Period] = append(groups[k.Period], compaction.RawFile{Key: o.Key, Topic: k.Topic, Partition: k.Partition,
			First: k.FirstOffset, Size: o.Size, Period: k.Period})
		size += o.Size
		files++
		return nil
	})
	if err != nil {
		return MergeSize{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: merge measure: bound over %d raw files (%.1f MB)\n", files, float64(size)/1e6)
	tb, err := mergeBound(ctx, cfg, mem, groups, dir)
	if err != nil {
		return MergeSize{}, err
	}
	bound := result("merge bound: in memory, "+label+" files", n, size, tb.wall, tb.cpu, 0)
	fmt.Fprintf(os.Stderr, "bench: merge measure: compacting %d raw files (%.1f MB) with %s, S3 latency %s\n", files, float64(size)/1e6, bin, latency)
	args := []string{"compact", "-c", cfgPath}
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	r := runCompact(bin, s3cfg, args...)
	if r.err != nil {
		return MergeSize{}, r.err
	}
	copied, err := summaryCounts(r.out, n)
	if err != nil {
		return MergeSize{}, err
	}
	comp := result("merge: compact, "+label+" files", n, size, r.wall, r.cpu, r.rssKiB)
	comp.Files, bound.Files = files, files
	ms := MergeSize{Label: label, S3LatencyMs: float64(latency) / 1e6, FileBytes: fileBytes, Files: files, Compact: comp, Bound: bound,
		Ratio: comp.MBPerCPUs / bound.MBPerCPUs, Ordered: ordered, RowGroupsCopied: copied}
	if !ordered {
		return ms, nil
	}
	// The same files compacted again into a table of a new catalog, every row
	// re-encoded.
	dir2, err := os.MkdirTemp("", name)
	if err != nil {
		return MergeSize{}, err
	}
	defer os.RemoveAll(dir2)
	_, cfgPath2, err := compactConfig(name, dir2, s3cfg, proxy.url, "{lateness: 0s, copy_row_groups: false}")
	if err != nil {
		return MergeSize{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: merge measure: compacting them again, copy_row_groups: false\n")
	r2 := runCompact(bin, s3cfg, "compact", "-c", cfgPath2)
	if r2.err != nil {
		return MergeSize{}, r2.err
	}
	if c, err := summaryCounts(r2.out, n); err != nil || c != 0 {
		return MergeSize{}, fmt.Errorf("copy_row_groups: false: %d row groups copied, %v", c, err)
	}
	re := result("merge: compact, "+label+" files, copy_row_groups: false", n, size, r2.wall, r2.cpu, r2.rssKiB)
	re.Files = files
	ms.Reencode = &re
	return ms, nil
}

// summaryCounts checks that a compaction run's summary line counts n rows
// and returns the row groups it copied.
func summaryCounts(out string, n int) (copied int, err error) {
	m := regexp.MustCompile(`(\d+) rows, (\d+) duplicates dropped, (\d+) row groups copied`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(n) {
		return 0, fmt.Errorf("the compactor's summary does not count %d rows:\n%s", n, out)
	}
	return strconv.Atoi(m[3])
}

// rawBytesPerEvent measures the raw Parquet bytes of one of g's events: a
// sample written through the sink's engine into a local lake under dir.
func rawBytesPerEvent(ctx context.Context, cfg *config.Config, dir string, g *gen.Events) (float64, error) {
	const sample = 50_000
	lake, err := store.NewLocal(filepath.Join(dir, "sample"))
	if err != nil {
		return 0, err
	}
	defer lake.Close()
	if err := writeRaw(ctx, cfg, lake, sample, 1, sample, func(i int) []byte { v, _ := g.Event(i, sample); return v }); err != nil {
		return 0, err
	}
	var size int64
	if err := lake.List(ctx, "raw/", func(o store.ObjectInfo) error { size += o.Size; return nil }); err != nil {
		return 0, err
	}
	return float64(size) / sample, nil
}

type timing struct{ wall, cpu time.Duration }

// mergeBound merges the groups as the compactor would (its Merger, sort order,
// budget, row group and target sizes, codec) from memory into memory, and
// returns the wall and CPU time it took.
func mergeBound(ctx context.Context, cfg *config.Config, lake store.Store, groups map[layout.Period][]compaction.RawFile, dir string) (timing, error) {
	sch, err := schema.Compile(&cfg.Tables[0])
	if err != nil {
		return timing{}, err
	}
	m := &compaction.Merger{Schema: sch, SortBy: icetable.SortColumns(&cfg.Tables[0]), Lake: lake, Warehouse: &memStore{objs: map[string][]byte{}, discard: true},
		Budget: int64(cfg.Compaction.MemoryBudget) / 2, RowGroupSize: int64(cfg.Compaction.RowGroupSize),
		Target: int64(cfg.Tables[0].TargetFileSize), TempDir: dir, Job: "bound", Attempt: 1,
		Codec: compaction.ZstdCodec(cfg.Compaction.ZstdLevel)}
	startCPU, start := cpuTime(), time.Now()
	gi := 0
	for p, g := range groups {
		if _, err := m.Merge(ctx, compaction.Group{Period: p, Raw: g}, gi, "out", compaction.Coverage{}); err != nil {
			return timing{}, err
		}
		gi++
	}
	return timing{wall: time.Since(start), cpu: cpuTime() - startCPU}, nil
}

// memStore is a store in memory for the bound: it serves objs, and with
// discard counts what is created and drops it.
type memStore struct {
	mu      sync.Mutex
	objs    map[string][]byte
	discard bool
}

func (s *memStore) Create(_ context.Context, key string, body io.Reader) error {
	if s.discard {
		_, err := io.Copy(io.Discard, body)
		return err
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[key] = data
	return nil
}

func (s *memStore) get(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return data, nil
}

func (s *memStore) Open(_ context.Context, key string) (store.Object, error) {
	data, err := s.get(key)
	if err != nil {
		return nil, err
	}
	return memObject{bytes.NewReader(data)}, nil
}

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) { return s.get(key) }

func (s *memStore) Stat(_ context.Context, key string) (store.ObjectInfo, error) {
	data, err := s.get(key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	return store.ObjectInfo{Key: key, Size: int64(len(data))}, nil
}

func (s *memStore) List(context.Context, string, func(store.ObjectInfo) error) error {
	return fmt.Errorf("memStore: List is not used by the merge")
}

func (s *memStore) Delete(context.Context, ...string) error { return nil }
func (s *memStore) Ping(context.Context) error              { return nil }
func (s *memStore) URI(key string) string                   { return "mem:///" + key }

type memObject struct{ *bytes.Reader }

func (memObject) Close() error { return nil }

package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/schema"
	"github.com/lakesink/lakesink/lake/store"
)

// countingStore counts the requests an audit makes: lists, opens (a HEAD on
// S3) and ranged reads.
type countingStore struct {
	store.Store
	n atomic.Int64
}

func (c *countingStore) requests() int64 { return c.n.Load() }

func (c *countingStore) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	c.n.Add(1)
	return c.Store.List(ctx, prefix, fn)
}

func (c *countingStore) Open(ctx context.Context, key string) (store.Object, error) {
	c.n.Add(1)
	o, err := c.Store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	return &countingObject{Object: o, n: &c.n}, nil
}

type countingObject struct {
	store.Object
	n *atomic.Int64
}

func (o *countingObject) ReadAt(p []byte, off int64) (int, error) {
	o.n.Add(1)
	return o.Object.ReadAt(p, off)
}

// readTimeout bounds one in-doubt Kafka read.
const readTimeout = 2 * time.Minute

// readData reads offsets r of topic/partition with read_committed and returns
// those holding data records. Control records are kept (KeepControlRecords) so
// that the read sees its position move past markers and aborted records.
func readData(ctx context.Context, base []kgo.Opt, topic string, partition int32, r Range) (Set, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	cl, err := kgo.NewClient(append(slices.Clone(base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(r.First)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var out Set
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s/%d offsets %s: %w", topic, partition, r, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("read %s/%d offsets %s: %w", topic, partition, r, fe.Err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if done || rec.Offset < r.First {
				return
			}
			if rec.Offset > r.Last {
				done = true
				return
			}
			if !rec.Attrs.IsControl() {
				if n := len(out); n > 0 && out[n-1].Last+1 == rec.Offset {
					out[n-1].Last = rec.Offset
				} else {
					out = append(out, Range{rec.Offset, rec.Offset})
				}
			}
			if rec.Offset == r.Last {
				done = true
			}
		})
	}
	return out, nil
}

// readOffsets reads the _kafka_offset of every row of a data file that
// belongs to topic/partition (raw files hold one partition; table files many:
// their _kafka_topic and _kafka_partition columns are read too).
func readOffsets(ctx context.Context, st store.Store, key, topic string, partition int32) ([]int64, error) {
	var out []int64
	err := eachRow(ctx, st, key, func(t string, p int32, o int64) {
		if t == topic && p == partition {
			out = append(out, o)
		}
	})
	return out, err
}

// coverageFromColumns builds the coverage of a table file that has no
// coverage footer from its Kafka columns: runs of consecutive offsets.
func coverageFromColumns(ctx context.Context, st store.Store, key string) (compaction.Coverage, error) {
	offs := map[string]map[int32][]int64{}
	err := eachRow(ctx, st, key, func(t string, p int32, o int64) {
		if offs[t] == nil {
			offs[t] = map[int32][]int64{}
		}
		offs[t][p] = append(offs[t][p], o)
	})
	if err != nil {
		return nil, err
	}
	cov := compaction.Coverage{}
	for t, ps := range offs {
		for p, os := range ps {
			var rs []Range
			for _, o := range os {
				rs = append(rs, Range{o, o})
			}
			for _, r := range NewSet(rs...) {
				cov.Add(t, p, compaction.Range{First: r.First, Last: r.Last})
			}
		}
	}
	return cov, nil
}

// eachRow calls fn with the Kafka coordinates of every row of a data file,
// reading only those three columns.
func eachRow(ctx context.Context, st store.Store, key string, fn func(topic string, partition int32, offset int64)) error {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return err
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), rawfile.FooterOnly...)
	if err != nil {
		return fmt.Errorf("open parquet %s: %w", st.URI(key), err)
	}
	var idx [3]int
	for i, name := range []string{schema.ColTopic, schema.ColPartition, schema.ColOffset} {
		c, ok := f.Schema().Lookup(name)
		if !ok {
			return fmt.Errorf("data file %s has no %s column", st.URI(key), name)
		}
		idx[i] = c.ColumnIndex
	}
	for _, rg := range f.RowGroups() {
		chunks := rg.ColumnChunks()
		var topics []string
		var parts []int32
		var offs []int64
		if err := readColumn(chunks[idx[0]], func(v parquet.Value) { topics = append(topics, string(v.ByteArray())) }); err != nil {
			return fmt.Errorf("data file %s, column %s: %w", st.URI(key), schema.ColTopic, err)
		}
		if err := readColumn(chunks[idx[1]], func(v parquet.Value) { parts = append(parts, v.Int32()) }); err != nil {
			return fmt.Errorf("data file %s, column %s: %w", st.URI(key), schema.ColPartition, err)
		}
		if err := readColumn(chunks[idx[2]], func(v parquet.Value) { offs = append(offs, v.Int64()) }); err != nil {
			return fmt.Errorf("data file %s, column %s: %w", st.URI(key), schema.ColOffset, err)
		}
		if len(topics) != len(offs) || len(parts) != len(offs) {
			return fmt.Errorf("data file %s: Kafka columns hold %d, %d and %d values", st.URI(key), len(topics), len(parts), len(offs))
		}
		for i := range offs {
			fn(topics[i], parts[i], offs[i])
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// readColumn calls fn for every value of a column chunk.
func readColumn(chunk parquet.ColumnChunk, fn func(parquet.Value)) error {
	pages := chunk.Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 1024)
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		vr := p.Values()
		for {
			n, err := vr.ReadValues(buf)
			for _, v := range buf[:n] {
				fn(v)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				parquet.Release(p)
				return err
			}
		}
		parquet.Release(p)
	}
}

package rawfile

import (
	"context"
	"fmt"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/lakesink/lakesink/lake/store"
)

// Footer is what the footer of a raw file says about its rows: their Kafka
// partition, the first kept and the last offset, and how many rows it holds.
type Footer struct {
	Topic       string
	Partition   int32
	First, Last int64
	Rows        int64
}

// ReadFooter reads the footer of the raw file key (its metadata only: no page
// is read). The error names the key and the footer key at fault.
func ReadFooter(ctx context.Context, st store.Store, key string) (Footer, error) {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return Footer{}, err
	}
	defer obj.Close()
	f, err := parquet.OpenFile(obj, obj.Size(), FooterOnly...)
	if err != nil {
		return Footer{}, fmt.Errorf("open parquet %s: %w", key, err)
	}
	return FooterOf(f, key)
}

// FooterOnly are the options that open a Parquet file reading its footer with
// one ranged read (an optimistic 64 KiB from the end, no magic-header read, no
// page index or bloom filters): what ReadFooter costs.
var FooterOnly = []parquet.FileOption{parquet.SkipMagicBytes(true), parquet.OptimisticRead(true),
	parquet.ReadBufferSize(64 << 10), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true)}

// FooterOf reads the lakesink keys of an opened raw file; name is for errors.
func FooterOf(f *parquet.File, name string) (Footer, error) {
	ft := Footer{Rows: f.NumRows()}
	get := func(k string) (string, error) {
		v, ok := f.Lookup(k)
		if !ok {
			return "", fmt.Errorf("raw file %s has no %s footer key", name, k)
		}
		return v, nil
	}
	num := func(k string, bits int) (int64, error) {
		v, err := get(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("raw file %s: footer key %s=%q: %w", name, k, v, err)
		}
		return n, nil
	}
	var err error
	if ft.Topic, err = get(MetaTopic); err != nil {
		return Footer{}, err
	}
	p, err := num(MetaPartition, 32)
	if err != nil {
		return Footer{}, err
	}
	ft.Partition = int32(p)
	if ft.First, err = num(MetaFirstOffset, 64); err != nil {
		return Footer{}, err
	}
	if ft.Last, err = num(MetaLastOffset, 64); err != nil {
		return Footer{}, err
	}
	if ft.First > ft.Last {
		return Footer{}, fmt.Errorf("raw file %s: footer range %d-%d is reversed", name, ft.First, ft.Last)
	}
	return ft, nil
}

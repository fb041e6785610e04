package sink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/lakesink/lakesink/decode"
	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/rawfile"
	"github.com/lakesink/lakesink/lake/store"
)

// BenchmarkSmallFile is the sink's CPU per small raw file (100 rows of the sample
// table, the file of an hour partition with few events), end to end to the test
// bed's S3 server (versitygw), and its parts: encode (Parquet, to memory) and put
// (one conditional PutObject of the encoded bytes through lake/store). Run with
// LAKESINK_REQUIRE_BED=1 and -cpuprofile to see where a file's CPU goes
// (docs/performance.md, "Per-file cost").
func BenchmarkSmallFile(b *testing.B) {
	const rows = 100
	bed := testbed.S3(b)
	st, err := store.NewS3(context.Background(), store.S3Config{Bucket: bed.Bucket, Prefix: testbed.UniqueName(b, "bench-file") + "/",
		Region: bed.Region, Endpoint: bed.Endpoint, PathStyle: true, AccessKeyID: bed.AccessKey, SecretAccessKey: bed.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	e := newTestEngine(b, b.TempDir(), "", st)
	e.Assign("t", 0, -1, "")
	ev := events(rows, 1)
	now := time.Now()
	for i := range rows {
		if _, err := e.Process(context.Background(), &decode.Record{Topic: "t", Partition: 0, Offset: int64(i), Timestamp: now, Value: ev[i]}, 0); err != nil {
			b.Fatal(err)
		}
	}
	var buf *buffer
	for _, x := range e.open {
		buf = x
	}
	enc := rawfile.NewEncoder(e.flush.Compression, e.zstd)
	var encoded bytes.Buffer
	if _, err := enc.Encode(&encoded, buf.file(buf.first), nil); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run := 0
	key := func(i int) string {
		return layout.RawKey("events", layout.Hour, layout.Period(buf.period), "t", int32(run), int64(i))
	}
	b.Run("encode", func(b *testing.B) {
		defer reportCPU(b)()
		b.ReportAllocs()
		for range b.N {
			if _, err := enc.Encode(io.Discard, buf.file(buf.first), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put", func(b *testing.B) {
		run++
		defer reportCPU(b)()
		b.ReportAllocs()
		for i := range b.N {
			if err := st.Create(ctx, key(i), bytes.NewReader(encoded.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("end-to-end", func(b *testing.B) {
		run++
		defer reportCPU(b)()
		b.ReportAllocs()
		for i := range b.N {
			if _, _, err := e.writeFile(ctx, enc, key(i), buf, nil, buf.first); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(encoded.Len()), "bytes/file")
	})
	b.Cleanup(func() {
		var keys []string
		_ = st.List(ctx, "", func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
		if err := st.Delete(ctx, keys...); err != nil {
			b.Error(fmt.Errorf("clean up: %w", err))
		}
		http.DefaultClient.CloseIdleConnections()
	})
}

// reportCPU reports the process's CPU time (user and system, all threads) per
// operation from now until the returned function is called: the benchmark's ns/op is
// wall time, which includes waiting for the S3 server.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

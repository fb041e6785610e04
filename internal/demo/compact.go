package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lakesink/lakesink/compaction"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
	"github.com/lakesink/lakesink/lake/store"
)

// compact runs the compactor over the demo lake (SQLite catalog, local
// warehouse) and queries the result through the Iceberg table.
func compact(ctx context.Context, o Options, cfg *config.Config, lake store.Store) error {
	wh, err := store.NewLocal(strings.TrimPrefix(cfg.Catalog.Warehouse, "file://"))
	if err != nil {
		return err
	}
	cat, err := icetable.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer cat.Close()
	c := &compaction.Compactor{Cfg: cfg, Cat: cat, Lake: lake, Warehouse: wh, Log: o.Log,
		Metrics: compaction.NewMetrics(prometheus.NewRegistry()), Now: time.Now}
	start := time.Now()
	sum, err := c.Run(ctx, "")
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	fmt.Fprintf(o.Out, "▶ compacted %d raw files (%d rows) into %d Iceberg data files in %s, table %s in the SQLite catalog %s\n",
		sum.FilesIn, sum.RowsIn, sum.FilesOut, time.Since(start).Round(time.Millisecond),
		strings.Join(cat.Ident("events"), "."), cfg.Catalog.SQL.DSN)
	return query(ctx, o.Out, cat)
}

// query reads the table back through iceberg-go: rows per hour partition,
// distinct Kafka coordinates, data files.
func query(ctx context.Context, w io.Writer, cat *icetable.Catalog) error {
	tbl, err := cat.Cat.LoadTable(ctx, cat.Ident("events"))
	if err != nil {
		return err
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		return err
	}
	files := map[string]int{}
	for _, t := range tasks {
		for _, v := range t.File.Partition() {
			files[hourLabel(v)]++
		}
	}
	_, rdr, err := tbl.Scan(table.WithSelectedFields("ts", "_kafka_topic", "_kafka_partition", "_kafka_offset")).ToArrowRecords(ctx)
	if err != nil {
		return err
	}
	perHour := map[string]int64{}
	keys := map[string]struct{}{}
	var rows int64
	for rec, err := range rdr {
		if err != nil {
			return err
		}
		ts := rec.Column(0).(*array.Timestamp)
		tp := rec.Column(1).(*array.String)
		pa := rec.Column(2).(*array.Int32)
		off := rec.Column(3).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			h := time.UnixMicro(int64(ts.Value(i))).UTC().Format("2006-01-02 15h")
			perHour[h]++
			keys[fmt.Sprintf("%s/%d/%d", tp.Value(i), pa.Value(i), off.Value(i))] = struct{}{}
			rows++
		}
		rec.Release()
	}
	fmt.Fprintf(w, "▶ SELECT hour(ts), count(*) FROM %s GROUP BY 1 (read through the Iceberg table):\n", strings.Join(cat.Ident("events"), "."))
	hours := make([]string, 0, len(perHour))
	for h := range perHour {
		hours = append(hours, h)
	}
	sort.Strings(hours)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hour (UTC)\trows\tdata files\t")
	for _, h := range hours {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", h, perHour[h], files[h])
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t\n", rows, len(tasks))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "▶ %d rows, %d distinct (topic, partition, offset): every event exactly once\n", rows, len(keys))
	if int64(len(keys)) != rows {
		return fmt.Errorf("the Iceberg table holds %d rows but %d distinct Kafka coordinates", rows, len(keys))
	}
	return nil
}

func hourLabel(v any) string {
	var h int64
	switch x := v.(type) {
	case int32:
		h = int64(x)
	case int64:
		h = x
	}
	return time.Unix(h*3600, 0).UTC().Format("2006-01-02 15h")
}

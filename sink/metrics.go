package sink

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the sink's Prometheus metrics (namespace lakesink).
type Metrics struct {
	RecordsConsumed     *prometheus.CounterVec
	BytesConsumed       *prometheus.CounterVec
	RecordsDecoded      *prometheus.CounterVec
	RecordsDecodedFast  *prometheus.CounterVec
	RecordsSkipped      *prometheus.CounterVec
	RecordsDeadLettered *prometheus.CounterVec
	BufferedBytes       prometheus.Gauge
	BufferBudgetBytes   prometheus.Gauge
	OpenPartitions      prometheus.Gauge
	Flushes             *prometheus.CounterVec
	FlushErrors         *prometheus.CounterVec
	FlushSeconds        prometheus.Histogram
	UploadSeconds       prometheus.Histogram
	FileBytes           prometheus.Histogram
	FileRows            prometheus.Histogram
	UploadConflicts     prometheus.Counter
	RawFileUnreadable   *prometheus.CounterVec
	Commits             *prometheus.CounterVec
	Checkpoints         prometheus.Counter
	CheckpointsSwept    prometheus.Counter
	CheckpointSweepErrs prometheus.Counter
	CommitLagRecords    *prometheus.GaugeVec
	ConsumerLagRecords  *prometheus.GaugeVec
	FetchPaused         prometheus.Gauge
	S3Retries           *prometheus.CounterVec
	S3Stalls            prometheus.Counter     // store.S3Config.OnStall
	AvroUnknownFields   *prometheus.CounterVec // decode.Options.OnUnknownFields
	RegistryErrors      prometheus.Counter
	// Watermarks (watermark.go).
	LateRecords     *prometheus.CounterVec
	Watermark       *prometheus.GaugeVec
	WatermarkWrites *prometheus.CounterVec
}

// NewMetrics registers the sink metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns = "lakesink"
	return &Metrics{
		RecordsConsumed: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_consumed_total",
			Help: "Kafka records polled."}, []string{"topic"}),
		BytesConsumed: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_consumed_total",
			Help: "Bytes of Kafka record values polled."}, []string{"topic"}),
		RecordsDecoded: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_decoded_total",
			Help: "Records decoded and buffered for a table."}, []string{"table"}),
		RecordsDecodedFast: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_decoded_fast_total",
			Help: "JSON records of lakesink_records_decoded_total read by the one-pass decoder; the rest (escaped strings, coerced values, repeated keys) took the full parser, at about twice the CPU."}, []string{"table"}),
		RecordsSkipped: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_skipped_total",
			Help: "Replayed records skipped because they are already durable in the lake."}, []string{"table"}),
		RecordsDeadLettered: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_dead_lettered_total",
			Help: "Records sent to the dead-letter topic, by reason."}, []string{"table", "reason"}),
		BufferedBytes: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "buffered_bytes",
			Help: "Bytes held in partition buffers, including sealed buffers not yet uploaded."}),
		BufferBudgetBytes: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "buffer_budget_bytes",
			Help: "The share of flush.memory_budget left for buffers and uploads in flight, which lakesink_buffered_bytes stays under."}),
		OpenPartitions: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "open_partitions",
			Help: "Open partition buffers (table, period, topic-partition)."}),
		Flushes: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "flushes_total",
			Help: "Buffers sealed for upload, by trigger (size, age, memory, open_partitions, revoke, shutdown)."}, []string{"trigger"}),
		FlushErrors: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "flush_errors_total",
			Help: "Failed flush attempts (retried), by stage."}, []string{"stage"}),
		FlushSeconds: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "flush_duration_seconds",
			Help: "Time from sealing a buffer to its object being durable.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		UploadSeconds: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "upload_duration_seconds",
			Help: "Time to encode and upload one file.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		FileBytes: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "file_size_bytes",
			Help: "Size of uploaded Parquet files.", Buckets: prometheus.ExponentialBuckets(4096, 4, 10)}),
		FileRows: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "file_rows",
			Help: "Rows per uploaded Parquet file.", Buckets: prometheus.ExponentialBuckets(10, 4, 10)}),
		UploadConflicts: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "upload_conflicts_total",
			Help: "Uploads that found their key already written by an earlier run (replay after a crash)."}),
		RawFileUnreadable: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "raw_file_unreadable_total",
			Help: "Failed reads of a raw file found at the key an upload must write (corrupt, truncated, not a raw file); after 10 the sink stops with an error naming the key."}, []string{"table"}),
		Commits: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "commits_total",
			Help: "Offset commits, by result."}, []string{"result"}),
		Checkpoints: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "offset_checkpoints_total",
			Help: "Offset checkpoint objects written: the durable ranges above a commit point that did not fit in the 4 KiB commit metadata."}),
		CheckpointsSwept: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "offset_checkpoints_swept_total",
			Help: "Orphan offset checkpoint objects (written by a sink killed between a checkpoint's writes, named by no commit) deleted at partition assignment."}),
		CheckpointSweepErrs: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "offset_checkpoint_sweep_errors_total",
			Help: "Failed lists or deletes of the orphan offset checkpoint sweep at partition assignment (the orphans stay until the next assignment; the assignment goes on)."}),
		CommitLagRecords: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "commit_lag_records",
			Help: "Records consumed but not yet committed, per topic."}, []string{"topic"}),
		ConsumerLagRecords: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_lag_records",
			Help: "Records between the high watermark and the next offset to consume, per topic and partition."}, []string{"topic", "partition"}),
		FetchPaused: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "fetch_paused",
			Help: "1 while consumption waits for uploads to free memory budget."}),
		S3Retries: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "s3_retries_total",
			Help: "Retried S3 requests, by operation."}, []string{"operation"}),
		S3Stalls: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "s3_request_timeouts_total",
			Help: "S3 request attempts abandoned because their connection moved no byte for s3.request_timeout (then retried)."}),
		AvroUnknownFields: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "avro_schemas_with_ignored_fields_total",
			Help: "Avro writer schema ids seen with fields the table has no column for (ignored until the columns change)."}, []string{"table"}),
		RegistryErrors: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "schema_registry_errors_total",
			Help: "Failed Schema Registry requests (retried; records wait, never dead-lettered for it)."}),
		LateRecords: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "late_records_total",
			Help: "Records whose event time is below their partition's stored watermark (later than it promised): landed and merged all the same."}, []string{"table"}),
		Watermark: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "watermark_timestamp_seconds",
			Help: "Stored event-time watermark of each partition this replica holds (Unix time)."}, []string{"topic", "partition"}),
		WatermarkWrites: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "watermark_writes_total",
			Help: "Watermark updates, by result (written, unchanged, error)."}, []string{"result"}),
	}
}

package compaction

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the compactor's Prometheus metrics (namespace lakesink_). A run
// is short-lived: cmd writes them to a file or a Pushgateway at exit.
type Metrics struct {
	Runs        *prometheus.CounterVec
	FilesIn     *prometheus.CounterVec
	FilesOut    *prometheus.CounterVec
	BytesIn     *prometheus.CounterVec
	BytesOut    *prometheus.CounterVec
	Rows        *prometheus.CounterVec
	Duplicates  *prometheus.CounterVec
	Copied      *prometheus.CounterVec
	Demoted     *prometheus.CounterVec
	Conflicts   *prometheus.CounterVec
	Rebased     *prometheus.CounterVec
	Reconciled  *prometheus.CounterVec
	RawDeleted  *prometheus.CounterVec
	Manifests   *prometheus.CounterVec
	Duration    prometheus.Gauge
	LastSuccess *prometheus.GaugeVec
	Halted      prometheus.Gauge
	MoreToDo    prometheus.Gauge
	Commits     *prometheus.CounterVec
	// FinalThrough and WatermarkHeld are the table's finality (final.go).
	FinalThrough  *prometheus.GaugeVec
	WatermarkHeld *prometheus.GaugeVec
	// S3Stalls counts S3 attempts abandoned for s3.request_timeout: the lake's
	// and the warehouse's stores and iceberg-go's file IO (cmd wires it).
	S3Stalls prometheus.Counter
}

// NewMetrics registers the compactor's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns = "lakesink"
	tl := []string{"table"}
	return &Metrics{
		Runs: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_runs_total",
			Help: "Compaction runs by result (success, idle, retryable, halted)."}, []string{"result"}),
		FilesIn: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_files_in_total",
			Help: "Input files merged (raw and rewritten table files)."}, tl),
		FilesOut: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_files_out_total",
			Help: "Output files written."}, tl),
		BytesIn: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_bytes_in_total",
			Help: "Bytes of input files read."}, tl),
		BytesOut: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_bytes_out_total",
			Help: "Bytes of output files written."}, tl),
		Rows: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_rows_total",
			Help: "Rows written to outputs."}, tl),
		Duplicates: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_duplicates_dropped_total",
			Help: "Rows dropped because their (topic, partition, offset) was already present."}, tl),
		Copied: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_row_groups_copied_total",
			Help: "Input row groups written into outputs without re-encoding (large, already sorted, overlapping no other input)."}, tl),
		Demoted: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_row_groups_demoted_total",
			Help: "Input row groups first taken for copying, then merged row by row because another input's rows fell in their key range."}, tl),
		Conflicts: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_commit_conflicts_total",
			Help: "Iceberg commits that lost a race (then rebased, or planned again)."}, tl),
		Rebased: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_commit_rebased_total",
			Help: "Commit conflicts resolved without a new merge: the same outputs staged again on the new snapshot (the winner, e.g. another shard, touched none of the partitions)."}, tl),
		Reconciled: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_commit_reconciled_total",
			Help: "Commit errors reconciled by looking for the job in the table, by outcome (applied: the commit was in; absent: it was not; unknown: the table could not be read)."},
			[]string{"table", "outcome"}),
		Manifests: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_manifests_merged_total",
			Help: "Data manifests merged away by maintenance (compaction.max_manifests)."}, tl),
		RawDeleted: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_raw_files_deleted_total",
			Help: "Raw files deleted after their rows were committed and the grace period passed."}, tl),
		Duration: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "compaction_duration_seconds",
			Help: "Duration of the last compaction run."}),
		LastSuccess: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "compaction_last_success_timestamp_seconds",
			Help: "Unix time of the last successful compaction of a table."}, tl),
		Halted: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "compaction_halted",
			Help: "1 when the last run halted on a problem a human must fix."}),
		MoreToDo: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "compaction_more_to_do",
			Help: "1 when the last run stopped at --max-duration (between commits) with partitions still due; the next run goes on."}),
		Commits: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "compaction_commits_total",
			Help: "Iceberg commits made (one per batch of at most max_partitions_per_commit partitions)."}, tl),
		FinalThrough: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "table_final_through_timestamp_seconds",
			Help: "The table's lakesink.final-through (Unix time): every row with an earlier event time is in the table, late records aside."}, tl),
		WatermarkHeld: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "compaction_watermark_held_partitions",
			Help: "Source partitions whose watermark holds back the table's earliest due partition (0: none waits)."}, tl),
		S3Stalls: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "compaction_s3_request_timeouts_total",
			Help: "S3 request attempts abandoned because the connection moved no byte for s3.request_timeout (each retried up to s3.max_attempts): raw zone, warehouse and Iceberg metadata alike."}),
	}
}

func (m *Metrics) conflict(table string) {
	if m != nil {
		m.Conflicts.WithLabelValues(table).Inc()
	}
}

func (m *Metrics) rebased(table string) {
	if m != nil {
		m.Rebased.WithLabelValues(table).Inc()
	}
}

func (m *Metrics) reconciled(table, outcome string) {
	if m != nil {
		m.Reconciled.WithLabelValues(table, outcome).Inc()
	}
}

func (m *Metrics) committed(table string) {
	if m != nil {
		m.Commits.WithLabelValues(table).Inc()
	}
}

func (m *Metrics) finalThrough(table string, t time.Time) {
	if m != nil {
		m.FinalThrough.WithLabelValues(table).Set(float64(t.Unix()))
	}
}

func (m *Metrics) held(table string, n int) {
	if m != nil {
		m.WatermarkHeld.WithLabelValues(table).Set(float64(n))
	}
}

func (m *Metrics) rawDeleted(table string, n int) {
	if m != nil {
		m.RawDeleted.WithLabelValues(table).Add(float64(n))
	}
}

func (m *Metrics) manifestsMerged(table string, n int) {
	if m != nil {
		m.Manifests.WithLabelValues(table).Add(float64(n))
	}
}

func (m *Metrics) group(table string, in, out int, bytesIn int64, res Result, outs []Output) {
	if m == nil {
		return
	}
	m.FilesIn.WithLabelValues(table).Add(float64(in))
	m.FilesOut.WithLabelValues(table).Add(float64(out))
	m.BytesIn.WithLabelValues(table).Add(float64(bytesIn))
	m.Duplicates.WithLabelValues(table).Add(float64(res.Duplicates))
	m.Copied.WithLabelValues(table).Add(float64(res.RowGroupsCopied))
	m.Demoted.WithLabelValues(table).Add(float64(res.RowGroupsDemoted))
	for _, o := range outs {
		m.BytesOut.WithLabelValues(table).Add(float64(o.Size))
		m.Rows.WithLabelValues(table).Add(float64(o.Rows))
	}
}

// Touch creates a table's series at zero, so an idle run still exports them
// (alerts and dashboards never see a missing series).
func (m *Metrics) Touch(table string) {
	for _, v := range []*prometheus.CounterVec{m.FilesIn, m.FilesOut, m.BytesIn, m.BytesOut, m.Rows, m.Duplicates, m.Copied, m.Demoted, m.Conflicts, m.Rebased, m.RawDeleted, m.Manifests, m.Commits} {
		v.WithLabelValues(table)
	}
	m.WatermarkHeld.WithLabelValues(table)
	for _, outcome := range []string{"applied", "absent", "unknown"} {
		m.Reconciled.WithLabelValues(table, outcome)
	}
}

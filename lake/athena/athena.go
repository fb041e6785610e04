// Package athena writes the Amazon Athena SQL that exposes the lake's tables to queries.
//
// For each table of the configuration it prints four sections:
//
//	(a) the compacted Iceberg table <namespace>.<table>: nothing to do when the compactor's
//	    catalog is AWS Glue (Athena reads Iceberg only through Glue), otherwise the ways to
//	    make it visible in Glue;
//	(b) <table>_raw, a Hive external table over the raw zone with partition projection on
//	    dt (and hour), so files the sink wrote minutes ago are queryable before compaction;
//	(c) <table>_all, a view that unions the Iceberg table with the raw hours the Iceberg table
//	    does not have yet, so that a query sees every event exactly once;
//	(d) <table>_final, a view of the Iceberg table's final periods only (before the
//	    lakesink.final-through time of its latest commit).
//
// Everything here is a pure function of the configuration: nothing is looked up in AWS.
// docs/athena.md explains the design and its trade-offs.
package athena

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/layout"
	"github.com/lakesink/lakesink/lake/schema"
)

// Options selects what Generate prints.
type Options struct {
	// Table limits the output to the table of that name; empty means every table.
	Table string
}

// ErrUnknownTable is returned when Options.Table names no table of the configuration.
var ErrUnknownTable = errors.New("unknown table")

// ErrNameCollision is returned when two tables, columns or struct fields would get the same
// name in Athena, which lower-cases every identifier and adds the _raw and _all tables.
var ErrNameCollision = errors.New("name collision in Athena")

// Suffixes of the raw table and the view next to each Iceberg table.
const (
	RawSuffix  = "_raw"
	ViewSuffix = "_all"
)

// Generate returns the Athena statements for the tables of a validated configuration: a
// header, the Glue database, then sections (a), (b) and (c) for each table. Statements are
// separated by blank lines and end with ";"; notes are "--" comment blocks of their own, so
// each statement can be pasted into the Athena console as is.
func Generate(cfg *config.Config, opts Options) (string, error) {
	if err := checkNames(cfg); err != nil {
		return "", err
	}
	var tables []*config.Table
	for i := range cfg.Tables {
		if opts.Table == "" || cfg.Tables[i].Name == opts.Table {
			tables = append(tables, &cfg.Tables[i])
		}
	}
	if len(tables) == 0 {
		names := make([]string, len(cfg.Tables))
		for i, t := range cfg.Tables {
			names[i] = t.Name
		}
		return "", fmt.Errorf("%w %q (the config has %s)", ErrUnknownTable, opts.Table, strings.Join(names, ", "))
	}
	plans := make([]*plan, len(tables))
	for i, t := range tables {
		p, err := newPlan(cfg, t)
		if err != nil {
			return "", err
		}
		plans[i] = p
	}
	w := &writer{}
	header(w, cfg, plans)
	for _, p := range plans {
		p.banner(w)
		p.icebergSection(w)
		p.rawSection(w)
		p.viewSection(w)
		p.finalSection(w)
	}
	return strings.TrimRight(w.String(), "\n") + "\n", nil
}

// checkNames rejects configurations whose names would collide once Athena lower-cases them.
func checkNames(cfg *config.Config) error {
	owner := map[string]string{}
	claim := func(name, by string) error {
		if other, ok := owner[name]; ok && other != by {
			return fmt.Errorf("%w: %q is both %s and %s", ErrNameCollision, name, other, by)
		}
		owner[name] = by
		return nil
	}
	for _, t := range cfg.Tables {
		for _, n := range []struct{ name, what string }{
			{t.Name, "the Iceberg table of " + t.Name},
			{t.Name + RawSuffix, "the raw table of " + t.Name},
			{t.Name + ViewSuffix, "the view of " + t.Name},
			{t.Name + FinalSuffix, "the final view of " + t.Name},
		} {
			if err := claim(n.name, n.what); err != nil {
				return err
			}
		}
		cols := map[string]string{}
		for _, c := range t.Columns {
			l := strings.ToLower(c.Name)
			if other, ok := cols[l]; ok {
				return fmt.Errorf("%w: table %s: columns %q and %q differ only in case", ErrNameCollision, t.Name, other, c.Name)
			}
			cols[l] = c.Name
			typ, err := config.ParseType(c.Type)
			if err != nil {
				return fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
			}
			if pair := fieldCollision(typ); pair != "" {
				return fmt.Errorf("%w: table %s column %s: struct fields %s differ only in case", ErrNameCollision, t.Name, c.Name, pair)
			}
		}
	}
	return nil
}

type column struct {
	name string // lower case
	typ  *config.Type
}

// plan holds everything the three sections of one table need.
type plan struct {
	cfg  *config.Config
	t    *config.Table
	gran layout.Granularity
	db   string // Glue database: catalog.namespace
	// cols are the table's columns then the Kafka coordinates, as the sink writes them.
	cols []column
	// event is the event-time column; partField the Iceberg partition field on it.
	event, partField string
	// dt and hour name the raw table's partition columns; hour is empty for day tables.
	dt, hour string
	// rawRoot is the raw zone's S3 location for the table; rawReal is false for a local lake.
	rawRoot string
	rawReal bool
	home    icebergHome
}

func newPlan(cfg *config.Config, t *config.Table) (*plan, error) {
	g, err := layout.ParseGranularity(t.EventTime.Granularity)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.Name, err)
	}
	p := &plan{cfg: cfg, t: t, gran: g, db: cfg.Catalog.Namespace}
	taken := map[string]bool{}
	for _, c := range t.Columns {
		typ, err := config.ParseType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
		}
		p.cols = append(p.cols, column{strings.ToLower(c.Name), typ})
	}
	// The reserved columns and their physical types, exactly as lake/schema writes them:
	// _kafka_partition is INT32, _kafka_offset INT64, _kafka_timestamp TIMESTAMP(MICROS, UTC).
	p.cols = append(p.cols,
		column{schema.ColTopic, &config.Type{Kind: config.KindString}},
		column{schema.ColPartition, &config.Type{Kind: config.KindInt32}},
		column{schema.ColOffset, &config.Type{Kind: config.KindInt64}},
		column{schema.ColTimestamp, &config.Type{Kind: config.KindTimestamp}},
	)
	for _, c := range p.cols {
		taken[c.name] = true
	}
	p.event = schema.ColTimestamp
	if t.EventTime.Source != "kafka" {
		p.event = strings.ToLower(t.EventTime.Column)
	}
	// iceberg-go names a partition field <source column>_<transform>, as the compactor's
	// spec hour(col) / day(col) does.
	p.partField = p.event + "_" + t.EventTime.Granularity
	p.dt = partitionColumn("dt", taken)
	if g == layout.Hour {
		p.hour = partitionColumn("hour", taken)
	}
	p.rawRoot, p.rawReal = rawRoot(cfg, t.Name)
	p.home = resolveHome(cfg)
	return p, nil
}

// partitionColumn picks the raw table's name for a partition key: the directory's own name
// (dt, hour) unless the table has a column of that name.
func partitionColumn(base string, taken map[string]bool) string {
	for _, n := range []string{base, "raw_" + base, "lakesink_" + base} {
		if !taken[n] {
			taken[n] = true
			return n
		}
	}
	panic("athena: no free partition column name for " + base)
}

// rawRoot is where the sink writes a table's raw files: s3://<bucket>/<prefix>raw/<table>/, the
// prefix joined the way the S3 store joins it.
func rawRoot(cfg *config.Config, table string) (string, bool) {
	if cfg.S3 == nil {
		return "s3://<bucket>/<prefix>/" + layout.RawPrefix(table), false
	}
	prefix := cfg.S3.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return "s3://" + cfg.S3.Bucket + "/" + prefix + layout.RawPrefix(table), true
}

// rawTemplate is the storage.location.template of the raw table: the layout of
// layout.Dir with the partition columns as placeholders.
func (p *plan) rawTemplate() string {
	if p.gran == layout.Day {
		return p.rawRoot + "dt=${" + p.dt + "}/"
	}
	return p.rawRoot + "dt=${" + p.dt + "}/hour=${" + p.hour + "}/"
}

// dmlName is a table's qualified name in a SELECT: "db"."name".
func (p *plan) dmlName(name string) string { return dmlIdent(p.db) + "." + dmlIdent(name) }

// icebergName is the Iceberg table's qualified name in a SELECT, in its Athena catalog.
func (p *plan) icebergName(suffix string) string {
	n := dmlIdent(p.db) + "." + dmlIdent(p.t.Name+suffix)
	if p.home.catalog != "" {
		n = dmlIdent(p.home.catalog) + "." + n
	}
	return n
}

// tableLocation is where the compactor (lake/icetable) puts a table: <warehouse>/<namespace>/<table>.
func tableLocation(cfg *config.Config, table string) string {
	return strings.TrimSuffix(cfg.Catalog.Warehouse, "/") + "/" + cfg.Catalog.Namespace + "/" + table
}

// glueRegion is the region whose Glue Data Catalog Athena must use.
func glueRegion(cfg *config.Config) string {
	switch {
	case cfg.Catalog.Type == "rest" && cfg.Catalog.REST.SigV4Region != "":
		return cfg.Catalog.REST.SigV4Region
	case cfg.Catalog.Glue.Region != "":
		return cfg.Catalog.Glue.Region
	case cfg.S3 != nil && cfg.S3.Region != "":
		return cfg.S3.Region
	}
	return "<region>"
}

func header(w *writer, cfg *config.Config, plans []*plan) {
	names := make([]string, len(plans))
	for i, p := range plans {
		names[i] = p.t.Name
	}
	w.note(
		"Athena SQL for the lakesink lake, generated by `lakesink athena-ddl` from the config.",
		fmt.Sprintf("Tables: %s. Glue database (catalog.namespace): %s.", strings.Join(names, ", "), cfg.Catalog.Namespace),
		"For Athena engine version 3. Statements are separated by blank lines and end with ';'; run",
		"them in order (the console runs one at a time). Lines starting with -- are notes.",
		"Per table: (a) the compacted Iceberg table, (b) <table>_raw over the raw zone (fresh files,",
		"before compaction), (c) the view <table>_all: every event exactly once, (d) the view",
		"<table>_final: the final hours (or days) of the Iceberg table only. See docs/athena.md.",
	)
	switch {
	case cfg.S3 == nil:
		w.note(
			fmt.Sprintf("NOTE: this config writes a local lake (local_dir %s). Athena reads only Amazon S3:", cfg.LocalDir),
			"the locations below are placeholders (s3://<bucket>/<prefix>/...). Point the sink at S3",
			"(the s3 section) and generate these statements again before running them.",
		)
	case cfg.S3.Endpoint != "":
		w.note(
			fmt.Sprintf("NOTE: s3.endpoint is %s: Athena reads only Amazon S3 itself, so the locations", cfg.S3.Endpoint),
			fmt.Sprintf("below work only if bucket %s is an S3 bucket in region %s.", cfg.S3.Bucket, cfg.S3.Region),
		)
	}
	w.note(
		"The Glue database that holds the Iceberg tables, the raw tables and the views. With",
		"catalog.type glue the compactor creates it too; IF NOT EXISTS makes this a no-op then.",
	)
	w.stmt("CREATE DATABASE IF NOT EXISTS " + ddlIdent(cfg.Catalog.Namespace) + ";")
}

func (p *plan) banner(w *writer) {
	et := p.event + " (event_time.source field)"
	if p.t.EventTime.Source == "kafka" {
		et = p.event + " (event_time.source kafka: the record timestamp)"
	}
	w.note(
		strings.Repeat("=", 96),
		fmt.Sprintf("Table %s: topics %s; event time %s; %s partitions.", p.t.Name, strings.Join(p.t.Topics, ", "), et, p.t.EventTime.Granularity),
		strings.Repeat("=", 96),
	)
}

// periodWords returns the period's name and the look-back window of the sample queries.
func (p *plan) periodWords() (unit, lookback string) {
	if p.gran == layout.Day {
		return "day", "INTERVAL '7' DAY"
	}
	return "hour", "INTERVAL '1' DAY"
}

func (p *plan) icebergSection(w *writer) {
	ice := p.icebergName("")
	unit, _ := p.periodWords()
	common := []string{
		fmt.Sprintf("It holds the compacted %ss: %s appears once it has closed, compaction.lateness", unit, an(unit)),
		fmt.Sprintf("(%s) has passed and `lakesink compact` has committed it; the view (c) adds the rest.", fmtDuration(p.cfg.Compaction.Lateness)),
		fmt.Sprintf("Partition spec %s(%s): a filter on %s prunes files (no dt/hour columns here).", unit, p.event, dmlIdent(p.event)),
	}
	switch p.home.kind {
	case homeGlue, homeGlueREST:
		how := "catalog.type is glue:"
		if p.home.kind == homeGlueREST {
			how = "catalog.rest.uri is AWS Glue's Iceberg REST endpoint, so the tables are Glue tables:"
		}
		lines := []string{
			fmt.Sprintf("(a) Iceberg table %s: nothing to create.", ice),
			how,
			fmt.Sprintf("`lakesink compact` creates %s.%s in the AWS Glue Data Catalog", p.db, p.t.Name),
			fmt.Sprintf("(region %s) at its first commit, with table_type=ICEBERG and metadata_location, and", glueRegion(p.cfg)),
			"moves metadata_location forward at every commit. Athena reads that Glue table as it is, always",
			"at its latest commit.",
		}
		lines = append(lines, common...)
		if id := p.cfg.Catalog.Glue.CatalogID; id != "" && p.home.kind == homeGlue {
			lines = append(lines,
				fmt.Sprintf("catalog.glue.catalog_id is %s: if Athena runs in another account, register that catalog", id),
				fmt.Sprintf("(aws athena create-data-catalog --name lakesink_glue --type GLUE --parameters catalog-id=%s)", id),
				"and prefix the names below with \"lakesink_glue\".",
			)
		}
		if ep := p.cfg.Catalog.Glue.Endpoint; ep != "" && p.home.kind == homeGlue {
			lines = append(lines,
				fmt.Sprintf("catalog.glue.endpoint is %s: Athena sees only AWS's own Glue Data Catalog,", ep),
				"so this holds only once the compactor talks to the real one (endpoint unset).",
			)
		}
		w.note(lines...)
	case homeS3Tables:
		w.note(append([]string{
			fmt.Sprintf("(a) Iceberg table %s: nothing to create in Glue.", ice),
			fmt.Sprintf("The REST catalog is Amazon S3 Tables (table bucket %s). Athena reads S3 Tables", p.home.bucket),
			"through the Glue federated catalog s3tablescatalog once the table bucket is integrated with",
			"AWS analytics services (once per account and region, in the S3 console or API); the table",
			fmt.Sprintf("is then %s.", ice),
			fmt.Sprintf("The raw table and the view live in the Glue database %s of the default catalog", p.db),
			"(Athena cannot create views inside S3 Tables catalogs).",
		}, common...)...)
	default:
		p.notInGlue(w)
	}
	w.note(fmt.Sprintf("Events per %s over the last days, then the compactor's latest commits (their summary", unit),
		"holds lakesink.job-id, lakesink.inputs-sha256 and lakesink.kafka-offsets).")
	w.stmt(p.countQuery(ice, dmlIdent(p.event), ""))
	w.stmt("SELECT \"committed_at\", \"snapshot_id\", \"operation\", \"summary\"\nFROM " + p.icebergName("$snapshots") +
		"\nORDER BY \"committed_at\" DESC\nLIMIT 10;")
}

// countQuery is a per-period count over a recent window, filtered on the event-time column
// (and on rawFilter, for the raw table and the view).
func (p *plan) countQuery(from, event, rawFilter string) string {
	unit, back := p.periodWords()
	q := fmt.Sprintf("SELECT date_trunc('%s', %s) AS \"event_%s\", count(*) AS \"events\"\nFROM %s\nWHERE %s >= current_timestamp - %s",
		unit, event, unit, from, event, back)
	if rawFilter != "" {
		q += "\n  AND " + rawFilter
	}
	return q + "\nGROUP BY 1\nORDER BY 1;"
}

// notInGlue explains, for a SQL or REST catalog Athena cannot read, how to get the table into Glue.
func (p *plan) notInGlue(w *writer) {
	cat := p.cfg.Catalog
	region := glueRegion(p.cfg)
	location := tableLocation(p.cfg, p.t.Name)
	if u, err := url.Parse(cat.Warehouse); err == nil && u.Scheme != "s3" {
		w.note(
			fmt.Sprintf("(a) Iceberg table %s.%s: not readable by Athena as configured.", p.db, p.t.Name),
			fmt.Sprintf("catalog.warehouse is %s and catalog.type %s: Athena reads Iceberg", cat.Warehouse, cat.Type),
			"tables only from S3, and only through the AWS Glue Data Catalog. Put the lake in S3 with",
			"catalog.type glue (docs/athena.md) and generate these statements again. The queries, for then:",
		)
		return
	}
	what := fmt.Sprintf("an SQL catalog (%s)", cat.SQL.Driver)
	if cat.Type == "rest" {
		what = fmt.Sprintf("a REST catalog (%s)", cat.REST.URI)
	}
	lines := []string{
		fmt.Sprintf("(a) Iceberg table %s.%s: not visible to Athena as configured.", p.db, p.t.Name),
		fmt.Sprintf("catalog.type is %s: the compactor registers the table in %s, which", cat.Type, what),
		"Athena cannot read. Athena reads Iceberg tables only through the AWS Glue Data Catalog: a Glue",
		"table with the parameters table_type=ICEBERG and metadata_location (the table's current metadata",
		"file). Athena SQL cannot register an existing table: its CREATE TABLE ... TBLPROPERTIES",
		"('table_type'='ICEBERG') makes a new, empty one. Ways to get there:",
		"",
		"1. Recommended: let the compactor keep the table in Glue. Set",
		fmt.Sprintf("     catalog: {type: glue, namespace: %s, warehouse: %s, glue: {region: %s}}", p.db, cat.Warehouse, region),
		"   To keep the table the current catalog already has, register it in Glue once (as in 2)",
		"   before switching: the compactor loads a table before creating one, so it finds it there",
		"   and commits on from its metadata.",
		"",
		"2. Keep this catalog and mirror its pointer into Glue: register the current metadata file,",
		"   then point Glue at the new one after every `lakesink compact` run (e.g. in the CronJob).",
		"   Between the two, Athena reads the previous commit. A stale pointer breaks: the table",
		"   keeps its last 100 metadata files, and snapshot expiry (compaction.snapshot_max_age",
		fmt.Sprintf("   %s, snapshot_retain_last %d) deletes the data files of older commits.", fmtDuration(p.cfg.Compaction.SnapshotMaxAge), p.cfg.Compaction.SnapshotRetainLast),
		"   The current metadata file:",
	}
	switch cat.Type {
	case "sql":
		q := fmt.Sprintf("SELECT metadata_location FROM iceberg_tables WHERE catalog_name = '%s' AND table_namespace = '%s' AND table_name = '%s'",
			cat.Name, p.db, p.t.Name)
		if cat.SQL.Driver == "sqlite" && cat.SQL.DSN != "" {
			lines = append(lines, fmt.Sprintf("     sqlite3 %s \"%s\"", cat.SQL.DSN, q))
		} else {
			dsn := "$DSN"
			if cat.SQL.DSNEnv != "" {
				dsn = "$" + cat.SQL.DSNEnv
			}
			lines = append(lines, fmt.Sprintf("     psql \"%s\" -c \"%s\"", dsn, q))
		}
	default:
		lines = append(lines,
			fmt.Sprintf("     GET %s/v1/namespaces/%s/tables/%s -> \"metadata-location\"", strings.TrimSuffix(cat.REST.URI, "/"), p.db, p.t.Name),
			"     (some servers insert a prefix from GET /v1/config: /v1/<prefix>/namespaces/...)",
		)
	}
	input := fmt.Sprintf(`{"Name":"%s","TableType":"EXTERNAL_TABLE","Parameters":{"table_type":"ICEBERG","metadata_location":"<METADATA_LOCATION>"},"StorageDescriptor":{"Location":"%s"}}`,
		p.t.Name, location)
	lines = append(lines,
		"   Register it (the database comes from the CREATE DATABASE statement above):",
		fmt.Sprintf("     aws glue create-table --region %s --database-name %s --table-input '%s'", region, p.db, input),
		"   After each compaction run, the same with `aws glue update-table` and the new location.",
		fmt.Sprintf("   (%s is where the compactor puts the table: <warehouse>/<namespace>/<table>.)", location),
		"",
		fmt.Sprintf("3. A Glue crawler with an Iceberg target on %s/, scheduled after", location),
		"   compaction, creates the Glue table and moves its metadata_location forward the same way.",
	)
	lines = append(lines, "", "Once the table is in Glue, these queries work:")
	w.note(lines...)
}

// rawRange is the dt projection's range: from event_time.not_before to NOW+<n>DAYS, n
// covering event_time.max_future.
func (p *plan) rawRange() (lo, hi string) {
	lo = p.t.EventTime.NotBefore.UTC().Format("2006-01-02")
	ahead := int(math.Ceil(p.t.EventTime.MaxFuture.Hours() / 24))
	if ahead < 1 {
		ahead = 1
	}
	return lo, fmt.Sprintf("NOW+%dDAYS", ahead)
}

// rawProperties are the raw table's TBLPROPERTIES (partition projection), in print order.
func (p *plan) rawProperties() [][2]string {
	lo, hi := p.rawRange()
	props := [][2]string{
		{"projection.enabled", "true"},
		{"projection." + p.dt + ".type", "date"},
		{"projection." + p.dt + ".format", "yyyy-MM-dd"},
		{"projection." + p.dt + ".range", lo + "," + hi},
		{"projection." + p.dt + ".interval", "1"},
		{"projection." + p.dt + ".interval.unit", "DAYS"},
	}
	if p.hour != "" {
		props = append(props,
			[2]string{"projection." + p.hour + ".type", "integer"},
			[2]string{"projection." + p.hour + ".range", "0,23"},
			[2]string{"projection." + p.hour + ".digits", "2"},
		)
	}
	return append(props, [2]string{"storage.location.template", p.rawTemplate()})
}

// rawComment is the raw table's COMMENT.
func (p *plan) rawComment() string {
	return fmt.Sprintf("lakesink raw zone of %s (topics %s), before compaction", p.t.Name, strings.Join(p.t.Topics, ", "))
}

func (p *plan) rawSection(w *writer) {
	unit, _ := p.periodWords()
	lo, hi := p.rawRange()
	parts := fmt.Sprintf("%s (yyyy-MM-dd, UTC)", p.dt)
	if p.hour != "" {
		parts += fmt.Sprintf(" and %s (00-23)", p.hour)
	}
	lines := []string{
		fmt.Sprintf("(b) Raw zone table %s: the Parquet files the sink writes, queryable within", p.dmlName(p.t.Name+RawSuffix)),
		fmt.Sprintf("flush.max_age (%s) of consumption, before compaction. A Hive table with partition", fmtDuration(p.cfg.Flush.MaxAge)),
		fmt.Sprintf("projection on %s: no partitions to add or repair.", parts),
		fmt.Sprintf("The projected range runs from event_time.not_before (%s) to %s (events may be", lo, hi),
		fmt.Sprintf("up to event_time.max_future, %s, ahead of the clock).", fmtDuration(p.t.EventTime.MaxFuture)),
		fmt.Sprintf("Filter on %s%s: otherwise Athena lists every projected prefix (one per %s", dmlIdent(p.dt), orHour(p.hour), unit),
		fmt.Sprintf("since %s) in S3. Timestamps read here at millisecond precision (Athena's Hive", lo),
		"tables); the files hold microseconds.",
		fmt.Sprintf("Files of compacted %ss stay until compaction.raw_grace (%s) has passed: count events", unit, fmtDuration(p.cfg.Compaction.RawGrace)),
		fmt.Sprintf("with the view %s rather than with this table.", p.dmlName(p.t.Name+ViewSuffix)),
		fmt.Sprintf("After adding a column to the config: DROP TABLE %s.%s (an external", ddlIdent(p.db), ddlIdent(p.t.Name+RawSuffix)),
		"table: no data is deleted), run this statement again, then the view (c). Older files read",
		"the new column as NULL.",
	}
	if !p.rawReal {
		lines = append(lines, fmt.Sprintf("LOCATION is a placeholder: this lake is local (%s); Athena needs the files in S3.", p.cfg.LocalDir))
	}
	w.note(lines...)

	var b strings.Builder
	b.WriteString("CREATE EXTERNAL TABLE IF NOT EXISTS " + ddlIdent(p.db) + "." + ddlIdent(p.t.Name+RawSuffix) + " (\n")
	for i, c := range p.cols {
		sep := ","
		if i == len(p.cols)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "  %s %s%s\n", ddlIdent(c.name), hiveType(c.typ), sep)
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "COMMENT %s\n", literal(p.rawComment()))
	if p.hour != "" {
		fmt.Fprintf(&b, "PARTITIONED BY (%s string, %s string)\n", ddlIdent(p.dt), ddlIdent(p.hour))
	} else {
		fmt.Fprintf(&b, "PARTITIONED BY (%s string)\n", ddlIdent(p.dt))
	}
	b.WriteString("STORED AS PARQUET\n")
	fmt.Fprintf(&b, "LOCATION %s\n", literal(p.rawRoot))
	props := p.rawProperties()
	b.WriteString("TBLPROPERTIES (\n")
	for i, kv := range props {
		sep := ","
		if i == len(props)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "  %s = %s%s\n", literal(kv[0]), literal(kv[1]), sep)
	}
	b.WriteString(");")
	w.stmt(b.String())

	if p.hour != "" {
		w.note(fmt.Sprintf("Today's raw files per hour (UTC); for one hour add AND %s = '13'.", dmlIdent(p.hour)))
		w.stmt(fmt.Sprintf("SELECT %s, count(*) AS \"events\"\nFROM %s\nWHERE %s = CAST(current_date AS varchar)\nGROUP BY 1\nORDER BY 1;",
			dmlIdent(p.hour), p.dmlName(p.t.Name+RawSuffix), dmlIdent(p.dt)))
	} else {
		w.note("Raw files per day (UTC), yesterday and today.")
		w.stmt(fmt.Sprintf("SELECT %s, count(*) AS \"events\"\nFROM %s\nWHERE %s >= CAST(current_date - INTERVAL '1' DAY AS varchar)\nGROUP BY 1\nORDER BY 1;",
			dmlIdent(p.dt), p.dmlName(p.t.Name+RawSuffix), dmlIdent(p.dt)))
	}
}

func orHour(hour string) string {
	if hour == "" {
		return ""
	}
	return " (and " + dmlIdent(hour) + ")"
}

func (p *plan) viewSection(w *writer) {
	unit, _ := p.periodWords()
	view := p.dmlName(p.t.Name + ViewSuffix)
	raw := p.dmlName(p.t.Name + RawSuffix)
	parts := p.icebergName("$partitions")
	valueIs := "hours since 1970-01-01 00:00 UTC, an integer"
	if p.gran == layout.Day {
		valueIs = "a date"
	}
	lines := []string{
		fmt.Sprintf("(c) View %s: every event exactly once, compacted or not.", view),
		fmt.Sprintf("Compacted %ss come from the Iceberg table. A raw %s comes from %s only", unit, unit, p.t.Name+RawSuffix),
		fmt.Sprintf("while the Iceberg table has no partition for it: %s", parts),
		fmt.Sprintf("lists them, partition.%s being %s,", p.partField, valueIs),
		fmt.Sprintf("matched here to the raw table's %s%s. %s moves from raw to Iceberg at", p.dt, slashHour(p.hour), upper(an(unit))),
		"the compactor's commit, in one step: a query never counts it twice nor misses it.",
		fmt.Sprintf("Caveat: files that reach the raw zone for %s already compacted (late events) stay", an(unit)),
		"out of the view until the next `lakesink compact` run merges them into the Iceberg table;",
		fmt.Sprintf("%s shows them meanwhile.", p.t.Name+RawSuffix),
		fmt.Sprintf("Filter on both %s (prunes Iceberg files) and %s%s (prunes raw prefixes):", dmlIdent(p.event), dmlIdent(p.dt), slashHourQuoted(p.hour)),
		fmt.Sprintf("  WHERE %s >= TIMESTAMP '2026-11-24 13:00:00 UTC' AND %s >= '2026-11-24'", dmlIdent(p.event), dmlIdent(p.dt)),
		"Run it after (a) and (b), once the Iceberg table exists (first compaction), and again after",
		"any schema change: Athena refuses a view whose tables changed (\"stale\").",
	}
	if mixed := mixedCaseFields(p.cols); mixed != "" {
		lines = append(lines,
			fmt.Sprintf("Struct field %s has upper-case letters: UNION ALL keeps a field's name only when both", mixed),
			"sides spell it alike, and Athena's Hive table lower-cases it; prefer lower-case field names.")
	}
	if p.home.kind == homeS3Tables {
		lines = append(lines, "With S3 Tables the view reads across catalogs (AwsDataCatalog and s3tablescatalog).")
	}
	if !p.home.inGlue() {
		lines = append(lines, "It needs the Iceberg table in Glue first (a).")
	}
	w.note(lines...)

	var b strings.Builder
	b.WriteString("CREATE OR REPLACE VIEW " + view + " AS\nSELECT\n")
	for _, c := range p.cols {
		b.WriteString("    " + dmlIdent(c.name) + ",\n")
	}
	ev := dmlIdent(p.event)
	if p.hour != "" {
		fmt.Fprintf(&b, "    date_format(%s, '%%Y-%%m-%%d') AS %s,\n", ev, dmlIdent(p.dt))
		fmt.Fprintf(&b, "    date_format(%s, '%%H') AS %s\n", ev, dmlIdent(p.hour))
	} else {
		fmt.Fprintf(&b, "    date_format(%s, '%%Y-%%m-%%d') AS %s\n", ev, dmlIdent(p.dt))
	}
	b.WriteString("FROM " + p.icebergName("") + "\nUNION ALL\nSELECT\n")
	for _, c := range p.cols {
		b.WriteString("    " + rawViewExpr("r", c.name, c.typ) + ",\n")
	}
	if p.hour != "" {
		fmt.Fprintf(&b, "    r.%s,\n    r.%s\n", dmlIdent(p.dt), dmlIdent(p.hour))
	} else {
		fmt.Fprintf(&b, "    r.%s\n", dmlIdent(p.dt))
	}
	b.WriteString("FROM " + raw + " r\nWHERE NOT EXISTS (\n    SELECT 1\n    FROM " + parts + " p\n")
	pv := "p.\"partition\"." + dmlIdent(p.partField)
	if p.hour != "" {
		start := "date_add('hour', " + pv + ", TIMESTAMP '1970-01-01 00:00:00')"
		fmt.Fprintf(&b, "    WHERE date_format(%s, '%%Y-%%m-%%d') = r.%s\n", start, dmlIdent(p.dt))
		fmt.Fprintf(&b, "      AND date_format(%s, '%%H') = r.%s\n", start, dmlIdent(p.hour))
	} else {
		fmt.Fprintf(&b, "    WHERE %s = CAST(r.%s AS date)\n", pv, dmlIdent(p.dt))
	}
	b.WriteString(");")
	w.stmt(b.String())

	_, back := p.periodWords()
	filter := fmt.Sprintf("%s >= CAST(current_date - %s AS varchar)", dmlIdent(p.dt), back)
	w.note(fmt.Sprintf("Events per %s over the last days, compacted and fresh together.", unit))
	w.stmt(p.countQuery(view, ev, filter))
}

// an prefixes a period name with its article.
func an(unit string) string {
	if unit == "hour" {
		return "an hour"
	}
	return "a " + unit
}

func upper(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func slashHour(hour string) string {
	if hour == "" {
		return ""
	}
	return "/" + hour
}

func slashHourQuoted(hour string) string {
	if hour == "" {
		return ""
	}
	return "/" + dmlIdent(hour)
}

// fmtDuration prints a duration the way the config spells it (1h, 15m, 168h).
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// writer accumulates notes and statements, each followed by one blank line.
type writer struct{ strings.Builder }

// note writes a block of "--" comment lines; an empty line gives a bare "--".
func (w *writer) note(lines ...string) {
	for _, l := range lines {
		if l == "" {
			w.WriteString("--\n")
			continue
		}
		w.WriteString("-- " + l + "\n")
	}
	w.WriteString("\n")
}

// stmt writes one statement, which must end with ";".
func (w *writer) stmt(s string) {
	if !strings.HasSuffix(s, ";") {
		panic("athena: statement without ';': " + s)
	}
	w.WriteString(s + "\n\n")
}

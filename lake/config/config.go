// Package config loads and validates lakesink's single YAML configuration file.
//
// Loading is strict: defaults are set first, unknown keys are errors, and every
// validation error names the key at fault (for example "tables[0].columns[2].type").
// Secrets never live in the file: they are read from environment variables whose
// names the file may choose.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of a lakesink process.
type Config struct {
	Kafka      Kafka      `yaml:"kafka"`
	S3         *S3        `yaml:"s3,omitempty"`
	LocalDir   string     `yaml:"local_dir,omitempty"`
	Tables     []Table    `yaml:"tables"`
	Flush      Flush      `yaml:"flush"`
	DeadLetter DeadLetter `yaml:"dead_letter"`
	HTTP       HTTP       `yaml:"http"`
	Log        Log        `yaml:"log"`
	Catalog    Catalog    `yaml:"catalog"`
	Compaction Compaction `yaml:"compaction"`
	// SchemaRegistry is where Avro tables find their writer schemas (registry.go).
	SchemaRegistry *SchemaRegistry `yaml:"schema_registry,omitempty"`
}

// Catalog configures the Iceberg catalog the compactor registers tables in.
type Catalog struct {
	// Type is sql, glue or rest.
	Type string `yaml:"type"`
	// Name is the catalog's name inside lakesink (logs, metrics).
	Name string `yaml:"name"`
	// Namespace is the Iceberg namespace (the Glue database for Athena).
	Namespace string `yaml:"namespace"`
	// Warehouse is the root location of table data and metadata, for example
	// s3://bucket/warehouse. Empty means <lake root>/warehouse.
	Warehouse string      `yaml:"warehouse"`
	SQL       CatalogSQL  `yaml:"sql"`
	Glue      CatalogGlue `yaml:"glue"`
	REST      CatalogREST `yaml:"rest"`
}

// CatalogSQL configures iceberg-go's SQL catalog.
type CatalogSQL struct {
	// Driver is sqlite or postgres.
	Driver string `yaml:"driver"`
	// DSN is the connection string when it holds no secret (a SQLite file path);
	// empty means <local_dir>/catalog.db for a local lake.
	DSN string `yaml:"dsn"`
	// DSNEnv names an environment variable holding the DSN (for Postgres passwords).
	DSNEnv string `yaml:"dsn_env"`
	// Resolved is DSN or the value of $DSNEnv, filled at load time; never printed.
	Resolved string `yaml:"-"`
}

// CatalogGlue configures the AWS Glue catalog (what Athena reads).
type CatalogGlue struct {
	Region    string `yaml:"region"`
	Endpoint  string `yaml:"endpoint"`
	CatalogID string `yaml:"catalog_id"`
}

// CatalogREST configures an Iceberg REST catalog.
type CatalogREST struct {
	URI string `yaml:"uri"`
	// Warehouse is passed to the server (some servers name a warehouse, not a location).
	Warehouse string `yaml:"warehouse"`
	// CredentialEnv names an environment variable holding "client_id:client_secret" for OAuth2.
	CredentialEnv string `yaml:"credential_env"`
	// TokenEnv names an environment variable holding a bearer token.
	TokenEnv string `yaml:"token_env"`
	// SigV4 signs requests with AWS credentials (S3 Tables, Glue's REST endpoint).
	SigV4        bool   `yaml:"sigv4"`
	SigV4Region  string `yaml:"sigv4_region"`
	SigV4Service string `yaml:"sigv4_service"`
	// Credential and Token are filled from CredentialEnv and TokenEnv; never printed.
	Credential string `yaml:"-"`
	Token      string `yaml:"-"`
}

// Compaction configures lakesink compact.
type Compaction struct {
	// Lateness is how long after a partition's end the compactor waits before touching it;
	// with watermarks, also how far past its end every source partition's watermark must be.
	Lateness time.Duration `yaml:"lateness"`
	// MaxWait is the wall-clock upper bound of waiting for watermarks: a partition
	// (hour or day) whose end is MaxWait ago closes even if a source partition's
	// watermark holds it back (docs/watermarks.md). Default 6h; at least lateness.
	MaxWait time.Duration `yaml:"max_wait"`
	// SmallFileRatio: a table file below this fraction of the target size is merged again.
	SmallFileRatio float64 `yaml:"small_file_ratio"`
	// RowGroupSize is the uncompressed size at which an output row group is cut.
	RowGroupSize ByteSize `yaml:"row_group_size"`
	// MemoryBudget bounds the rows the merger sorts in memory before spilling a sorted run.
	MemoryBudget ByteSize `yaml:"memory_budget"`
	// TempDir holds spilled sorted runs; empty means the system temporary directory.
	TempDir string `yaml:"temp_dir"`
	// MaxPartitionsPerCommit bounds one Iceberg commit; a run makes as many as it needs.
	MaxPartitionsPerCommit int `yaml:"max_partitions_per_commit"`
	// MaxDuration, when above 0, bounds a compaction run: no new commit starts
	// after it, and the run stops between commits with "more to do" (set it
	// below a CronJob's activeDeadlineSeconds). lakesink compact --max-duration
	// overrides it. Default 0: the run goes on until nothing is due.
	MaxDuration time.Duration `yaml:"max_duration"`
	// CommitAttempts bounds the re-plan-and-retry loop on commit conflicts.
	CommitAttempts int `yaml:"commit_attempts"`
	// CommitTimeout bounds one Iceberg commit request; past it the outcome is
	// unknown and the compactor looks for its job in the table (default 2m).
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// ReadTimeout bounds reading one file (an input, or a footer) from the
	// object store, whose requests are bounded only per attempt
	// (s3.request_timeout, retried): past it the run fails retryable (default 10m).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// RawGrace is how long raw files stay after their rows are committed (readers finish).
	RawGrace time.Duration `yaml:"raw_grace"`
	// SnapshotRetainLast and SnapshotMaxAge drive snapshot expiry.
	SnapshotRetainLast int           `yaml:"snapshot_retain_last"`
	SnapshotMaxAge     time.Duration `yaml:"snapshot_max_age"`
	// OrphanMinAge: unreferenced files in the table location older than this are deleted.
	OrphanMinAge time.Duration `yaml:"orphan_min_age"`
	// MaxManifests bounds the data manifests a merge would remove (those
	// spanning months of partitions, and each month's small ones beyond the
	// first): past it, table maintenance merges them into one per month (an
	// Iceberg rewrite-manifests commit, metadata only). Every commit adds one,
	// and a commit that replaces files reads all of them (default 16; at
	// least 2).
	MaxManifests int `yaml:"max_manifests"`
	// PushgatewayURL, when set, receives the run's metrics at exit.
	PushgatewayURL string `yaml:"pushgateway_url"`
	// ZstdLevel is the zstd level of the table's files: ZstdFastest, ZstdDefault or ZstdBetter.
	ZstdLevel string `yaml:"zstd_level"`
	// CopyRowGroups lets a merge copy large input row groups that are already
	// in the table's order (and overlap no other input) into its outputs
	// without decoding and re-encoding them. Default true; false re-encodes
	// every row (e.g. to apply a new zstd_level to old files).
	CopyRowGroups bool `yaml:"copy_row_groups"`
}

// Zstd levels of the compacted files (compaction.zstd_level). On the bench's data,
// against default: fastest writes 7% more bytes for 14% less merge CPU, better 7%
// fewer bytes for 45% more.
const (
	ZstdFastest = "fastest"
	ZstdDefault = "default"
	ZstdBetter  = "better"
)

// Kafka configures the consumer (and the dead-letter producer).
type Kafka struct {
	Brokers          []string      `yaml:"brokers"`
	Group            string        `yaml:"group"`
	ClientID         string        `yaml:"client_id"`
	StartOffset      string        `yaml:"start_offset"`
	SessionTimeout   time.Duration `yaml:"session_timeout"`
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	FetchMaxBytes    ByteSize      `yaml:"fetch_max_bytes"`
	CommitInterval   time.Duration `yaml:"commit_interval"`
	// MetadataMaxAge bounds how long the client goes without refreshing the
	// cluster metadata, so partitions added to a topic are consumed within it
	// (default 30s; Kafka's Java clients default to 5m).
	MetadataMaxAge time.Duration `yaml:"metadata_max_age"`
	TLS            TLS           `yaml:"tls"`
	SASL           SASL          `yaml:"sasl"`
}

// TLS configures TLS to the brokers.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures broker authentication. The password comes from the
// environment variable named by PasswordEnv, never from the file.
type SASL struct {
	Mechanism   string `yaml:"mechanism"`
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// Password is filled from the environment at load time; it is never printed.
	Password string `yaml:"-"`
}

// S3 configures the S3 (or S3-compatible) object store of the lake.
type S3 struct {
	Bucket            string   `yaml:"bucket"`
	Prefix            string   `yaml:"prefix"`
	Region            string   `yaml:"region"`
	Endpoint          string   `yaml:"endpoint"`
	PathStyle         bool     `yaml:"path_style"`
	SSE               string   `yaml:"sse"`
	KMSKeyID          string   `yaml:"kms_key_id"`
	PartSize          ByteSize `yaml:"part_size"`
	UploadConcurrency int      `yaml:"upload_concurrency"`
	MaxAttempts       int      `yaml:"max_attempts"`
	// RequestTimeout bounds each attempt of an S3 request by inactivity: a
	// connection that moves no byte for this long (connecting, sending, waiting
	// for the answer, receiving) is abandoned and the attempt retried on a new
	// one (default 30s). Progressing transfers are never cut.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// Table declares one lake table: where its records come from and what its columns are.
type Table struct {
	Name           string    `yaml:"name"`
	Topics         []string  `yaml:"topics"`
	Format         string    `yaml:"format"`
	Columns        []Column  `yaml:"columns"`
	EventTime      EventTime `yaml:"event_time"`
	SortBy         []string  `yaml:"sort_by"`
	TargetFileSize ByteSize  `yaml:"target_file_size"`
	// ColumnsFrom "registry" derives the columns from the Avro subject (registry.go).
	ColumnsFrom string `yaml:"columns_from,omitempty"`
	// Subject is the registry subject of columns_from: registry; default <topic>-value.
	Subject string `yaml:"subject,omitempty"`
	// Derived is set once the columns were filled from the registry.
	Derived bool `yaml:"-"`
	// Strict rejects JSON records carrying a field no column declares (reason
	// unknown_field), at the top level and inside structs (docs/contracts.md).
	Strict bool `yaml:"strict,omitempty"`
	// Coerce lists the JSON coercions every column allows (CoerceNames); none by default.
	Coerce []string `yaml:"coerce,omitempty"`
	// TimestampFormat says how timestamp columns read JSON numbers (TimestampFormats);
	// RFC 3339 strings are read by every format. Default epoch_millis.
	TimestampFormat string `yaml:"timestamp_format,omitempty"`
}

// Column declares one column of a table.
type Column struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	Path     string `yaml:"path"`
	Required bool   `yaml:"required"`
	// FieldID pins the Parquet/Iceberg field id; 0 means assigned from the column's position.
	FieldID int `yaml:"field_id,omitempty"`
	// Dictionary forces dictionary encoding on or off for a string column; unset means on.
	Dictionary *bool `yaml:"dictionary,omitempty"`
	// Coerce replaces the table's coerce list for this column; unset inherits it, [] allows none.
	Coerce []string `yaml:"coerce,omitempty"`
	// Format replaces the table's timestamp_format for the timestamps of this column.
	Format string `yaml:"format,omitempty"`
}

// EventTime says which time partitions a record and how records with absurd times are rejected.
type EventTime struct {
	// Column names a timestamp column of the table; empty with Source "kafka".
	Column string `yaml:"column"`
	// Source is "field" (the column's value) or "kafka" (the record timestamp).
	Source string `yaml:"source"`
	// Granularity is "hour" or "day" (UTC), matching Iceberg's hour()/day() transforms.
	Granularity string `yaml:"granularity"`
	// NotBefore rejects event times earlier than this instant.
	NotBefore time.Time `yaml:"not_before"`
	// MaxFuture rejects event times further than this ahead of the wall clock.
	MaxFuture time.Duration `yaml:"max_future"`
	// MaxLateness is how far out of order event times may arrive: the sink's
	// watermark of a partition is the latest committed event time less this
	// (docs/watermarks.md). Unset means compaction.lateness (Config.MaxLateness).
	MaxLateness *time.Duration `yaml:"max_lateness,omitempty"`
}

// Flush bounds how long, how much and how many records the sink holds.
type Flush struct {
	MaxFileBytes ByteSize      `yaml:"max_file_bytes"`
	MaxAge       time.Duration `yaml:"max_age"`
	MemoryBudget ByteSize      `yaml:"memory_budget"`
	// MaxOpenPartitions is an optional hard cap on the open buffers (0: none, the
	// default): open buffers are bounded by MemoryBudget, and over the cap the one
	// written least recently is sealed.
	MaxOpenPartitions int           `yaml:"max_open_partitions"`
	Workers           int           `yaml:"workers"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	MaxRecordBytes    ByteSize      `yaml:"max_record_bytes"`
	// Compression is the codec of raw files: CompressionAuto (Snappy below
	// SmallFileBytes of buffered data, zstd above), CompressionZstd or CompressionSnappy.
	Compression string `yaml:"compression"`
}

// Raw file codecs (flush.compression).
const (
	CompressionAuto   = "auto"
	CompressionZstd   = "zstd"
	CompressionSnappy = "snappy"
)

// SmallFileBytes is the buffered size below which compression: auto writes Snappy.
// Small files are the many-partition case, where zstd's per-page cost dominates
// (it compresses a page of a 500-row file at a third of its speed on 256 KiB
// pages) and the compactor rewrites them within hours anyway.
const SmallFileBytes = 4 * MiB

// DeadLetter configures where rejected records go.
type DeadLetter struct {
	Topic string `yaml:"topic"`
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	Listen string `yaml:"listen"`
}

// Log configures structured logging.
type Log struct {
	Level string `yaml:"level"`
}

// Default returns a configuration holding every default; Load decodes over it.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Group:            "lakesink",
			ClientID:         "lakesink",
			StartOffset:      "earliest",
			SessionTimeout:   45 * time.Second,
			RebalanceTimeout: 2 * time.Minute,
			FetchMaxBytes:    16 * MiB,
			CommitInterval:   5 * time.Second,
			MetadataMaxAge:   30 * time.Second,
			SASL:             SASL{Mechanism: "none", PasswordEnv: "LAKESINK_KAFKA_PASSWORD"},
		},
		Flush: Flush{
			MaxFileBytes:    128 * MiB,
			MaxAge:          5 * time.Minute,
			MemoryBudget:    512 * MiB,
			Workers:         2,
			ShutdownTimeout: 60 * time.Second,
			MaxRecordBytes:  1 * MiB,
			Compression:     CompressionAuto,
		},
		HTTP: HTTP{Listen: ":9090"},
		Log:  Log{Level: "info"},
		Catalog: Catalog{
			Type:      "sql",
			Name:      "lakesink",
			Namespace: "lakesink",
			SQL:       CatalogSQL{Driver: "sqlite"},
		},
		Compaction: Compaction{
			Lateness:               15 * time.Minute,
			MaxWait:                6 * time.Hour,
			SmallFileRatio:         0.75,
			RowGroupSize:           128 * MiB,
			MemoryBudget:           512 * MiB,
			MaxPartitionsPerCommit: 200,
			CommitAttempts:         5,
			CommitTimeout:          2 * time.Minute,
			ReadTimeout:            10 * time.Minute,
			RawGrace:               time.Hour,
			SnapshotRetainLast:     20,
			SnapshotMaxAge:         7 * 24 * time.Hour,
			OrphanMinAge:           3 * 24 * time.Hour,
			MaxManifests:           16,
			ZstdLevel:              ZstdDefault,
			CopyRowGroups:          true,
		},
	}
}

func defaultS3() S3 {
	return S3{Region: "us-east-1", PartSize: 16 * MiB, UploadConcurrency: 4, MaxAttempts: 10, RequestTimeout: 30 * time.Second}
}

func defaultTable() Table {
	return Table{
		Format:         "json",
		EventTime:      EventTime{Granularity: "hour", NotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), MaxFuture: time.Hour},
		TargetFileSize: 256 * MiB,
	}
}

// Load reads, decodes and validates the configuration file at path, then fills secrets from env.
func Load(path string, env func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates a configuration document.
func Parse(data []byte, env func(string) string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	if doc.Kind == 0 {
		return nil, errors.New("empty configuration")
	}
	cfg := Default()
	if err := checkKnown(&doc, &cfg); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if env == nil {
		env = os.Getenv
	}
	if cfg.Kafka.SASL.Mechanism != "none" && cfg.Kafka.SASL.Mechanism != "aws-msk-iam" {
		cfg.Kafka.SASL.Password = env(cfg.Kafka.SASL.PasswordEnv)
	}
	cfg.Catalog.fillSecrets(env)
	cfg.SchemaRegistry.fillSecrets(env)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// UnmarshalYAML sets the table defaults before decoding, so omitted keys keep them.
func (t *Table) UnmarshalYAML(n *yaml.Node) error {
	*t = defaultTable()
	type plain Table
	return n.Decode((*plain)(t))
}

// UnmarshalYAML sets the s3 defaults before decoding, so omitted keys keep them.
func (s *S3) UnmarshalYAML(n *yaml.Node) error {
	*s = defaultS3()
	type plain S3
	return n.Decode((*plain)(s))
}

// Redacted returns the effective configuration as YAML with secrets replaced.
func (c *Config) Redacted() ([]byte, error) {
	cp := *c
	type view struct {
		*Config  `yaml:",inline"`
		Password string `yaml:"kafka_sasl_password,omitempty"`
	}
	v := view{Config: &cp}
	if c.Kafka.SASL.Password != "" {
		v.Password = "<redacted: from $" + c.Kafka.SASL.PasswordEnv + ">"
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return out, nil
}

// TableByTopic maps each source topic to the index of its table.
func (c *Config) TableByTopic() map[string]int {
	m := make(map[string]int)
	for i, t := range c.Tables {
		for _, tp := range t.Topics {
			m[tp] = i
		}
	}
	return m
}

// MaxLateness is a table's event_time.max_lateness, or compaction.lateness when unset.
func (c *Config) MaxLateness(t *Table) time.Duration {
	if t.EventTime.MaxLateness != nil {
		return *t.EventTime.MaxLateness
	}
	return c.Compaction.Lateness
}

// Topics lists every source topic, in table order.
func (c *Config) Topics() []string {
	var out []string
	for _, t := range c.Tables {
		out = append(out, t.Topics...)
	}
	return out
}

// Error is a validation error naming the key at fault.
type Error struct {
	Key string
	Msg string
}

// Error renders the error as "key: message".
func (e *Error) Error() string { return e.Key + ": " + e.Msg }

func keyErr(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return keyErr(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

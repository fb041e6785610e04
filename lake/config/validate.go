package config

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"
)

var (
	tableName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,127}$`)
	columnName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// ReservedColumns are the Kafka coordinate columns every table gets.
var ReservedColumns = []string{"_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp"}

// Validate checks the whole configuration and returns the first error, naming its key.
func (c *Config) Validate() error {
	if err := c.Kafka.validate(); err != nil {
		return err
	}
	switch {
	case c.S3 != nil && c.LocalDir != "":
		return keyErr("s3", "set either s3 or local_dir, not both")
	case c.S3 == nil && c.LocalDir == "":
		return keyErr("s3", "required: the lake's bucket (or local_dir for a local directory lake)")
	case c.S3 != nil:
		if err := c.S3.validate(); err != nil {
			return err
		}
	}
	if len(c.Tables) == 0 {
		return keyErr("tables", "at least one table is required")
	}
	names := map[string]bool{}
	topics := map[string]string{}
	for i := range c.Tables {
		t := &c.Tables[i]
		key := fmt.Sprintf("tables[%d]", i)
		if err := t.validate(key); err != nil {
			return err
		}
		if names[t.Name] {
			return keyErr(key+".name", "duplicate table name %q", t.Name)
		}
		names[t.Name] = true
		for j, tp := range t.Topics {
			if other, ok := topics[tp]; ok {
				return keyErr(fmt.Sprintf("%s.topics[%d]", key, j), "topic %q already feeds table %q", tp, other)
			}
			topics[tp] = t.Name
		}
	}
	if c.DeadLetter.Topic == "" {
		return keyErr("dead_letter.topic", "required: rejected records go to this Kafka topic")
	}
	{
		if _, ok := topics[c.DeadLetter.Topic]; ok {
			return keyErr("dead_letter.topic", "%q is also a source topic", c.DeadLetter.Topic)
		}
	}
	if err := c.Flush.validate(); err != nil {
		return err
	}
	if c.Kafka.RebalanceTimeout < c.Flush.ShutdownTimeout {
		return keyErr("kafka.rebalance_timeout", "%s is shorter than flush.shutdown_timeout %s: a revoke-time flush would be cut off", c.Kafka.RebalanceTimeout, c.Flush.ShutdownTimeout)
	}
	if err := c.Catalog.validate(c); err != nil {
		return err
	}
	if err := c.Compaction.validate(); err != nil {
		return err
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	return oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
}

func (k *Kafka) validate() error {
	if len(k.Brokers) == 0 {
		return keyErr("kafka.brokers", "at least one broker address is required")
	}
	for i, b := range k.Brokers {
		if b == "" {
			return keyErr(fmt.Sprintf("kafka.brokers[%d]", i), "empty address")
		}
	}
	if k.Group == "" {
		return keyErr("kafka.group", "required")
	}
	if err := oneOf("kafka.start_offset", k.StartOffset, "earliest", "latest"); err != nil {
		return err
	}
	if k.SessionTimeout < 6*1e9 {
		return keyErr("kafka.session_timeout", "%s is below Kafka's minimum of 6s", k.SessionTimeout)
	}
	if k.CommitInterval <= 0 {
		return keyErr("kafka.commit_interval", "must be positive")
	}
	if k.MetadataMaxAge < time.Second {
		return keyErr("kafka.metadata_max_age", "%s is below 1s", k.MetadataMaxAge)
	}
	if k.FetchMaxBytes < 1*KiB {
		return keyErr("kafka.fetch_max_bytes", "must be at least 1KiB")
	}
	if err := oneOf("kafka.sasl.mechanism", k.SASL.Mechanism, "none", "plain", "scram-sha-256", "scram-sha-512", "aws-msk-iam"); err != nil {
		return err
	}
	switch k.SASL.Mechanism {
	case "plain", "scram-sha-256", "scram-sha-512":
		if k.SASL.Username == "" {
			return keyErr("kafka.sasl.username", "required with mechanism %s", k.SASL.Mechanism)
		}
		if k.SASL.Password == "" {
			return keyErr("kafka.sasl.password_env", "environment variable $%s is empty or unset", k.SASL.PasswordEnv)
		}
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		return keyErr("kafka.tls.cert_file", "cert_file and key_file go together")
	}
	if !k.TLS.Enabled && (k.TLS.CAFile != "" || k.TLS.CertFile != "") {
		return keyErr("kafka.tls.enabled", "must be true when TLS files are set")
	}
	return nil
}

func (s *S3) validate() error {
	if s.Bucket == "" {
		return keyErr("s3.bucket", "required")
	}
	if len(s.Prefix) > 0 && s.Prefix[0] == '/' {
		return keyErr("s3.prefix", "must not start with '/'")
	}
	if err := oneOf("s3.sse", s.SSE, "", "none", "AES256", "aws:kms"); err != nil {
		return err
	}
	if s.KMSKeyID != "" && s.SSE != "aws:kms" {
		return keyErr("s3.kms_key_id", "only used with sse: aws:kms")
	}
	if s.PartSize < 5*MiB {
		return keyErr("s3.part_size", "%s is below S3's minimum part size of 5MiB", s.PartSize)
	}
	if s.UploadConcurrency < 1 {
		return keyErr("s3.upload_concurrency", "must be at least 1")
	}
	if s.MaxAttempts < 1 {
		return keyErr("s3.max_attempts", "must be at least 1")
	}
	if s.RequestTimeout < time.Second {
		return keyErr("s3.request_timeout", "%s is too short (minimum 1s)", s.RequestTimeout)
	}
	return nil
}

func (f *Flush) validate() error {
	switch {
	case f.MaxFileBytes < 64*KiB:
		return keyErr("flush.max_file_bytes", "%s is too small (minimum 64KiB)", f.MaxFileBytes)
	case f.MaxAge < 1e9:
		return keyErr("flush.max_age", "%s is too short (minimum 1s)", f.MaxAge)
	case f.MemoryBudget < 4*MiB:
		return keyErr("flush.memory_budget", "%s is too small (minimum 4MiB)", f.MemoryBudget)
	case f.MaxFileBytes > f.MemoryBudget:
		return keyErr("flush.max_file_bytes", "%s exceeds flush.memory_budget %s", f.MaxFileBytes, f.MemoryBudget)
	case f.MaxOpenPartitions < 0:
		return keyErr("flush.max_open_partitions", "must be 0 (no cap) or more")
	case f.Workers < 1:
		return keyErr("flush.workers", "must be at least 1")
	case f.ShutdownTimeout <= 0:
		return keyErr("flush.shutdown_timeout", "must be positive")
	case f.MaxRecordBytes < 1*KiB:
		return keyErr("flush.max_record_bytes", "must be at least 1KiB")
	case f.Compression != CompressionAuto && f.Compression != CompressionZstd && f.Compression != CompressionSnappy:
		return keyErr("flush.compression", "%q is not one of auto, zstd, snappy", f.Compression)
	}
	return nil
}

func (t *Table) validate(key string) error {
	if !tableName.MatchString(t.Name) {
		return keyErr(key+".name", "%q must be lowercase letters, digits and _, starting with a letter", t.Name)
	}
	if len(t.Topics) == 0 {
		return keyErr(key+".topics", "at least one topic is required")
	}
	if err := oneOf(key+".format", t.Format, "json", "avro"); err != nil {
		return err
	}
	if pending, err := t.validateRegistry(key); err != nil || pending {
		return err // columns_from: registry: the columns are checked once derived
	}
	if len(t.Columns) == 0 {
		return keyErr(key+".columns", "at least one column is required")
	}
	cols := map[string]*Column{}
	ids := map[int]string{}
	for i := range t.Columns {
		c := &t.Columns[i]
		ck := fmt.Sprintf("%s.columns[%d]", key, i)
		if !columnName.MatchString(c.Name) {
			return keyErr(ck+".name", "%q is not a valid column name", c.Name)
		}
		if slices.Contains(ReservedColumns, c.Name) {
			return keyErr(ck+".name", "%q is reserved for the Kafka coordinates", c.Name)
		}
		if cols[c.Name] != nil {
			return keyErr(ck+".name", "duplicate column %q", c.Name)
		}
		cols[c.Name] = c
		if _, err := ParseType(c.Type); err != nil {
			return keyErr(ck+".type", "%v", err)
		}
		if c.Path == "" {
			c.Path = c.Name
		}
		if c.FieldID < 0 {
			return keyErr(ck+".field_id", "must be positive")
		}
		if c.FieldID > 0 {
			if other, ok := ids[c.FieldID]; ok {
				return keyErr(ck+".field_id", "%d already used by column %q", c.FieldID, other)
			}
			ids[c.FieldID] = c.Name
		}
	}
	if err := t.validateContract(key); err != nil {
		return err
	}
	et := &t.EventTime
	if et.Source == "" {
		et.Source = "field"
		if et.Column == "" {
			et.Source = "kafka"
		}
	}
	if err := oneOf(key+".event_time.source", et.Source, "field", "kafka"); err != nil {
		return err
	}
	if err := oneOf(key+".event_time.granularity", et.Granularity, "hour", "day"); err != nil {
		return err
	}
	if et.Source == "field" {
		c := cols[et.Column]
		if c == nil {
			return keyErr(key+".event_time.column", "%q is not a column of the table", et.Column)
		}
		if typ, _ := ParseType(c.Type); typ.Kind != KindTimestamp {
			return keyErr(key+".event_time.column", "column %q has type %s, want timestamp", c.Name, c.Type)
		}
	} else if et.Column != "" {
		return keyErr(key+".event_time.column", "must be empty with source: kafka (the record timestamp is used)")
	}
	if et.MaxFuture <= 0 {
		return keyErr(key+".event_time.max_future", "must be positive")
	}
	if et.MaxLateness != nil && *et.MaxLateness < 0 {
		return keyErr(key+".event_time.max_lateness", "must not be negative")
	}
	for i, s := range t.SortBy {
		if cols[s] == nil && !slices.Contains(ReservedColumns, s) {
			return keyErr(fmt.Sprintf("%s.sort_by[%d]", key, i), "%q is not a column of the table", s)
		}
	}
	if t.TargetFileSize < 1*MiB {
		return keyErr(key+".target_file_size", "%s is too small (minimum 1MiB)", t.TargetFileSize)
	}
	return nil
}

func sortStrings(s []string) { sort.Strings(s) }

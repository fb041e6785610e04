package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

func (c *Catalog) fillSecrets(env func(string) string) {
	c.SQL.Resolved = c.SQL.DSN
	if c.SQL.DSNEnv != "" {
		c.SQL.Resolved = env(c.SQL.DSNEnv)
	}
	if c.REST.CredentialEnv != "" {
		c.REST.Credential = env(c.REST.CredentialEnv)
	}
	if c.REST.TokenEnv != "" {
		c.REST.Token = env(c.REST.TokenEnv)
	}
}

// validate checks what every process can check; ValidateCompaction adds what
// only the compactor needs (secrets present, a catalog it can reach).
func (c *Catalog) validate(cfg *Config) error {
	if err := oneOf("catalog.type", c.Type, "sql", "glue", "rest"); err != nil {
		return err
	}
	if c.Name == "" {
		return keyErr("catalog.name", "required")
	}
	if !tableName.MatchString(c.Namespace) {
		return keyErr("catalog.namespace", "%q must be lowercase letters, digits and _ (Athena and Glue database names)", c.Namespace)
	}
	if c.Warehouse == "" {
		c.Warehouse = cfg.defaultWarehouse()
	}
	u, err := url.Parse(c.Warehouse)
	if err != nil || (u.Scheme != "s3" && u.Scheme != "s3a" && u.Scheme != "file") {
		return keyErr("catalog.warehouse", "%q must be an s3:// or file:// URL", c.Warehouse)
	}
	if c.SQL.DSN != "" && c.SQL.DSNEnv != "" {
		return keyErr("catalog.sql.dsn", "set either dsn or dsn_env, not both")
	}
	switch c.Type {
	case "sql":
		if err := oneOf("catalog.sql.driver", c.SQL.Driver, "sqlite", "postgres"); err != nil {
			return err
		}
		if c.SQL.DSN == "" && c.SQL.DSNEnv == "" && c.SQL.Driver == "sqlite" && cfg.LocalDir != "" {
			c.SQL.DSN = filepath.Join(cfg.LocalDir, "catalog.db")
			c.SQL.Resolved = c.SQL.DSN
		}
	case "glue":
		if c.Glue.Region == "" {
			if cfg.S3 == nil {
				return keyErr("catalog.glue.region", "required")
			}
			c.Glue.Region = cfg.S3.Region
		}
	case "rest":
		if c.REST.URI == "" {
			return keyErr("catalog.rest.uri", "required with type rest")
		}
		if _, err := url.ParseRequestURI(c.REST.URI); err != nil {
			return keyErr("catalog.rest.uri", "%q is not a URL", c.REST.URI)
		}
	}
	return nil
}

func (cfg *Config) defaultWarehouse() string {
	if cfg.S3 != nil {
		return "s3://" + cfg.S3.Bucket + "/" + strings.TrimSuffix(cfg.S3.Prefix, "/") + pathSep(cfg.S3.Prefix) + "warehouse"
	}
	abs, err := filepath.Abs(cfg.LocalDir)
	if err != nil {
		abs = cfg.LocalDir
	}
	return "file://" + filepath.ToSlash(filepath.Join(abs, "warehouse"))
}

func pathSep(prefix string) string {
	if strings.TrimSuffix(prefix, "/") == "" {
		return ""
	}
	return "/"
}

func (p *Compaction) validate() error {
	switch {
	case p.Lateness < 0:
		return keyErr("compaction.lateness", "must not be negative")
	case p.SmallFileRatio <= 0 || p.SmallFileRatio > 1:
		return keyErr("compaction.small_file_ratio", "%v must be in (0, 1]", p.SmallFileRatio)
	case p.RowGroupSize < 1*MiB:
		return keyErr("compaction.row_group_size", "%s is too small (minimum 1MiB)", p.RowGroupSize)
	case p.MemoryBudget < 16*MiB:
		return keyErr("compaction.memory_budget", "%s is too small (minimum 16MiB)", p.MemoryBudget)
	case p.MaxPartitionsPerCommit < 1:
		return keyErr("compaction.max_partitions_per_commit", "must be at least 1")
	case p.MaxDuration < 0:
		return keyErr("compaction.max_duration", "must not be negative")
	case p.MaxWait < p.Lateness:
		return keyErr("compaction.max_wait", "%s is shorter than compaction.lateness %s (equal to it turns watermark waiting off)", p.MaxWait, p.Lateness)
	case p.CommitAttempts < 1:
		return keyErr("compaction.commit_attempts", "must be at least 1")
	case p.CommitTimeout < time.Second:
		return keyErr("compaction.commit_timeout", "%s is too short (minimum 1s)", p.CommitTimeout)
	case p.ReadTimeout < time.Second:
		return keyErr("compaction.read_timeout", "%s is too short (minimum 1s)", p.ReadTimeout)
	case p.RawGrace < 0:
		return keyErr("compaction.raw_grace", "must not be negative")
	case p.SnapshotRetainLast < 1:
		return keyErr("compaction.snapshot_retain_last", "must be at least 1")
	case p.SnapshotMaxAge < p.RawGrace:
		return keyErr("compaction.snapshot_max_age", "%s is shorter than compaction.raw_grace %s: lineage would expire before raw files are released", p.SnapshotMaxAge, p.RawGrace)
	case p.OrphanMinAge < time.Hour:
		return keyErr("compaction.orphan_min_age", "%s is too short (minimum 1h): a running compaction's outputs would look orphaned", p.OrphanMinAge)
	case p.MaxManifests < 2:
		return keyErr("compaction.max_manifests", "%d must be at least 2 (one manifest cannot be merged)", p.MaxManifests)
	case p.ZstdLevel != ZstdFastest && p.ZstdLevel != ZstdDefault && p.ZstdLevel != ZstdBetter:
		return keyErr("compaction.zstd_level", "%q is not one of fastest, default, better", p.ZstdLevel)
	}
	if p.PushgatewayURL != "" {
		if _, err := url.ParseRequestURI(p.PushgatewayURL); err != nil {
			return keyErr("compaction.pushgateway_url", "%q is not a URL", p.PushgatewayURL)
		}
	}
	return nil
}

// ValidateCompaction checks what lakesink compact needs beyond Validate: the
// catalog's secrets are present and a SQL catalog has somewhere to live.
func (c *Config) ValidateCompaction() error {
	cat := &c.Catalog
	switch cat.Type {
	case "sql":
		if cat.SQL.Resolved == "" {
			if cat.SQL.DSNEnv != "" {
				return keyErr("catalog.sql.dsn_env", "environment variable $%s is empty or unset", cat.SQL.DSNEnv)
			}
			return keyErr("catalog.sql.dsn", "required with an s3 lake (for example a Postgres DSN through dsn_env)")
		}
	case "rest":
		if cat.REST.CredentialEnv != "" && cat.REST.Credential == "" {
			return keyErr("catalog.rest.credential_env", "environment variable $%s is empty or unset", cat.REST.CredentialEnv)
		}
		if cat.REST.TokenEnv != "" && cat.REST.Token == "" {
			return keyErr("catalog.rest.token_env", "environment variable $%s is empty or unset", cat.REST.TokenEnv)
		}
	}
	return nil
}

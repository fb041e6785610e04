package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SchemaRegistry configures the Confluent-compatible Schema Registry that Avro
// tables (format: avro) fetch writer schemas from, and that columns_from: registry
// derives columns from. Credentials come from the environment, never the file.
type SchemaRegistry struct {
	// URL is the registry's base URL, e.g. http://registry:8081.
	URL string `yaml:"url"`
	// UsernameEnv and PasswordEnv name environment variables holding HTTP basic-auth
	// credentials (Confluent Cloud: the API key and secret). Both empty: no auth.
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`
	// Timeout bounds one HTTP request to the registry. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxWait bounds how long the sink retries a schema id the registry cannot give
	// (unreachable, or the id unknown to it) before it stops with an error; records are
	// never dead-lettered for that. Default 1m.
	MaxWait time.Duration `yaml:"max_wait"`
	// Username and Password are filled from the environment at load time; never printed.
	Username string `yaml:"-"`
	Password string `yaml:"-"`
}

// DefaultRegistryTimeout is schema_registry.timeout when unset.
const DefaultRegistryTimeout = 10 * time.Second

// DefaultRegistryMaxWait is schema_registry.max_wait when unset.
const DefaultRegistryMaxWait = time.Minute

func (r *SchemaRegistry) fillSecrets(env func(string) string) {
	if r == nil {
		return
	}
	if r.UsernameEnv != "" {
		r.Username = env(r.UsernameEnv)
	}
	if r.PasswordEnv != "" {
		r.Password = env(r.PasswordEnv)
	}
}

// validateRegistry checks the schema_registry section against the tables that need it.
func (c *Config) validateRegistry() error {
	avroTable := -1
	for i := range c.Tables {
		if c.Tables[i].Format == "avro" {
			avroTable = i
			break
		}
	}
	r := c.SchemaRegistry
	if r == nil {
		if avroTable >= 0 {
			return keyErr("schema_registry", "required: tables[%d] has format: avro", avroTable)
		}
		return nil
	}
	if r.URL == "" {
		return keyErr("schema_registry.url", "required")
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return keyErr("schema_registry.url", "%q is not an http:// or https:// URL", r.URL)
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultRegistryTimeout
	}
	if r.Timeout < 0 {
		return keyErr("schema_registry.timeout", "must be positive")
	}
	if r.MaxWait == 0 {
		r.MaxWait = DefaultRegistryMaxWait
	}
	if r.MaxWait < 0 {
		return keyErr("schema_registry.max_wait", "must be positive")
	}
	if (r.UsernameEnv == "") != (r.PasswordEnv == "") {
		return keyErr("schema_registry.username_env", "username_env and password_env go together")
	}
	if r.UsernameEnv != "" {
		if r.Username == "" {
			return keyErr("schema_registry.username_env", "environment variable $%s is empty or unset", r.UsernameEnv)
		}
		if r.Password == "" {
			return keyErr("schema_registry.password_env", "environment variable $%s is empty or unset", r.PasswordEnv)
		}
	}
	return nil
}

// validateRegistry checks format/columns_from/subject of one table. pending is true
// while the columns of a columns_from: registry table are not derived yet: the
// column, event-time and sort checks run again once they are (registry.Derive).
func (t *Table) validateRegistry(key string) (pending bool, err error) {
	if err := oneOf(key+".columns_from", t.ColumnsFrom, "", "registry"); err != nil {
		return false, err
	}
	if t.Format == "avro" {
		for i, c := range t.Columns {
			if strings.Contains(c.Path, ".") {
				return false, keyErr(fmt.Sprintf("%s.columns[%d].path", key, i),
					"%q: Avro columns name a top-level field of the writer schema (nested paths are not supported; use a struct column)", c.Path)
			}
		}
	}
	if t.ColumnsFrom != "registry" {
		if t.Subject != "" {
			return false, keyErr(key+".subject", "only used with columns_from: registry")
		}
		return false, nil
	}
	if t.Format != "avro" {
		return false, keyErr(key+".columns_from", "registry needs format: avro")
	}
	if t.Subject == "" {
		if len(t.Topics) != 1 {
			return false, keyErr(key+".subject", "required with columns_from: registry when the table reads %d topics", len(t.Topics))
		}
		t.Subject = t.Topics[0] + "-value"
	}
	if t.Derived {
		return false, nil
	}
	if len(t.Columns) > 0 {
		return false, keyErr(key+".columns", "must be empty with columns_from: registry (the columns come from subject %q)", t.Subject)
	}
	if err := oneOf(key+".event_time.granularity", t.EventTime.Granularity, "hour", "day"); err != nil {
		return false, err
	}
	return true, nil
}

// RegistryTables returns the tables whose columns come from the registry.
func (c *Config) RegistryTables() []*Table {
	var out []*Table
	for i := range c.Tables {
		if c.Tables[i].ColumnsFrom == "registry" {
			out = append(out, &c.Tables[i])
		}
	}
	return out
}

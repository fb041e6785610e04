package registry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/lakesink/lakesink/decode/registry"
	"github.com/lakesink/lakesink/lake/config"
)

const (
	v1 = `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"gone","type":"int"}]}`
	v2 = `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"note","type":["null","string"],"default":null}]}`
)

// The client runs against franz-go's in-process fake registry (httptest on 127.0.0.1).
func newRegistry(t *testing.T) (*srfake.Registry, *config.Config) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	for _, s := range []string{v1, v2} {
		if _, _, err := reg.RegisterSchema("clicks-value", sr.Schema{Schema: s, Type: sr.TypeAvro}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(`kafka: {brokers: ["b:9092"]}
local_dir: /tmp/x
dead_letter: {topic: dlq}
schema_registry: {url: "`+reg.URL()+`"}
tables:
  - {name: clicks, topics: [clicks], format: avro, columns_from: registry, event_time: {column: ts}}
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return reg, cfg
}

func TestClient(t *testing.T) {
	_, cfg := newRegistry(t)
	c, err := registry.New(cfg.SchemaRegistry)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	text, err := c.SchemaByID(ctx, 1)
	if err != nil || !strings.Contains(text, `"gone"`) {
		t.Fatalf("schema 1: %q %v", text, err)
	}
	if _, err := c.SchemaByID(ctx, 42); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	if _, err := c.SubjectSchemas(ctx, "nope-value"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown subject: %v, want ErrNotFound", err)
	}
	// A registry that is not there is not "not found".
	down, _ := registry.New(&config.SchemaRegistry{URL: "http://127.0.0.1:1", Timeout: 1e9})
	if _, err := down.SchemaByID(ctx, 1); err == nil || errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unreachable registry: %v, want a transient error", err)
	}
}

func TestDerive(t *testing.T) {
	_, cfg := newRegistry(t)
	if err := registry.Derive(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cfg.Tables[0].Columns {
		req := ""
		if c.Required {
			req = "!"
		}
		got = append(got, c.Name+":"+c.Type+req)
	}
	if want := "id:string! ts:timestamp! gone:int32 note:string"; strings.Join(got, " ") != want {
		t.Errorf("columns %s, want %s", strings.Join(got, " "), want)
	}
	if cfg.Tables[0].Subject != "clicks-value" || cfg.Tables[0].Columns[0].Path != "id" {
		t.Errorf("defaults not applied after derivation: %+v", cfg.Tables[0])
	}
}

// The checks that wait for the columns run once they are derived, naming the key.
func TestDeriveValidatesEventTime(t *testing.T) {
	_, cfg := newRegistry(t)
	cfg.Tables[0].EventTime.Column = "id"
	err := registry.Derive(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `tables[0].event_time.column: column "id" has type string, want timestamp`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDeriveColumns(t *testing.T) {
	v1 := `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	  {"name":"old","type":"int"},{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}`
	v2 := `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	  {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},{"name":"note","type":["null","string"],"default":null},
	  {"name":"tags","type":{"type":"array","items":"string"}},{"name":"m","type":{"type":"map","values":{"type":"record","name":"R","fields":[{"name":"a","type":"double"}]}}},
	  {"name":"old","type":"long"}]}`
	cols, err := registry.DeriveColumns([]string{v1, v2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cols {
		got = append(got, fmt.Sprintf("%s:%s:%v", c.Name, c.Type, c.Required))
	}
	want := "id:string:true ts:timestamp:true old:int64:true amount:decimal(10,2):true note:string:false tags:list<string>:false m:map<string,struct<a:float64>>:false"
	if strings.Join(got, " ") != want {
		t.Errorf("derived\n %s\nwant\n %s", strings.Join(got, " "), want)
	}
	if _, err := registry.DeriveColumns([]string{v1, strings.Replace(v1, `"name":"old","type":"int"`, `"name":"old","type":"string"`, 1)}); err == nil ||
		!strings.Contains(err.Error(), "field old is int32 in an earlier version and string in version 2") {
		t.Errorf("type conflict: err = %v", err)
	}
}

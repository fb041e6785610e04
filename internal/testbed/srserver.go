package testbed

import (
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// EnvSchemaRegistry is the Confluent-compatible URL of the bed's schema registry.
const EnvSchemaRegistry = "LAKESINK_TEST_SCHEMA_REGISTRY_URL" // http://127.0.0.1:18081/apis/ccompat/v7

// Registry returns the URL of the bed's real schema registry: Apicurio Registry
// (deploy/local/registry.sh) serving the Confluent Schema Registry API, the URL a
// config's schema_registry.url takes (also for a lakesink child process). Its storage
// is in memory and shared by every test of a run: register under subjects named with
// UniqueName. It has no compatibility rules, so any version can be registered, and it
// numbers schemas by content (the same text under two subjects has one id).
func Registry(t testing.TB) string {
	t.Helper()
	return need(t, EnvSchemaRegistry)[0]
}

// SchemaRegistry starts an in-process Confluent-compatible Schema Registry on
// 127.0.0.1 (a random port) for the duration of the test and returns it; its URL()
// goes into the schema_registry.url of a config, also for a lakesink child process.
//
// It is franz-go's srfake: an in-memory implementation of the REST API that franz-go's
// pkg/sr client calls (POST /subjects/{s}/versions, GET /schemas/ids/{id}, GET
// /subjects/{s}/versions, GET /subjects/{s}/versions/{v|latest}, Confluent error
// bodies such as 40403). It needs no bed and works in the short tier, for unit tests;
// end-to-end tests use the bed's real registry (Registry).
func SchemaRegistry(t testing.TB) *srfake.Registry {
	t.Helper()
	reg := srfake.New() // httptest.NewServer: listens on 127.0.0.1
	t.Cleanup(reg.Close)
	return reg
}

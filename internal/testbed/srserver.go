package testbed

import (
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// SchemaRegistry starts an in-process Confluent-compatible Schema Registry on
// 127.0.0.1 (a random port) for the duration of the test and returns it; its URL()
// goes into the schema_registry.url of a config, also for a lakesink child process.
//
// No real Confluent Schema Registry can be installed from this machine's package
// sources (it is published on Confluent's own Maven repository, not Maven Central,
// and Karapace is not on PyPI's list here), so the bed uses franz-go's srfake: an
// in-memory implementation of the documented REST API that franz-go's pkg/sr client
// calls (POST /subjects/{s}/versions, GET /schemas/ids/{id}, GET /subjects/{s}/versions,
// GET /subjects/{s}/versions/{v|latest}, Confluent error bodies such as 40403). It needs
// no bed and works in the short tier.
func SchemaRegistry(t testing.TB) *srfake.Registry {
	t.Helper()
	reg := srfake.New() // httptest.NewServer: listens on 127.0.0.1
	t.Cleanup(reg.Close)
	return reg
}

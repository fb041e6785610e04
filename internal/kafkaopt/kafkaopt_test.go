package kafkaopt_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lakesink/lakesink/internal/kafkaopt"
	"github.com/lakesink/lakesink/lake/config"
)

// TestClientOptions: every mechanism of the config gives options, and a TLS file
// that cannot be used fails with the key at fault.
func TestClientOptions(t *testing.T) {
	for _, mech := range []string{"none", "plain", "scram-sha-256", "scram-sha-512", "aws-msk-iam"} {
		k := config.Kafka{Brokers: []string{"b:9092"}, ClientID: "x"}
		k.SASL.Mechanism = mech
		if opts, err := kafkaopt.ClientOptions(&k); err != nil || len(opts) < 2 {
			t.Errorf("%s: %d options, %v", mech, len(opts), err)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		key string
		set func(k *config.Kafka)
	}{
		{"kafka.tls.ca_file", func(k *config.Kafka) { k.TLS.CAFile = missing }},
		{"kafka.tls.cert_file", func(k *config.Kafka) { k.TLS.CertFile, k.TLS.KeyFile = missing, missing }},
	} {
		k := config.Kafka{Brokers: []string{"b:9092"}}
		k.TLS.Enabled = true
		tc.set(&k)
		if _, err := kafkaopt.ClientOptions(&k); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s unusable: err %v, want it named", tc.key, err)
		}
	}
}

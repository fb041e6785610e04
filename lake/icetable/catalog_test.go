package icetable_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lakesink/lakesink/internal/testbed"
	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/icetable"
)

// TestOpenConcurrentFreshCatalog opens one fresh SQL catalog from several
// processes' worth of clients at once, as the shards of an Indexed Job do on
// their first run: iceberg-go creates the catalog's tables on open, and the
// openers race to create them. Every open must succeed.
func TestOpenConcurrentFreshCatalog(t *testing.T) {
	cases := map[string]func(t *testing.T) (driver, dsn string){
		"sqlite": func(t *testing.T) (string, string) {
			return "sqlite", filepath.Join(t.TempDir(), "catalog.db")
		},
		"postgres": func(t *testing.T) (string, string) {
			if testing.Short() {
				t.Skip("needs the test bed's PostgreSQL")
			}
			return "postgres", testbed.Postgres(t)
		},
	}
	for name, fresh := range cases {
		t.Run(name, func(t *testing.T) {
			// Several fresh catalogs in a row: one race may happen to go well.
			for round := range 5 {
				driver, dsn := fresh(t)
				y := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
local_dir: %s
dead_letter: {topic: dlq}
catalog:
  type: sql
  namespace: lake
  sql: {driver: %s, dsn: %q}
tables:
  - name: events
    topics: [events]
    columns:
      - {name: ts, type: timestamp, required: true}
    event_time: {column: ts, granularity: hour}
`, t.TempDir(), driver, dsn)
				cfg, err := config.Parse([]byte(y), nil)
				if err != nil {
					t.Fatal(err)
				}
				const openers = 6
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, openers)
				for i := range openers {
					wg.Go(func() {
						<-start
						c, err := icetable.Open(context.Background(), cfg)
						if err == nil {
							err = c.Close()
						}
						errs[i] = err
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("round %d, opener %d: %v", round, i, err)
					}
				}
			}
		})
	}
}

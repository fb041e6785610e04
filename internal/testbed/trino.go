package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TrinoTimeout bounds one query run by Trino, TrinoQuery or TrinoExec.
var TrinoTimeout = 5 * time.Minute

// Trino catalogs of the bed (deploy/local/trino.sh writes them from the bed's addresses).
const (
	// TrinoGlue is the Iceberg connector on the bed's Glue (moto): what Athena reads.
	TrinoGlue = "glue"
	// TrinoGlueHive is the Hive connector on the same Glue, with partition projection: where
	// Athena's Hive tables (lakesink's raw-zone tables) are read. It and TrinoGlue redirect
	// to each other, as Athena's single Glue catalog does.
	TrinoGlueHive = "gluehive"
	// TrinoREST is the Iceberg connector on the bed's REST catalog (REST).
	TrinoREST = "rest"
	// TrinoSQL is the Iceberg connector's JDBC catalog on the bed's Postgres database
	// lakesink (the database of LAKESINK_TEST_POSTGRES_DSN itself, not one from Postgres),
	// for the tables of the SQL catalog named TrinoSQLCatalogName.
	TrinoSQL = "sql"
	// TrinoSQLCatalogName is the catalog name (lakesink's catalog.name) TrinoSQL reads.
	TrinoSQLCatalogName = "lakesink"
)

// TrinoResult is what a Trino query returned.
type TrinoResult struct {
	QueryID string
	// Columns and Types name and type each column ("bigint", "timestamp(6) with time zone").
	Columns, Types []string
	// Rows holds the values as Trino's client protocol sends them, decoded from JSON with
	// numbers kept exact: integers and floating-point numbers are json.Number; decimals,
	// dates and timestamps are strings ("2026-11-24 13:05:00.123456 UTC"); varbinary is
	// base64; arrays and rows are []any (a row's fields in order); maps are
	// map[string]any; NULL is nil.
	Rows [][]any
}

// TrinoError is a query that Trino ran and rejected or failed.
type TrinoError struct {
	SQL       string
	Name      string // e.g. TABLE_NOT_FOUND
	Message   string
	ErrorType string // USER_ERROR, INTERNAL_ERROR, ...
}

func (e *TrinoError) Error() string {
	return fmt.Sprintf("trino: %s (%s): %s", e.Name, e.ErrorType, e.Message)
}

// TrinoURI returns the URL of the bed's Trino server: one node (coordinator and worker) with
// the catalogs TrinoGlue, TrinoGlueHive, TrinoREST and TrinoSQL, all reading the bed's S3.
func TrinoURI(t testing.TB) string {
	t.Helper()
	return need(t, EnvTrinoURI)[0]
}

// Trino runs sql in the bed's Trino (session time zone UTC) and returns the result rows,
// decoded as TrinoResult.Rows says. The test fails, showing Trino's error, if the query fails.
func Trino(t testing.TB, sql string) [][]any {
	t.Helper()
	return TrinoQuery(t, sql).Rows
}

// TrinoQuery is Trino with the column names and types and the query id.
func TrinoQuery(t testing.TB, sql string) TrinoResult {
	t.Helper()
	res, err := TrinoExec(t, sql)
	if err != nil {
		t.Fatalf("trino query failed: %v\nsql: %s", err, sql)
	}
	return res
}

// TrinoExec runs sql in the bed's Trino and returns its result, or a *TrinoError when Trino
// rejected or failed the query (other errors, such as an unreachable server, fail the test).
func TrinoExec(t testing.TB, sql string) (TrinoResult, error) {
	t.Helper()
	return TrinoSession{}.Exec(t, sql)
}

// TrinoSession runs queries with a default catalog and schema, in which unqualified names
// resolve (as Athena resolves them in its current database), e.g. TrinoSession{Catalog:
// TrinoGlue, Schema: "lake"}.
type TrinoSession struct {
	Catalog, Schema string
	// Properties are session properties, e.g. {"rest.expire_snapshots_min_retention": "0s"}
	// (catalog properties are prefixed with the catalog's name; values without commas).
	Properties map[string]string
}

// Query is TrinoQuery in the session.
func (s TrinoSession) Query(t testing.TB, sql string) TrinoResult {
	t.Helper()
	res, err := s.Exec(t, sql)
	if err != nil {
		t.Fatalf("trino query failed: %v\nsql: %s", err, sql)
	}
	return res
}

// Exec is TrinoExec in the session.
func (s TrinoSession) Exec(t testing.TB, sql string) (TrinoResult, error) {
	t.Helper()
	uri := TrinoURI(t)
	ctx, cancel := context.WithTimeout(context.Background(), TrinoTimeout)
	defer cancel()
	res, err := trinoRun(ctx, uri, s, sql)
	var te *TrinoError
	if err != nil && !errors.As(err, &te) {
		t.Fatalf("trino at %s: %v\nsql: %s", uri, err, sql)
	}
	return res, err
}

// trinoResponse is one page of Trino's client protocol (POST /v1/statement, then GET nextUri).
type trinoResponse struct {
	ID      string `json:"id"`
	NextURI string `json:"nextUri"`
	Columns []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"columns"`
	Data  [][]any `json:"data"`
	Error *struct {
		Message   string `json:"message"`
		ErrorName string `json:"errorName"`
		ErrorType string `json:"errorType"`
	} `json:"error"`
}

func trinoRun(ctx context.Context, uri string, s TrinoSession, sql string) (TrinoResult, error) {
	var res TrinoResult
	method, next, body := http.MethodPost, strings.TrimSuffix(uri, "/")+"/v1/statement", sql
	for {
		req, err := http.NewRequestWithContext(ctx, method, next, strings.NewReader(body))
		if err != nil {
			return res, err
		}
		req.Header.Set("X-Trino-User", "lakesink-test")
		req.Header.Set("X-Trino-Source", "lakesink-tests")
		req.Header.Set("X-Trino-Time-Zone", "UTC")
		if s.Catalog != "" {
			req.Header.Set("X-Trino-Catalog", s.Catalog)
		}
		if s.Schema != "" {
			req.Header.Set("X-Trino-Schema", s.Schema)
		}
		if len(s.Properties) > 0 {
			// One header, comma-separated (values must not hold commas).
			var kv []string
			for k, v := range s.Properties {
				kv = append(kv, k+"="+v)
			}
			sort.Strings(kv)
			req.Header.Set("X-Trino-Session", strings.Join(kv, ","))
		}
		// Without it Trino rounds timestamps to milliseconds for old clients.
		req.Header.Set("X-Trino-Client-Capabilities", "PARAMETRIC_DATETIME")
		page, retry, err := trinoPage(req)
		if err != nil {
			return res, err
		}
		if retry { // 502/503/504: the protocol says to retry the same request after a short wait
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		res.QueryID = page.ID
		if res.Columns == nil {
			for _, c := range page.Columns {
				res.Columns = append(res.Columns, c.Name)
				res.Types = append(res.Types, c.Type)
			}
		}
		res.Rows = append(res.Rows, page.Data...)
		if page.Error != nil {
			return res, &TrinoError{SQL: sql, Name: page.Error.ErrorName, Message: page.Error.Message, ErrorType: page.Error.ErrorType}
		}
		if page.NextURI == "" {
			return res, nil
		}
		method, next, body = http.MethodGet, page.NextURI, ""
	}
}

func trinoPage(req *http.Request) (trinoResponse, bool, error) {
	var page trinoResponse
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return page, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return page, false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return page, true, nil
	default:
		return page, false, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, bytes.TrimSpace(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&page); err != nil {
		return page, false, fmt.Errorf("decode %s %s: %w", req.Method, req.URL, err)
	}
	return page, false, nil
}

var splitsRE = regexp.MustCompile(`(?m)^\s*Input: .*, Splits: (\d+)`)

// TrinoScanSplits runs EXPLAIN ANALYZE for a query and returns, for each table scan of the
// plan in order, the number of splits Trino read: with the Iceberg connector one per data
// file (files below the split size, 128 MiB, are never split), so a filter that prunes to
// one hour of an hour-partitioned table reads 1. The test fails if the plan shows none.
func TrinoScanSplits(t testing.TB, query string) []int {
	t.Helper()
	rows := Trino(t, "EXPLAIN ANALYZE "+query)
	var plan strings.Builder
	for _, r := range rows {
		if len(r) > 0 {
			fmt.Fprint(&plan, r[0])
		}
	}
	var out []int
	for _, m := range splitsRE.FindAllStringSubmatch(plan.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	if len(out) == 0 {
		t.Fatalf("EXPLAIN ANALYZE shows no table scan with splits:\n%s", plan.String())
	}
	return out
}

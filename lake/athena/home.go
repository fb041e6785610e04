package athena

import (
	"net/url"
	"strings"

	"github.com/lakesink/lakesink/lake/config"
)

// homeKind says where the compactor's catalog keeps the Iceberg tables, as far as Athena cares.
type homeKind int

const (
	// homeGlue: catalog.type glue; the tables are Glue tables Athena reads as they are.
	homeGlue homeKind = iota + 1
	// homeGlueREST: catalog.type rest on AWS Glue's Iceberg REST endpoint; Glue tables too.
	homeGlueREST
	// homeS3Tables: catalog.type rest on Amazon S3 Tables (directly or through Glue's REST
	// endpoint); Athena reads them through the s3tablescatalog federated catalog.
	homeS3Tables
	// homeOther: an SQL catalog or another REST server, which Athena cannot read.
	homeOther
)

// icebergHome is where Athena finds a config's Iceberg tables.
type icebergHome struct {
	kind homeKind
	// catalog is the Athena catalog to prefix names with; empty for the default (AwsDataCatalog).
	catalog string
	// bucket is the S3 Tables table bucket, for homeS3Tables.
	bucket string
}

// inGlue reports whether Athena sees the tables without further steps.
func (h icebergHome) inGlue() bool { return h.kind != homeOther }

// resolveHome classifies the configured catalog.
//
// Glue's Iceberg REST endpoint is https://glue.<region>.amazonaws.com/iceberg, with the account
// id as warehouse, or "<account>:s3tablescatalog/<table bucket>" for S3 Tables; S3 Tables' own
// endpoint is https://s3tables.<region>.amazonaws.com/iceberg with the table bucket ARN as warehouse.
// https://docs.aws.amazon.com/glue/latest/dg/connect-glu-iceberg-rest.html
// https://docs.aws.amazon.com/athena/latest/ug/gdc-register-s3-table-bucket-cat.html
func resolveHome(cfg *config.Config) icebergHome {
	cat := cfg.Catalog
	switch cat.Type {
	case "glue":
		return icebergHome{kind: homeGlue}
	case "rest":
	default:
		return icebergHome{kind: homeOther}
	}
	u, err := url.Parse(cat.REST.URI)
	if err != nil {
		return icebergHome{kind: homeOther}
	}
	host := strings.ToLower(u.Hostname())
	aws := strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn")
	switch {
	case aws && strings.HasPrefix(host, "glue."):
		if _, b, ok := strings.Cut(cat.REST.Warehouse, ":s3tablescatalog/"); ok && b != "" {
			return s3TablesHome(b)
		}
		return icebergHome{kind: homeGlueREST}
	case aws && strings.HasPrefix(host, "s3tables."):
		b := "<table-bucket>"
		if i := strings.LastIndex(cat.REST.Warehouse, ":bucket/"); i >= 0 && i+len(":bucket/") < len(cat.REST.Warehouse) {
			b = cat.REST.Warehouse[i+len(":bucket/"):]
		}
		return s3TablesHome(b)
	}
	return icebergHome{kind: homeOther}
}

func s3TablesHome(bucket string) icebergHome {
	return icebergHome{kind: homeS3Tables, catalog: "s3tablescatalog/" + bucket, bucket: bucket}
}

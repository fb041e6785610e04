package athena

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"

	"github.com/lakesink/lakesink/lake/config"
)

// RawTable is the raw-zone table of section (b) as the AWS Glue Data Catalog holds it: the
// same columns, partition keys, location and partition-projection properties that Generate
// prints in its CREATE EXTERNAL TABLE statement.
type RawTable struct {
	// Database is the Glue database (catalog.namespace); Name is <table>_raw.
	Database, Name string
	// Columns and PartitionKeys are {name, Hive type} pairs, lower-cased as Athena stores them;
	// types are spelled as in the DDL (struct field names that are keywords in backticks).
	Columns, PartitionKeys [][2]string
	// Location is the table's raw prefix, s3://<bucket>/<prefix>raw/<table>/.
	Location string
	// Properties are the TBLPROPERTIES: projection.* and storage.location.template.
	Properties [][2]string
	// Comment is the table comment.
	Comment string
}

// Parquet input/output formats and SerDe of a Hive table STORED AS PARQUET, as Athena's
// CREATE EXTERNAL TABLE records them in Glue.
const (
	parquetInput  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
	parquetOutput = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
	parquetSerDe  = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
)

// ErrNotS3 is returned by RawTables for a local lake: there is no S3 location to register.
var ErrNotS3 = errors.New("the lake is not in S3")

// RawTables returns the raw-zone tables of the configuration (of Options.Table only, when
// set), for registering them in Glue without Athena (ApplyGlue).
func RawTables(cfg *config.Config, opts Options) ([]RawTable, error) {
	if err := checkNames(cfg); err != nil {
		return nil, err
	}
	if cfg.S3 == nil {
		return nil, fmt.Errorf("%w: local_dir %s (Athena and Glue need the raw zone in S3)", ErrNotS3, cfg.LocalDir)
	}
	var out []RawTable
	for i := range cfg.Tables {
		t := &cfg.Tables[i]
		if opts.Table != "" && t.Name != opts.Table {
			continue
		}
		p, err := newPlan(cfg, t)
		if err != nil {
			return nil, err
		}
		rt := RawTable{Database: p.db, Name: t.Name + RawSuffix, Location: p.rawRoot, Properties: p.rawProperties(), Comment: p.rawComment()}
		for _, c := range p.cols {
			rt.Columns = append(rt.Columns, [2]string{c.name, hiveType(c.typ)})
		}
		rt.PartitionKeys = [][2]string{{p.dt, "string"}}
		if p.hour != "" {
			rt.PartitionKeys = append(rt.PartitionKeys, [2]string{p.hour, "string"})
		}
		out = append(out, rt)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownTable, opts.Table)
	}
	return out, nil
}

// GlueAPI is the part of the AWS Glue client ApplyGlue uses (*glue.Client has it).
type GlueAPI interface {
	CreateDatabase(ctx context.Context, in *glue.CreateDatabaseInput, optFns ...func(*glue.Options)) (*glue.CreateDatabaseOutput, error)
	CreateTable(ctx context.Context, in *glue.CreateTableInput, optFns ...func(*glue.Options)) (*glue.CreateTableOutput, error)
	UpdateTable(ctx context.Context, in *glue.UpdateTableInput, optFns ...func(*glue.Options)) (*glue.UpdateTableOutput, error)
}

// ApplyGlue registers each raw table in the Glue Data Catalog as Athena's CREATE EXTERNAL
// TABLE would: the database is created if missing, a missing table is created and an
// existing one is replaced by the new definition (so that a column added to the config
// reaches Athena). catalogID is the Glue catalog (account) id, empty for the caller's own.
// It returns one line per action, for the user.
func ApplyGlue(ctx context.Context, api GlueAPI, catalogID string, tables []RawTable) ([]string, error) {
	var done []string
	var id *string
	if catalogID != "" {
		id = aws.String(catalogID)
	}
	dbs := map[string]bool{}
	for _, rt := range tables {
		if !dbs[rt.Database] {
			dbs[rt.Database] = true
			_, err := api.CreateDatabase(ctx, &glue.CreateDatabaseInput{CatalogId: id, DatabaseInput: &types.DatabaseInput{Name: aws.String(rt.Database)}})
			var exists *types.AlreadyExistsException
			switch {
			case errors.As(err, &exists):
			case err != nil:
				return done, fmt.Errorf("create glue database %s: %w", rt.Database, err)
			default:
				done = append(done, "created database "+rt.Database)
			}
		}
		in := rt.tableInput()
		_, err := api.CreateTable(ctx, &glue.CreateTableInput{CatalogId: id, DatabaseName: aws.String(rt.Database), TableInput: in})
		var exists *types.AlreadyExistsException
		switch {
		case errors.As(err, &exists):
			if _, err := api.UpdateTable(ctx, &glue.UpdateTableInput{CatalogId: id, DatabaseName: aws.String(rt.Database), TableInput: in}); err != nil {
				return done, fmt.Errorf("update glue table %s.%s: %w", rt.Database, rt.Name, err)
			}
			done = append(done, fmt.Sprintf("updated table %s.%s (%s)", rt.Database, rt.Name, rt.Location))
		case err != nil:
			return done, fmt.Errorf("create glue table %s.%s: %w", rt.Database, rt.Name, err)
		default:
			done = append(done, fmt.Sprintf("created table %s.%s (%s)", rt.Database, rt.Name, rt.Location))
		}
	}
	return done, nil
}

func (rt RawTable) tableInput() *types.TableInput {
	cols := func(kv [][2]string) []types.Column {
		out := make([]types.Column, len(kv))
		for i, c := range kv {
			// Glue keeps types without DDL quoting: struct<from:string>, not struct<`from`:string>.
			out[i] = types.Column{Name: aws.String(c[0]), Type: aws.String(strings.ReplaceAll(c[1], "`", ""))}
		}
		return out
	}
	params := map[string]string{"EXTERNAL": "TRUE", "classification": "parquet", "comment": rt.Comment}
	for _, kv := range rt.Properties {
		params[kv[0]] = kv[1]
	}
	return &types.TableInput{
		Name:          aws.String(rt.Name),
		Description:   aws.String(rt.Comment),
		TableType:     aws.String("EXTERNAL_TABLE"),
		Parameters:    params,
		PartitionKeys: cols(rt.PartitionKeys),
		StorageDescriptor: &types.StorageDescriptor{
			Columns:      cols(rt.Columns),
			Location:     aws.String(rt.Location),
			InputFormat:  aws.String(parquetInput),
			OutputFormat: aws.String(parquetOutput),
			SerdeInfo:    &types.SerDeInfo{SerializationLibrary: aws.String(parquetSerDe), Parameters: map[string]string{"serialization.format": "1"}},
		},
	}
}

package icetable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/glue"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/utils"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	// Registers the s3:// scheme for table I/O (metadata, manifests, footers).
	_ "github.com/apache/iceberg-go/io/gocloud/s3"
	// database/sql drivers of the SQL catalog.
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/lakesink/lakesink/lake/config"
	"github.com/lakesink/lakesink/lake/store"
)

// Catalog is an opened Iceberg catalog plus the namespace lakesink's tables live in.
type Catalog struct {
	Cat       catalog.Catalog
	Namespace table.Identifier
	// Warehouse is the root location of table data.
	Warehouse string
	// Props are the I/O properties (s3.*) tables are opened with.
	Props iceberg.Properties
	// s3 is the AWS config of iceberg-go's S3 file IO (see WithIO); nil when the
	// config has no s3 section.
	s3    *aws.Config
	close func() error
}

// WithIO returns ctx carrying the AWS config of the tables' S3 file IO, so that
// iceberg-go's own S3 requests made under it (metadata JSON, manifest lists,
// manifests: LoadTable, planning, a commit's manifest writes) are bounded as
// lakesink's store's are: each attempt by s3.request_timeout of inactivity,
// s3.max_attempts attempts. Without it iceberg-go's client has no timeout at
// all, and a silent S3 connection hangs the call. iceberg-go builds its file IO
// per call from the call's context, so every call on the catalog and its tables
// must get such a context (a derived one keeps it). It is ctx itself when the
// lake is not on S3 (or c is nil).
func (c *Catalog) WithIO(ctx context.Context) context.Context {
	if c == nil || c.s3 == nil {
		return ctx
	}
	return utils.WithAwsConfig(ctx, c.s3)
}

// Close releases the catalog's connections.
func (c *Catalog) Close() error {
	if c.close != nil {
		return c.close()
	}
	return nil
}

// Open opens the catalog the config names and makes sure the namespace exists.
func Open(ctx context.Context, cfg *config.Config) (*Catalog, error) {
	return OpenWith(ctx, cfg, Options{})
}

// Options are the optional hooks of OpenWith.
type Options struct {
	// OnS3Stall, if set, is called for each attempt of iceberg-go's S3 file IO
	// abandoned because its connection moved no byte for s3.request_timeout
	// (for a metric; see WithIO).
	OnS3Stall func()
}

// OpenWith is Open with hooks.
func OpenWith(ctx context.Context, cfg *config.Config, o Options) (*Catalog, error) {
	cc := cfg.Catalog
	props := ioProps(cfg)
	c := &Catalog{Namespace: catalog.ToIdentifier(cc.Namespace), Warehouse: strings.TrimSuffix(cc.Warehouse, "/"), Props: props}
	if s := cfg.S3; s != nil {
		// Credentials and region as lakesink's store has them; the endpoint and
		// path style reach iceberg-go's S3 client as properties (ioProps).
		ac, err := store.AWSConfig(ctx, store.S3Config{Region: s.Region, Endpoint: s.Endpoint,
			MaxAttempts: s.MaxAttempts, RequestTimeout: s.RequestTimeout, OnStall: o.OnS3Stall})
		if err != nil {
			return nil, fmt.Errorf("aws config for the tables' s3 file io: %w", err)
		}
		c.s3 = &ac
	}
	ctx = c.WithIO(ctx)
	switch cc.Type {
	case "sql":
		driver, dialect, dsn := sqliteshim.ShimName, sqlcat.SQLite, cc.SQL.Resolved
		if cc.SQL.Driver == "postgres" {
			driver, dialect = "pgx", sqlcat.Postgres
		} else {
			dsn = sqliteDSN(dsn)
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			return nil, fmt.Errorf("open %s catalog database: %w", cc.SQL.Driver, err)
		}
		if cc.SQL.Driver == "sqlite" {
			// One writer at a time: SQLite serializes writers anyway, and a single
			// connection keeps the busy timeout meaningful.
			db.SetMaxOpenConns(1)
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("connect to %s catalog database: %w", cc.SQL.Driver, err)
		}
		p := maps.Clone(props)
		p["warehouse"] = c.Warehouse
		sc, err := newSQLCatalog(ctx, cc.Name, db, dialect, p)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open sql catalog: %w", err)
		}
		c.Cat = sc
		c.close = func() error { return errors.Join(sc.Close(), db.Close()) }
	case "glue":
		opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(cc.Glue.Region)}
		if cc.Glue.Endpoint != "" {
			opts = append(opts, awsconfig.WithBaseEndpoint(cc.Glue.Endpoint))
		}
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("load AWS config for glue: %w", err)
		}
		if c.s3 != nil {
			// iceberg-go's Glue catalog reads a table's metadata on LoadTable with
			// this config, not the context's (see WithIO): the bounded client.
			// Its Glue requests get the same per-attempt bounds.
			awsCfg.HTTPClient = c.s3.HTTPClient
		}
		p := maps.Clone(props)
		if cc.Glue.CatalogID != "" {
			p[glue.CatalogIdKey] = cc.Glue.CatalogID
		}
		gc, err := glue.NewCatalog(glue.WithAwsConfig(awsCfg), glue.WithAwsProperties(glue.AwsProperties(p)))
		if err != nil {
			return nil, fmt.Errorf("open glue catalog: %w", err)
		}
		c.Cat = gc
		c.close = gc.Close
	case "rest":
		opts := []rest.Option{rest.WithAdditionalProps(props)}
		if cc.REST.Warehouse != "" {
			opts = append(opts, rest.WithWarehouseLocation(cc.REST.Warehouse))
		}
		if cc.REST.Credential != "" {
			opts = append(opts, rest.WithCredential(cc.REST.Credential))
		}
		if cc.REST.Token != "" {
			opts = append(opts, rest.WithOAuthToken(cc.REST.Token))
		}
		if cc.REST.SigV4 {
			opts = append(opts, rest.WithSigV4RegionSvc(cc.REST.SigV4Region, cc.REST.SigV4Service))
		}
		rc, err := rest.NewCatalog(ctx, cc.Name, cc.REST.URI, opts...)
		if err != nil {
			return nil, fmt.Errorf("open rest catalog %s: %w", cc.REST.URI, err)
		}
		c.Cat = rc
		c.close = rc.Close
	default:
		return nil, fmt.Errorf("catalog.type %q is not supported", cc.Type)
	}
	if err := c.ensureNamespace(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sqliteDSN adds the pragmas a catalog shared by processes needs: a busy
// timeout (two compactors at once) and WAL.
func sqliteDSN(dsn string) string {
	if strings.Contains(dsn, "_pragma") {
		return dsn
	}
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
}

// ioProps are the iceberg-go FileIO properties for the lake's storage.
func ioProps(cfg *config.Config) iceberg.Properties {
	p := iceberg.Properties{}
	if s := cfg.S3; s != nil {
		p[icebergio.S3Region] = s.Region
		if s.Endpoint != "" {
			p[icebergio.S3EndpointURL] = s.Endpoint
			if !s.PathStyle {
				p[icebergio.S3ForceVirtualAddressing] = "true"
			}
		}
	}
	return p
}

func (c *Catalog) ensureNamespace(ctx context.Context) error {
	ok, err := c.Cat.CheckNamespaceExists(ctx, c.Namespace)
	if err != nil {
		return fmt.Errorf("check namespace %s: %w", strings.Join(c.Namespace, "."), err)
	}
	if ok {
		return nil
	}
	err = c.Cat.CreateNamespace(ctx, c.Namespace, iceberg.Properties{"comment": "lakesink tables"})
	if err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
		return fmt.Errorf("create namespace %s: %w", strings.Join(c.Namespace, "."), err)
	}
	return nil
}

// newSQLCatalog opens iceberg-go's SQL catalog, which creates its tables on
// open. Openers of a fresh catalog race to create them (the shards of an Indexed
// Job start together), and on PostgreSQL the losers fail ("type ... already
// exists", a unique violation on pg_type); a second try finds the tables. A
// failure that persists through the tries (a wrong database, no privilege) is
// returned.
func newSQLCatalog(ctx context.Context, name string, db *sql.DB, dialect sqlcat.SupportedDialect, props iceberg.Properties) (*sqlcat.Catalog, error) {
	const tries = 5
	for attempt := 1; ; attempt++ {
		sc, err := sqlcat.NewCatalog(name, db, dialect, props)
		if err == nil || attempt == tries {
			return sc, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
}

// Ident returns the identifier of a table in the lakesink namespace.
func (c *Catalog) Ident(name string) table.Identifier {
	return append(append(table.Identifier{}, c.Namespace...), name)
}

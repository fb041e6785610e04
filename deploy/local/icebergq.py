#!/usr/bin/env python3
"""Read an Iceberg table independently of lakesink (PyIceberg or DuckDB); print a JSON summary.

    icebergq.py --catalog sql|glue|rest --table NS.NAME --id-column ID --time-column TS
                [--engine pyiceberg|duckdb] [--filter-hour 2026-11-24T13]
                [--catalog-name lakesink] [--uri URI] [--warehouse W]
                [--glue-endpoint URL] [--glue-region us-east-1] [--s3-endpoint URL]

Catalogs (all through PyIceberg):
  sql   --uri is an SQLAlchemy URI: sqlite:////abs/path/catalog.db or
        postgresql+psycopg2://user:pw@127.0.0.1:15432/db (postgres:// and postgresql:// are
        rewritten to postgresql+psycopg2://; a ?sslmode=... is kept). --catalog-name must be
        the name the writer gave its catalog (rows of iceberg_tables are per catalog name).
  glue  --glue-endpoint (moto: http://127.0.0.1:15000), --glue-region (us-east-1).
  rest  --uri http://127.0.0.1:18181; --warehouse is passed as the warehouse property.
S3 (data and metadata on s3://): --s3-endpoint (default $LAKESINK_TEST_S3_ENDPOINT), path-style,
no SSL for http://; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION,
else LAKESINK_TEST_S3_ACCESS_KEY / _SECRET_KEY / _REGION, else the bed's fixed ones.

Engines:
  pyiceberg  table.scan(row_filter=...).to_arrow(); files_planned = len(plan_files()).
  duckdb     the table's metadata location (from the catalog, through PyIceberg) read with
             DuckDB's iceberg_scan(); extensions from the venv's wheels (as duckq.py; offline),
             an S3 secret for the endpoint. files_planned is null.

Output, one JSON object on stdout:
  count          rows read (after --filter-hour)
  per_hour       {"YYYY-MM-DDTHH": rows} by the UTC hour of --time-column (timestamp, timestamptz
                 or date; a timestamp without zone is taken as UTC)
  id_checksum    sha256 hex of the non-null ids, each as text (integers in decimal, strings as
                 they are, binary as lowercase hex), sorted by code point, joined by "\\n" (no
                 trailing newline); duplicates count
  null_ids       rows whose id is null
  dup_keys       rows minus distinct (_kafka_topic, _kafka_partition, _kafka_offset); null when
                 the table lacks those columns
  files_planned  data files PyIceberg's scan plans for the filter (pyiceberg engine), else null
  files_total    data files of the current snapshot (pyiceberg engine), else null
  files_per_partition  {"ts_hour=2026-11-24-13": files} over the whole snapshot, keyed by the
                 partition path ("" when unpartitioned) (pyiceberg engine), else null
  bytes_planned  total size of the data files planned for the filter (pyiceberg engine), else null
  bytes_total    total size of the current snapshot's data files (pyiceberg engine), else null
  schema         the table's top-level column names, in order
  plus engine, metadata_location, snapshot_id.
--filter-hour H keeps rows with H <= time < H+1h (UTC).

Errors go to stderr with exit status 1 (2 for usage).

The bed's self-test writes a table with PyIceberg from JSON rows, then reads it with this
script (internal/testbed, bed.sh check):
    icebergq.py --write-test-table ROWS.json --catalog sql --uri sqlite:////tmp/c.db \\
        --warehouse file:///tmp/wh --table ns.t
ROWS.json: [[row, ...], ...], one inner list per append (one commit each); a row is
{"id": int, "ts": "2026-11-24T13:05:00Z", "_kafka_topic": str, "_kafka_partition": int,
"_kafka_offset": int}. The table is partitioned by hour(ts).
"""
import argparse
import datetime
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KAFKA_KEY = ("_kafka_topic", "_kafka_partition", "_kafka_offset")
HOUR_US = 3600 * 1000 * 1000


def s3_settings(endpoint):
    """(endpoint URL or None, access key, secret, region)."""
    env = os.environ.get
    endpoint = endpoint or env("LAKESINK_TEST_S3_ENDPOINT")
    if endpoint and "://" not in endpoint:
        endpoint = "http://" + endpoint
    key = env("AWS_ACCESS_KEY_ID") or env("LAKESINK_TEST_S3_ACCESS_KEY") or "lakesink"
    secret = env("AWS_SECRET_ACCESS_KEY") or env("LAKESINK_TEST_S3_SECRET_KEY") or "lakesinksecret"
    region = env("AWS_REGION") or env("AWS_DEFAULT_REGION") or env("LAKESINK_TEST_S3_REGION") or "us-east-1"
    return endpoint, key, secret, region


def sqlalchemy_uri(uri):
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri[len(prefix):]
    return uri


def load_catalog(a):
    from pyiceberg.catalog import load_catalog as pyiceberg_load

    endpoint, key, secret, region = s3_settings(a.s3_endpoint)
    props = {"s3.access-key-id": key, "s3.secret-access-key": secret, "s3.region": region}
    if endpoint:
        props["s3.endpoint"] = endpoint
        props["s3.force-virtual-addressing"] = "false"
    if a.catalog == "sql":
        if not a.uri:
            raise SystemExit("icebergq: --catalog sql needs --uri")
        props.update(type="sql", uri=sqlalchemy_uri(a.uri))
        if a.warehouse:
            props["warehouse"] = a.warehouse
    elif a.catalog == "glue":
        props.update({"type": "glue", "glue.region": a.glue_region,
                      "glue.access-key-id": key, "glue.secret-access-key": secret})
        if a.glue_endpoint:
            props["glue.endpoint"] = a.glue_endpoint
    elif a.catalog == "rest":
        if not a.uri:
            raise SystemExit("icebergq: --catalog rest needs --uri")
        props.update(type="rest", uri=a.uri)
        if a.warehouse:
            props["warehouse"] = a.warehouse
    return pyiceberg_load(a.catalog_name, **props)


def split_table(name):
    if "." not in name:
        raise SystemExit("icebergq: --table must be NAMESPACE.NAME, got %r" % name)
    ns, _, tbl = name.rpartition(".")
    return ns, tbl


def parse_hour(h):
    try:
        t = datetime.datetime.strptime(h, "%Y-%m-%dT%H")
    except ValueError:
        raise SystemExit("icebergq: --filter-hour must look like 2026-11-24T13, got %r" % h)
    return t.replace(tzinfo=datetime.timezone.utc)


def epoch_us(t):
    return (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def read_pyiceberg(table, a, columns, hour):
    from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan

    row_filter = AlwaysTrue()
    if hour is not None:
        lo = epoch_us(hour)
        # Integer literals bind to timestamp and timestamptz fields as microseconds (UTC).
        row_filter = And(GreaterThanOrEqual(a.time_column, lo), LessThan(a.time_column, lo + HOUR_US))
    scan = table.scan(row_filter=row_filter, selected_fields=tuple(columns))
    planned = list(scan.plan_files())
    files = len(planned)
    # every data file of the snapshot, by partition
    spec, schema, per_part, total_bytes = table.spec(), table.schema(), {}, 0
    for task in table.scan().plan_files():
        key = spec.partition_to_path(task.file.partition, schema) if spec.fields else ""
        per_part[key] = per_part.get(key, 0) + 1
        total_bytes += task.file.file_size_in_bytes
    planned_bytes = sum(task.file.file_size_in_bytes for task in planned)
    return scan.to_arrow(), files, dict(sorted(per_part.items())), planned_bytes, total_bytes


def duckdb_path(location):
    """DuckDB path for a metadata location: file:/x and file:///x become /x."""
    if location.startswith("file://"):
        return location[len("file://"):]
    if location.startswith("file:"):
        return location[len("file:"):]
    return location


def read_duckdb(table, a, columns, hour):
    sys.path.insert(0, HERE)
    import duckq

    endpoint, key, secret, region = s3_settings(a.s3_endpoint)
    con = duckq.connect(endpoint)
    if endpoint:
        ssl = endpoint.startswith("https://")
        con.execute(
            "CREATE OR REPLACE SECRET icebergq_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
            "URL_STYLE 'path', USE_SSL %s)" % ("true" if ssl else "false"),
            [key, secret, region, endpoint.split("://", 1)[1].rstrip("/")])
    con.execute("LOAD iceberg")
    src = "iceberg_scan(%s)" % duckq._sql_str(duckdb_path(table.metadata_location))
    cols = ", ".join('"%s"' % c.replace('"', '""') for c in columns)
    sql, params = "SELECT %s FROM %s" % (cols, src), []
    if hour is not None:
        tc = '"%s"' % a.time_column.replace('"', '""')
        sql += " WHERE %s >= ? AND %s < ?" % (tc, tc)
        params = [hour, hour + datetime.timedelta(hours=1)]
    cur = con.execute(sql, params)
    out = cur.to_arrow_table() if hasattr(cur, "to_arrow_table") else cur.fetch_arrow_table()
    schema = [r[0] for r in con.execute("DESCRIBE SELECT * FROM %s" % src).fetchall()]
    return out, schema


def id_text(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def summarize(tbl, a):
    import pyarrow as pa
    import pyarrow.compute as pc

    n = tbl.num_rows
    # per hour (UTC)
    ts = tbl.column(a.time_column)
    if pa.types.is_date(ts.type):
        ts = ts.cast(pa.timestamp("us"))
    if not pa.types.is_timestamp(ts.type):
        raise SystemExit("icebergq: --time-column %s is %s, not a timestamp or date" % (a.time_column, ts.type))
    us = pc.cast(ts, pa.timestamp("us", tz=ts.type.tz), safe=False).cast(pa.int64())
    per_hour = {}
    counts = pc.value_counts(pc.floor(pc.divide(us.cast(pa.float64()), float(HOUR_US))).cast(pa.int64()))
    for item in counts.to_pylist():
        h = item["values"]
        key = "null" if h is None else (
            datetime.datetime(1970, 1, 1) + datetime.timedelta(hours=h)).strftime("%Y-%m-%dT%H")
        per_hour[key] = item["counts"]
    # ids
    ids = tbl.column(a.id_column).to_pylist()
    texts = sorted(id_text(v) for v in ids if v is not None)
    checksum = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
    # duplicate Kafka keys
    dup = None
    if all(k in tbl.column_names for k in KAFKA_KEY):
        distinct = tbl.select(list(KAFKA_KEY)).group_by(list(KAFKA_KEY)).aggregate([]).num_rows
        dup = n - distinct
    return {"count": n, "per_hour": dict(sorted(per_hour.items())), "id_checksum": checksum,
            "null_ids": len(ids) - len(texts), "dup_keys": dup}


def query(a):
    cat = load_catalog(a)
    table = cat.load_table(split_table(a.table))
    schema = [f.name for f in table.schema().fields]
    for c in (a.id_column, a.time_column):
        if c not in schema:
            raise SystemExit("icebergq: column %r is not in the table (columns: %s)" % (c, ", ".join(schema)))
    columns = [a.id_column] + [c for c in (a.time_column,) + KAFKA_KEY if c in schema and c != a.id_column]
    hour = parse_hour(a.filter_hour) if a.filter_hour else None
    files = files_total = per_part = bytes_planned = bytes_total = None
    if a.engine == "pyiceberg":
        tbl, files, per_part, bytes_planned, bytes_total = read_pyiceberg(table, a, columns, hour)
        files_total = sum(per_part.values())
    else:
        tbl, schema = read_duckdb(table, a, columns, hour)
    out = summarize(tbl, a)
    snap = table.current_snapshot()
    out.update(files_planned=files, files_total=files_total, files_per_partition=per_part,
               bytes_planned=bytes_planned, bytes_total=bytes_total, schema=schema, engine=a.engine,
               metadata_location=table.metadata_location, snapshot_id=snap.snapshot_id if snap else None)
    return out


def write_test_table(a):
    """Create --table (partitioned by hour(ts)) and append each batch of rows as one commit."""
    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import HourTransform
    from pyiceberg.types import IntegerType, LongType, NestedField, StringType, TimestamptzType

    with open(a.write_test_table) as f:
        batches = json.load(f)
    cat = load_catalog(a)
    ns, name = split_table(a.table)
    cat.create_namespace_if_not_exists(ns)
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "ts", TimestamptzType(), required=False),
        NestedField(3, "_kafka_topic", StringType(), required=False),
        NestedField(4, "_kafka_partition", IntegerType(), required=False),
        NestedField(5, "_kafka_offset", LongType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=HourTransform(), name="ts_hour"))
    kw = {"location": a.warehouse.rstrip("/") + "/" + ns + "/" + name} if a.warehouse and a.catalog != "sql" else {}
    table = cat.create_table((ns, name), schema=schema, partition_spec=spec, **kw)
    arrow_schema = pa.schema([
        pa.field("id", pa.int64()), pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("_kafka_topic", pa.string()), pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64())])
    for batch in batches:
        cols = {f.name: [] for f in arrow_schema}
        for r in batch:
            for k in cols:
                v = r.get(k)
                if k == "ts" and v is not None:
                    v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                cols[k].append(v)
        table.append(pa.table(cols, schema=arrow_schema))
    table = cat.load_table((ns, name))
    return {"table": a.table, "metadata_location": table.metadata_location,
            "snapshots": len(table.metadata.snapshots)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--catalog", required=True, choices=("sql", "glue", "rest"))
    ap.add_argument("--catalog-name", default="lakesink", help="catalog name (sql: the writer's; default lakesink)")
    ap.add_argument("--uri", help="sql: SQLAlchemy URI; rest: the catalog URL")
    ap.add_argument("--warehouse", help="warehouse location (file:///abs/dir or s3://bucket/prefix)")
    ap.add_argument("--glue-endpoint", help="Glue endpoint URL (moto: http://127.0.0.1:15000)")
    ap.add_argument("--glue-region", default=os.environ.get("AWS_REGION", "us-east-1"))
    ap.add_argument("--s3-endpoint", help="S3 endpoint URL (default $LAKESINK_TEST_S3_ENDPOINT)")
    ap.add_argument("--table", required=True, help="NAMESPACE.NAME")
    ap.add_argument("--engine", default="pyiceberg", choices=("pyiceberg", "duckdb"))
    ap.add_argument("--id-column")
    ap.add_argument("--time-column")
    ap.add_argument("--filter-hour", help="UTC hour YYYY-MM-DDTHH: only rows of that hour")
    ap.add_argument("--write-test-table", metavar="ROWS_JSON", help="self-test: create --table from JSON rows")
    a = ap.parse_args()
    try:
        if a.write_test_table:
            out = write_test_table(a)
        else:
            if not a.id_column or not a.time_column:
                ap.error("--id-column and --time-column are required")
            out = query(a)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - one line on stderr, exit 1
        print("icebergq: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

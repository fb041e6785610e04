#!/usr/bin/env python3
"""Run SQL in DuckDB against the test bed's S3 server; print the result rows as JSON lines.

    duckq.py [--s3-endpoint 127.0.0.1:19000] --sql "SELECT count(*) FROM read_parquet(
        's3://lakesink-test/raw/**/*.parquet', hive_partitioning = true)"

One JSON array per row on stdout; errors on stderr and exit status 1. Several --sql run in
order on one connection and the rows of the last are printed.

Works offline: DuckDB's extensions come from the duckdb-extension-* PyPI packages (httpfs,
avro, iceberg; parquet and json are built into the duckdb wheel). Those packages ship the
files as <package>/extensions/v<version>/<name>.duckdb_extension, which DuckDB does not look
for by itself, so this script links them into an extension directory laid out the way DuckDB
expects (<venv>/duckdb_extensions/v<version>/<platform>/) and points `extension_directory` at
it: `LOAD httpfs` and autoloading (read_parquet('s3://...'), iceberg_scan(...)) then work,
and nothing is ever downloaded (autoinstall is off).

S3 settings (httpfs): endpoint from --s3-endpoint or LAKESINK_TEST_S3_ENDPOINT (an http://
prefix is dropped, https:// turns SSL on), credentials from LAKESINK_TEST_S3_ACCESS_KEY /
LAKESINK_TEST_S3_SECRET_KEY / LAKESINK_TEST_S3_REGION (defaults: the bed's fixed test
credentials), path-style URLs. The session time zone is UTC.

JSON values: numbers, strings, booleans, null; integers beyond +-2^53, DECIMALs, NaN/Inf are
strings (exact); timestamps/dates/times ISO 8601 strings; BLOBs lowercase hex; LIST -> array;
STRUCT/MAP -> object.

Other modes, used by the bed's own checks:
    duckq.py --check              load every packaged extension, round-trip a local Parquet file
    duckq.py --s3-smoke BUCKET    upload a Parquet file with boto3 (pyarrow), read it back over
                                  httpfs with a hive-partitioned glob, delete it
"""
import argparse
import datetime
import decimal
import importlib.util
import json
import math
import os
import sys
import tempfile
import uuid

import duckdb

EXTENSIONS = ("httpfs", "avro", "iceberg")
MAX_EXACT = 2 ** 53


def packaged_extension(name, version):
    """Path of <name>.duckdb_extension shipped by the PyPI package duckdb-extension-<name>, or None."""
    spec = importlib.util.find_spec("duckdb_extension_" + name)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "extensions", version, name + ".duckdb_extension")
        if os.path.isfile(path):
            return path
    return None


def _writable_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        return os.access(path, os.W_OK)
    except OSError:
        return False


def extension_directory(con):
    """Build (idempotently, race-safe) the extension directory and return it."""
    version = "v" + duckdb.__version__
    platform = con.execute("PRAGMA platform").fetchone()[0]
    root = os.environ.get("LAKESINK_DUCKDB_EXTENSION_DIR") or os.path.join(sys.prefix, "duckdb_extensions")
    if not _writable_dir(os.path.join(root, version, platform)):
        root = os.path.join(tempfile.gettempdir(), "lakesink-duckdb-extensions-%d" % os.getuid())
        os.makedirs(os.path.join(root, version, platform), exist_ok=True)
    leaf = os.path.join(root, version, platform)
    for name in EXTENSIONS:
        src = packaged_extension(name, version)
        if src is None:
            continue
        dst = os.path.join(leaf, name + ".duckdb_extension")
        if os.path.realpath(dst) == os.path.realpath(src):
            continue
        tmp = "%s.%d.tmp" % (dst, os.getpid())
        try:
            os.symlink(src, tmp)
        except FileExistsError:
            os.remove(tmp)
            os.symlink(src, tmp)
        os.replace(tmp, dst)
    return root


def _sql_str(s):
    return "'" + str(s).replace("'", "''") + "'"


def connect(endpoint=None):
    """A DuckDB connection with the packaged extensions reachable and httpfs set up for the bed."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": True})
    # No progress bar: on a loaded machine a query past 2 s prints one to stdout, which
    # corrupts the JSON the tests read from it.
    con.execute("SET enable_progress_bar = false")
    con.execute("SET extension_directory = " + _sql_str(extension_directory(con)))
    con.execute("SET TimeZone = 'UTC'")
    if endpoint is None:
        endpoint = os.environ.get("LAKESINK_TEST_S3_ENDPOINT", "127.0.0.1:19000")
    ssl = endpoint.startswith("https://")
    host = endpoint.split("://", 1)[-1].rstrip("/")
    con.execute("LOAD httpfs")
    settings = {
        "s3_endpoint": host,
        "s3_url_style": "path",
        "s3_use_ssl": "true" if ssl else "false",
        "s3_region": os.environ.get("LAKESINK_TEST_S3_REGION", "us-east-1"),
        "s3_access_key_id": os.environ.get("LAKESINK_TEST_S3_ACCESS_KEY", "lakesink"),
        "s3_secret_access_key": os.environ.get("LAKESINK_TEST_S3_SECRET_KEY", "lakesinksecret"),
    }
    for k, v in settings.items():
        con.execute("SET %s = %s" % (k, v if v in ("true", "false") else _sql_str(v)))
    return con


def jsonable(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -MAX_EXACT <= v <= MAX_EXACT else str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return str(v)


def run(con, statements, out):
    cur = None
    for sql in statements:
        cur = con.execute(sql)
    if cur is None or cur.description is None:
        return 0
    n = 0
    while True:
        rows = cur.fetchmany(4096)
        if not rows:
            break
        for row in rows:
            out.write(json.dumps([jsonable(x) for x in row], separators=(",", ":")) + "\n")
            n += 1
    out.flush()
    return n


def check():
    """Offline self-check: every packaged extension loads; Parquet round-trips."""
    con = connect()
    loaded = []
    for name in EXTENSIONS:
        if packaged_extension(name, "v" + duckdb.__version__) is None:
            raise SystemExit("duckq: duckdb-extension-%s==%s is not installed" % (name, duckdb.__version__))
        con.execute("LOAD " + name)
        loaded.append(name)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.parquet")
        con.execute("COPY (SELECT range AS i FROM range(10)) TO %s (FORMAT parquet)" % _sql_str(p))
        total = con.execute("SELECT sum(i) FROM read_parquet(%s)" % _sql_str(p)).fetchone()[0]
    if total != 45:
        raise SystemExit("duckq: parquet round trip gave %r" % total)
    print("duckdb %s: extensions %s loaded offline; parquet ok" % (duckdb.__version__, ", ".join(loaded)))


def s3_smoke(bucket, endpoint):
    """Upload a hive-partitioned Parquet file with boto3 and read it back through httpfs."""
    import io

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    endpoint = endpoint or os.environ.get("LAKESINK_TEST_S3_ENDPOINT", "127.0.0.1:19000")
    url = endpoint if "://" in endpoint else "http://" + endpoint
    s3 = boto3.client(
        "s3", endpoint_url=url,
        aws_access_key_id=os.environ.get("LAKESINK_TEST_S3_ACCESS_KEY", "lakesink"),
        aws_secret_access_key=os.environ.get("LAKESINK_TEST_S3_SECRET_KEY", "lakesinksecret"),
        region_name=os.environ.get("LAKESINK_TEST_S3_REGION", "us-east-1"),
    )
    prefix = "_bed-smoke/%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "s": ["a", "b", "c"]}), buf)
    keys = ["%s/dt=2026-01-01/hour=07/part.0.parquet" % prefix, "%s/dt=2026-01-02/hour=08/part.0.parquet" % prefix]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=buf.getvalue())
    try:
        con = connect(endpoint)
        got = con.execute(
            "SELECT count(*), sum(id), count(DISTINCT (dt, hour)) FROM read_parquet(%s, hive_partitioning = true)"
            % _sql_str("s3://%s/%s/**/*.parquet" % (bucket, prefix))).fetchone()
    finally:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    if tuple(got) != (6, 12, 2):
        raise SystemExit("duckq: S3 smoke test read %r, want (6, 12, 2)" % (got,))
    print("duckdb read Parquet from s3://%s over httpfs at %s: ok" % (bucket, endpoint))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sql", action="append", help="SQL to run (repeatable; rows of the last are printed)")
    ap.add_argument("--s3-endpoint", help="HOST:PORT of the S3 server (default $LAKESINK_TEST_S3_ENDPOINT)")
    ap.add_argument("--check", action="store_true", help="offline self-check of the extensions")
    ap.add_argument("--s3-smoke", metavar="BUCKET", help="write and read back a Parquet file on S3")
    a = ap.parse_args()
    try:
        if a.check:
            check()
        elif a.s3_smoke:
            s3_smoke(a.s3_smoke, a.s3_endpoint)
        elif a.sql:
            run(connect(a.s3_endpoint), a.sql, sys.stdout)
        else:
            ap.error("one of --sql, --check, --s3-smoke is required")
    except duckdb.Error as e:
        print("duckq: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

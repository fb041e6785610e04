#!/usr/bin/env python3
"""Run one SQL query in DuckDB against the test bed's S3 server; print rows as JSON lines.

DuckDB's httpfs extension comes from PyPI (duckdb-extension-httpfs): no network needed.
"""
import argparse
import datetime
import decimal
import json
import os
import sys

import duckdb


def default(o):
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)


def connect():
    con = duckdb.connect()
    load_packaged(con, "httpfs")
    endpoint = os.environ.get("LAKESINK_TEST_S3_ENDPOINT", "http://127.0.0.1:19000")
    ssl = endpoint.startswith("https://")
    host = endpoint.split("://", 1)[-1].rstrip("/")
    con.execute(
        "CREATE SECRET bed (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
        [
            os.environ.get("LAKESINK_TEST_S3_ACCESS_KEY", "lakesink"),
            os.environ.get("LAKESINK_TEST_S3_SECRET_KEY", "lakesinksecret"),
            os.environ.get("LAKESINK_TEST_S3_REGION", "us-east-1"),
            host,
            ssl,
        ],
    )
    con.execute("SET TimeZone = 'UTC'") if _has_icu(con) else None
    return con


def load_packaged(con, name):
    """LOAD an extension shipped in the PyPI package duckdb-extension-<name> (offline)."""
    import glob
    import importlib

    mod = importlib.import_module("duckdb_extension_" + name)
    pattern = os.path.join(os.path.dirname(mod.__file__), "extensions", "*", name + ".duckdb_extension")
    paths = glob.glob(pattern)
    if not paths:
        raise SystemExit("no %s extension file under %s" % (name, pattern))
    con.execute("LOAD '%s'" % paths[0].replace("'", "''"))


def _has_icu(con):
    try:
        return bool(con.execute("SELECT count(*) FROM duckdb_extensions() WHERE extension_name = 'icu' AND loaded").fetchone()[0])
    except duckdb.Error:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sql", required=True)
    args = ap.parse_args()
    con = connect()
    for row in con.execute(args.sql).fetchall():
        sys.stdout.write(json.dumps(list(row), default=default) + "\n")


if __name__ == "__main__":
    main()

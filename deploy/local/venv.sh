#!/usr/bin/env bash
# Project-local Python venv (.bed/venv) with the independent readers: DuckDB + httpfs + iceberg.
set -euo pipefail
source "$(dirname "$0")/common.sh"
REQ="$REPO/deploy/local/requirements.txt"
VENV="$BED/venv"
stamp="$VENV/.req-$(sha1sum "$REQ" | cut -c1-12)"
if [[ -f "$stamp" ]]; then exit 0; fi
log "creating $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
"$VENV/bin/python" -c 'import duckdb, duckdb_extension_httpfs' || die "duckdb import failed"
rm -f "$VENV"/.req-*
touch "$stamp"
log "venv ready"

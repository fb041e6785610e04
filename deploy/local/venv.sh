#!/usr/bin/env bash
# Project-local Python venv (.bed/venv) with the test bed's independent readers and helpers:
# DuckDB + httpfs/avro/iceberg extensions (from PyPI, usable offline), pyiceberg, pyarrow,
# boto3, moto. Pins: deploy/local/requirements.txt.
#
#   venv.sh [install]   create/update the venv (skipped when the stamp matches), then check
#                       offline that DuckDB loads its extensions (duckq.py --check)
#   venv.sh check       run the check only
#   venv.sh python      print the venv's python
#
# Env: LAKESINK_BED_PYTHON (python3 used to create the venv). Wheels cached in .bed/cache/wheels.
set -euo pipefail
BED_TAG=venv
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REQ="$HERE/requirements.txt"
VENV="$BED/venv"
VPY="$VENV/bin/python"
LOGF="$BED/venv-install.log"

check() {
  "$VPY" "$HERE/duckq.py" --check >&2 || die "DuckDB check failed in $VENV"
}

install() {
  need_cmd "$PY" "the venv is made with python3 -m venv (Python 3.9+)"
  local pyver stamp
  pyver=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  stamp=$({ cat "$REQ"; echo "python $pyver"; } | sha256sum | cut -c1-16)
  if [[ -x "$VPY" && "$(cat "$VENV/.bed-stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  if [[ -x "$VPY" && "$("$VPY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" == "$pyver" ]]; then
    log "updating $VENV (requirements changed)"
  else
    log "creating $VENV with Python $pyver"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" >"$LOGF" 2>&1 || { show_log "$LOGF"; die "python3 -m venv failed (Debian: apt-get install python3-venv)"; }
  fi
  rm -f "$VENV/.bed-stamp"
  # Wheels are kept in .bed/cache/wheels (the registry's responses are not cacheable by pip's own
  # HTTP cache): install from there offline, and download only what is missing.
  local pip=("$VPY" -m pip --disable-pip-version-check --no-input -q) wheels="$CACHE/wheels"
  mkdir -p "$wheels"
  if ! "${pip[@]}" install --no-index --find-links "$wheels" -r "$REQ" >>"$LOGF" 2>&1 </dev/null; then
    log "downloading wheels into $wheels"
    "${pip[@]}" download -d "$wheels" -r "$REQ" >>"$LOGF" 2>&1 </dev/null \
      || { show_log "$LOGF"; die "pip download -r $REQ failed (log: $LOGF)"; }
    "${pip[@]}" install --no-index --find-links "$wheels" -r "$REQ" >>"$LOGF" 2>&1 </dev/null \
      || { show_log "$LOGF"; die "pip install -r $REQ failed (log: $LOGF)"; }
  fi
  check
  echo "$stamp" > "$VENV/.bed-stamp"
  log "venv ready: $VPY"
}

case "${1:-install}" in
  install) with_lock "$BED/venv.lock" install ;;
  check) check ;;
  python) echo "$VPY" ;;
  *) echo "usage: $0 [install]|check|python" >&2; exit 2 ;;
esac

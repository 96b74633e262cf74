#!/usr/bin/env bash
# The GPU check in one call (lab/gpucheck.py says what it runs):
#   scripts/gpu-check.sh [--budget-s 300] [--out DIR] [--stages tests,bench,c8] [--dry-run]
# It runs the library from this checkout with the machine's own python3 and torch (nothing is installed;
# a GPU machine's torch is its own). Wheels carried in .whl/ (see docs) are unpacked first into a private
# temporary folder, first on PYTHONPATH for this run only and removed at its end ($LAB_WHEELS: another folder).
# Writes gpu-check.md (the table), rows.jsonl, gpu-check.log, bench.json and c8-records.jsonl to --out
# (default $OUT, else results/gpu-check-<time>).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python  # make setup's venv where there is one
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1  # a setting compiled twice compiles once
WHEELS=${LAB_WHEELS:-.whl}
if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    exec "$PY" -m lab.gpucheck "$@"
fi
SITE=$(mktemp -d "${TMPDIR:-/tmp}/lab-gpu-check-site.XXXXXX") || exit 1
trap 'rm -rf "$SITE"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
    && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# not exec'd (the EXIT trap removes $SITE after it): a TERM or INT is passed on to the check at once, then waited for
"$PY" -m lab.gpucheck "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done  # a signal ended the first wait early
exit "$rc"

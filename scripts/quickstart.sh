#!/usr/bin/env bash
# One command from a fresh machine to a running cluster with an example app deployed:
# installs what is missing, builds or fetches Kubernetes, creates the native cluster,
# seeds the Python base image, and runs the add example in the dev loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/kubeloop cluster create
.venv/bin/kubeloop cluster seed-image python:3.11-slim
.venv/bin/kubeloop dev --config examples/add/kubeloop.yaml

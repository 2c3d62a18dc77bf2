#!/usr/bin/env bash
# One command from a fresh machine to a running cluster with an example app deployed:
# installs what is missing, builds or fetches Kubernetes, creates the native cluster,
# seeds the Python base image, builds the example and rolls it out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/kubeloop cluster create
.venv/bin/kubeloop cluster seed-image python:3.11-slim
.venv/bin/python scripts/run_example.py

#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, format, types, and the test suite (which runs the real
# nsys: PERFCTL_REQUIRE_NSYS=1 turns a missing nsys into a failure instead of a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests scripts
.venv/bin/ruff format --check src tests scripts
.venv/bin/mypy
PERFCTL_REQUIRE_NSYS=1 .venv/bin/pytest "$@"

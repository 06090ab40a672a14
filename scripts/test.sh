#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, format, types, and the test suite (which runs the real
# nsys and a headless chromium: PERFCTL_REQUIRE_NSYS=1 and PERFCTL_REQUIRE_BROWSER=1 turn a missing one
# into a failure instead of a skip).
#
# The parity tests run `nsys stats` of three nsys generations on the same exports: the primary nsys
# (scripts/install-nsys.sh, 2022.4: export schema 3.0, report `nvtxkernsum`) and the references 2023.4
# (schema 3.7) and 2024.2 (schema 3.11, report `nvtx_kern_sum` in both), unpacked beside it by
# scripts/install-nsys-reference.sh and handed to the tests as PERFCTL_NSYS_2023 and PERFCTL_NSYS_2024.
# An nsys path already in one of those variables is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${PERFCTL_NSYS_2023:-}" ]; then PERFCTL_NSYS_2023=$(bash scripts/install-nsys-reference.sh 2023.4); fi
if [ -z "${PERFCTL_NSYS_2024:-}" ]; then PERFCTL_NSYS_2024=$(bash scripts/install-nsys-reference.sh 2024.2); fi
export PERFCTL_NSYS_2023 PERFCTL_NSYS_2024
# Headless chromium for the report's browser test (tests/test_report_browser.py); required here, so a
# missing one fails instead of skipping. Only the tests need it: setup.sh (and the demo) do not.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi
export PERFCTL_REQUIRE_BROWSER=1
# The tools run as modules of the venv's Python: a venv made over a Python that brings its own torch
# sees that Python's packages too (setup.sh: --system-site-packages), and pip then installs no script
# for a tool already there (pytest in the system's site-packages: no .venv/bin/pytest).
.venv/bin/python -m ruff check src tests scripts
.venv/bin/python -m ruff format --check src tests scripts
.venv/bin/python -m mypy
PERFCTL_REQUIRE_NSYS=1 .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, format, types, and the test suite (which runs the real
# nsys and a headless chromium: PERFCTL_REQUIRE_NSYS=1 and PERFCTL_REQUIRE_BROWSER=1 turn a missing one
# into a failure instead of a skip).
#
# The parity tests run `nsys stats` of two nsys generations on the same exports: the primary nsys
# (scripts/install-nsys.sh, 2022.4: export schema 3.0, report `nvtxkernsum`) and a reference 2023.4
# (scripts/install-nsys-reference.sh, unpacked beside it: schema 3.7, report `nvtx_kern_sum`), handed
# to the tests as PERFCTL_NSYS_2023. An nsys path already in PERFCTL_NSYS_2023 is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${PERFCTL_NSYS_2023:-}" ]; then PERFCTL_NSYS_2023=$(bash scripts/install-nsys-reference.sh); fi
export PERFCTL_NSYS_2023
# Headless chromium for the report's browser test (tests/test_report_browser.py); required here, so a
# missing one fails instead of skipping. Only the tests need it: setup.sh (and the demo) do not.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi
export PERFCTL_REQUIRE_BROWSER=1
.venv/bin/ruff check src tests scripts
.venv/bin/ruff format --check src tests scripts
.venv/bin/mypy
PERFCTL_REQUIRE_NSYS=1 .venv/bin/pytest "$@"

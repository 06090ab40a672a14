#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, format, types, and the test suite (which runs the real
# nsys: PERFCTL_REQUIRE_NSYS=1 turns a missing nsys into a failure instead of a skip).
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
.venv/bin/ruff check src tests scripts
.venv/bin/ruff format --check src tests scripts
.venv/bin/mypy
PERFCTL_REQUIRE_NSYS=1 .venv/bin/pytest "$@"

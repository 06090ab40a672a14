#!/usr/bin/env bash
# Set up perfctl on this machine (idempotent; the demo and test scripts call it first):
#   1. nsys, through scripts/install-nsys.sh (kept as it is when already installed);
#   2. a virtualenv at .venv. If the python3 you start with can import torch (your CUDA build, say),
#      the venv sees it (--system-site-packages); otherwise the CPU build torch==2.13.0 is installed,
#      never an unpinned torch (that would pull a multi-GB CUDA build);
#   3. perfctl itself, editable, with its dev tools (ruff, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*"; }

bash scripts/install-nsys.sh

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    say "creating .venv on $("$py" --version) with its own torch ($("$py" -c 'import torch; print(torch.__version__)'))"
    "$py" -m venv --system-site-packages .venv
  else
    say "creating .venv on $("$py" --version)"
    "$py" -m venv .venv
  fi
fi
if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  say "installing torch==${PERFCTL_TORCH_VERSION:-2.13.0} (CPU build here; GPU users: see README)"
  .venv/bin/python -m pip install -q "torch==${PERFCTL_TORCH_VERSION:-2.13.0}"
fi
say "installing perfctl (editable) with dev tools"
.venv/bin/python -m pip install -q -e '.[dev]'
say "ready: $(.venv/bin/perfctl --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"

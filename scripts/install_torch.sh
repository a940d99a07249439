#!/usr/bin/env bash
# Installs PyTorch into the given venv: the CUDA build where an NVIDIA GPU is present, the CPU
# build otherwise (the default PyPI wheel for Linux carries several GB of CUDA libraries).
# Usage: scripts/install_torch.sh VENV
set -euo pipefail
venv=$1
pip="$venv/bin/pip"
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "NVIDIA GPU found: installing the CUDA build of PyTorch"
  "$pip" install "torch>=2.4"
else
  echo "no GPU found: installing the CPU build of PyTorch"
  # A CPU wheel reachable through the configured indexes/find-links comes first; otherwise
  # PyTorch's own CPU index.
  "$pip" install "torch==2.13.0+cpu" 2>/dev/null \
    || "$pip" install "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu
fi

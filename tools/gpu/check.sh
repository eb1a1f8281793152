#!/usr/bin/env bash
# The GPU check: one prepared script for a GPU machine without network access.
#
#   tools/gpu/check.sh [BIOSEG_TRAIN_CUDA_BINARY]
#
# It brings what it needs: the CUDA build of bioseg-train is built beforehand on a machine with
# the crate registry (`cargo build --release -p bioseg-train --features cuda`) and carried to the
# GPU machine (default path: target/release/bioseg-train); CUDA itself is loaded at run time.
# Runs: nvidia-smi, `bioseg-train gpu-check` (CPU-vs-GPU equality, tiny CUDA training + ONNX export
# checked against tract, data parallel over the GPUs present, training benchmark), and the PyTorch
# eager baseline on the same architecture when python3 has torch. Prints a short table.
set -uo pipefail
BIN="${1:-target/release/bioseg-train}"
OUT_DIR="${OUT:-/tmp/bioseg-gpu-check}"
mkdir -p "$OUT_DIR"
STEPS="${BIOSEG_GPU_STEPS:-20}"

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no nvidia-smi: not a GPU machine"; exit 1; }
GPUS=$(nvidia-smi -L | wc -l)
echo "GPUs: $GPUS"
[ -x "$BIN" ] || { echo "missing CUDA build $BIN (cargo build --release -p bioseg-train --features cuda)"; exit 1; }
"$BIN" --version

echo "== bioseg-train gpu-check"
RUST_LOG=warn "$BIN" -q gpu-check --gpus "$GPUS" --steps "$STEPS" -o "$OUT_DIR/work" | tee "$OUT_DIR/bioseg.md"
status=${PIPESTATUS[0]}

echo "== PyTorch eager baseline (same architecture)"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 "$(dirname "$0")/torch_unet_bench.py" --steps "$STEPS" | tee "$OUT_DIR/torch.txt"
else
  echo "python3 with CUDA torch not found: baseline skipped"
fi
exit "$status"

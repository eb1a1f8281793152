#!/usr/bin/env bash
# Compares Burn CUDA convolution strategies for U-Net training on a GPU machine, in one go:
#   - `cuda`          : bioseg's default build (vendored burn-cubecl: implicit GEMM on tensor
#                       cores; narrow layers' weight gradients with zero-padded channels; upstream
#                       used the direct kernel everywhere)
#   - `cuda-autotune` : Burn's autotuner picks among all candidate kernels per shape
# and the PyTorch eager baseline. Binaries are built beforehand on a machine with the registry:
#   cargo build --release -p bioseg-train --features cuda          -> bioseg-train-gemm
#   cargo build --release -p bioseg-train --features cuda-autotune -> bioseg-train-autotune
# and carried gzip-compressed in BIN_DIR (default target/gpu). Each step is capped by a timeout
# so that one slow configuration cannot eat the whole GPU lease.
set -uo pipefail
BIN_DIR="${BIN_DIR:-target/gpu}"
OUT_DIR="${OUT:-/tmp/bioseg-conv}"
STEPS="${STEPS:-10}"
CAP="${CAP:-150}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for v in ${VARIANTS:-gemm autotune}; do
  [ -f "$BIN_DIR/bioseg-train-$v.gz" ] || { echo "no $BIN_DIR/bioseg-train-$v.gz: skipped"; continue; }
  gunzip -c "$BIN_DIR/bioseg-train-$v.gz" > "$OUT_DIR/bioseg-train-$v" && chmod +x "$OUT_DIR/bioseg-train-$v"
  if [ "$v" = gemm ]; then
    echo "== cuda (implicit GEMM): checks + benchmarks"
    args=(gpu-check --steps "$STEPS")
  else
    echo "== cuda-$v: benchmarks"
    args=(gpu-check --bench-only --steps "$STEPS")
  fi
  RUST_LOG=info timeout "$CAP" "$OUT_DIR/bioseg-train-$v" -q "${args[@]}" -o "$OUT_DIR/$v" 2>&1 \
    | grep -v "cubecl_runtime::tune" | tee "$OUT_DIR/$v.log"
  echo "exit ${PIPESTATUS[0]}"
  rm -f "$OUT_DIR/bioseg-train-$v"
done
if [ "${PROFILE:-0}" = 1 ] && [ -f "$BIN_DIR/bioseg-train-gemm.gz" ]; then
  # CubeCL's profiler: every kernel launch with its duration, for two F=64 training steps.
  echo "== kernel profile (F=64 512x512, 2 steps) -> $OUT_DIR/cubecl_profile.log.gz"
  gunzip -c "$BIN_DIR/bioseg-train-gemm.gz" > "$OUT_DIR/bt" && chmod +x "$OUT_DIR/bt"
  CUBECL_DEBUG_OPTION=profile-medium CUBECL_DEBUG_LOG="$OUT_DIR/cubecl_profile.log" \
    timeout "$CAP" "$OUT_DIR/bt" -q gpu-check --bench-only --steps 2 -o "$OUT_DIR/profile" >/dev/null 2>&1
  gzip -f "$OUT_DIR/cubecl_profile.log"; rm -f "$OUT_DIR/bt"
fi
echo "== PyTorch eager"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  timeout 90 python3 "$(dirname "$0")/torch_unet_bench.py" --steps "$STEPS" 2>&1 | tee "$OUT_DIR/torch.log"
else
  echo "no CUDA torch"
fi

#!/usr/bin/env bash
# GPU training throughput: Burn CUDA (bioseg-train bench) vs PyTorch eager on the same U-Net,
# batch and size. One prepared script for a GPU machine without network access: the CUDA build
# of bioseg-train is built beforehand (`cargo build --release -p bioseg-train --features cuda`)
# and carried; PyTorch must already be installed there (python3 -c "import torch").
#
#   tools/gpu/bench.sh [BIOSEG_TRAIN_CUDA_BINARY]      # default target/release/bioseg-train
#   CONFIGS="64:512:4 16:256:2" STEPS=20 tools/gpu/bench.sh
#
# Prints a Markdown table: images/s of each and the ratio (goal: Burn >= 1.0x PyTorch).
set -uo pipefail
BIN="${1:-target/release/bioseg-train}"
CONFIGS="${CONFIGS:-64:512:4 16:256:2}"
STEPS="${STEPS:-20}"
HERE="$(cd "$(dirname "$0")" && pwd)"
nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || { echo "no nvidia-smi: not a GPU machine"; exit 1; }
[ -x "$BIN" ] || { echo "missing CUDA build $BIN (cargo build --release -p bioseg-train --features cuda)"; exit 1; }
has_torch=0
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && has_torch=1

echo "| U-Net | crop | batch | Burn CUDA img/s | PyTorch eager img/s | Burn / PyTorch |"
echo "|---|---|---|---|---|---|"
for c in $CONFIGS; do
    IFS=: read -r f size batch <<<"$c"
    burn=$(RUST_LOG=warn "$BIN" -q bench --device cuda -F "$f" --size "$size" -b "$batch" --steps "$STEPS" \
        | grep -oE '[0-9.]+ images/s' | head -1 | cut -d' ' -f1)
    torch="-"
    if [ "$has_torch" = 1 ]; then
        torch=$(python3 "$HERE/torch_unet_bench.py" --steps "$STEPS" --configs "$f:$size:$batch" \
            | grep -oE '[0-9.]+ images/s' | head -1 | cut -d' ' -f1)
    fi
    ratio="-"
    if [ -n "$burn" ] && [ "$torch" != "-" ] && [ -n "$torch" ]; then
        ratio=$(python3 -c "print(f'{$burn / $torch:.3f}')")
    fi
    echo "| F=$f | ${size}x$size | $batch | ${burn:-failed} | $torch | $ratio |"
done

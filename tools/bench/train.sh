#!/usr/bin/env bash
# One command for the CPU training benchmark (BENCHMARKS.md, "CPU training"): times bioseg's
# U-Net training step (`bioseg-train bench`, Burn's flex backend with bioseg-kernels) and the
# Keras/TensorFlow reference step (tools/keras/unet_step_time.py, pinned TensorFlow) on the same
# U-Net, crops, batch and thread count, one right after the other, for each configuration; prints
# s/step, images/s, the ratio, the achieved GFLOP/s and the machine's matrix-product peak. Both
# without dropout (bioseg's bench model has none).
#
#   tools/bench/train.sh                       # F=16 256² b2, F=32 256² b4, F=64 512² b1
#   CONFIGS="16:256:2" ROUNDS=3 tools/bench/train.sh   # one configuration, 3 alternating rounds
#   KERNELS=0 tools/bench/train.sh             # also time flex's own kernels (the "before" path)
#
# Environment: CONFIGS ["16:256:2 32:256:4 64:512:1"] (F:size:batch), ROUNDS [2] (bioseg and Keras
# alternate, so drift of the machine hits both), STEPS [8] timed steps each, THREADS [nproc]
# (RAYON_NUM_THREADS for bioseg; intra-op threads for TensorFlow), KERNELS [1] (0: add a row with
# BIOSEG_FLEX_KERNELS=0), PROFILE [1] (bioseg's per-operation table for the first configuration).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CONFIGS=${CONFIGS:-16:256:2 32:256:4 64:512:1}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-8}
THREADS=${THREADS:-$(nproc)}
KERNELS=${KERNELS:-1}
PROFILE=${PROFILE:-1}
VENV=$ROOT/tools/keras/.venv
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r tools/keras/requirements.txt
fi
cargo build --release -q -p bioseg-train
BIN=$ROOT/target/release/bioseg-train
export RAYON_NUM_THREADS=$THREADS TF_NUM_INTRAOP_THREADS=$THREADS TF_NUM_INTEROP_THREADS=1

"$BIN" bench -F 16 --size 64 -b 1 --steps 1 --peak 2>/dev/null | sed -n 's/ (.*reached)//; /peak/p' || true
first=1
printf '\n%-18s %-16s %10s %9s %9s %8s\n' "config" "engine" "s/step" "images/s" "GFLOP/s" "ratio"
for cfg in $CONFIGS; do
    IFS=: read -r F SIZE BATCH <<<"$cfg"
    gflop=$("$BIN" bench -F "$F" --size 64 -b 1 --steps 1 2>/dev/null | sed -n 's/.* \([0-9.]*\) GFLOP\/step.*/\1/p')
    # GFLOP/step scales with the pixels and the batch.
    gflop=$(python3 -c "print($gflop * ($SIZE / 64) ** 2 * $BATCH)")
    b_best=""; k_best=""; o_best=""
    for ((r = 0; r < ROUNDS; r++)); do
        extra=()
        [[ $PROFILE == 1 && $first == 1 && $r == 0 ]] && extra=(--profile)
        out=$("$BIN" bench -F "$F" --size "$SIZE" -b "$BATCH" --steps "$STEPS" "${extra[@]}" 2>/dev/null)
        [[ ${#extra[@]} -gt 0 ]] && echo "$out" | sed -n '/^operation/,/^everything/p' >&2
        b=$(echo "$out" | sed -n 's/^seconds_per_step=//p')
        k=$("$VENV/bin/python" tools/keras/unet_step_time.py -F "$F" --size "$SIZE" --batch "$BATCH" \
            --steps "$STEPS" --threads "$THREADS" --dropout 0 2>/dev/null | sed -n 's/^mean_seconds_per_step=//p')
        b_best=$(python3 -c "print(min(x for x in [$b, ${b_best:-1e9}]))")
        k_best=$(python3 -c "print(min(x for x in [$k, ${k_best:-1e9}]))")
        if [[ $KERNELS == 0 ]]; then
            o=$(BIOSEG_FLEX_KERNELS=0 "$BIN" bench -F "$F" --size "$SIZE" -b "$BATCH" --steps 2 2>/dev/null \
                | sed -n 's/^seconds_per_step=//p')
            o_best=$(python3 -c "print(min(x for x in [$o, ${o_best:-1e9}]))")
        fi
    done
    first=0
    row() { python3 -c "s=$2; print(f'%-18s %-16s %10.3f %9.2f %9.0f %8s' % ('$cfg', '$1', s, $BATCH / s, $gflop / s, '$3' or f'{s / $k_best:.2f}x'))"; }
    row "bioseg" "$b_best" ""
    [[ -n $o_best ]] && row "bioseg, flex own" "$o_best" ""
    row "keras/tf" "$k_best" "1.00x"
done
echo "(best of $ROUNDS rounds of $STEPS steps each; ratio = bioseg s/step ÷ Keras s/step; $THREADS threads)"

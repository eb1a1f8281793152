#!/usr/bin/env bash
# The shipped ISBI 2012 membrane model (models/isbi2012_membrane_unet.onnx, issue 18), from
# scratch:
#   1. the recipe trained on slices 0–19, validated on whole slices 20–24 (bioseg predict, with
#      and without --tta; bioseg evaluate): the card's validation table;
#   2. the same recipe on all 25 labelled slices (no validation split), exported to ONNX and
#      copied to models/isbi2012_membrane_unet.onnx;
#   3. the challenge submission: the 30 unlabelled test slices as a 30-page float32 TIFF.
#
#   tools/isbi/ship_model.sh                  # all three (about 1 h on 2 cores; see the card)
#   STAGES="2 3" tools/isbi/ship_model.sh     # the final model and the submission only
#
# Settings: BIOSEG_ISBI2012 (../shared/data/isbi2012), OUT (out/isbi_ship), STAGES ("1 2 3"),
# RECIPE (the bioseg-train unet flags below). Writes OUT/validation.md, OUT/submission.tif and the
# model; prints wall times.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ISBI=${BIOSEG_ISBI2012:-$ROOT/../shared/data/isbi2012}
OUT=${OUT:-$ROOT/out/isbi_ship}
STAGES=${STAGES:-1 2 3}
# The recipe: F=16 U-Net, 256² crops of the 512² sections, batch 2, 8000 steps (16 epochs of
# 500), plain BCE, Adam 3e-4 with 100 warm-up steps and cosine decay, bioseg's augmentation
# (flips, rotations ±15°, shear, zoom, skew, elastic α 34 σ 4, brightness/contrast).
RECIPE=${RECIPE:--c membrane -F 16 -b 2 -X 256 -Y 256 --loss bce --lr 3e-4 --lr-schedule cosine --warmup-steps 100 --steps-per-epoch 500 -e 16 --seed 1 -a 20}
[[ -d $ISBI/membrane/train/image ]] || { echo "ship_model.sh: no ISBI data in $ISBI (set BIOSEG_ISBI2012)" >&2; exit 1; }
cargo build --release --locked -q -p bioseg-train -p bioseg-infer
BIN=$ROOT/target/release
mkdir -p "$OUT"
stamp() { date +%s; }

if [[ " $STAGES " == *" 1 "* ]]; then
    t0=$(stamp)
    # shellcheck disable=SC2086
    "$BIN/bioseg-train" -q unet -d "$ISBI" $RECIPE --val-names 20,21,22,23,24 -o "$OUT/recipe"
    t1=$(stamp)
    rm -rf "$OUT/val" && mkdir -p "$OUT/val/image" "$OUT/val/label"
    for n in 20 21 22 23 24; do
        cp "$ISBI/membrane/train/image/$n.png" "$OUT/val/image/"
        cp "$ISBI/membrane/train/label/$n.png" "$OUT/val/label/"
    done
    {
        echo "Recipe trained on slices 0–19 in $((t1 - t0)) s; whole slices 20–24 (\`bioseg predict\`, \`bioseg evaluate\`)."
        echo
        for tta in "" --tta; do
            "$BIN/bioseg" predict -q -m "$OUT/recipe/model.onnx" -i "$OUT/val/image" -o "$OUT/val/pred$tta.tif" \
                --output-type prob-f32 --overwrite $tta > /dev/null
            echo "### ${tta:-no TTA}"
            echo
            echo '```'
            "$BIN/bioseg" evaluate --pred "$OUT/val/pred$tta.tif" --label "$OUT/val/label" --format csv
            # The set's ISBI challenge scores (1 − best F-score over thresholds; best V_rand and
            # V_info over them) and means.
            "$BIN/bioseg" evaluate --pred "$OUT/val/pred$tta.tif" --label "$OUT/val/label" --format json \
                --best-threshold -o "$OUT/val/scores$tta.json" --overwrite 2>&1
            echo '```'
            echo
        done
    } > "$OUT/validation.md"
    cat "$OUT/validation.md"
fi

if [[ " $STAGES " == *" 2 "* ]]; then
    t0=$(stamp)
    # shellcheck disable=SC2086
    "$BIN/bioseg-train" -q unet -d "$ISBI" $RECIPE --val-fraction 0 -o "$OUT/final"
    echo "final model trained on all 25 slices in $(( $(stamp) - t0 )) s"
    cp "$OUT/final/model.onnx" models/isbi2012_membrane_unet.onnx
    "$BIN/bioseg" inspect -m models/isbi2012_membrane_unet.onnx | head -20
fi

if [[ " $STAGES " == *" 3 "* ]]; then
    "$BIN/bioseg" predict -m models/isbi2012_membrane_unet.onnx -i "$ISBI/membrane/test/image" \
        -o "$OUT/submission.tif" --output-type prob-f32 --tta --overwrite
fi

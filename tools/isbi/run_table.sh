#!/usr/bin/env bash
# The ISBI 2012 table (tools/isbi/README.md): train bioseg's U-Net and the Keras reference U-Net on
# ISBI slices 0-19 for the same number of steps, predict the held-out slices 20-24 with
# `bioseg predict`, score them with `bioseg evaluate`, and write a Markdown table into
# docs/isbi_table.md. With the Keras reference, a third model is bioseg trained for as many steps
# as fit in Keras' training time (at bioseg's median epoch's time per step): the two at equal wall time.
#
#   tools/isbi/run_table.sh                 # the full run (STEPS=2000 by default: hours on 2 cores)
#   STEPS=4 EPOCHS=2 TABLE=/tmp/t.md FRESH=1 tools/isbi/run_table.sh   # smoke test, a few minutes
#
# A row whose model is already in OUT (trained by an earlier run with the same settings: its
# OUT/<row>/key) is not trained again: a long table can be made one row at a time (KERAS=1 PLAIN=0, then PLAIN=1 ...),
# each row's commit, machine and date kept in OUT/<row>/made. Every row in OUT is predicted and
# scored again on each run, so all scores come from the current `bioseg predict`/`evaluate`.
#
# Settings (environment variables, defaults in brackets):
#   BIOSEG_ISBI2012  ISBI data in the seed layout [../shared/data/isbi2012]
#   STEPS [2000]     training steps (batches) for each model
#   EPOCHS [10]      bioseg: the steps are split into this many epochs (validation after each;
#                    falls back to 1 when it does not divide STEPS)
#   F [16] BATCH [2] SIZE [256] LR [1e-4] SEED [1]   filters, batch, crop size, Adam rate, seed
#   AUGMENT [1]      1: bioseg's default augmentation / Keras flips + 90° rotations; 0: crops only
#   KERAS [1]        0 skips the Keras reference (tools/keras/.venv must exist otherwise)
#   EQUAL_TIME [1]   with KERAS=1: also train bioseg for Keras' training time (0 skips it)
#   RECIPE []        extra bioseg-train flags of a further bioseg row, the recipe under study, e.g.
#                    "--weight-map unet --lr-schedule cosine --warmup-steps 100" (an --lr among
#                    them replaces LR for that row)
#   RECIPE_STEPS [STEPS]  its training steps
#   PLAIN [1]        0 skips the plain bioseg row (e.g. to train the recipe only)
#   OUT [out/isbi_table]  working folder (models, predictions, scores); kept between runs
#   FRESH [0]        1 deletes OUT first (every row is trained again)
#   NOTE []          a sentence for the table's "How it was made" (e.g. what else ran meanwhile)
#   TABLE [docs/isbi_table.md]  the Markdown table to write
#   CARGO_PROFILE [release]  profile the bioseg binaries are built with
#   DEVICE [cpu]     bioseg-train --device (cpu = Burn's flex backend; ndarray needs FEATURES=ndarray)
#   FEATURES []      extra cargo features of bioseg-train
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ISBI=${BIOSEG_ISBI2012:-$ROOT/../shared/data/isbi2012}
STEPS=${STEPS:-2000}
EPOCHS=${EPOCHS:-10}
F=${F:-16}
BATCH=${BATCH:-2}
SIZE=${SIZE:-256}
LR=${LR:-1e-4}
SEED=${SEED:-1}
AUGMENT=${AUGMENT:-1}
KERAS=${KERAS:-1}
RECIPE=${RECIPE:-}
RECIPE_STEPS=${RECIPE_STEPS:-$STEPS}
PLAIN=${PLAIN:-1}
EQUAL_TIME=${EQUAL_TIME:-1}
OUT=${OUT:-$ROOT/out/isbi_table}
TABLE=${TABLE:-$ROOT/docs/isbi_table.md}
CARGO_PROFILE=${CARGO_PROFILE:-release}
DEVICE=${DEVICE:-cpu}
FEATURES=${FEATURES:-}
FRESH=${FRESH:-0}
NOTE=${NOTE:-}
VAL="20 21 22 23 24"
TRAIN_NAMES=0-19

die() { echo "run_table.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
made() { echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain 2>/dev/null | grep -q . && echo '+' || true), $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"; }
# trained NAME KEY: true when OUT/NAME already holds a model trained with the settings KEY.
trained() { [[ -f $OUT/$1/model.onnx && -f $OUT/$1/key && $(cat "$OUT/$1/key") == "$2" ]]; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

[[ -d $ISBI/membrane/train/image && -d $ISBI/membrane/train/label ]] \
    || die "no ISBI data in $ISBI (set BIOSEG_ISBI2012)"
for n in $(seq 0 19) $VAL; do
    [[ -f $ISBI/membrane/train/image/$n.png && -f $ISBI/membrane/train/label/$n.png ]] \
        || die "slice $n is missing in $ISBI/membrane/train"
done
[[ $STEPS =~ ^[0-9]+$ && $STEPS -ge 1 ]] || die "STEPS must be a positive integer, not $STEPS"
[[ $EPOCHS =~ ^[0-9]+$ && $EPOCHS -ge 1 ]] || die "EPOCHS must be a positive integer, not $EPOCHS"
if (( EPOCHS > STEPS || STEPS % EPOCHS != 0 )); then EPOCHS=1; fi
SPE=$(( STEPS / EPOCHS ))
if [[ $KERAS == 1 && ! -x tools/keras/.venv/bin/python ]]; then
    die "tools/keras/.venv is missing (see tools/keras/README.md), or run with KERAS=0"
fi

echo "== building bioseg ($CARGO_PROFILE)"
cargo build --profile "$CARGO_PROFILE" -p bioseg-train -p bioseg-infer ${FEATURES:+--features "bioseg-train/$FEATURES"}
BIN=$ROOT/target/$([[ $CARGO_PROFILE == dev ]] && echo debug || echo "$CARGO_PROFILE")
TRAINER=$BIN/bioseg-train
BIOSEG=$BIN/bioseg

if [[ $FRESH == 1 ]]; then rm -rf "$OUT"; fi
rm -rf "$OUT/val"
mkdir -p "$OUT/val/image" "$OUT/val/label"
for n in $VAL; do
    ln -s "$ISBI/membrane/train/image/$n.png" "$OUT/val/image/$n.png"
    ln -s "$ISBI/membrane/train/label/$n.png" "$OUT/val/label/$n.png"
done

HAS_TTA=0
if "$BIOSEG" predict --help 2>/dev/null | grep -q -- '--tta'; then HAS_TTA=1; fi

# predict_and_score NAME MODEL [extra predict flags]: predicts the validation slices, scores them.
predict_and_score() {
    local name=$1 model=$2
    shift 2
    local pred=$OUT/$name/pred
    rm -rf "$pred"
    mkdir -p "$pred"
    local t0 t1
    t0=$(now)
    for n in $VAL; do
        "$BIOSEG" -q predict -m "$model" -i "$OUT/val/image/$n.png" -o "$pred/$n.png" --tile 512 "$@" >/dev/null
    done
    t1=$(now)
    elapsed "$t0" "$t1" > "$OUT/$name/predict_seconds"
    "$BIOSEG" evaluate --pred "$pred" --label "$OUT/val/label" --format json --best-threshold \
        -o "$OUT/$name/scores.json" --overwrite
    "$BIOSEG" evaluate --pred "$pred" --label "$OUT/val/label" --format csv -o "$OUT/$name/scores.csv" --overwrite
    # One picture of the first validation slice for the closing notes.
    "$BIOSEG" visualize --image "$OUT/val/image/20.png" --label "$OUT/val/label/20.png" \
        --pred "$pred/20.png" --errors -o "$OUT/$name/slice20.png" --overwrite >/dev/null
}

AUG_FLAG=()
[[ $AUGMENT == 1 ]] || AUG_FLAG=(--no-augment)
# score_row NAME: predicts and scores the validation slices with OUT/NAME/model.onnx, and with
# --tta into OUT/NAME_tta (which shares NAME's training records).
score_row() {
    local name=$1
    predict_and_score "$name" "$OUT/$name/model.onnx"
    if [[ $HAS_TTA == 1 ]]; then
        mkdir -p "$OUT/${name}_tta"
        cp "$OUT/$name/train_seconds" "$OUT/$name/wall_seconds" "$OUT/$name/steps" "$OUT/$name/made" "$OUT/${name}_tta/"
        predict_and_score "${name}_tta" "$OUT/$name/model.onnx" --tta
    fi
}

# train_bioseg NAME STEPS: trains bioseg's U-Net for STEPS steps (EPOCHS epochs when they divide
# it, else one) into $OUT/NAME, records its steps and times, predicts and scores.
train_bioseg() {
    local name=$1 steps=$2 epochs=$EPOCHS
    shift 2
    if (( epochs > steps || steps % epochs != 0 )); then epochs=1; fi
    local key="bioseg $steps steps, epochs $epochs, F=$F, batch $BATCH, size $SIZE, lr $LR, seed $SEED, augment $AUGMENT, device $DEVICE, flags: $*"
    if trained "$name" "$key"; then
        echo "== bioseg ($name): trained earlier ($(cat "$OUT/$name/made" 2>/dev/null)), scoring again"
        score_row "$name"
        return
    fi
    rm -rf "$OUT/$name" "$OUT/${name}_tta"
    echo "== bioseg ($name): $steps steps ($epochs epochs x $(( steps / epochs ))), F=$F, batch $BATCH, ${SIZE}x$SIZE crops"
    local t0 t1 lr=(-l "$LR")
    # A recipe with its own learning rate (--lr/-l among its flags) replaces LR.
    if [[ " $* " == *" --lr "* || " $* " == *" -l "* ]]; then lr=(); fi
    t0=$(now)
    "$TRAINER" unet -d "$ISBI" -c membrane --val-names 20,21,22,23,24 -F "$F" -b "$BATCH" \
        -X "$SIZE" -Y "$SIZE" "${lr[@]}" --loss bce -e "$epochs" --steps-per-epoch "$(( steps / epochs ))" \
        --seed "$SEED" --device "$DEVICE" "${AUG_FLAG[@]}" "$@" -o "$OUT/$name" -q
    t1=$(now)
    elapsed "$t0" "$t1" > "$OUT/$name/wall_seconds"
    echo "$steps" > "$OUT/$name/steps"
    python3 -c "import json,sys; h=json.load(open(sys.argv[1])); print(f\"{sum(e['seconds'] for e in h):.1f}\")" \
        "$OUT/$name/history.json" > "$OUT/$name/train_seconds"
    made > "$OUT/$name/made"
    echo "$key" > "$OUT/$name/key"
    score_row "$name"
}
if [[ $PLAIN == 1 ]]; then train_bioseg rust "$STEPS"; fi
# shellcheck disable=SC2086  # RECIPE is a list of flags
if [[ -n $RECIPE ]]; then train_bioseg recipe "$RECIPE_STEPS" $RECIPE; fi

KERAS_KEY="keras $STEPS steps, F=$F, batch $BATCH, size $SIZE, lr $LR, seed $SEED, augment $AUGMENT"
if [[ $KERAS == 1 ]] && trained keras "$KERAS_KEY"; then
    echo "== Keras reference: trained earlier ($(cat "$OUT/keras/made" 2>/dev/null)), scoring again"
    score_row keras
elif [[ $KERAS == 1 ]]; then
    rm -rf "$OUT/keras" "$OUT/keras_tta"
    echo "== Keras reference: $STEPS steps, F=$F, batch $BATCH, ${SIZE}x$SIZE crops"
    KAUG=(--augment)
    [[ $AUGMENT == 1 ]] || KAUG=(--no-augment)
    t0=$(now)
    tools/keras/.venv/bin/python tools/keras/train_isbi.py --data "$ISBI" -c membrane \
        --train-names "$TRAIN_NAMES" --steps "$STEPS" -F "$F" --batch "$BATCH" --size "$SIZE" \
        --lr "$LR" --seed "$SEED" "${KAUG[@]}" --out "$OUT/keras"
    t1=$(now)
    elapsed "$t0" "$t1" > "$OUT/keras/wall_seconds"
    python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['seconds']:.1f}\")" \
        "$OUT/keras/train.json" > "$OUT/keras/train_seconds"
    echo "$STEPS" > "$OUT/keras/steps"
    made > "$OUT/keras/made"
    echo "$KERAS_KEY" > "$OUT/keras/key"
    score_row keras
fi
if [[ $KERAS == 1 ]]; then
    if [[ $EQUAL_TIME == 1 && $PLAIN == 1 ]]; then
        # As many bioseg steps as fit in Keras' training time at bioseg's measured s/step,
        # rounded down to whole epochs. bioseg's s/step is its median epoch's (history.json):
        # an epoch slowed by other work on the machine does not shrink the row.
        EQ_STEPS=$(python3 -c "
import json, statistics, sys
keras, history, steps, epochs = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
per_step = statistics.median(e['seconds'] for e in json.load(open(history))) / (steps // epochs)
s = int(keras / per_step)
print(max(1, s // epochs * epochs or s))" \
            "$(cat "$OUT/keras/train_seconds")" "$OUT/rust/history.json" "$STEPS" "$EPOCHS")
        echo "== equal wall time: $EQ_STEPS bioseg steps fit in Keras' $(cat "$OUT/keras/train_seconds") s"
        train_bioseg rust_equal_time "$EQ_STEPS"
    fi
fi

echo "== writing $TABLE"
mkdir -p "$(dirname "$TABLE")"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown)
python3 - "$OUT" "$TABLE.tmp" <<PY
import json, os, sys
out, table = sys.argv[1], sys.argv[2]
rows = [("rust", "bioseg (Burn, " + ("flex CPU" if "$DEVICE" == "cpu" else "$DEVICE") + " backend)"), ("rust_tta", "bioseg + TTA (flips, 90° rotations)"),
        ("keras", "Keras reference (TensorFlow, CPU)"), ("keras_tta", "Keras reference + TTA"),
        ("rust_equal_time", "bioseg, Keras' training time"), ("rust_equal_time_tta", "bioseg, Keras' training time + TTA"),
        ("recipe", "bioseg, recipe: $RECIPE"), ("recipe_tta", "bioseg, recipe + TTA")]
def read(name, f):
    with open(os.path.join(out, name, f)) as fh:
        return fh.read()
lines = [
    "# ISBI 2012: bioseg vs the Keras reference U-Net",
    "",
    "Train on ISBI 2012 slices 0–19, score the held-out slices 20–24 (512×512 each; membrane "
    "labels, 255 = cell interior). Both models: classic U-Net (zhixuhao layout), F = $F start "
    "filters, $STEPS Adam steps (learning rate $LR) of batch $BATCH on random ${SIZE}×${SIZE} "
    "crops, binary cross-entropy, seed $SEED, augmentation " + ("on" if "$AUGMENT" == "1" else "off") + ".",
    "Predictions: \`bioseg predict --tile 512\` (whole slice); scores: \`bioseg evaluate\` "
    "(threshold 0.5; cells = 4-connected components of the predicted interior).",
    "",
    "| model | steps | training (s) | s/step | Dice interior | Dice membrane | pixel error | challenge pixel error (threshold) | V_rand | best V_rand (threshold) | V_info | best V_info (threshold) | adapted Rand error | VI (bits) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
made = []
per_slice = []
for name, label in rows:
    if not os.path.exists(os.path.join(out, name, "scores.json")):
        continue
    s = json.loads(read(name, "scores.json"))
    m = s["mean"]
    secs = float(read(name, "train_seconds"))
    steps = int(read(name, "steps"))
    c = s.get("challenge") or {}
    at = lambda v: f"{v['value']:.4f} ({v['threshold']:.1f})" if v else "—"
    challenge = at({"value": c["pixel_error"], "threshold": c["threshold"]}) if c else "—"
    lines.append(
        f"| {label} | {steps} | {secs:.0f} | {secs / steps:.3f} | {m['dice'][1]:.4f} | {m['dice'][0]:.4f} | "
        f"{m['pixel_error']:.4f} | {challenge} | {m['v_rand']:.4f} | {at(c.get('best_v_rand'))} | {m['v_info']:.4f} | "
        f"{at(c.get('best_v_info'))} | {m['adapted_rand_error']:.4f} | {m['vi_split'] + m['vi_merge']:.3f} |"
    )
    if not name.endswith("_tta") and os.path.exists(os.path.join(out, name, "made")):
        made.append(f"- {label}: {read(name, 'key').strip()}; trained at {read(name, 'made').strip()}")
    for r in s["images"]:
        per_slice.append(
            f"| {label} | {r['image']} | {r['dice'][1]:.4f} | {r['pixel_error']:.4f} | {r['v_rand']:.4f} | "
            f"{r['v_info']:.4f} | {int(r['cells_true'])} | {int(r['cells_pred'])} |"
        )
lines += [
    "",
    "The last rows (when present) are bioseg trained for as many steps as fit in the Keras "
    "reference's training time at bioseg's measured time per step (its median epoch): the two at equal wall time.",
    "",
    "Pixel error is the fraction of misclassified pixels at threshold 0.5. The challenge pixel "
    "error is the ISBI 2012 challenge's own (1 − the best F-score of the interior over the "
    "thresholds 0.0, 0.1, …, 1.0, pooled over the five slices; the organisers' Fiji code, "
    "\`bioseg evaluate\`'s \`challenge\` score): the number the leader board and the U-Net paper "
    "report, about 1.6× smaller than the misclassified fraction on these sections. V_rand and V_info "
    "are at threshold 0.5; their best values over the same thresholds (\`bioseg evaluate "
    "--best-threshold\`, the mean over the slices) follow the leader board's protocol, where the Rand "
    "scores are maxima over thresholds (bioseg's without the border thinning of its newest version): "
    "a model whose probabilities sit high or low segments far better at another threshold than 0.5.",
    "",
    "Training time is the training steps only (bioseg: the sum of the epochs' \`seconds\` in "
    "history.json, without validation; Keras: the \`train_on_batch\` loop). V_rand and V_info "
    "are the ISBI 2012 foreground-restricted scores (1 = perfect); the challenge's Rand error is "
    "1 − V_rand.",
    "",
    "Anchors (other protocols, not directly comparable): the U-Net paper on the ISBI *test* set "
    "(Ronneberger et al. 2015, with 7-rotation averaging): warping error 0.000353, Rand error "
    "0.0382, pixel error 0.0611 (the challenge's definitions, thresholds chosen on the scored set; "
    "compare it with the challenge pixel error column); NVIDIA's TF2 U-Net: mean Dice 0.890 over "
    "5 folds of the 30 slices.",
    "",
    "## Per slice",
    "",
    "| model | slice | Dice interior | pixel error | V_rand | V_info | cells (truth) | cells (pred) |",
    "|---|---|---|---|---|---|---|---|",
    *per_slice,
    "",
    "## How it was made",
    "",
    "\`\`\`sh",
    "STEPS=$STEPS EPOCHS=$EPOCHS F=$F BATCH=$BATCH SIZE=$SIZE LR=$LR SEED=$SEED AUGMENT=$AUGMENT DEVICE=$DEVICE FEATURES=$FEATURES "
    + ("RECIPE='$RECIPE' RECIPE_STEPS=$RECIPE_STEPS " if "$RECIPE" else "") + ("PLAIN=0 " if "$PLAIN" != "1" else "")
    + "tools/isbi/run_table.sh",
    "\`\`\`",
    "",
    "Table written at commit $COMMIT$DIRTY; CPU: $CPU, $(nproc) cores; $(date -u +%Y-%m-%d). "
    "Each model (trained once, then scored again by every run of the script):",
    "",
    *made,
    "",
    *(["$NOTE", ""] if "$NOTE" else []),
]
with open(table, "w") as fh:
    fh.write("\n".join(lines))
PY
mv "$TABLE.tmp" "$TABLE"
echo "done: $TABLE (working files in $OUT)"

#!/usr/bin/env bash
# One command for the inference benchmark (BENCHMARKS.md): builds bioseg (release), exports the
# benchmark U-Nets with bioseg's exporter, synthesises the inputs, and times `bioseg predict`
# against ONNX Runtime on the same ONNX files, inputs and tiles.
#
#   tools/bench/run.sh                        # everything (F=64 on the large inputs takes hours here)
#   MODELS="f16 keras" tools/bench/run.sh     # a subset; IMAGE=1024 VOLUME=8x512x512 for quick runs
#   MODELS="zoo" tools/bench/run.sh           # the exporter zoo (tools/zoo/make_zoo.py, F=16, depth 4)
#
# Environment: MODELS [f16 f64 keras zoo], IMAGE [4096], VOLUME [32x1024x1024], TILE [256], HALO [32],
# THREADS [nproc], OUT [out/bench]. Criterion micro-benchmarks: `cargo bench -p bioseg-suite`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/out/bench}
VENV=$ROOT/tools/bench/.venv
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r tools/bench/requirements.txt
fi
cargo build --release -q -p bioseg-train -p bioseg-infer
mkdir -p "$OUT"
ZOO=$OUT/zoo
if [[ ! -f $ZOO/manifest.json ]]; then
    "$VENV/bin/python" tools/zoo/make_zoo.py --filters 16 --depth 4 --out "$ZOO" --no-expected >/dev/null
fi
exec "$VENV/bin/python" tools/bench/bench.py --bin "$ROOT/target/release" --out "$OUT" \
    --models ${MODELS:-f16 f64 keras zoo} --zoo "$ZOO" --image "${IMAGE:-4096}" --volume "${VOLUME:-32x1024x1024}" \
    --tile "${TILE:-256}" --halo "${HALO:-32}" --threads "${THREADS:-$(nproc)}" \
    --keras-model "$ROOT/tests/fixtures/keras/unet_bn_transpose_keras3.onnx"

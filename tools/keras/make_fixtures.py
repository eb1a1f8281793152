#!/usr/bin/env python3
"""Regenerate the Keras -> ONNX test fixtures in tests/fixtures/keras/.

Usage (from the repo root):

    tools/keras/.venv/bin/python tools/keras/make_fixtures.py

Everything is seeded; one run rewrites every fixture, manifest.json, and
prints the max-abs-error table (Keras vs onnxruntime) that README.md quotes.
See tools/keras/README.md.
"""

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

# tf2onnx's graph rewrites iterate over sets/dicts of names, so node order and
# names in the .onnx files depend on Python's hash seed: pin it (re-exec once).
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tf2onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unet import build_unet  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "keras"
TOL = 1e-4
UNET_FILTERS = 4
TF2ONNX_OPSETS = (13, 17)

tf.config.experimental.enable_op_determinism()


def seed_all(seed):
    keras.utils.set_random_seed(seed)  # python, numpy, tf


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def smooth_images(rng, n, h, w, c):
    """Smooth-ish random images in [0, 1]: a sum of random Gaussian blobs per
    channel plus a little pixel noise, min-max normalised per image/channel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, h, w, c), dtype=np.float64)
    for i in range(n):
        for ch in range(c):
            img = np.zeros((h, w))
            for _ in range(rng.integers(4, 9)):
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                sy, sx = rng.uniform(0.05, 0.25) * h, rng.uniform(0.05, 0.25) * w
                amp = rng.uniform(-1.0, 1.0)
                img += amp * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2)
            img += 0.05 * rng.standard_normal((h, w))
            img -= img.min()
            img /= max(img.max(), 1e-8)
            out[i, :, :, ch] = img
    return out.astype(np.float32)


def seg_targets(x, classes):
    """Synthetic targets so a couple of fit steps have something to learn."""
    m = x.mean(axis=-1, keepdims=True)
    if classes == 1:
        return (m > 0.5).astype(np.float32)
    edges = np.linspace(0, 1, classes + 1)[1:-1]
    idx = np.digitize(m[..., 0], edges)
    return np.eye(classes, dtype=np.float32)[idx]


# --------------------------------------------------------------------------
# export + verification helpers
# --------------------------------------------------------------------------


def export_tf2onnx(model, path, spec_shape, opset):
    spec = (tf.TensorSpec(spec_shape, tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def serve(x):
        return model(x, training=False)

    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))


def export_keras3(model, path):
    model.export(str(path), format="onnx", verbose=False)


def onnx_io(path):
    m = onnx.load(str(path))
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))

    def shape(vi):
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                # symbolic: tf2onnx names these from a process-global counter
                # ("unk__123"), which is not stable between runs -> null.
                dims.append(None)
        return dims

    inits = {i.name for i in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    assert len(ins) == 1 and len(m.graph.output) == 1, path
    return {
        "opset": opset,
        "input_name": ins[0].name,
        "input_shape": shape(ins[0]),
        "output_name": m.graph.output[0].name,
        "output_shape": shape(m.graph.output[0]),
        "ops": sorted({n.op_type for n in m.graph.node}),
    }


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


class Collector:
    def __init__(self, out):
        self.out = out
        self.entries = []
        self.failures = []
        self.deferred = []

    def expected_file(self, model_name, onnx_path, expected):
        """Perceptrons: tests/keras_perceptron.rs reads `<onnx stem>_expected.npy`,
        so each perceptron ONNX file also gets its own (168-byte) copy of
        `<model>_expected.npy`. U-Nets share `<variant>_expected.npy` (sizes)."""
        if not model_name.startswith("perceptron"):
            return f"{model_name}_expected.npy"
        fname = f"{onnx_path.stem}_expected.npy"
        np.save(self.out / fname, expected)
        return fname

    def defer(self, **kw):
        self.deferred.append(kw)

    def run_deferred(self):
        for kw in self.deferred:
            self.export_and_check(**kw)
        self.deferred = []

    def export_and_check(self, *, model_name, model, exporter, opset, spec_shape,
                         x, expected, layout, extra=None):
        if exporter == "tf2onnx":
            fname = f"{model_name}_tf2onnx.onnx" if model_name.startswith("perceptron") \
                else f"{model_name}_tf2onnx_op{opset}.onnx"
        else:
            fname = f"{model_name}_keras3.onnx"
        path = self.out / fname
        try:
            if exporter == "tf2onnx":
                export_tf2onnx(model, path, spec_shape, opset)
            else:
                export_keras3(model, path)
            io = onnx_io(path)
            got = ort_run(path, x)
            if got.shape != expected.shape:
                raise RuntimeError(f"shape mismatch: onnxruntime {got.shape} vs keras {expected.shape}")
            err = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        except Exception as e:  # record and move on
            traceback.print_exc()
            if path.exists():
                path.unlink()
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.failures.append({"model": model_name, "exporter": exporter, "opset": opset, "error": msg})
            print(f"!! {model_name} {exporter} op{opset}: FAILED: {msg}")
            return
        dyn_dims = [i for i, d in enumerate(io["input_shape"]) if not isinstance(d, int)]
        entry = {
            "name": path.stem,
            "model": model_name,
            "onnx": fname,
            "input": f"{model_name.split('_')[0]}_input.npy" if model_name.startswith("perceptron")
            else f"{model_name}_input.npy",
            "expected": self.expected_file(model_name, path, expected),
            "layout": layout,
            "dynamic": bool(dyn_dims),
            "dynamic_dims": dyn_dims,
            "exporter": exporter,
            "opset": io["opset"],
            "input_name": io["input_name"],
            "onnx_input_shape": io["input_shape"],
            "output_name": io["output_name"],
            "onnx_output_shape": io["output_shape"],
            "onnx_ops": io["ops"],
            "test_input_shape": list(x.shape),
            "expected_shape": list(expected.shape),
            "max_abs_err": err,
            "tolerance": TOL,
        }
        if extra:
            entry.update(extra)
        self.entries.append(entry)
        flag = "ok" if err <= TOL else "TOO LARGE"
        print(f"   {fname:45s} opset {io['opset']:>2}  max|err| {err:.3e}  {flag}")


# --------------------------------------------------------------------------
# perceptron
# --------------------------------------------------------------------------


def make_perceptron(style, seed):
    seed_all(seed)
    if style == "sequential":
        model = keras.Sequential(
            [keras.Input(shape=(10,), name="input"), keras.layers.Dense(1, activation="sigmoid", name="dense")],
            name="perceptron_sequential",
        )
    else:
        inp = keras.Input(shape=(10,), name="input")
        out = keras.layers.Dense(1, activation="sigmoid", name="dense")(inp)
        model = keras.Model(inp, out, name="perceptron_functional")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["accuracy"])
    return model


def do_perceptron(col, out):
    rng = np.random.default_rng(1234)
    x_train = rng.uniform(-1, 1, size=(1000, 10)).astype(np.float32)
    y_train = (x_train.sum(axis=1) > 0).astype(np.float32)[:, None]
    x_test = rng.uniform(-1, 1, size=(10, 10)).astype(np.float32)
    y_test = (x_test.sum(axis=1) > 0).astype(np.float32)[:, None]
    np.save(out / "perceptron_input.npy", x_test)
    np.save(out / "perceptron_labels.npy", y_test)

    for style, seed in (("sequential", 101), ("functional", 102)):
        name = f"perceptron_{style}"
        model = make_perceptron(style, seed)
        hist = model.fit(x_train, y_train, epochs=5, batch_size=32, shuffle=True, verbose=0)
        expected = model(x_test, training=False).numpy().astype(np.float32)
        np.save(out / f"{name}_expected.npy", expected)
        acc = float(((expected > 0.5) == (y_test > 0.5)).mean())
        print(f"== {name}: train acc {hist.history['accuracy'][-1]:.3f}, "
              f"test acc on the 10 samples {acc:.2f}")
        common = dict(model_name=name, model=model, x=x_test, expected=expected, layout="nc",
                      extra={"labels": "perceptron_labels.npy"})
        col.export_and_check(exporter="tf2onnx", opset=13, spec_shape=[None, 10], **common)
        col.defer(exporter="keras3", opset=None, spec_shape=None, **common)


# --------------------------------------------------------------------------
# U-Nets
# --------------------------------------------------------------------------

UNET_VARIANTS = [
    # name, in_channels, classes, batchnorm+transpose, fixed size
    ("unet_dynamic", 1, 1, False, None),
    ("unet_fixed256", 1, 1, False, 256),
    ("unet_bn_transpose", 1, 1, True, None),
    ("unet_rgb3class", 3, 3, False, None),
]


def do_unet(col, out, name, in_ch, classes, bn, fixed, seed):
    seed_all(seed)
    rng = np.random.default_rng(seed)
    hw = fixed or 64
    model = build_unet(
        input_shape=(fixed, fixed, in_ch),
        filters=UNET_FILTERS,
        classes=classes,
        batchnorm=bn,
        transpose=bn,
        # a fast momentum so a few training steps move the BN moving stats far
        # from their (0, 1) init and BN really matters at inference time.
        bn_momentum=0.5,
        name=name,
    )
    loss = "binary_crossentropy" if classes == 1 else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    # A few short fit steps (on images other than the test input) so weights
    # (and BN moving statistics) are not the raw init.
    x_train = smooth_images(rng, 4, hw, hw, in_ch)
    y_train = seg_targets(x_train, classes)
    model.fit(x_train, y_train, batch_size=2, epochs=10, shuffle=False, verbose=0)

    x = smooth_images(rng, 1, hw, hw, in_ch)
    expected = model(x, training=False).numpy().astype(np.float32)
    np.save(out / f"{name}_input.npy", x)
    np.save(out / f"{name}_expected.npy", expected)
    info = f"== {name}: params {model.count_params()}, input {x.shape}, output {expected.shape}, " \
           f"out min/mean/max/std {expected.min():.4f}/{expected.mean():.4f}/{expected.max():.4f}/{expected.std():.4f}"
    print(info)
    if bn:
        bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        mm = np.concatenate([np.ravel(l.moving_mean.numpy()) for l in bns])
        mv = np.concatenate([np.ravel(l.moving_variance.numpy()) for l in bns])
        print(f"   BN layers {len(bns)}: moving_mean |.| mean {np.abs(mm).mean():.4f}, "
              f"moving_var range [{mv.min():.4f}, {mv.max():.4f}]")
        # BN must matter: the stats must be far from the identity init.
        assert np.abs(mm).mean() > 0.05 and np.abs(mv - 1).mean() > 0.05, "BN stats still trivial"
    assert expected.std() > 1e-3, f"{name}: degenerate (constant) output"

    # tf2onnx: fully fixed [1,256,256,C] for the fixed variant, else all of
    # batch/H/W symbolic. Keras 3 export uses the model's own input spec
    # (batch always symbolic).
    spec = [1, fixed, fixed, in_ch] if fixed else [None, None, None, in_ch]
    common = dict(model_name=name, model=model, x=x, expected=expected, layout="nhwc",
                  extra={"classes": classes, "in_channels": in_ch})
    for opset in TF2ONNX_OPSETS:
        col.export_and_check(exporter="tf2onnx", opset=opset, spec_shape=spec, **common)
    col.defer(exporter="keras3", opset=None, spec_shape=None, **common)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for p in list(out.glob("*.onnx")) + list(out.glob("*.npy")) + list(out.glob("manifest.json")):
        p.unlink()

    col = Collector(out)
    do_perceptron(col, out)
    for i, (name, in_ch, classes, bn, fixed) in enumerate(UNET_VARIANTS):
        do_unet(col, out, name, in_ch, classes, bn, fixed, seed=2000 + i)
    # Keras' model.export(format="onnx") monkey-patches tf2onnx process-wide
    # (keras.src.export.tf2onnx_lib.patch_tf2onnx, a numpy>=2 shim), so run
    # every Keras 3 export after all plain tf2onnx exports: those then use
    # tf2onnx exactly as released.
    col.run_deferred()
    order = [n for n, *_ in [("perceptron_sequential",), ("perceptron_functional",)] + UNET_VARIANTS]
    col.entries.sort(key=lambda e: (order.index(e["model"]), e["exporter"] != "tf2onnx", e["opset"]))

    manifest = {
        "generator": "tools/keras/make_fixtures.py",
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
        "tolerance": TOL,
        "notes": [
            "layout nhwc: input/expected are [N,H,W,C] float32 (channels-last, as Keras); "
            "layout nc: [N,features].",
            "dynamic: true when any ONNX input dim is symbolic; dynamic_dims lists their indices; "
            "symbolic dims are null in onnx_input_shape/onnx_output_shape.",
            "max_abs_err: max |onnxruntime(onnx, input) - keras(input)| at generation time.",
            "keras3 exports use Keras' default opset (tf2onnx's default).",
        ],
        "fixtures": col.entries,
        "failures": col.failures,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    print()
    print("| onnx | exporter | opset | ONNX input shape | max abs err |")
    print("|---|---|---|---|---|")
    for e in col.entries:
        shp = "[" + ", ".join("?" if d is None else str(d) for d in e["onnx_input_shape"]) + "]"
        print(f"| `{e['onnx']}` | {e['exporter']} | {e['opset']} | {shp} | {e['max_abs_err']:.2e} |")
    for f in col.failures:
        print(f"| FAILED {f['model']} | {f['exporter']} | {f['opset']} | | {f['error']} |")

    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"\ntotal size of {out}: {total} bytes ({total / 2**20:.2f} MiB)")
    bad = [e for e in col.entries if e["max_abs_err"] > TOL]
    if bad or col.failures:
        print(f"{len(bad)} over tolerance, {len(col.failures)} failed exports")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

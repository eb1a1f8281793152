#!/usr/bin/env python3
"""Train the Keras reference U-Net (tools/keras/unet.py) on ISBI 2012 slices for a fixed number of
steps and export it to ONNX, for the ISBI table (tools/isbi/run_table.sh).

Same recipe as `bioseg-train unet` in that script: random crops of --size x --size from the
training slices, batch --batch, Adam(--lr), binary cross-entropy, sigmoid output, start filters
-F, inputs divided by 255, labels 255 (cell interior) -> 1. With --augment, every crop is also
flipped and rotated by a random multiple of 90 degrees.

    tools/keras/.venv/bin/python tools/keras/train_isbi.py --data ../shared/data/isbi2012 \\
        --train-names 0-19 --steps 2000 -F 16 --out runs/isbi_keras

Writes OUT/model.onnx (tf2onnx, opset 13, NHWC input [N, H, W, 1] named `input`, symbolic
N/H/W), OUT/history.json (loss per step) and OUT/train.json (steps, seconds, settings).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import tf2onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unet import build_unet  # noqa: E402


def parse_names(text):
    """`0-19` or `0,1,2` or a mix (`0-3,7`)."""
    names = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            names.extend(str(i) for i in range(int(a), int(b) + 1))
        elif part:
            names.append(part)
    return names


def find(folder, stem):
    for ext in (".png",):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    raise SystemExit(f"error: no image named {stem} in {folder}")


def load(folder, names):
    # TensorFlow's own PNG decoder (8-bit gray; RGB is averaged), so no extra package is needed.
    out = []
    for n in names:
        img = tf.io.decode_png(tf.io.read_file(str(find(folder, n)))).numpy().astype(np.float32)
        out.append(img[..., :3].mean(axis=-1) if img.shape[-1] >= 3 else img[..., 0])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="dataset root (seed layout)")
    ap.add_argument("-c", "--object-class", default="membrane")
    ap.add_argument("--train-names", default="0-19", help="training slices (file stems), e.g. 0-19")
    ap.add_argument("--steps", type=int, required=True, help="training steps (batches)")
    ap.add_argument("-F", "--filters", type=int, default=16)
    ap.add_argument("--size", type=int, default=256, help="crop height = width")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                    help="random flips and 90-degree rotations of every crop (default: on)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.steps < 1:
        raise SystemExit("error: --steps must be at least 1")

    split = args.data / args.object_class / "train"
    names = parse_names(args.train_names)
    images = load(split / "image", names)
    labels = load(split / "label", names)
    for n, im, lb in zip(names, images, labels):
        if im.shape != lb.shape:
            raise SystemExit(f"error: image {n} is {im.shape} but its label is {lb.shape}")
        if min(im.shape) < args.size:
            raise SystemExit(f"error: image {n} ({im.shape}) is smaller than the {args.size} crop")
    images = [im / 255.0 for im in images]
    labels = [(lb > 127.5).astype(np.float32) for lb in labels]

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build_unet(input_shape=(None, None, 1), filters=args.filters, classes=1, dropout=args.dropout,
                       name=f"unet_F{args.filters}")
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss="binary_crossentropy")

    def batch():
        xs, ys = [], []
        for _ in range(args.batch):
            i = rng.integers(len(images))
            h, w = images[i].shape
            y0 = rng.integers(h - args.size + 1)
            x0 = rng.integers(w - args.size + 1)
            x = images[i][y0:y0 + args.size, x0:x0 + args.size]
            y = labels[i][y0:y0 + args.size, x0:x0 + args.size]
            if args.augment:
                k = int(rng.integers(4))
                x, y = np.rot90(x, k), np.rot90(y, k)
                if rng.integers(2):
                    x, y = x[:, ::-1], y[:, ::-1]
            xs.append(x)
            ys.append(y)
        return (np.stack(xs)[..., None].astype(np.float32), np.stack(ys)[..., None].astype(np.float32))

    losses = []
    start = time.perf_counter()
    for step in range(args.steps):
        x, y = batch()
        loss = float(model.train_on_batch(x, y))
        losses.append(loss)
        if (step + 1) % max(1, args.steps // 10) == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps}: loss {loss:.4f} ({time.perf_counter() - start:.1f} s)", flush=True)
    seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    spec = (tf.TensorSpec([None, None, None, 1], tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def serve(x):
        return model(x, training=False)

    onnx_path = args.out / "model.onnx"
    tf2onnx.convert.from_function(serve, input_signature=spec, opset=13, output_path=str(onnx_path))
    (args.out / "history.json").write_text(json.dumps({"loss": losses}) + "\n")
    (args.out / "train.json").write_text(json.dumps({
        "steps": args.steps, "seconds": seconds, "batch": args.batch, "size": args.size, "filters": args.filters,
        "lr": args.lr, "augment": args.augment, "train_names": names, "seed": args.seed,
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }, indent=2) + "\n")
    print(f"trained {args.steps} steps in {seconds:.1f} s; ONNX written to {onnx_path}")


if __name__ == "__main__":
    main()

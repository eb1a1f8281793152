#!/usr/bin/env python3
"""Time one training step of the classic U-Net in Keras 3 (TensorFlow, CPU).

Reference number for the Rust (Burn) trainer: same architecture as
tools/keras/unet.py (zhixuhao/unet layout, channels-last), input
256x256x1, batch 2, Adam(1e-4) + binary cross-entropy, sigmoid output.

    tools/keras/.venv/bin/python tools/keras/unet_step_time.py -F 16

Prints the mean (and median/min/max) seconds per training step over --steps
timed steps after --warmup untimed ones. Each step is one
`model.train_on_batch` call (forward + backward + Adam update, graph-compiled
by Keras; the first call includes tracing and is part of the warm-up).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unet import build_unet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-F", "--filters", type=int, default=16, help="start filters (original U-Net: 64)")
    ap.add_argument("--size", type=int, default=256, help="input height = width")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: TensorFlow's default, one per core)")
    args = ap.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    keras.utils.set_random_seed(args.seed)
    model = build_unet(
        input_shape=(args.size, args.size, 1),
        filters=args.filters,
        classes=1,
        dropout=args.dropout,
        name=f"unet_F{args.filters}",
    )
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss="binary_crossentropy")

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(0, 1, size=(args.batch, args.size, args.size, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)

    for _ in range(args.warmup):
        model.train_on_batch(x, y)

    times = []
    loss = None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)

    print(
        f"keras {keras.__version__} / tensorflow {tf.__version__} (backend {keras.backend.backend()}), "
        f"cpus visible {os.cpu_count()}, "
        f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
    )
    print(
        f"U-Net F={args.filters} params={model.count_params()} input {args.size}x{args.size}x1 "
        f"batch {args.batch}, Adam + BCE; {args.warmup} warm-up + {args.steps} timed steps; "
        f"jit_compile={model.jit_compile}; final loss {float(np.asarray(loss).ravel()[0]):.4f}"
    )
    print(
        f"seconds/step: mean {statistics.mean(times):.4f}  median {statistics.median(times):.4f}  "
        f"min {min(times):.4f}  max {max(times):.4f}"
    )
    print(f"mean_seconds_per_step={statistics.mean(times):.4f}")


if __name__ == "__main__":
    main()

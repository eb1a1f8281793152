"""Model.predict (Python) against `bioseg predict` (CLI) on the same image, model and tiles,
alternating, on one machine: the Python package's overhead.

    tools/python/test.sh --release      # (or maturin develop --release) into tools/python/.venv
    cargo build --release -p bioseg-infer
    tools/python/.venv/bin/python tools/python/bench.py --model models/membrane_unet_f8.onnx \
        --size 4096 --repeat 3

The CLI's time is the one it prints for the prediction (reading and writing files excluded);
Python's is the wall time of `Model.predict` on a uint8 array (its conversion to float32
included). Prints each run and the median ratio Python / CLI speed.
"""

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import bioseg


def section(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    v = (np.sin(x * 0.11) * np.cos(y * 0.07) + 1.0) * 100.0 + np.random.default_rng(0).integers(0, 40, size=(h, w))
    return np.clip(v, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--bin", default="target/release/bioseg", help="the bioseg binary [target/release/bioseg]")
    ap.add_argument("--size", type=int, default=4096, help="image side in pixels [4096]")
    ap.add_argument("--tile", type=int, default=None, help="tile core [auto]")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, alternating [3]")
    args = ap.parse_args()
    img = section(args.size, args.size)
    model = bioseg.Model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.tif"
        tifffile.imwrite(src, img)
        cmd = [args.bin, "predict", "-q", "-m", args.model, "-i", str(src), "-o", str(Path(tmp) / "out.tif"), "--overwrite"]
        if args.tile:
            cmd += ["--tile", str(args.tile)]
        model.predict(img[:512, :512], tile=args.tile)  # warm-up (plans for the window shape)
        cli, py = [], []
        for r in range(args.repeat):
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            cli.append(float(re.search(r"tiles?.*?\), ([\d.]+) s,", out).group(1)))
            t = time.perf_counter()
            model.predict(img, tile=args.tile)
            py.append(time.perf_counter() - t)
            print(f"run {r + 1}: CLI {cli[-1]:.2f} s, Python {py[-1]:.2f} s")
    mp = args.size * args.size / 1e6
    c, p = statistics.median(cli), statistics.median(py)
    print(
        f"{args.size}x{args.size}, {Path(args.model).name}: CLI {mp / c:.3f} megapixels/s, "
        f"Python {mp / p:.3f} megapixels/s, Python/CLI speed {c / p:.3f} (median of {args.repeat})"
    )


if __name__ == "__main__":
    main()

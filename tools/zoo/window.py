"""One window of every zoo model, one thread: bioseg (`bioseg run --repeat --profile`) vs ONNX
Runtime, and the share of the window's time taken by the slowest op kind that is not a
convolution (issue 16: none above 5 %).

    tools/bench/.venv/bin/python tools/zoo/make_zoo.py --filters 16 --depth 4 --out out/zoo --no-expected
    tools/bench/.venv/bin/python tools/zoo/window.py --bin target/release --zoo out/zoo [--size 544]

Prints a Markdown table (ms per window, ratio ORT / bioseg in speed, top non-convolution op).
"""

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]


def bioseg_profile(bin_dir, model, x_path, repeat):
    # One thread, as ONNX Runtime below (bioseg's direct convolutions and transposed
    # convolutions split a tile's rows over rayon's threads).
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run([bin_dir / "bioseg", "run", "-m", model, "-i", x_path, "--repeat", str(repeat), "--profile"],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return None, [], out.stderr.strip().splitlines()[-1]
    text = out.stdout + out.stderr
    best = float(re.search(r"best ([0-9.]+) ms", text).group(1))
    ops = [(m.group(1).strip(), float(m.group(2)))
           for m in re.finditer(r"^\| ([^|]+) \| \d+ \| ([0-9.]+) \| [0-9.]+ % \|$", text, re.M)]
    return best, ops, ""


def ort_best(model, x, repeat):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=ROOT / "target/release")
    ap.add_argument("--zoo", type=Path, default=ROOT / "out/zoo")
    ap.add_argument("--size", type=int, default=544, help="window height and width (default 544)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", nargs="*", help="names to run (default: all in the manifest)")
    a = ap.parse_args()
    manifest = json.loads((a.zoo / "manifest.json").read_text())
    rows = ["| model | bioseg ms | ORT ms | bioseg / ORT (speed) | slowest non-conv op (share) |",
            "|---|---|---|---|---|"]
    for e in manifest["fixtures"]:
        if a.models and e["name"] not in a.models:
            continue
        x = np.random.default_rng(0).uniform(0, 1, (1, e["in_channels"], a.size, a.size)).astype(np.float32)
        x_path = a.zoo / f"window_{e['in_channels']}_{a.size}.npy"
        np.save(x_path, x)
        model = a.zoo / e["onnx"]
        ours, ops, err = bioseg_profile(a.bin, model, x_path, a.repeat)
        theirs = ort_best(model, x, a.repeat)
        if ours is None:
            rows.append(f"| {e['name']} | fails: {err} | {theirs:.1f} | - | - |")
        else:
            total = sum(ms for _, ms in ops) or 1.0
            other = [(op, ms) for op, ms in ops if "Conv" not in op]
            top = max(other, key=lambda o: o[1], default=("-", 0.0))
            rows.append(f"| {e['name']} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f} | "
                        f"{top[0]} ({100 * top[1] / total:.0f} %) |")
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

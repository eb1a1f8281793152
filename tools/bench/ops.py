"""Op by op: where tract loses to ONNX Runtime on the U-Net's layers (BENCHMARKS.md).

Builds one-op ONNX models of the U-Net's hot layers at the sizes a 256-pixel tile (+ halo) sees,
and times each, one thread, plan built once: tract through `bioseg run --repeat N`, ONNX Runtime
with intra_op_num_threads = 1. Prints a Markdown table with ms per run, GFLOP/s for the
convolutions, and the ratio tract / ORT (time).

    tools/bench/.venv/bin/python tools/bench/ops.py --bin target/release --out out/bench/ops
"""

import argparse
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def model(path, node, inputs, out_shape, inits=()):
    g = helper.make_graph(
        [node],
        "op",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=list(inits),
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def conv(path, cin, cout, k, size):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (cout, cin, k, k)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    pads = [k // 2] * 4 if k % 2 else [0, 0, k - 1, k - 1]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], pads=pads)
    model(path, node, [("x", [1, cin, size, size])], [1, cout, size, size], [w, b])
    return 2.0 * cin * cout * k * k * size * size


def cases(out):
    c = []
    for cin, cout, size in [(16, 16, 320), (64, 64, 160), (64, 64, 320), (128, 128, 80)]:
        p = out / f"conv3x3_{cin}_{cout}_{size}.onnx"
        flops = conv(p, cin, cout, 3, size)
        c.append((f"Conv 3×3 {cin}→{cout} @ {size}²", p, [1, cin, size, size], flops))
    p = out / "conv2x2_32_16_320.onnx"
    c.append(("Conv 2×2 32→16 @ 320² (up-conv)", p, [1, 32, 320, 320], conv(p, 32, 16, 2, 320)))
    p = out / "maxpool_64_320.onnx"
    model(p, helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
          [("x", [1, 64, 320, 320])], [1, 64, 160, 160])
    c.append(("MaxPool 2×2, 64 ch @ 320²", p, [1, 64, 320, 320], 0))
    p = out / "resize_64_160.onnx"
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    model(p, helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
          [("x", [1, 64, 160, 160])], [1, 64, 320, 320], [roi, scales])
    c.append(("Resize nearest ×2, 64 ch → 320²", p, [1, 64, 160, 160], 0))
    p = out / "concat_64_320.onnx"
    model(p, helper.make_node("Concat", ["x", "x"], ["y"], axis=1), [("x", [1, 64, 320, 320])],
          [1, 128, 320, 320])
    c.append(("Concat 64+64 ch @ 320²", p, [1, 64, 320, 320], 0))
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--unet", type=Path, nargs="*", default=[], help="whole models, input [1,1,320,320]")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    todo = cases(a.out) + [(f"whole {p.stem} @ 320²", p, [1, 1, 320, 320], 0) for p in a.unet]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    rows = []
    for name, path, shape, flops in todo:
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        xp = a.out / (path.stem + "_x.npy")
        np.save(xp, x)
        r = subprocess.run([str(a.bin / "bioseg"), "-q", "run", "-m", str(path), "-i", str(xp), "--repeat",
                            str(a.repeat)], capture_output=True, text=True)
        m = re.search(r"best ([0-9.]+) ms", r.stdout)
        if not m:
            raise SystemExit(f"bioseg run failed on {path}:\n{r.stdout}\n{r.stderr}")
        tract_ms = float(m.group(1))
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        sess.run(None, {iname: x})
        best = float("inf")
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            sess.run(None, {iname: x})
            best = min(best, (time.perf_counter() - t0) * 1e3)
        gf = lambda ms: f"{flops / ms / 1e6:.1f}" if flops else "-"
        rows.append(f"| {name} | {tract_ms:.2f} | {gf(tract_ms)} | {best:.2f} | {gf(best)} | {tract_ms / best:.2f} |")
        print(rows[-1], flush=True)
    table = ["| op (1 thread) | tract ms | tract GFLOP/s | ORT ms | ORT GFLOP/s | tract / ORT time |",
             "|---|---|---|---|---|---|", *rows]
    (a.out / "ops.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()

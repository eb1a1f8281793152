"""bioseg predict vs ONNX Runtime: the same ONNX files, the same inputs, the same tiles.

Called by tools/bench/run.sh (see there and BENCHMARKS.md). For each model and input, runs
`bioseg predict` (tiles in parallel over THREADS rayon workers, one tract run per tile) and an
ONNX Runtime loop over the same tiles (one session, intra-op threads = THREADS), prints
megapixels/s and the ratio bioseg / ONNX Runtime, and checks that both give the same
probabilities (max |difference| of the 8-bit outputs). Writes OUT/results.md.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def export_unet(bin_dir, out, filters):
    """An untrained depth-4 U-Net with `filters` start filters, exported by bioseg-train."""
    model = out / f"unet_f{filters}.onnx"
    if model.exists():
        return model
    data = out / "tiny_data"
    if not data.exists():
        run([bin_dir / "bioseg-train", "-q", "synth", "-o", data, "--train", "2", "--test", "0", "--size", "64"])
    run([bin_dir / "bioseg-train", "-q", "unet", "-d", data, "-o", out / f"run_f{filters}", "-e", "0",
         "-F", filters, "-X", "64", "-Y", "64", "--onnx", model])
    return model


def synth_plane(rng, h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    v = 128 + 50 * np.sin(x / 23.0 + rng.uniform(0, 6)) * np.cos(y / 31.0 + rng.uniform(0, 6))
    v += 30 * np.sin((x + y) / 7.0) + rng.normal(0, 12, (h, w))
    return np.clip(v, 0, 255).astype(np.uint8)


def synth_image(path, h, w, seed, channels=1):
    """An EM-like 8-bit image: smooth blobs and membranes plus noise; gray, or RGB for
    three-channel models (each channel its own pattern)."""
    rng = np.random.default_rng(seed)
    planes = [synth_plane(rng, h, w) for _ in range(channels)]
    Image.fromarray(planes[0] if channels == 1 else np.stack(planes, axis=-1)).save(path)


def starts(size, core, multiple):
    """bioseg's tile starts along one axis (tiling.rs, AxisPlan::new with no overlap)."""
    core = min(core, -(-size // multiple) * multiple)
    s, out = 0, []
    while True:
        if s + core >= size:
            out.append(min(s, -(-max(size - core, 0) // multiple) * multiple))
            break
        out.append(s)
        s += core
    return sorted(set(out)), core


class OrtTiler:
    """ONNX Runtime over bioseg's tiles: mirror only at the image borders, halo from the data."""

    def __init__(self, model, threads, tile, halo, multiple=16):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        i = self.sess.get_inputs()[0]
        self.name = i.name
        self.nhwc = isinstance(i.shape[-1], int) and i.shape[-1] in (1, 3)
        self.channels = i.shape[-1] if self.nhwc else i.shape[1]
        o = self.sess.get_outputs()[0].shape
        self.classes = o[-1] if self.nhwc else o[1]
        self.tile, self.halo, self.multiple = tile, -(-halo // multiple) * multiple, multiple

    def predict(self, img):
        """Probabilities of the first class channel, [H, W] float32, for a [H, W] (gray) or
        [H, W, C] (RGB) image in [0, 255]."""
        img = img if img.ndim == 3 else img[:, :, None]
        h, w = img.shape[:2]
        ys, cy = starts(h, self.tile, self.multiple)
        xs, cx = starts(w, self.tile, self.multiple)
        p = self.halo
        pad = np.pad(img.astype(np.float32) / 255.0, ((p, p + cy), (p, p + cx), (0, 0)), mode="reflect")
        out = np.zeros((h, w), np.float32)
        for y0 in ys:
            for x0 in xs:
                win = pad[y0:y0 + cy + 2 * p, x0:x0 + cx + 2 * p]
                t = win[None] if self.nhwc else np.ascontiguousarray(win.transpose(2, 0, 1)[None])
                r = self.sess.run(None, {self.name: t})[0]
                r = r[0, :, :, 0] if self.nhwc else r[0, 0]
                core = r[p:p + cy, p:p + cx]
                y1, x1 = min(y0 + cy, h), min(x0 + cx, w)
                out[y0:y1, x0:x1] = core[: y1 - y0, : x1 - x0]
        return out


def bioseg_predict(bin_dir, model, inp, out, tile, halo, threads):
    stdout = run([bin_dir / "bioseg", "-q", "predict", "-m", model, "-i", inp, "-o", out, "--tile", tile,
                  "--halo", halo, "--threads", threads, "--overwrite"])
    m = re.search(r"([0-9.]+) megapixels/s", stdout)
    if not m:
        raise SystemExit(f"no megapixels/s in bioseg's output:\n{stdout}")
    return float(m.group(1))


def expand_zoo(names, zoo):
    """`zoo` stands for every model of the zoo's manifest (gray and RGB inputs)."""
    out = []
    for name in names:
        if name == "zoo":
            if zoo is None:
                raise SystemExit("model `zoo` needs --zoo DIR")
            manifest = json.loads((zoo / "manifest.json").read_text())
            out += [f"zoo:{e['name']}" for e in manifest["fixtures"]]
        else:
            out.append(name)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["f16", "f64", "keras"])
    ap.add_argument("--keras-model", type=Path, required=True)
    ap.add_argument("--zoo", type=Path, help="the exporter zoo's folder (tools/zoo/make_zoo.py); model names "
                    "`zoo` (every model in it) or `zoo:NAME`")
    ap.add_argument("--image", type=int, default=4096)
    ap.add_argument("--volume", default="32x1024x1024")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--halo", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    def inputs(channels):
        """The image and the volume (a folder of slices) for models of `channels` input channels."""
        tag = "" if channels == 1 else f"_c{channels}"
        image = a.out / f"image_{a.image}{tag}.png"
        if not image.exists():
            synth_image(image, a.image, a.image, 1, channels)
        vz, vy, vx = (int(v) for v in a.volume.split("x"))
        volume = a.out / f"volume_{a.volume}{tag}"
        if not volume.exists():
            volume.mkdir()
            for z in range(vz):
                synth_image(volume / f"{z:05}.png", vy, vx, 100 + z, channels)
        return image, volume

    rows = []
    for name in expand_zoo(a.models, a.zoo):
        if name.startswith("zoo:"):
            model = a.zoo / f"{name[4:]}.onnx"
        else:
            model = a.keras_model if name == "keras" else export_unet(a.bin, a.out, int(name[1:]))
        tiler = OrtTiler(model, a.threads, a.tile, a.halo)
        image, volume = inputs(tiler.channels)
        for kind, inp in (("image", image), ("volume", volume)):
            tag = name.replace(":", "_")
            out = a.out / f"pred_{tag}_{kind}" / ("p.png" if kind == "image" else "")
            out.parent.mkdir(parents=True, exist_ok=True)
            target = out if kind == "image" else a.out / f"pred_{tag}_{kind}.zarr"
            bioseg_mps = bioseg_predict(a.bin, model, inp, target, a.tile, a.halo, a.threads)
            slices = [inp] if kind == "image" else sorted(inp.glob("*.png"))
            t0 = time.perf_counter()
            probs = [tiler.predict(np.asarray(Image.open(s))) for s in slices]
            dt = time.perf_counter() - t0
            pixels = sum(p.size for p in probs)
            ort_mps = pixels / 1e6 / dt
            agree = ""
            if kind == "image":
                # Several classes: one PNG per class (STEM_classN.png); compare the first.
                first = target if tiler.classes == 1 else target.with_name(f"{target.stem}_class0.png")
                mine = np.asarray(Image.open(first)).astype(np.int32)
                theirs = np.round(probs[0] * 255).astype(np.int32)
                agree = str(int(np.abs(mine - theirs).max()))
            rows.append((name, kind, bioseg_mps, ort_mps, bioseg_mps / ort_mps, agree))
            print(f"{name:36} {kind:6} bioseg {bioseg_mps:8.3f} MP/s  onnxruntime {ort_mps:8.3f} MP/s  "
                  f"ratio {bioseg_mps / ort_mps:5.2f}  max |8-bit diff| {agree or '-'}", flush=True)

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} logical cores; threads {a.threads}; tile {a.tile}, halo {a.halo}; "
        f"image {a.image}x{a.image}, volume {a.volume} (slice by slice); onnxruntime {ort.__version__}.",
        "",
        "| model | input | bioseg MP/s | ONNX Runtime MP/s | bioseg / ORT | max 8-bit diff |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {k} | {b:.3f} | {o:.3f} | {r:.2f} | {d or '-'} |" for m, k, b, o, r, d in rows]
    (a.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

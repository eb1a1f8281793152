"""Write BioImage Model Zoo packages with the zoo's own tooling, as Rust test fixtures.

    python3 -m venv tools/bioimageio/.venv
    tools/bioimageio/.venv/bin/pip install -r tools/bioimageio/requirements.txt
    tools/bioimageio/.venv/bin/python tools/bioimageio/make_fixtures.py

For two of the exporter zoo's small U-Nets (tests/fixtures/zoo: a PyTorch-style 1-channel model
ending in a sigmoid, and a 3-channel, 3-class one ending in a softmax) this builds a model
description (format 0.5) with `bioimageio.spec`, computes the expected test output with NumPy
(the spec's preprocessing) and ONNX Runtime, packs the package with
`bioimageio.spec.save_bioimageio_package` (the spec library writes rdf.yaml, the sha256 values
and the zip), and checks it with `bioimageio.core.test_model` (which recomputes the output with
its own preprocessing). The packages land in
tests/fixtures/bioimageio/; `tests/bioimageio.rs` runs them through bioseg without Python.

The two exercise the preprocessing steps bioseg maps to its normalisations (`scale_range` with
percentiles; `zero_mean_unit_variance`) and a model without postprocessing.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from bioimageio.core import test_model
from bioimageio.spec import build_description, save_bioimageio_package

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "tests" / "fixtures" / "zoo"
OUT = ROOT / "tests" / "fixtures" / "bioimageio"

FIXTURES = [
    {
        "name": "zoo-nearest-op11",
        "onnx": "torch_nearest_scales_op11.onnx",
        # The receptive field's radius (65 px, `bioseg inspect`) rounded up to the size step.
        "halo": 72,
        "channels": ["raw"],
        "classes": ["foreground"],
        "preprocessing": [
            {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.8}},
        ],
        # The spec's scale_range over y, x (one channel).
        "normalize": lambda x: (x - np.percentile(x, 1.0)) / (np.percentile(x, 99.8) - np.percentile(x, 1.0) + 1e-6),
    },
    {
        "name": "zoo-rgb-3class-op17",
        "onnx": "torch_rgb3class_softmax_op17.onnx",
        "halo": 64,
        "channels": ["red", "green", "blue"],
        "classes": ["background", "membrane", "organelle"],
        "preprocessing": [
            {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", "y", "x"]}},
        ],
        # The spec's zero_mean_unit_variance over all axes but batch.
        "normalize": lambda x: (x - x.mean()) / (x.std() + 1e-6),
    },
]


def test_image(channels: int, side: int = 160) -> np.ndarray:
    """An 8-bit-range image [1, C, side, side] with structure at several scales (seeded)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    planes = []
    for c in range(channels):
        p = 100 + 60 * np.sin(x * (0.21 + 0.05 * c)) * np.cos(y * 0.17) + 20 * rng.standard_normal((side, side))
        planes.append(np.clip(p, 0, 255))
    return np.stack(planes)[None].astype(np.float32)


def description(f: dict, work: Path, test_input: Path, test_output: Path) -> dict:
    # The smallest input the halo allows: a multiple of the step above twice the halo.
    space_in = lambda a: {"type": "space", "id": a, "size": {"min": 2 * f["halo"] + 8, "step": 8}}
    space_out = lambda a: {"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}, "halo": f["halo"]}
    (work / "README.md").write_text(f"# {f['name']}\n\nA test fixture for bioseg.\n\n# Validation\n\nTest tensors only.\n")
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": f["name"],
        "description": "A small U-Net from bioseg's exporter zoo, packed by bioimageio.spec as a test fixture",
        "authors": [{"name": "bioseg developers"}],
        "cite": [{"text": "Ronneberger et al. U-Net. MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"}],
        "license": "MIT",
        "documentation": str(work / "README.md"),
        "tags": ["segmentation", "test-fixture"],
        "inputs": [{
            "id": "raw",
            "axes": [{"type": "batch", "size": 1}, {"type": "channel", "channel_names": f["channels"]},
                     space_in("y"), space_in("x")],
            "test_tensor": {"source": str(test_input)},
            "data": {"type": "float32"},
            "preprocessing": f["preprocessing"],
        }],
        "outputs": [{
            "id": "prob",
            "axes": [{"type": "batch", "size": 1}, {"type": "channel", "channel_names": f["classes"]},
                     space_out("y"), space_out("x")],
            "test_tensor": {"source": str(test_output)},
            "data": {"type": "float32"},
        }],
        "weights": {"onnx": {"source": str(ZOO / f["onnx"]), "opset_version": 17}},
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for f in FIXTURES:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            x = test_image(len(f["channels"]))
            np.save(work / "test_input.npy", x)
            session = ort.InferenceSession(str(ZOO / f["onnx"]), providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: f["normalize"](x.astype(np.float64)).astype(np.float32)}
            np.save(work / "test_output.npy", session.run(None, feed)[0].astype(np.float32))
            descr = build_description(description(f, work, work / "test_input.npy", work / "test_output.npy"))
            if descr.validation_summary.status not in ("passed", "valid-format"):
                print(descr.validation_summary.format(), file=sys.stderr)
                return 1
            out = OUT / f"{f['name']}.zip"
            save_bioimageio_package(descr, output_path=out)
            summary = test_model(out)
            print(f"{out.relative_to(ROOT)}: {summary.status} ({out.stat().st_size} bytes)")
            if summary.status != "passed":
                summary.display()
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures of the bioseg Python package's tests (run by tools/python/test.sh)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
#: bioseg's own model, trained by the demo (F=8 U-Net, divide:255, sigmoid, halo 144).
BIOSEG_MODEL = ROOT / "models" / "membrane_unet_f8.onnx"


def manifest(kind: str) -> list[dict]:
    """The U-Net fixtures of tests/fixtures/<kind>/manifest.json, with absolute paths."""
    folder = FIXTURES / kind
    entries = json.loads((folder / "manifest.json").read_text())["fixtures"]
    out = []
    for e in entries:
        if "unet" not in e["name"] and kind == "keras":
            continue
        e = dict(e)
        for key in ("onnx", "input", "expected"):
            e[key] = folder / e[key]
        out.append(e)
    return out


@pytest.fixture(scope="session")
def bioseg_cli() -> Path:
    """The `bioseg` binary (BIOSEG_BIN, else target/release or target/debug)."""
    candidates = [os.environ.get("BIOSEG_BIN")] + [str(ROOT / "target" / p / "bioseg") for p in ("release", "debug")]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    found = shutil.which("bioseg")
    if found:
        return Path(found)
    pytest.skip("no bioseg binary: run `cargo build -p bioseg-infer` (or set BIOSEG_BIN)")


def section(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An 8-bit image with structure at all scales (cells and membranes of sorts)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    v = (np.sin(x * 0.11) * np.cos(y * 0.07) + 1.0) * 100.0 + rng.integers(0, 40, size=(h, w))
    return np.clip(v, 0, 255).astype(np.uint8)

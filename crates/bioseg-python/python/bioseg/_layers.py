"""The napari plugin's work without napari: a model's prediction of a layer's data as napari
layer-data tuples, and bioseg's prediction files read back as layers. ``_napari`` wraps these in
a widget and a reader; tests call them directly."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ._api import Model

#: A napari layer-data tuple: (data, layer keyword arguments, layer type).
LayerData = tuple[Any, dict, str]


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float) -> Model:
    return Model(path)


def load_model(path: Any) -> Model:
    """The model at ``path``, loaded once while the file is unchanged."""
    p = Path(path)
    if not p.exists():
        return Model(p)  # raises bioseg.FileNotFound with the CLI's message
    return _cached(str(p.resolve()), p.stat().st_mtime)


def segment(
    data: Any,
    model_path: Any,
    *,
    rgb: bool = False,
    name: str = "image",
    tile: Optional[int] = None,
    tta: bool = False,
    output: str = "prob",
    threshold: float = 0.5,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> list[LayerData]:
    """Predicts an image layer's data (``rgb``: its last axis holds the colours) and returns
    the layers to add: one probability image per class (magma, additive, 0–1), or a labels
    layer for ``output="labels"``."""
    model = load_model(model_path)
    array = np.asarray(data)
    if rgb:
        axes = "yxc" if array.ndim == 3 else "zyxc"
        if array.shape[-1] != model.info["channels"]:
            # An RGB(A) layer and a one-channel model: the model sees the mean of the colours,
            # in the layer's dtype (so that it is normalised as the layer would be).
            grey = array[..., :3].mean(axis=-1, dtype=np.float32)
            array = np.rint(grey).astype(array.dtype) if array.dtype.kind in "iu" else grey
            axes = None
    else:
        axes = None
    axes = axes or model.axes_of(array.shape)
    result = model.predict(array, axes=axes, tile=tile, tta=tta, output=output, threshold=threshold, progress=progress)
    label = f"{name} · {model.path.stem}"
    if output == "labels":
        return [(result, {"name": f"{label} labels"}, "labels")]
    spatial = len(axes.replace("c", ""))
    style = {"colormap": "magma", "contrast_limits": (0.0, 1.0), "blending": "additive"}
    if result.ndim > spatial:
        classes = model.info["classes"] or [f"class {k}" for k in range(result.shape[0])]
        names = [f"{label} {c}" for c in classes[: result.shape[0]]]
        return [(result, {"name": names, "channel_axis": 0, **style}, "image")]
    return [(result, {"name": label, **style}, "image")]


def read_prediction(path: Any) -> Optional[list[LayerData]]:
    """bioseg's prediction at ``path`` as layers, or None if it is not one this reader handles:
    an OME-Zarr store written by ``bioseg predict`` (a layer per class, named after the model's
    classes; labels and masks as a labels layer) or an ImageJ hyperstack TIFF of several classes
    (a layer per class). Single-channel TIFFs are left to napari's own reader."""
    p = Path(path)
    if p.suffix.lower() == ".zarr" and p.is_dir():
        return _read_zarr(p)
    if p.suffix.lower() in (".tif", ".tiff") and p.is_file():
        return _read_tiff(p)
    return None


def _read_zarr(p: Path) -> Optional[list[LayerData]]:
    import zarr

    group = zarr.open_group(str(p), mode="r")
    ome = group.attrs.get("ome")
    if not ome or "multiscales" not in ome:
        return None
    ms = ome["multiscales"][0]
    axes = [a["name"] for a in ms["axes"]]
    array = group[ms["datasets"][0]["path"]]
    options = dict(group.attrs.get("bioseg", {})).get("options", {})
    kind = options.get("output_type", "")
    if kind in ("labels", "mask"):
        return [(array, {"name": f"{p.stem} {kind}"}, "labels")]
    limits = (0.0, 255.0) if array.dtype == np.uint8 else (0.0, 1.0)
    style = {"colormap": "magma", "contrast_limits": limits, "blending": "additive"}
    if "c" in axes:
        labels = [c.get("label", f"class {k}") for k, c in enumerate(ome.get("omero", {}).get("channels", []))]
        labels += [f"class {k}" for k in range(len(labels), array.shape[axes.index("c")])]
        names = [f"{p.stem} {label}" for label in labels]
        return [(array, {"name": names, "channel_axis": axes.index("c"), **style}, "image")]
    return [(array, {"name": p.stem, **style}, "image")]


def _read_tiff(p: Path) -> Optional[list[LayerData]]:
    import tifffile

    with tifffile.TiffFile(str(p)) as tif:
        meta = tif.imagej_metadata or {}
        if int(meta.get("channels", 1)) < 2:
            return None
        series = tif.series[0]
        axes = series.axes
        data = series.asarray()
    if "C" not in axes:
        return None
    labels = meta.get("Labels")
    channels = data.shape[axes.index("C")]
    if not isinstance(labels, list) or len(labels) < channels:
        labels = [f"class {k}" for k in range(channels)]
    limits = (0.0, 255.0) if data.dtype == np.uint8 else (0.0, 1.0)
    names = [f"{p.stem} {label}" for label in labels[:channels]]
    style = {"colormap": "magma", "contrast_limits": limits, "blending": "additive"}
    return [(data, {"name": names, "channel_axis": axes.index("C"), **style}, "image")]

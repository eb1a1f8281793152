"""The public API: argument checking and conversion around the extension module ``_bioseg``
(which does the work with the GIL released)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _bioseg
from ._errors import InputError

PathLike = Union[str, "os.PathLike[str]"]
#: ``progress=``: ``None``/``False`` (silent), ``True`` (a tqdm bar when tqdm is installed, else
#: a line on stderr) or a callable ``progress(done, total)`` called from the calling thread.
Progress = Union[None, bool, Callable[[int, int], Any]]


def _max_value(dtype: np.dtype) -> float:
    """The value that means "full scale" for a dtype, as for image files: 255 for uint8, 65535
    for uint16, else 1 (float data and other integers are taken as they are)."""
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def _float32(array: Any, what: str) -> tuple[np.ndarray, np.dtype]:
    """``array`` as float32 (no copy when it already is) and its original dtype."""
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{what} has dtype {a.dtype}; expected numbers (bool, integers or floats)")
    if a.size == 0:
        raise InputError(f"{what} is empty (shape {a.shape})")
    return a.astype(np.float32, copy=False), a.dtype


class _Bar:
    """A progress callback for ``progress=True``: tqdm when installed, else a line on stderr."""

    def __init__(self, unit: str):
        self.unit = unit
        self.bar = None
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            if self.bar is None:
                self.bar = tqdm(total=total, unit=self.unit, desc="bioseg")
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        elif done != self.last:
            self.last = done
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\rbioseg: {done}/{total} {self.unit}{end}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(progress: Progress, unit: str) -> tuple[Optional[Callable[[int, int], Any]], Callable[[], None]]:
    """The callback to hand to the engine and what to call when done."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        bar = _Bar(unit)
        return bar, bar.close
    if callable(progress):
        return progress, lambda: None
    raise InputError(f"progress must be None, a bool or a callable (done, total), not {type(progress).__name__}")


class Model:
    """A segmentation model: an ONNX file (bioseg's, Keras', PyTorch's, any exporter's) or a
    BioImage Model Zoo package (``.zip``, its ``rdf.yaml`` or its folder). Loaded once; predict
    as often as needed, also from several threads."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._model = _bioseg.Model(os.fspath(path))
        self._info: Optional[dict] = None

    def __repr__(self) -> str:
        i = self.info
        classes = f", classes={i['classes']}" if i["classes"] else ""
        kind = "volumetric" if i["volumetric"] else "2-D"
        return f"bioseg.Model({str(self.path)!r}: {kind}, {i['channels']} channel(s), layout {i['layout']}{classes})"

    @property
    def info(self) -> dict:
        """What the model takes and gives: ``layout`` (nchw/nhwc), ``volumetric``,
        ``channels``, ``fixed_size`` ([h, w] or None), ``size_multiple``,
        ``recommended_halo`` (from the metadata or the graph, or None), ``halo`` (the one used
        by default), ``classes`` (names), ``activation``, ``normalization``, ``input``,
        ``outputs``, ``package`` and ``metadata`` (the ONNX file's bioseg metadata)."""
        if self._info is None:
            self._info = json.loads(self._model.info_json())
        return self._info

    def axes_of(self, shape: tuple[int, ...]) -> str:
        """The axes ``predict`` assumes for an array of ``shape`` when none are given: ``yx``;
        for several channels ``cyx`` or ``yxc`` (whichever has the model's channel count; the
        model's layout decides a tie); a 3-D array for a one-channel model is a stack ``zyx``
        (slice by slice through a 2-D model, 3-D tiles through a volumetric one); 4-D arrays are
        ``zyxc`` or ``czyx``."""
        i = self.info
        c = i["channels"]
        if len(shape) == 2:
            if c != 1:
                raise InputError(f"a (y, x) array has one channel but the model expects {c}")
            return "yx"
        if len(shape) == 3:
            if c == 1:
                return "zyx"
            last, first = shape[-1] == c, shape[0] == c
            if last and (not first or i["layout"] == "nhwc"):
                return "yxc"
            if first:
                return "cyx"
            raise InputError(f"array of shape {shape}: the model expects {c} channels, as (c, y, x) or (y, x, c)")
        if len(shape) == 4:
            if shape[-1] == c:
                return "zyxc"
            if shape[0] == c:
                return "czyx"
            raise InputError(f"array of shape {shape}: the model expects {c} channels, as (z, y, x, c) or (c, z, y, x)")
        raise InputError(f"array of shape {shape}: expected 2 to 4 axes ((y, x), channels, z)")

    def predict(
        self,
        array: Any,
        *,
        axes: Optional[str] = None,
        tile: Optional[int] = None,
        halo: Optional[int] = None,
        blend: str = "crop",
        tta: bool = False,
        threads: Optional[int] = None,
        output: str = "prob",
        threshold: float = 0.5,
        normalize: Optional[str] = None,
        progress: Progress = None,
        tile_z: Optional[int] = None,
        overlap: int = 0,
        batch: int = 1,
        parallel: Optional[str] = None,
    ) -> np.ndarray:
        """Predicts an image or a volume held in memory.

        ``array``: any numeric dtype, normalised as the model's metadata says (else uint8 and
        uint16 are divided by 255 and 65535, as for image files); axes as ``axes_of`` says, or
        given: ``yx``, ``cyx``, ``yxc``, ``zyx``, ``zyxc``, ``czyx``.

        ``tile`` (None: chosen for the image), ``halo`` (None: the model's), ``blend``
        (``crop`` or ``gaussian``), ``tta`` (average of the 8 flips and rotations), ``threads``
        (None: all cores), ``normalize`` (override: ``none``, ``divide:D``, ``zscore``,
        ``zscore:MEAN:STD``, ``percentile:LOW:HIGH``), ``tile_z``, ``overlap``, ``batch`` and
        ``parallel`` (``tiles`` or ``layers``) are ``bioseg predict``'s options.

        Returns float32 probabilities (``output="prob"``): the input's ``(y, x)`` or
        ``(z, y, x)`` for one-channel models, with a leading class axis for several classes;
        or ``output="labels"``: uint8 classes (argmax, or ``p > threshold`` for one channel).
        """
        # Every keyword but the array's and the progress' goes to the engine as given.
        options = {k: v for k, v in locals().items() if k not in ("self", "array", "axes", "progress")}
        a, dtype = _float32(array, "the array")
        axes = axes or self.axes_of(a.shape)
        callback, close = _progress(progress, "tiles")
        try:
            return self._model.predict(a, axes, _max_value(dtype), progress=callback, **options)
        finally:
            close()


def predict_file(
    model: Union[Model, PathLike],
    input: PathLike,
    output: PathLike,
    *,
    progress: Progress = None,
    memory_budget: Union[None, int, str] = None,
    **options: Any,
) -> Union[Path, list[Path]]:
    """``bioseg predict`` on files: an image (PNG, TIFF) or a volume (multi-page TIFF, folder of
    slices, Zarr/OME-Zarr), streamed slab by slab in bounded memory, written to ``output``
    (.png, .tif/.tiff, .zarr, or a folder of slices; the format follows the extension).

    ``options`` are ``bioseg predict``'s flags with underscores: ``tile``, ``tile_z``,
    ``halo``, ``overlap``, ``blend``, ``tta``, ``threads``, ``parallel``, ``batch``,
    ``normalize``, ``output_type`` (``prob-u8``, ``prob-f32``, ``mask``, ``labels``),
    ``threshold``, ``overwrite``, ``format``, ``z_range`` ("A:B"), ``roi`` ("Y0:Y1,X0:X1"),
    ``slab``, ``memory_budget`` (bytes, or "512M"), ``shard`` ("I/N"), ``resume``.

    Returns the path written, or the list of paths when there are several (one PNG per class).
    """
    if not isinstance(model, Model):
        model = Model(model)
    if isinstance(memory_budget, int) and not isinstance(memory_budget, bool):
        memory_budget = str(memory_budget)
    # Tiles for an image; thousandths of the volume for a volume.
    callback, close = _progress(progress, "steps")
    try:
        written = _bioseg.predict_file(
            model._model,
            os.fspath(input),
            os.fspath(output),
            memory_budget=memory_budget,
            progress=callback,
            **options,
        )
    except TypeError as e:
        raise InputError(f"predict_file: {e}") from None
    finally:
        close()
    paths = [Path(p) for p in written]
    return paths[0] if len(paths) == 1 else paths


def _depth(dtype: np.dtype) -> str:
    """How ``bioseg evaluate`` would read values of this dtype from a file."""
    if dtype == np.uint8 or dtype == np.bool_:
        return "u8"
    if dtype == np.uint16:
        return "u16"
    return "f32"


def evaluate(
    pred: Any,
    label: Any,
    *,
    classes: int = 2,
    threshold: float = 0.5,
    boundary_class: int = 0,
    best_threshold: bool = False,
) -> dict:
    """The scores of ``bioseg evaluate`` for a prediction and its ground truth, both ``(y, x)``
    or stacks ``(z, y, x)`` of one shape.

    Binary (``classes=2``): a prediction pixel is foreground above ``threshold`` × the dtype's
    full scale (1 for floats: probabilities; 255 for uint8), a label pixel above half of it;
    integer arrays of only 0 and 1 are class maps as they are. Several classes: class-index
    maps. ``boundary_class`` is the class between cells (membranes).

    Returns the mean over the slices: ``pixel_error``, ``dice`` and ``iou`` (per class),
    ``v_rand``, ``v_info`` (ISBI 2012), ``adapted_rand_error``, ``are_precision``,
    ``are_recall``, ``vi_split``, ``vi_merge``, ``cells_true``, ``cells_pred``; ``images``,
    the same scores per slice; and for binary maps ``challenge``, the ISBI 2012 challenge's
    pixel error of the whole stack (``pixel_error``: 1 − the best ``f_score`` of the foreground
    over the thresholds 0.0, 0.1, …, 1.0, reached at ``threshold``; the leader board's number,
    not comparable with the misclassified fraction ``pixel_error`` above). With
    ``best_threshold=True`` binary probabilities are also segmented at each of those thresholds
    and ``challenge`` gets ``best_v_rand`` and ``best_v_info`` (``value``, ``threshold``): the
    best mean scores over them, the leader board's protocol.
    """
    p, p_dtype = _float32(pred, "pred")
    t, t_dtype = _float32(label, "label")
    report = json.loads(
        _bioseg.evaluate(
            p,
            _depth(p_dtype),
            t,
            _depth(t_dtype),
            classes=classes,
            threshold=threshold,
            boundary_class=boundary_class,
            best_threshold=best_threshold,
        )
    )
    scores = report["mean"]
    scores.pop("image", None)
    scores["images"] = report["images"]
    if "challenge" in report:
        scores["challenge"] = report["challenge"]
    return scores

"""bioseg's napari plugin (npe2, ``napari.yaml``): the "Segment with bioseg" widget and a
reader of bioseg's OME-Zarr and multi-class TIFF predictions. Install with
``pip install "bioseg[napari]"``. The work is in ``_layers`` (tested without a display)."""

from pathlib import Path
from typing import Any, Callable, Optional

from magicgui import magic_factory
from napari.layers import Image
from napari.qt.threading import FunctionWorker, thread_worker
from napari.types import LayerDataTuple
from napari.utils import progress as napari_progress

from ._layers import read_prediction, segment


def run_segmentation(
    image: Image,
    model: Path,
    tile: int = 0,
    tta: bool = False,
    output: str = "prob",
    threshold: float = 0.5,
) -> FunctionWorker:
    """The worker the widget starts: predicts the layer on a thread, shows progress in napari's
    activity dock, and hands napari the new layers when done."""

    @thread_worker
    def work():
        with napari_progress(total=0, desc=f"bioseg: {Path(model).name}") as bar:

            def on_progress(done: int, total: int) -> None:
                if bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

            return segment(
                image.data,
                model,
                rgb=bool(image.rgb),
                name=image.name,
                tile=tile or None,
                tta=tta,
                output=output,
                threshold=threshold,
                progress=on_progress,
            )

    return work()


@magic_factory(
    call_button="Segment",
    model={"label": "model", "filter": "*.onnx *.zip *.yaml", "tooltip": "ONNX file or bioimage.io package"},
    tile={"label": "tile (0: auto)", "min": 0, "max": 8192, "step": 16},
    tta={"label": "test-time augmentation (8x)"},
    output={"choices": ["prob", "labels"]},
    threshold={"min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "labels of one-channel models: p > threshold"},
)
def segment_widget(
    image: Image,
    model: Path = Path("model.onnx"),
    tile: int = 0,
    tta: bool = False,
    output: str = "prob",
    threshold: float = 0.5,
) -> FunctionWorker[list[LayerDataTuple]]:
    return run_segmentation(image, model, tile, tta, output, threshold)


def get_reader(path: Any) -> Optional[Callable[[Any], list]]:
    """npe2 reader hook: a reader for bioseg's predictions, or None for other files."""
    if isinstance(path, list):
        return None
    try:
        layers = read_prediction(path)
    except Exception:  # not ours (or unreadable): napari tries its other readers
        return None
    if layers is None:
        return None
    return lambda _path: layers

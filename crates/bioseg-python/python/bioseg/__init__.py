"""bioseg: segmentation models (ONNX, BioImage Model Zoo packages) run on numpy arrays and
image files on the CPU, tile by tile with halos, seam-free, in bounded memory.

    >>> import bioseg
    >>> model = bioseg.Model("models/isbi2012_membrane_unet.onnx")
    >>> prob = model.predict(image)                 # float32 membrane probability, image's shape
    >>> labels = model.predict(image, output="labels", tta=True)
    >>> bioseg.predict_file(model, "stack.tif", "membranes.zarr")   # streamed, bounded memory
    >>> bioseg.evaluate(labels, truth)["v_rand"]

The engine is bioseg's Rust inference library (no ONNX Runtime or PyTorch needed); it runs
with the GIL released, and Ctrl-C stops it within one tile.
"""

from ._api import Model, evaluate, predict_file
from ._bioseg import __version__
from ._errors import DataError, Error, FileNotFound, InputError, ModelError, RunError

__all__ = [
    "Model",
    "predict_file",
    "evaluate",
    "Error",
    "InputError",
    "ModelError",
    "FileNotFound",
    "DataError",
    "RunError",
    "__version__",
]

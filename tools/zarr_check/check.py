"""Open an OME-Zarr store written by `bioseg predict` with zarr-python, as napari's readers do.

    python3 -m venv tools/zarr_check/.venv
    tools/zarr_check/.venv/bin/pip install -r tools/zarr_check/requirements.txt
    tools/zarr_check/.venv/bin/python tools/zarr_check/check.py OUT.zarr [SAME.tif]

Checks the OME-Zarr 0.5 metadata (axes, one dataset, its coordinate transformations), opens
level 0 through the multiscales path, reads every chunk, and, given the same prediction written
by bioseg as a multi-page TIFF, checks that both hold the same values. Exits non-zero on any
mismatch.
"""

import json
import sys

import numpy as np
import zarr


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    path = sys.argv[1]
    group = zarr.open_group(path, mode="r")
    assert group.metadata.zarr_format == 3, group.metadata.zarr_format
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5", ome
    ms = ome["multiscales"][0]
    axes = [a["name"] for a in ms["axes"]]
    assert axes in (["z", "y", "x"], ["c", "z", "y", "x"]), axes
    datasets = ms["datasets"]
    assert len(datasets) == 1, datasets
    transforms = datasets[0]["coordinateTransformations"]
    assert [t["type"] for t in transforms] == ["scale", "translation"], transforms
    for t in transforms:
        values = t["scale"] if t["type"] == "scale" else t["translation"]
        assert len(values) == len(axes), (t, axes)
    array = group[datasets[0]["path"]]
    assert array.ndim == len(axes), (array.shape, axes)
    assert list(array.metadata.dimension_names) == axes, array.metadata.dimension_names
    data = array[...]
    print(
        f"{path}: OME-Zarr {ome['version']}, axes {axes}, shape {array.shape}, dtype {array.dtype}, "
        f"chunks {array.chunks}, {array.nchunks_initialized}/{array.nchunks} chunks written, "
        f"min {data.min()} max {data.max()} mean {data.astype(np.float64).mean():.4f}, "
        f"bioseg attributes: {json.dumps(group.attrs['bioseg'])[:80]}..."
    )
    if len(sys.argv) == 3:
        import tifffile

        reference = tifffile.imread(sys.argv[2])
        if reference.ndim == 2:
            reference = reference[np.newaxis]
        got = data if axes[0] == "z" else data[0]
        assert got.shape == reference.shape, (got.shape, reference.shape)
        assert got.dtype == reference.dtype, (got.dtype, reference.dtype)
        assert np.array_equal(got, reference), "values differ from the TIFF"
        print(f"equal to {sys.argv[2]} ({reference.shape}, {reference.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

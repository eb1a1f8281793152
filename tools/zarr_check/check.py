"""Open an OME-Zarr store written by `bioseg predict` with zarr-python, as napari's readers do.

    python3 -m venv tools/zarr_check/.venv
    tools/zarr_check/.venv/bin/pip install -r tools/zarr_check/requirements.txt
    tools/zarr_check/.venv/bin/python tools/zarr_check/check.py OUT.zarr [SAME.tif]

Checks the OME-Zarr 0.5 metadata (axes, one dataset, its coordinate transformations, the
`omero` channel labels of a channel axis), opens level 0 through the multiscales path, reads
every chunk, reads it again with ome-zarr (napari's reader), and, given the same prediction
written by bioseg as a TIFF, reads that with
tifffile (an ImageJ hyperstack for several channels: axes CYX or ZCYX) and checks that both hold
the same values on the same axes. Works for volumes (`z, y, x`, `c, z, y, x`) and 2-D images
(`y, x`, `c, y, x`). Exits non-zero on any mismatch.
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
    assert axes in (["z", "y", "x"], ["c", "z", "y", "x"], ["y", "x"], ["c", "y", "x"]), axes
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
    if "c" in axes:
        labels = [c["label"] for c in ome["omero"]["channels"]]
        assert len(labels) == array.shape[0], (labels, array.shape)
        print(f"channels: {labels}")
    print(
        f"{path}: OME-Zarr {ome['version']}, axes {axes}, shape {array.shape}, dtype {array.dtype}, "
        f"chunks {array.chunks}, {array.nchunks_initialized}/{array.nchunks} chunks written, "
        f"min {data.min()} max {data.max()} mean {data.astype(np.float64).mean():.4f}, "
        f"bioseg attributes: {json.dumps(group.attrs['bioseg'])[:80]}..."
    )
    # The ome-zarr reader (napari's ome-zarr plugin) sees the same image and channel names.
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(path))())[0]
    assert [a["name"] for a in node.metadata["axes"]] == axes, node.metadata["axes"]
    assert tuple(node.data[0].shape) == array.shape, (node.data[0].shape, array.shape)
    if "c" in axes:
        assert node.metadata["channel_names"] == labels, node.metadata["channel_names"]
    print(f"ome-zarr reads it: axes {axes}, shape {tuple(node.data[0].shape)}")
    if len(sys.argv) == 3:
        import tifffile

        with tifffile.TiffFile(sys.argv[2]) as tif:
            series = tif.series[0]
            reference = series.asarray()
            tiff_axes = series.axes.lower()
            imagej = tif.imagej_metadata
        # The store's axes in the TIFF's order; an axis of length 1 the TIFF leaves out (a
        # volume of one slice, one channel) is dropped.
        got, names = data, list(axes)
        for a in list(names):
            if a not in tiff_axes:
                assert got.shape[names.index(a)] == 1, (a, got.shape, tiff_axes)
                got = np.squeeze(got, axis=names.index(a))
                names.remove(a)
        assert sorted(names) == sorted(tiff_axes), (names, tiff_axes)
        got = np.transpose(got, [names.index(a) for a in tiff_axes])
        if "c" in tiff_axes:
            assert imagej is not None and imagej["channels"] == reference.shape[tiff_axes.index("c")], imagej
        assert got.shape == reference.shape, (got.shape, reference.shape)
        assert got.dtype == reference.dtype, (got.dtype, reference.dtype)
        assert np.array_equal(got, reference), "values differ from the TIFF"
        print(f"equal to {sys.argv[2]} (tifffile axes {series.axes}, {reference.shape}, {reference.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The napari plugin: its work without a display (always), and the widget and reader in a
headless napari viewer when napari is installed (tools/python/test.sh --napari)."""

import numpy as np
import pytest
import tifffile

import bioseg
from bioseg import _layers
from conftest import BIOSEG_MODEL, manifest, section


def test_segment_gives_probability_and_label_layers():
    img = section(96, 128)
    [(data, meta, kind)] = _layers.segment(img, BIOSEG_MODEL, name="section")
    assert kind == "image" and data.shape == img.shape
    np.testing.assert_array_equal(data, bioseg.Model(BIOSEG_MODEL).predict(img))
    assert meta["contrast_limits"] == (0.0, 1.0) and "section" in meta["name"]
    [(labels, meta, kind)] = _layers.segment(img, BIOSEG_MODEL, output="labels", threshold=0.6)
    assert kind == "labels" and labels.dtype == np.uint8
    # An RGB layer and a one-channel model: the model sees the grey image.
    rgb = np.repeat(img[..., None], 3, axis=-1)
    [(from_rgb, _, _)] = _layers.segment(rgb, BIOSEG_MODEL, rgb=True)
    np.testing.assert_allclose(from_rgb, data, atol=1e-5)


def test_segment_splits_classes_into_layers():
    f = [f for f in manifest("keras") if f["name"] == "unet_rgb3class_keras3"][0]
    x = np.load(f["input"])[0]
    [(data, meta, kind)] = _layers.segment(x, f["onnx"], rgb=True, name="rgb")
    assert kind == "image" and data.shape == (3,) + x.shape[:2]
    assert meta["channel_axis"] == 0 and len(meta["name"]) == 3


def test_reader_reads_bioseg_outputs(tmp_path):
    f = [f for f in manifest("keras") if f["name"] == "unet_rgb3class_keras3"][0]
    x = (np.load(f["input"])[0] * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", x, photometric="rgb")
    tif = bioseg.predict_file(f["onnx"], tmp_path / "rgb.tif", tmp_path / "classes.tif", output_type="prob-f32")
    [(data, meta, kind)] = _layers.read_prediction(tif)
    assert kind == "image" and len(meta["name"]) == 3
    np.testing.assert_allclose(np.moveaxis(data, meta["channel_axis"], 0), bioseg.Model(f["onnx"]).predict(x), atol=1e-6)
    pytest.importorskip("zarr")
    store = bioseg.predict_file(f["onnx"], tmp_path / "rgb.tif", tmp_path / "classes.zarr", output_type="prob-f32")
    [(data, meta, kind)] = _layers.read_prediction(store)
    assert len(meta["name"]) == 3
    np.testing.assert_allclose(np.asarray(data), bioseg.Model(f["onnx"]).predict(x), atol=1e-6)


def test_widget_and_reader_in_napari(tmp_path):
    # napari.Viewer(show=False) needs an OpenGL context for its canvas, which the offscreen Qt
    # platform of a machine without a display does not give (vispy fails on glGetString); the
    # viewer's model (what the widget and napari's layer handling use) runs headless.
    napari = pytest.importorskip("napari")
    from napari.components import ViewerModel
    from npe2 import PluginManifest

    from bioseg import _napari

    manifest_ = PluginManifest.from_distribution("bioseg")
    assert {w.display_name for w in manifest_.contributions.widgets} == {"Segment with bioseg"}
    viewer = ViewerModel()
    img = section(96, 128)
    layer = viewer.add_image(img, name="section")
    widget = _napari.segment_widget()
    widget.model.value = BIOSEG_MODEL
    worker = widget(image=layer, output="labels")  # the Segment button: a worker for napari to start
    results = []
    worker.returned.connect(results.append)
    worker.run()  # synchronously here (napari runs it on a worker thread)
    [(data, meta, kind)] = results[0]
    assert kind == "labels"
    viewer._add_layer_from_data(data, meta, kind)
    added = viewer.layers[-1]
    assert isinstance(added, napari.layers.Labels) and added.data.shape == img.shape
    np.testing.assert_array_equal(added.data, bioseg.Model(BIOSEG_MODEL).predict(img, output="labels"))
    # The reader hook claims bioseg's Zarr output and returns its layers; other files are not ours.
    store = bioseg.predict_file(BIOSEG_MODEL, _save(tmp_path, img), tmp_path / "p.zarr", output_type="prob-f32")
    reader = _napari.get_reader(str(store))
    assert reader is not None
    [(data, meta, kind)] = reader(str(store))
    viewer._add_layer_from_data(np.asarray(data), meta, kind)
    np.testing.assert_allclose(viewer.layers[-1].data, bioseg.Model(BIOSEG_MODEL).predict(img), atol=1e-6)
    assert _napari.get_reader(str(tmp_path / "unknown.txt")) is None


def _save(tmp_path, img):
    p = tmp_path / "img.tif"
    tifffile.imwrite(p, img)
    return p

"""Model.predict: every exporter's U-Net gives ONNX Runtime's numbers; dtypes, axes, shapes,
volumes, progress, the GIL and Ctrl-C."""

import os
import signal
import subprocess
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import tifffile

import bioseg
from conftest import BIOSEG_MODEL, FIXTURES, manifest, section


def ort_run(path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def whole(model: bioseg.Model, image: np.ndarray, **kw) -> np.ndarray:
    """One tile covering the image, no halo: what ONNX Runtime computes on the whole image."""
    spatial = image.shape[:2] if image.ndim == 3 and image.shape[-1] <= 4 else image.shape[-2:]
    return model.predict(image, tile=max(spatial), halo=0, **kw)


@pytest.mark.parametrize("f", manifest("keras"), ids=lambda f: f["name"])
def test_keras_unets_give_onnxruntimes_numbers(f):
    model = bioseg.Model(f["onnx"])
    assert model.info["layout"] == "nhwc"
    x = np.load(f["input"])  # [1, H, W, C] in [0, 1]
    ref = ort_run(f["onnx"], x)[0]  # [H, W, K]
    got = whole(model, x[0], axes="yxc")
    want = ref[..., 0] if ref.shape[-1] == 1 else np.moveaxis(ref, -1, 0)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # And Keras' own numbers (the fixture's expected output).
    keras = np.load(f["expected"])[0]
    keras = keras[..., 0] if keras.shape[-1] == 1 else np.moveaxis(keras, -1, 0)
    np.testing.assert_allclose(got, keras, rtol=0, atol=1e-4)


@pytest.mark.parametrize("f", manifest("zoo"), ids=lambda f: f["name"])
def test_pytorch_style_unets_give_onnxruntimes_numbers(f):
    model = bioseg.Model(f["onnx"])
    x = np.load(f["input"])  # [1, C, H, W]
    ref = ort_run(f["onnx"], x)[0]  # [K, H, W]
    got = whole(model, x[0] if x.shape[1] > 1 else x[0, 0])
    want = ref[0] if ref.shape[0] == 1 else ref
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_bioseg_model_equals_the_cli_and_onnxruntime(tmp_path, bioseg_cli):
    img = section(200, 280)
    tifffile.imwrite(tmp_path / "in.tif", img)
    out = tmp_path / "out.tif"
    subprocess.run(
        [bioseg_cli, "predict", "-q", "-m", BIOSEG_MODEL, "-i", tmp_path / "in.tif", "-o", out, "--output-type", "prob-f32"],
        check=True,
    )
    cli = tifffile.imread(out)
    model = bioseg.Model(BIOSEG_MODEL)
    got = model.predict(img)
    assert got.shape == img.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, cli, rtol=0, atol=1e-6)
    # The whole image as one window: ONNX Runtime's numbers (the model divides by 255 itself).
    h, w = 208, 288  # the size multiple (16) above the image
    padded = np.pad(img, ((0, h - 200), (0, w - 280)), mode="reflect").astype(np.float32) / 255.0
    ref = ort_run(BIOSEG_MODEL, padded[None, None])[0, 0][:200, :280]
    np.testing.assert_allclose(whole(model, img), ref, rtol=0, atol=1e-5)


def test_dtypes_are_normalised_as_files_are():
    model = bioseg.Model(BIOSEG_MODEL)  # normalisation divide:255 in its metadata
    img = section(96, 112)
    base = model.predict(img)
    for other in (img.astype(np.float32), img.astype(np.float64), img.astype(np.int32), img.astype(np.uint16)):
        np.testing.assert_allclose(model.predict(other), base, rtol=0, atol=1e-6)
    # A model without normalisation metadata: uint8 is divided by 255, floats taken as they are.
    f = [f for f in manifest("keras") if f["name"] == "unet_dynamic_tf2onnx_op17"][0]
    keras = bioseg.Model(f["onnx"])
    assert keras.info["normalization"] is None
    u8 = img[:64, :96]
    np.testing.assert_allclose(keras.predict(u8), keras.predict(u8 / 255.0), rtol=0, atol=1e-6)
    u16 = u8.astype(np.uint16) * 257
    np.testing.assert_allclose(keras.predict(u16), keras.predict(u8), rtol=0, atol=1e-5)
    with pytest.raises(bioseg.InputError, match="dtype"):
        model.predict(np.array([["a"]]))


def test_axes_layouts_and_strides_give_one_answer():
    f = [f for f in manifest("keras") if f["name"] == "unet_rgb3class_keras3"][0]
    model = bioseg.Model(f["onnx"])
    assert model.info["channels"] == 3
    yxc = np.load(f["input"])[0]
    base = model.predict(yxc)
    assert base.shape == (3,) + yxc.shape[:2]
    cyx = np.ascontiguousarray(np.moveaxis(yxc, -1, 0))
    assert model.axes_of(cyx.shape) == "cyx"
    np.testing.assert_array_equal(model.predict(cyx), base)
    np.testing.assert_array_equal(model.predict(np.moveaxis(yxc, -1, 0)), base)  # a strided view
    np.testing.assert_array_equal(model.predict(cyx, axes="cyx"), base)
    flipped = yxc[::-1]  # negative strides
    np.testing.assert_allclose(model.predict(flipped), model.predict(flipped.copy()), rtol=0, atol=0)
    labels = model.predict(yxc, output="labels")
    assert labels.dtype == np.uint8 and labels.shape == yxc.shape[:2]
    np.testing.assert_array_equal(labels, base.argmax(axis=0))
    with pytest.raises(ValueError, match="3 channels"):
        model.predict(yxc[..., :2])
    with pytest.raises(bioseg.InputError, match="axes"):
        model.predict(yxc, axes="xyz")


def test_one_channel_outputs_and_labels():
    model = bioseg.Model(BIOSEG_MODEL)
    img = section(80, 100)
    prob = model.predict(img)
    assert prob.shape == (80, 100) and 0.0 <= prob.min() and prob.max() <= 1.0
    for t in (0.3, 0.5, 0.8):
        labels = model.predict(img, output="labels", threshold=t)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, (prob > t).astype(np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        model.predict(img, threshold=2.0)
    with pytest.raises(ValueError, match="output"):
        model.predict(img, output="probabilities")
    with pytest.raises(ValueError, match="blend"):
        model.predict(img, blend="average")
    with pytest.raises(ValueError, match="tile"):
        model.predict(img, tile=0)
    with pytest.raises(bioseg.InputError, match="tile"):
        model.predict(img, tile="big")


def test_tiling_options_and_tta():
    model = bioseg.Model(BIOSEG_MODEL)
    img = section(150, 170)
    base = model.predict(img, tile=256)
    np.testing.assert_allclose(model.predict(img, tile=48), base, rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.predict(img, tile=64, threads=1), base, rtol=0, atol=1e-5)
    gauss = model.predict(img, tile=64, overlap=16, blend="gaussian")
    np.testing.assert_allclose(gauss, base, rtol=0, atol=1e-4)
    tta = model.predict(img, tta=True)
    flips = [np.flip(model.predict(np.flip(img, a)), a) for a in (0, 1)]
    assert not np.allclose(tta, base, atol=1e-6)  # averaged over 8 transforms
    assert np.abs(tta - (base + flips[0] + flips[1]) / 3).max() < 0.2


def test_a_stack_is_predicted_slice_by_slice():
    model = bioseg.Model(BIOSEG_MODEL)
    stack = np.stack([section(64, 80, seed=s) for s in range(3)])
    assert model.axes_of(stack.shape) == "zyx"
    got = model.predict(stack)
    assert got.shape == stack.shape
    for z in range(3):
        np.testing.assert_array_equal(got[z], model.predict(stack[z]))
    labels = model.predict(stack, output="labels")
    assert labels.shape == stack.shape and labels.dtype == np.uint8


def conv3d_model(path):
    """A volumetric model (rank-5 input): two 3x3x3 convolutions and a sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 1, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(4, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (1, 4, 3, 3, 3)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(1, np.float32), "b2")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1] * 6),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["o"], pads=[1] * 6),
        helper.make_node("Sigmoid", ["o"], ["y"]),
    ]
    dims = ["n", 1, "d", "h", "w"]
    g = helper.make_graph(
        nodes,
        "conv3d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
        [w1, b1, w2, b2],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_a_volumetric_model_predicts_3d_tiles(tmp_path):
    path = conv3d_model(tmp_path / "conv3d.onnx")
    model = bioseg.Model(path)
    assert model.info["volumetric"]
    vol = np.random.default_rng(0).random((20, 40, 36), dtype=np.float32)
    got = model.predict(vol, tile=16, tile_z=8, halo=2)  # 3-D tiles with a 2-voxel halo
    ref = ort_run(path, vol[None, None])[0, 0]
    assert got.shape == vol.shape
    # Interior voxels equal whole-volume inference (bioseg mirrors at the borders, the graph pads
    # with zeros).
    np.testing.assert_allclose(got[2:-2, 2:-2, 2:-2], ref[2:-2, 2:-2, 2:-2], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="volumetric"):
        model.predict(vol[0], axes="yx")


def test_progress_reports_every_tile_and_a_failing_callback_stops_the_run():
    model = bioseg.Model(BIOSEG_MODEL)
    img = section(256, 256)
    seen = []
    model.predict(img, tile=64, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (16, 16)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))

    def fail(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        model.predict(img, tile=32, progress=fail)
    model.predict(img, progress=True)  # a bar on stderr (tqdm when installed)


def test_the_gil_is_released_while_predicting():
    model = bioseg.Model(BIOSEG_MODEL)
    img = section(1024, 1024)
    done = threading.Event()

    def work():
        model.predict(img, tile=128)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += 1  # Python code runs on this thread while the other one predicts
        time.sleep(0.001)
    t.join()
    assert ticks > 10


def test_ctrl_c_interrupts_a_prediction_cleanly():
    model = bioseg.Model(BIOSEG_MODEL)
    img = section(2048, 2048)
    main = threading.main_thread().ident
    sent = threading.Event()

    def on_progress(done, total):
        if not sent.is_set():
            sent.set()
            threading.Timer(0.05, lambda: signal.pthread_kill(main, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        model.predict(img, tile=64, tta=True, progress=on_progress)
    # The model is still usable.
    assert model.predict(img[:64, :64]).shape == (64, 64)


def test_several_threads_share_one_model():
    model = bioseg.Model(BIOSEG_MODEL)
    imgs = [section(128, 128, seed=s) for s in range(4)]
    want = [model.predict(i) for i in imgs]
    out = [None] * 4

    def work(k):
        out[k] = model.predict(imgs[k], threads=1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(out, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_info_describes_the_model():
    model = bioseg.Model(BIOSEG_MODEL)
    i = model.info
    assert i["layout"] == "nchw" and i["channels"] == 1 and not i["volumetric"]
    assert i["classes"] == ["membrane", "cell-interior"]
    assert i["size_multiple"] == 16 and i["halo"] == i["recommended_halo"] == 144
    assert i["normalization"] == "divide:255" and i["activation"] == "sigmoid"
    assert i["metadata"]["bioseg.architecture"] == "unet"
    assert "membrane_unet_f8.onnx" in repr(model)


@pytest.mark.parametrize("name", ["zoo-nearest-op11", "zoo-rgb-3class-op17"])
def test_a_bioimageio_package_reproduces_its_test_output(name):
    import io
    import zipfile

    path = FIXTURES / "bioimageio" / f"{name}.zip"
    with zipfile.ZipFile(path) as z:
        x = np.load(io.BytesIO(z.read("test_input.npy")))  # [1, C, H, W], raw values
        want = np.load(io.BytesIO(z.read("test_output.npy")))[0]  # [K, H, W]
    model = bioseg.Model(path)
    assert model.info["package"]
    # The package's preprocessing (per-sample statistics) and postprocessing apply; one window.
    got = whole(model, x[0] if x.shape[1] > 1 else x[0, 0])
    np.testing.assert_allclose(got, want[0] if want.shape[0] == 1 else want, rtol=0, atol=1e-5)

"""The exporter zoo: U-Nets written the way other ONNX exporters write them (issue 16).

Each model is a channels-first (PyTorch-style) U-Net built node by node with the `onnx`
package, so the zoo needs no PyTorch: the graphs reproduce what `torch.onnx.export` writes for
`nn.Upsample` / `F.interpolate` (Resize at opsets 11, 13 and 18, with `scales`, or `sizes` and
`axes`), the old `Upsample` op (opset 9), bilinear up-sampling (`align_corners=True`, PyTorch's
U-Net default, and `pytorch_half_pixel`), `ConvTranspose` 2x2 / 2 and `BatchNormalization`, with
sigmoid and softmax heads. The Keras exports (tf2onnx opsets 13/17, Keras 3) live in
`tests/fixtures/keras/` (tools/keras/make_fixtures.py).

    python tools/zoo/make_zoo.py                      # small fixtures -> tests/fixtures/zoo/
    python tools/zoo/make_zoo.py --filters 16 --depth 4 --out out/zoo --no-expected
                                                      # benchmark-size models (not committed)

Fixtures: start filters 4, depth 3, a 1x1x64x64 input (3 channels for the RGB model), the
output of ONNX Runtime on it (`*_expected.npy`), and `manifest.json`. Height and width are
symbolic (`h`, `w`) so a model runs on tiles of any multiple of 2**depth. Weights are drawn
from a fixed seed (He-normal, random batch-norm statistics): two runs write identical files.
Requirements: tools/bench/requirements.txt (onnx, onnxruntime, numpy).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]


class Graph:
    """A growing ONNX graph: nodes, initializers and fresh names."""

    def __init__(self, rng):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix, array):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type, inputs, prefix=None, **attrs):
        out = self.name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, c_in, c_out, k, pads):
        w = self.rng.normal(0, np.sqrt(2 / (c_in * k * k)), (c_out, c_in, k, k)).astype(np.float32)
        b = self.rng.normal(0, 0.05, c_out).astype(np.float32)
        return self.op("Conv", [x, self.const("w", w), self.const("b", b)], "conv",
                       kernel_shape=[k, k], pads=pads)

    def batch_norm(self, x, c):
        scale = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        bias = self.rng.normal(0, 0.1, c).astype(np.float32)
        mean = self.rng.normal(0, 0.1, c).astype(np.float32)
        var = self.rng.uniform(0.5, 2.0, c).astype(np.float32)
        ins = [x] + [self.const(n, v) for n, v in (("gamma", scale), ("beta", bias), ("mean", mean), ("var", var))]
        return self.op("BatchNormalization", ins, "bn", epsilon=1e-5)

    def double_conv(self, x, c_in, c_out, bn):
        for c in (c_in, c_out):
            x = self.conv(x, c, c_out, 3, [1, 1, 1, 1])
            if bn:
                x = self.batch_norm(x, c_out)
            x = self.op("Relu", [x])
        return x


def upsample(g, x, c, how, opset):
    """x2 up-sampling of `x` (c channels) as the exporter writes it; returns (tensor, channels)."""
    def scales():
        return g.const("scales", np.array([1, 1, 2, 2], np.float32))

    if how == "upsample9":
        return g.op("Upsample", [x, scales()], mode="nearest"), c
    if how == "convtranspose":
        w = g.rng.normal(0, np.sqrt(2 / (c * 4)), (c, c // 2, 2, 2)).astype(np.float32)
        b = g.rng.normal(0, 0.05, c // 2).astype(np.float32)
        return g.op("ConvTranspose", [x, g.const("w", w), g.const("b", b)], kernel_shape=[2, 2],
                    strides=[2, 2]), c // 2
    mode, coord, nearest = {
        "nearest": ("nearest", "asymmetric", "floor"),
        "nearest_half_pixel": ("nearest", "half_pixel", "round_prefer_floor"),
        "bilinear_align_corners": ("linear", "align_corners", "floor"),
        "bilinear_half_pixel": ("linear", "pytorch_half_pixel", "floor"),
    }[how.removesuffix("_sizes")]
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if mode == "nearest":
        attrs["nearest_mode"] = nearest
    roi = g.const("roi", np.zeros(0, np.float32)) if opset < 13 else ""
    if how.endswith("_sizes"):
        # torch.onnx (dynamo, opset 18) for a dynamic input: sizes = shape[2:] * 2, axes = [2, 3].
        hw = g.op("Shape", [x], start=2)
        sizes = g.op("Mul", [hw, g.const("two", np.array([2, 2], np.int64))])
        return g.op("Resize", [x, "", "", sizes], axes=[2, 3], **attrs), c
    return g.op("Resize", [x, roi, scales()], **attrs), c


def unet(spec, filters, depth, seed):
    """A channels-first U-Net per `spec` (one entry of VARIANTS)."""
    g = Graph(np.random.default_rng(seed))
    x = "input"
    c, skips = spec["in_channels"], []
    for level in range(depth):
        f = filters << level
        x = g.double_conv(x, c, f, spec["bn"])
        skips.append((x, f))
        x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        c = f
    x = g.double_conv(x, c, filters << depth, spec["bn"])
    c = filters << depth
    for skip, f in reversed(skips):
        x, c = upsample(g, x, c, spec["up"], spec["opset"])
        if spec.get("up_conv"):
            # Keras-style: up-sampling, then a 2x2 convolution (same padding: bottom/right).
            x = g.conv(x, c, f, 2, [0, 0, 1, 1])
            x = g.op("Relu", [x])
            c = f
        x = g.op("Concat", [skip, x], axis=1)
        x = g.double_conv(x, f + c, f, spec["bn"])
        c = f
    classes = spec["classes"]
    x = g.conv(x, c, classes, 1, [0, 0, 0, 0])
    x = g.op("Sigmoid", [x]) if classes == 1 else g.op("Softmax", [x], axis=1)
    graph = helper.make_graph(
        g.nodes, spec["name"],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, spec["in_channels"], "h", "w"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, classes, "h", "w"])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec["opset"])],
                              producer_name="bioseg tools/zoo/make_zoo.py")
    model.ir_version = 7 if spec["opset"] < 15 else 8
    onnx.checker.check_model(model, full_check=True)
    return model


def variant(name, opset, up, *, bn=False, up_conv=False, classes=1, in_channels=1):
    return dict(name=name, opset=opset, up=up, bn=bn, up_conv=up_conv, classes=classes, in_channels=in_channels)


VARIANTS = [
    variant("torch_nearest_scales_op11", 11, "nearest", up_conv=True),
    variant("torch_nearest_scales_op13", 13, "nearest"),
    variant("torch_nearest_sizes_op18", 18, "nearest_sizes", up_conv=True),
    variant("nearest_half_pixel_op13", 13, "nearest_half_pixel", up_conv=True),
    variant("upsample_op9", 9, "upsample9", up_conv=True),
    variant("torch_bilinear_align_corners_op13", 13, "bilinear_align_corners"),
    variant("torch_bilinear_half_pixel_op17", 17, "bilinear_half_pixel", bn=True),
    variant("torch_convtranspose_bn_op13", 13, "convtranspose", bn=True),
    variant("torch_rgb3class_softmax_op17", 17, "nearest", bn=True, classes=3, in_channels=3),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/zoo")
    ap.add_argument("--filters", type=int, default=4, help="start filters (default 4)")
    ap.add_argument("--depth", type=int, default=3, help="poolings (default 3)")
    ap.add_argument("--size", type=int, default=64, help="test input height and width (default 64)")
    ap.add_argument("--no-expected", action="store_true", help="models only (benchmark sizes)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, spec in enumerate(VARIANTS):
        model = unet(spec, a.filters, a.depth, seed=1000 + i)
        onnx_path = a.out / f"{spec['name']}.onnx"
        onnx.save(model, onnx_path)
        entry = dict(spec, onnx=onnx_path.name, filters=a.filters, depth=a.depth, multiple=2 ** a.depth)
        if not a.no_expected:
            rng = np.random.default_rng(i)
            x = rng.uniform(0, 1, (1, spec["in_channels"], a.size, a.size)).astype(np.float32)
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            y = sess.run(None, {"input": x})[0]
            assert y.shape == (1, spec["classes"], a.size, a.size), y.shape
            for kind, arr in (("input", x), ("expected", y)):
                np.save(a.out / f"{spec['name']}_{kind}.npy", arr)
                entry[kind] = f"{spec['name']}_{kind}.npy"
        entries.append(entry)
        print(f"{spec['name']:36} opset {spec['opset']:2}  {onnx_path.stat().st_size / 1e3:8.1f} kB")
    manifest = dict(generator="tools/zoo/make_zoo.py", onnxruntime=ort.__version__, onnx=onnx.__version__,
                    fixtures=entries)
    (a.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()

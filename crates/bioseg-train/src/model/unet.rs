//! The classic U-Net of the course (zhixuhao/unet layout).
//!
//! `depth` down levels of [Conv 3×3 "same" + ReLU]×2 then MaxPool 2×2; a bottleneck block;
//! dropout after the deepest down level and the bottleneck; `depth` up levels of nearest
//! upsampling ×2 → Conv 2×2 ("same", padded bottom/right like Keras) + ReLU (or a strided
//! Conv2DTranspose) → concatenation with the skip → [Conv 3×3 + ReLU]×2; head Conv 3×3 with
//! 2·classes filters + ReLU, then Conv 1×1 (sigmoid for one class, softmax for several).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::module::{conv_transpose2d, interpolate};
use burn::tensor::ops::{ConvTransposeOptions, InterpolateMode, InterpolateOptions};

use super::conv_relu;

use bioseg_onnx::{Dim, GraphBuilder, ModelMetadata, OutputActivation, TensorLayout, Value};

/// How the decoder doubles the resolution.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Upsample {
    /// Nearest-neighbour ×2 then Conv 2×2 + ReLU (the classic U-Net, Keras `UpSampling2D`).
    Nearest,
    /// Conv2DTranspose 2×2 with stride 2, + ReLU.
    Transpose,
}

impl std::str::FromStr for Upsample {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nearest" => Ok(Upsample::Nearest),
            "transpose" => Ok(Upsample::Transpose),
            _ => Err(format!("unknown upsampling `{s}` (expected nearest or transpose)")),
        }
    }
}

/// Configuration of a [`Unet`].
#[derive(Config, Debug)]
pub struct UnetConfig {
    /// Input channels (1 gray, 3 RGB).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Output classes: 1 = binary (sigmoid), C ≥ 2 = softmax over C channels.
    #[config(default = 1)]
    pub classes: usize,
    /// Filters of the first level (doubling at each level down); the classic U-Net has 64.
    #[config(default = 64)]
    pub filters: usize,
    /// Number of down (and up) levels; inputs must be multiples of 2^depth.
    #[config(default = 4)]
    pub depth: usize,
    /// Dropout after the deepest down level and the bottleneck.
    #[config(default = 0.5)]
    pub drop_rate: f64,
    /// Batch normalisation after every 3×3 convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// With `batch_norm`, also normalise after each decoder upsampling layer (Conv 2×2 or
    /// Conv2DTranspose) and after the head's 3×3, before their ReLU: the Keras classic U-Net with
    /// batch normalisation (`tools/keras/unet.py`). Off: bioseg's original layout.
    #[config(default = false)]
    pub batch_norm_all: bool,
    /// Decoder upsampling.
    #[config(default = "Upsample::Nearest")]
    pub upsample: Upsample,
}

/// [Conv 3×3 (+BN) + ReLU] × 2.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    /// First convolution.
    pub conv1: Conv2d<B>,
    /// Optional batch norm after the first convolution.
    pub bn1: Option<BatchNorm<B>>,
    /// Second convolution.
    pub conv2: Conv2d<B>,
    /// Optional batch norm after the second convolution.
    pub bn2: Option<BatchNorm<B>>,
}

/// One decoder level: upsampling, concatenation with the skip, and a [`ConvBlock`].
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    /// Conv 2×2 after nearest upsampling (classic variant).
    pub up_conv: Option<Conv2d<B>>,
    /// Strided transposed convolution (transpose variant).
    pub up_transpose: Option<ConvTranspose2d<B>>,
    /// Batch norm after the upsampling layer (`batch_norm_all`).
    pub up_bn: Option<BatchNorm<B>>,
    /// The block after concatenation.
    pub block: ConvBlock<B>,
}

/// The U-Net.
#[derive(Module, Debug)]
pub struct Unet<B: Backend> {
    /// Encoder levels.
    pub down: Vec<ConvBlock<B>>,
    /// The bottleneck block.
    pub bottleneck: ConvBlock<B>,
    /// Decoder levels, deepest first.
    pub up: Vec<UpBlock<B>>,
    /// Conv 3×3 with 2·classes filters + ReLU.
    pub head: Conv2d<B>,
    /// Batch norm after the head 3×3 (`batch_norm_all`).
    pub head_bn: Option<BatchNorm<B>>,
    /// Conv 1×1 to the class logits.
    pub out: Conv2d<B>,
    /// Dropout at the deepest levels.
    pub dropout: Dropout,
    /// 2×2 max pooling.
    pub pool: MaxPool2d,
    /// Output classes (1 = sigmoid).
    pub classes: usize,
}

fn he() -> Initializer {
    Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: false }
}

/// A convolution with He-normal weights and zero biases (Keras' `he_normal` / `zeros`; Burn's
/// default would draw the biases from the weight initializer too, which can leave ReLUs dead).
fn conv<B: Backend>(cin: usize, cout: usize, k: usize, pad: PaddingConfig2d, d: &B::Device) -> Conv2d<B> {
    let mut c = Conv2dConfig::new([cin, cout], [k, k]).with_padding(pad).with_initializer(he()).init(d);
    c.bias = Some(burn::module::Param::from_tensor(Tensor::zeros([cout], d)));
    c
}

impl UnetConfig {
    fn block<B: Backend>(&self, cin: usize, cout: usize, device: &B::Device) -> ConvBlock<B> {
        let bn = |c| self.batch_norm.then(|| BatchNormConfig::new(c).init(device));
        ConvBlock {
            conv1: conv(cin, cout, 3, PaddingConfig2d::Explicit(1, 1, 1, 1), device),
            bn1: bn(cout),
            conv2: conv(cout, cout, 3, PaddingConfig2d::Explicit(1, 1, 1, 1), device),
            bn2: bn(cout),
        }
    }

    /// The batch norm after an upsampling layer or the head, when `batch_norm_all` asks for it.
    fn norm_all<B: Backend>(&self, channels: usize, device: &B::Device) -> Option<BatchNorm<B>> {
        (self.batch_norm && self.batch_norm_all).then(|| BatchNormConfig::new(channels).init(device))
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.in_channels) {
            return Err(format!("input channels must be 1 to 4, not {}", self.in_channels));
        }
        if self.classes == 0 || self.classes > 255 {
            return Err(format!("classes must be 1 to 255, not {}", self.classes));
        }
        if self.filters == 0 || self.filters > 1024 {
            return Err(format!("start filters must be 1 to 1024, not {}", self.filters));
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("depth must be 1 to 6, not {}", self.depth));
        }
        if !(0.0..1.0).contains(&self.drop_rate) {
            return Err(format!("drop rate must be in [0, 1), not {}", self.drop_rate));
        }
        Ok(())
    }

    /// A freshly initialised U-Net (He-normal convolutions, as zhixuhao/unet).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Unet<B> {
        let f = |level: usize| self.filters << level;
        let mut down = Vec::new();
        let mut cin = self.in_channels;
        for level in 0..self.depth {
            down.push(self.block(cin, f(level), device));
            cin = f(level);
        }
        let bottleneck = self.block(cin, f(self.depth), device);
        let mut up = Vec::new();
        for level in (0..self.depth).rev() {
            let (from, to) = (f(level + 1), f(level));
            let (up_conv, up_transpose) = match self.upsample {
                Upsample::Nearest => (Some(conv(from, to, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), device)), None),
                Upsample::Transpose => (
                    None,
                    Some({
                        let mut t = ConvTranspose2dConfig::new([from, to], [2, 2])
                            .with_stride([2, 2])
                            .with_initializer(he())
                            .init(device);
                        t.bias = Some(burn::module::Param::from_tensor(Tensor::zeros([to], device)));
                        t
                    }),
                ),
            };
            let up_bn = self.norm_all(to, device);
            up.push(UpBlock { up_conv, up_transpose, up_bn, block: self.block(2 * to, to, device) });
        }
        let head_filters = 2 * self.classes;
        super::materialize(Unet {
            down,
            bottleneck,
            up,
            head: conv(f(0), head_filters, 3, PaddingConfig2d::Explicit(1, 1, 1, 1), device),
            head_bn: self.norm_all(head_filters, device),
            out: {
                let mut c = Conv2dConfig::new([head_filters, self.classes], [1, 1])
                    .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                    .init(device);
                c.bias = Some(burn::module::Param::from_tensor(Tensor::zeros([self.classes], device)));
                c
            },
            dropout: DropoutConfig::new(self.drop_rate).init(),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            classes: self.classes,
        })
    }
}

/// Nearest-neighbour ×2 upsampling (Burn's `interpolate`: one pass forward, a 2×2 block sum
/// backward, on every backend; a reshape/expand/reshape formulation cost two strided copies and
/// a strided reduction per decoder level on the CPU, BENCHMARKS.md "CPU training").
pub fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest))
}

/// Whether the classic decoder step (nearest ×2, then `c`, a 2×2 convolution padded bottom and
/// right) runs as one transposed convolution ([`upsample_conv2x2`]) on this backend: on bioseg's
/// CPU backend (flex with bioseg-kernels), where it is exact and measured faster; CUDA keeps the
/// two-step form until its transposed convolution is measured (issue 17).
fn folds_upsampling<B: Backend>(c: &Conv2d<B>, device: &B::Device) -> bool {
    c.kernel_size == [2, 2]
        && c.stride == [1, 1]
        && c.dilation == [1, 1]
        && c.groups == 1
        && c.padding == PaddingConfig2d::Explicit(0, 0, 1, 1)
        && matches!(B::name(device).as_str(), "flex" | "autodiff<flex>")
}

/// `c(upsample2(x))` for a 2×2 convolution `c` padded bottom and right, computed as one
/// transposed convolution (stride 2, padding 1, output padding 1) of `x` with a 3×3 kernel
/// derived from `c`'s: no up-sampled or padded copy, and 2.25 instead of 4 multiply-adds per
/// output pixel and channel pair.
///
/// Along each axis, output `2i` reads input `i` through both taps (`w0 + w1`) and output
/// `2i + 1` reads input `i` through `w0` and input `i + 1` through `w1` (zero past the border,
/// as the padding); a transposed convolution places input `i` at outputs `2i − 1 + k`, so its
/// taps are `k = 0: w1`, `k = 1: w0 + w1`, `k = 2: w0`, per axis. The 3×3 kernel is the 2×2 one
/// times a constant 0/1 matrix (`[o·i, 4] × [4, 9]`): one product forward and one backward,
/// where sixteen tap slices, their sums and concatenations had cost ~6 ms of serial copies and
/// slice assignments per step in the backward pass (F=16 U-Net, BENCHMARKS.md "CPU training").
pub fn upsample_conv2x2<B: Backend>(c: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let w = c.weight.val();
    let [o, i, _, _] = w.dims();
    // Taps of the 2×2 kernel feeding each of the 3 transposed-kernel positions, per axis.
    const FROM: [&[usize]; 3] = [&[1], &[0, 1], &[0]];
    let mut spread = [0f32; 4 * 9];
    for (ky, ys) in FROM.iter().enumerate() {
        for (kx, xs) in FROM.iter().enumerate() {
            for &dy in *ys {
                for &dx in *xs {
                    spread[(dy * 2 + dx) * 9 + ky * 3 + kx] = 1.0;
                }
            }
        }
    }
    let spread = Tensor::<B, 2>::from_data(TensorData::new(spread.to_vec(), [4, 9]), &w.device());
    // [o, i, 2, 2] → [o, i, 3, 3] → the transposed convolution's [i, o, 3, 3].
    let kernel = w.reshape([o * i, 4]).matmul(spread).reshape([o, i, 3, 3]).swap_dims(0, 1);
    let options = ConvTransposeOptions::new([2, 2], [1, 1], [1, 1], [1, 1], 1);
    conv_transpose2d(x, kernel, c.bias.as_ref().map(|b| b.val()), options)
}

impl<B: Backend> ConvBlock<B> {
    /// Forward pass.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = conv_bn_relu(&self.conv1, self.bn1.as_ref(), x);
        conv_bn_relu(&self.conv2, self.bn2.as_ref(), x)
    }
}

/// `relu(bn(conv(x)))`, or without batch norm the fused [`conv_relu`].
fn conv_bn_relu<B: Backend>(conv: &Conv2d<B>, bn: Option<&BatchNorm<B>>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match bn {
        Some(bn) => relu(bn.forward(conv.forward(x))),
        None => conv_relu(conv, x),
    }
}

impl<B: Backend> UpBlock<B> {
    /// Upsamples `x`, concatenates `[skip, x]` and applies the block.
    pub fn forward(&self, x: Tensor<B, 4>, skip: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = match (&self.up_conv, &self.up_transpose) {
            (Some(c), _) if folds_upsampling(c, &x.device()) => upsample_conv2x2(c, x),
            (Some(c), _) => c.forward(upsample2(x)),
            (None, Some(t)) => t.forward(x),
            (None, None) => unreachable!("an up block has one upsampling layer"),
        };
        if let Some(bn) = &self.up_bn {
            x = bn.forward(x);
        }
        let x = relu(x);
        self.block.forward(Tensor::cat(vec![skip, x], 1))
    }
}

impl<B: Backend> Unet<B> {
    /// Number of down levels.
    pub fn depth(&self) -> usize {
        self.down.len()
    }

    /// Height and width must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        1 << self.depth()
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.down[0].conv1.weight.dims()[1]
    }

    /// `[N, C, H, W]` → class logits `[N, classes, H, W]` (before sigmoid/softmax).
    pub fn forward_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut skips = Vec::with_capacity(self.depth());
        let mut x = x;
        let last = self.depth() - 1;
        for (level, block) in self.down.iter().enumerate() {
            x = block.forward(x);
            if level == last {
                x = self.dropout.forward(x);
            }
            skips.push(x.clone());
            x = self.pool.forward(x);
        }
        x = self.dropout.forward(self.bottleneck.forward(x));
        for up in &self.up {
            x = up.forward(x, skips.pop().expect("one skip per level"));
        }
        self.out.forward(conv_bn_relu(&self.head, self.head_bn.as_ref(), x))
    }

    /// `[N, C, H, W]` → probabilities `[N, classes, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let logits = self.forward_logits(x);
        if self.classes == 1 { sigmoid(logits) } else { softmax(logits, 1) }
    }

    /// Multiply-adds of the convolutions of one forward pass over an `h` × `w` image (batch
    /// norm, pooling and activations excluded: they are a few operations per value).
    pub fn forward_macs(&self, h: usize, w: usize) -> u64 {
        let conv = |c: &Conv2d<B>, pixels: usize| (pixels * c.weight.dims().iter().product::<usize>()) as u64;
        let block = |b: &ConvBlock<B>, pixels: usize| conv(&b.conv1, pixels) + conv(&b.conv2, pixels);
        let pixels = |level: usize| (h >> level) * (w >> level);
        let mut macs = 0;
        for (level, b) in self.down.iter().enumerate() {
            macs += block(b, pixels(level));
        }
        macs += block(&self.bottleneck, pixels(self.depth()));
        for (i, up) in self.up.iter().enumerate() {
            let level = self.depth() - 1 - i;
            macs += match (&up.up_conv, &up.up_transpose) {
                (Some(c), _) => conv(c, pixels(level)),
                // A transposed convolution's taps run over its input pixels.
                (None, Some(t)) => (pixels(level + 1) * t.weight.dims().iter().product::<usize>()) as u64,
                (None, None) => 0,
            };
            macs += block(&up.block, pixels(level));
        }
        macs + conv(&self.head, pixels(0)) + conv(&self.out, pixels(0))
    }

    /// Floating-point operations of one training step on a batch of `batch` `h` × `w` images:
    /// the forward pass, the weight gradients (as many multiply-adds) and the data gradients
    /// (as many, less the first convolution's, whose input needs none), 2 per multiply-add.
    pub fn training_flops(&self, batch: usize, h: usize, w: usize) -> u64 {
        let forward = self.forward_macs(h, w);
        let first = (h * w * self.down[0].conv1.weight.dims().iter().product::<usize>()) as u64;
        2 * batch as u64 * (3 * forward - first)
    }

    /// Receptive-field radius in pixels of one output pixel (exact for this architecture:
    /// every layer's extent is accumulated at its resolution).
    pub fn receptive_field_radius(&self) -> usize {
        receptive_field_radius(self.depth())
    }

    /// The ONNX graph: input `input` `[batch, C, height, width]` (symbolic batch, height, width),
    /// output `probabilities` `[batch, classes, height, width]`.
    pub fn to_onnx(&self, metadata: &ModelMetadata) -> bioseg_onnx::proto::ModelProto {
        let mut g = GraphBuilder::new("unet");
        let dims_in =
            [Dim::symbol("batch"), Dim::Fixed(self.in_channels()), Dim::symbol("height"), Dim::symbol("width")];
        let mut x = g.input("input", &dims_in);
        let mut skips = Vec::new();
        for (level, block) in self.down.iter().enumerate() {
            x = export_block(&mut g, &format!("down{level}"), block, &x);
            skips.push(x.clone());
            x = g.max_pool(&format!("down{level}.pool"), &x, 2);
        }
        x = export_block(&mut g, "bottleneck", &self.bottleneck, &x);
        for (i, up) in self.up.iter().enumerate() {
            let name = format!("up{i}");
            let u = match (&up.up_conv, &up.up_transpose) {
                (Some(c), _) => {
                    let u = g.upsample_nearest(&format!("{name}.upsample"), &x, 2);
                    export_conv(&mut g, &format!("{name}.up_conv"), c, &u)
                }
                (None, Some(t)) => {
                    let w = t.weight.val();
                    let dims = w.dims();
                    g.conv_transpose2d(
                        &format!("{name}.up_transpose"),
                        &x,
                        &to_vec(w),
                        dims,
                        t.bias.as_ref().map(|b| to_vec(b.val())).as_deref(),
                        2,
                    )
                }
                (None, None) => unreachable!(),
            };
            let u = match &up.up_bn {
                Some(bn) => export_bn(&mut g, &format!("{name}.up_bn"), bn, &u),
                None => u,
            };
            let u = g.relu(&format!("{name}.up_relu"), &u);
            let skip = skips.pop().expect("skip");
            let cat = g.concat_channels(&format!("{name}.concat"), &[&skip, &u]);
            x = export_block(&mut g, &format!("{name}.block"), &up.block, &cat);
        }
        let mut h = export_conv(&mut g, "head", &self.head, &x);
        if let Some(bn) = &self.head_bn {
            h = export_bn(&mut g, "head.bn", bn, &h);
        }
        let h = g.relu("head.relu", &h);
        let logits = export_conv(&mut g, "out", &self.out, &h);
        let (probs, activation) = if self.classes == 1 {
            (g.sigmoid("out.sigmoid", &logits), OutputActivation::Sigmoid)
        } else {
            (g.softmax_channels("out.softmax", &logits), OutputActivation::Softmax)
        };
        let dims_out = [Dim::symbol("batch"), Dim::Fixed(self.classes), Dim::symbol("height"), Dim::symbol("width")];
        g.output(&probs, "probabilities", &dims_out);
        let mut md = metadata.clone();
        md.architecture.get_or_insert_with(|| "unet".into());
        md.task.get_or_insert_with(|| {
            if self.classes == 1 { "binary-segmentation" } else { "multiclass-segmentation" }.into()
        });
        md.layout = Some(TensorLayout::Nchw);
        md.input_channels = Some(self.in_channels());
        md.output = Some(activation);
        md.size_multiple = Some(self.size_multiple());
        let radius = self.receptive_field_radius();
        md.receptive_field_radius = Some(radius);
        md.recommended_halo.get_or_insert(radius.div_ceil(self.size_multiple()) * self.size_multiple());
        bioseg_onnx::model_from_graph(g.finish(), &md, "U-Net (zhixuhao/unet layout) by bioseg-train")
    }
}

impl<B: Backend> super::SegmentationNet<B> for Unet<B> {
    fn classes(&self) -> usize {
        self.classes
    }
    fn forward_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        Unet::forward_logits(self, x)
    }
    fn to_onnx(&self, metadata: &ModelMetadata) -> bioseg_onnx::proto::ModelProto {
        Unet::to_onnx(self, metadata)
    }
}

/// Receptive-field radius of a depth-`depth` U-Net (an upper bound, in input pixels): each
/// 3×3 conv adds 1 pixel at its level's scale (2^level); each 2×2 pool adds 1 at the finer
/// scale; each up level adds 1 for the nearest-upsampling offset and 1 for its 2×2 conv at the
/// finer scale; the head 3×3 adds 1.
pub fn receptive_field_radius(depth: usize) -> usize {
    let mut r = 0usize;
    for level in 0..depth {
        r += 2 << level; // two 3×3 convs at scale 2^level
        r += 1 << level; // 2×2 pooling window
    }
    r += 2 << depth; // bottleneck
    for level in (0..depth).rev() {
        r += 2 << level; // upsampling offset + 2×2 conv
        r += 2 << level; // two 3×3 convs
    }
    r + 1 // head 3×3
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 data")
}

fn export_conv<B: Backend>(g: &mut GraphBuilder, name: &str, c: &Conv2d<B>, x: &Value) -> Value {
    let w = c.weight.val();
    let dims = w.dims();
    let pads = match c.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
        PaddingConfig2d::Valid => [0, 0, 0, 0],
        PaddingConfig2d::Same => {
            let p = (dims[2] - 1) / 2;
            [p, p, dims[2] - 1 - p, dims[3] - 1 - p]
        }
    };
    g.conv2d(name, x, &to_vec(w), dims, c.bias.as_ref().map(|b| to_vec(b.val())).as_deref(), pads, 1)
}

fn export_bn<B: Backend>(g: &mut GraphBuilder, name: &str, bn: &BatchNorm<B>, x: &Value) -> Value {
    g.batch_norm(
        name,
        x,
        &to_vec(bn.gamma.val()),
        &to_vec(bn.beta.val()),
        &to_vec(bn.running_mean.value()),
        &to_vec(bn.running_var.value()),
        bn.epsilon as f32,
    )
}

fn export_block<B: Backend>(g: &mut GraphBuilder, name: &str, b: &ConvBlock<B>, x: &Value) -> Value {
    let mut y = export_conv(g, &format!("{name}.conv1"), &b.conv1, x);
    if let Some(bn) = &b.bn1 {
        y = export_bn(g, &format!("{name}.bn1"), bn, &y);
    }
    y = g.relu(&format!("{name}.relu1"), &y);
    y = export_conv(g, &format!("{name}.conv2"), &b.conv2, &y);
    if let Some(bn) = &b.bn2 {
        y = export_bn(g, &format!("{name}.bn2"), bn, &y);
    }
    g.relu(&format!("{name}.relu2"), &y)
}

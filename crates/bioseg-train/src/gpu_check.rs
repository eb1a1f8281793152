//! `bioseg-train gpu-check`: the checks and benchmark run on a GPU machine
//! (`tools/gpu/check.sh` calls it). Prints a Markdown table; exits non-zero if a check fails.
//!
//! 1. CPU-vs-GPU equality: the same U-Net weights give the same forward pass on both backends.
//! 2. A tiny U-Net trains on the GPU (its loss falls), exports ONNX, and tract's CPU output
//!    equals the GPU forward.
//! 3. Data parallel: one step over all GPUs (or two replicas on one GPU) equals a single-device
//!    step on the concatenated batch.
//! 4. Benchmark: training images/s for the classic U-Net (F=64, 512×512) and for F=16 at 256×256.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use crate::augment::{AugmentConfig, Sample, augment_batch};
use crate::device::CpuBackend;
use crate::model::unet::{Unet, UnetConfig};
use crate::train::losses::{Loss, LossKind};
use crate::train::unet::{RunOptions, UnetTraining, train_unet};

/// Options of `bioseg-train gpu-check`.
#[derive(Args, Debug)]
pub struct GpuCheckArgs {
    /// Number of GPUs to use for the data-parallel check (1: two replicas on GPU 0).
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// Timed training steps per benchmark (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Batch size of the F=64 512×512 benchmark.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Work folder (synthetic data, exported model).
    #[arg(short, long, default_value = "runs/gpu-check")]
    pub out: std::path::PathBuf,
    /// Use the CPU backend instead (for trying the script without a GPU).
    #[arg(long)]
    pub cpu: bool,
    /// Run only the training benchmarks (skip the correctness checks 1–3).
    #[arg(long)]
    pub bench_only: bool,
}

/// Largest CPU-vs-GPU difference accepted. Burn's CUDA convolutions and matmuls run on tensor
/// cores in TF32 (10-bit mantissa), as PyTorch's cuDNN convolutions do by default, so the GPU
/// agrees with the f32 CPU to TF32 precision, not to f32's.
const GPU_TOLERANCE: f32 = 5e-3;

struct Row(String, String, bool);

/// The table's rows, each printed as soon as it is known (a run cut short still reports).
#[derive(Default)]
struct Rows(Vec<Row>);

impl Rows {
    fn push(&mut self, row: Row) {
        use std::io::Write;
        if self.0.is_empty() {
            println!("| check | result | ok |\n|---|---|---|");
        }
        println!("| {} | {} | {} |", row.0, row.1, if row.2 { "yes" } else { "NO" });
        std::io::stdout().flush().ok();
        self.0.push(row);
    }
}

fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Every float parameter of `m`, flattened in module order.
fn weights<B: Backend>(m: &Unet<B>) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.extend(flat(param.val()));
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Largest difference between two parameter updates, relative to the largest update.
fn relative_update_diff(before: &[f32], a: &[f32], b: &[f32]) -> f32 {
    let scale = before.iter().zip(a).map(|(w, x)| (w - x).abs()).fold(0.0, f32::max).max(f32::MIN_POSITIVE);
    max_diff(a, b) / scale
}

/// One SGD step (learning rate 1, so the weight change is the gradient) of `model` on `batch`.
fn sgd_step<B: AutodiffBackend>(model: Unet<B>, batch: &[Sample], devices: &[B::Device]) -> Result<Vec<f32>> {
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    let mut optim = burn::optim::SgdConfig::new().init::<B, Unet<B>>();
    let (m, _) = crate::train::data_parallel::step(model, &mut optim, &loss, batch, devices, 1.0)?;
    Ok(weights(&m.valid()))
}

fn checks<B: AutodiffBackend>(args: &GpuCheckArgs, device: B::Device, rows: &mut Rows) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    if !args.bench_only {
        correctness::<B>(args, &device, rows)?;
    }
    benchmarks::<B>(args, &device, rows)
}

/// Checks 1–3: CPU vs GPU, a tiny training + export, data parallel vs one device.
fn correctness<B: AutodiffBackend>(args: &GpuCheckArgs, device: &B::Device, rows: &mut Rows) -> Result<()> {
    let device = device.clone();
    // 1. CPU vs GPU forward with the same weights.
    let cpu_dev = Default::default();
    let cfg = UnetConfig::new().with_filters(8).with_depth(3);
    let cpu_model: Unet<CpuBackend> = cfg.init(&cpu_dev);
    let x: Vec<f32> = (0..2 * 64 * 64).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let cpu_out = flat(
        cpu_model.forward(Tensor::<CpuBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &cpu_dev)),
    );
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<CpuBackend>::record(&recorder, cpu_model.clone().into_record(), ())?;
    let gpu_model: Unet<B::InnerBackend> =
        cfg.init(&device).load_record(Recorder::<B::InnerBackend>::load(&recorder, bytes, &device)?);
    let gpu_out = flat(
        gpu_model.forward(Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &device)),
    );
    let d = max_diff(&cpu_out, &gpu_out);
    rows.push(Row(
        "CPU vs GPU forward, same weights (U-Net F=8, 2x1x64x64)".into(),
        format!("max abs diff {d:.2e}"),
        d <= GPU_TOLERANCE,
    ));

    // 1b. CPU vs GPU gradients of the same loss, every parameter (the 8→2 and 2→1 heads included).
    let cfg = cfg.with_drop_rate(0.0);
    let cpu_model: Unet<crate::device::CpuAutodiff> = cfg.init(&cpu_dev);
    let bytes = Recorder::<crate::device::CpuAutodiff>::record(&recorder, cpu_model.clone().into_record(), ())?;
    let gpu_model: Unet<B> = cfg.init(&device).load_record(Recorder::<B>::load(&recorder, bytes, &device)?);
    let src = crate::augment::synthetic_samples(2, 96, 9)?;
    let batch = augment_batch(&src, 0, 2, 64, 64, &AugmentConfig::none(), 2);
    let before = weights(&cpu_model.valid());
    let cpu_after = sgd_step(cpu_model, &batch, std::slice::from_ref(&cpu_dev))?;
    let gpu_after = sgd_step(gpu_model, &batch, std::slice::from_ref(&device))?;
    let d = relative_update_diff(&before, &cpu_after, &gpu_after);
    rows.push(Row(
        "CPU vs GPU gradients, every parameter (U-Net F=8, BCE)".into(),
        format!("max diff {d:.2e} of the largest gradient"),
        d <= 1e-2,
    ));

    // 2. Tiny training on the GPU, export, tract vs GPU.
    let data = args.out.join("data");
    bioseg_data::write_dataset(
        &data,
        4,
        0,
        &bioseg_data::SynthParams { width: 128, height: 128, ..Default::default() },
        1,
    )?;
    let train = UnetTraining {
        data_dir: data,
        filters: 8,
        depth: 3,
        drop_rate: 0.0,
        epochs: 4,
        steps_per_epoch: 10,
        learning_rate: 3e-3,
        crop_width: 64,
        crop_height: 64,
        val_fraction: 0.25,
        ..Default::default()
    };
    let t0 = Instant::now();
    let trained =
        train_unet::<B>(&train, &RunOptions { quiet: true, ..Default::default() }, std::slice::from_ref(&device))?;
    let (first, last) = (trained.history[0].train_loss, trained.history.last().unwrap().train_loss);
    rows.push(Row(
        "tiny U-Net trains on the GPU (4 epochs x 10 steps)".into(),
        format!("loss {first:.3} -> {last:.3} in {:.1} s", t0.elapsed().as_secs_f64()),
        last < first,
    ));
    let onnx = args.out.join("tiny.onnx");
    crate::export::write_onnx(&trained.model.to_onnx(&crate::export::base_metadata()), &onnx)?;
    let tract_out = crate::engine::run_onnx(&onnx, &[2, 1, 64, 64], &x)?;
    let gpu_out = flat(
        trained
            .model
            .forward(Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &device)),
    );
    let d = max_diff(&tract_out, &gpu_out);
    rows.push(Row(
        "exported ONNX (tract, CPU) vs GPU forward".into(),
        format!("max abs diff {d:.2e}"),
        d <= GPU_TOLERANCE,
    ));

    // 3. Data parallel vs single device.
    let replicas: Vec<B::Device> = if args.gpus >= 2 {
        crate::device::replicas::<B>(&device, &(0..args.gpus).collect::<Vec<_>>())
    } else {
        vec![device.clone(), device.clone()]
    };
    let src = crate::augment::synthetic_samples(3, 128, 5)?;
    let batch = augment_batch(&src, 0, 2 * replicas.len(), 64, 64, &AugmentConfig::default(), 3);
    // SGD with learning rate 1, so the weight change is the gradient (Adam's normalised update
    // turns TF32 rounding of near-zero gradients into steps of ±lr).
    let m: Unet<B> = UnetConfig::new().with_filters(8).with_depth(3).with_drop_rate(0.0).init(&device);
    let before = weights(&m.valid());
    let single = sgd_step(m.clone(), &batch, std::slice::from_ref(&device))?;
    let dp = sgd_step(m, &batch, &replicas)?;
    let d = relative_update_diff(&before, &single, &dp);
    rows.push(Row(
        format!("data-parallel gradient over {} replica(s) vs one device", replicas.len()),
        format!("max diff {d:.2e} of the largest gradient"),
        d <= 1e-2,
    ));

    Ok(())
}

/// Check 4: training throughput.
fn benchmarks<B: AutodiffBackend>(args: &GpuCheckArgs, device: &B::Device, rows: &mut Rows) -> Result<()> {
    let device = device.clone();
    for (filters, size, batch_size) in [(64usize, 512usize, args.batch), (16, 256, 2)] {
        let ips = bench::<B>(filters, size, batch_size, args.steps, std::slice::from_ref(&device), false)?;
        rows.push(Row(
            format!("train U-Net F={filters} {size}x{size} batch {batch_size} (Adam + BCE)"),
            format!("{ips:.1} images/s, {:.1} ms/step", 1000.0 * batch_size as f64 / ips),
            true,
        ));
        if args.gpus >= 2 {
            let devs = crate::device::replicas::<B>(&device, &(0..args.gpus).collect::<Vec<_>>());
            let ips_dp = bench::<B>(filters, size, batch_size, args.steps, &devs, false)?;
            rows.push(Row(
                format!("  same, data parallel on {} GPUs (batch {} each)", args.gpus, batch_size),
                format!("{ips_dp:.1} images/s ({:.2}x)", ips_dp / ips),
                true,
            ));
        }
    }
    Ok(())
}

/// Floating-point operations of one training step of the benchmark's U-Net ([`bench`]).
pub fn training_flops(filters: usize, size: usize, batch: usize) -> u64 {
    let model: Unet<crate::device::CpuBackend> = UnetConfig::new().with_filters(filters).init(&Default::default());
    model.training_flops(batch, size, size)
}

/// Training images per second of a U-Net step on `devices` (one replica each).
///
/// With `profile`, the CPU kernels' per-operation times of the timed steps are collected
/// ([`burn_flex::bioseg::profile`]).
pub fn bench<B: AutodiffBackend>(
    filters: usize,
    size: usize,
    batch: usize,
    steps: usize,
    devices: &[B::Device],
    profile: bool,
) -> Result<f64> {
    let device = &devices[0];
    let src = crate::augment::synthetic_samples(2, size, 11)?;
    let global = batch * devices.len();
    let batch_samples = augment_batch(&src, 0, global, size, size, &AugmentConfig::none(), 1);
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    let mut model: Unet<B> = UnetConfig::new().with_filters(filters).with_drop_rate(0.0).init(device);
    let mut optim = AdamConfig::new().init::<B, Unet<B>>();
    let mut t0 = Instant::now();
    for i in 0..steps + 3 {
        if i <= 3 {
            B::sync(device).ok();
            if i > 0 {
                // Warm-up steps include kernel compilation (and autotuning where enabled).
                tracing::info!("F={filters} {size}² warm-up step {i}: {:.1} s", t0.elapsed().as_secs_f64());
            }
            t0 = Instant::now();
            burn_flex::bioseg::set_profiling(profile && i == 3);
        }
        let (m, _) = crate::train::data_parallel::step(model, &mut optim, &loss, &batch_samples, devices, 1e-4)?;
        model = m;
    }
    for d in devices {
        B::sync(d).ok();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    burn_flex::bioseg::set_profiling(false);
    Ok((steps * global) as f64 / elapsed)
}

/// `bioseg-train gpu-check`.
pub fn gpu_check(args: GpuCheckArgs) -> Result<()> {
    let mut rows = Rows::default();
    let spec = if args.cpu { crate::device::DeviceSpec::Cpu } else { crate::device::DeviceSpec::Cuda(0) };
    let result: Result<()> = crate::with_backend!(&spec, |B, device| checks::<B>(&args, device, &mut rows));
    result?;
    let failed = rows.0.iter().filter(|r| !r.2).count();
    anyhow::ensure!(failed == 0, "{failed} GPU check(s) failed");
    Ok(())
}

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
}

struct Row(String, String, bool);

fn samples(n: usize, size: usize, seed: u64) -> Result<Vec<Sample>> {
    let p = bioseg_data::SynthParams { width: size, height: size, ..Default::default() };
    (0..n as u64)
        .map(|s| {
            let g = bioseg_data::generate(&p, seed + s)?;
            Ok(Sample {
                image: g.image.mapv(|v| v as f32 / 255.0).insert_axis(ndarray::Axis(2)),
                mask: g.membrane.mapv(|v| u8::from(v > 127)),
            })
        })
        .collect()
}

fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn weights<B: Backend>(m: &Unet<B>) -> Vec<f32> {
    let mut v = Vec::new();
    for b in m.down.iter().chain(std::iter::once(&m.bottleneck)) {
        v.extend(flat(b.conv1.weight.val()));
        v.extend(flat(b.conv2.weight.val()));
    }
    v.extend(flat(m.out.weight.val()));
    v
}

fn checks<B: AutodiffBackend>(args: &GpuCheckArgs, device: B::Device, rows: &mut Vec<Row>) -> Result<()> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    // 1. CPU vs GPU forward with the same weights.
    let cpu_dev = Default::default();
    let cfg = UnetConfig::new().with_filters(8).with_depth(3);
    let cpu_model: Unet<CpuBackend> = cfg.init(&cpu_dev);
    let x: Vec<f32> = (0..2 * 64 * 64).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let cpu_out = flat(cpu_model.forward(Tensor::<CpuBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &cpu_dev)));
    use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<CpuBackend>::record(&recorder, cpu_model.clone().into_record(), ())?;
    let gpu_model: Unet<B::InnerBackend> =
        cfg.init(&device).load_record(Recorder::<B::InnerBackend>::load(&recorder, bytes, &device)?);
    let gpu_out = flat(gpu_model.forward(Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &device)));
    let d = max_diff(&cpu_out, &gpu_out);
    rows.push(Row("CPU vs GPU forward, same weights (U-Net F=8, 2x1x64x64)".into(), format!("max abs diff {d:.2e}"), d <= 1e-4));

    // 2. Tiny training on the GPU, export, tract vs GPU.
    let data = args.out.join("data");
    bioseg_data::write_dataset(&data, 4, 0, &bioseg_data::SynthParams { width: 128, height: 128, ..Default::default() }, 1)?;
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
    let trained = train_unet::<B>(&train, &RunOptions { quiet: true, ..Default::default() }, std::slice::from_ref(&device))?;
    let (first, last) = (trained.history[0].train_loss, trained.history.last().unwrap().train_loss);
    rows.push(Row(
        "tiny U-Net trains on the GPU (4 epochs x 10 steps)".into(),
        format!("loss {first:.3} -> {last:.3} in {:.1} s", t0.elapsed().as_secs_f64()),
        last < first,
    ));
    let onnx = args.out.join("tiny.onnx");
    crate::export::write_onnx(&trained.model.to_onnx(&crate::export::base_metadata()), &onnx)?;
    let model = bioseg_infer::OnnxModel::load(&onnx)?;
    let tract_out = model.run(&[2, 1, 64, 64], &x)?.swap_remove(0).1;
    let gpu_out = flat(trained.model.forward(Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(x.clone(), [2, 1, 64, 64]), &device)));
    let d = max_diff(&tract_out, &gpu_out);
    rows.push(Row("exported ONNX (tract, CPU) vs GPU forward".into(), format!("max abs diff {d:.2e}"), d <= 1e-4));

    // 3. Data parallel vs single device.
    let replicas: Vec<B::Device> = if args.gpus >= 2 {
        crate::device::replicas::<B>(&device, &(0..args.gpus).collect::<Vec<_>>())
    } else {
        vec![device.clone(), device.clone()]
    };
    let src = samples(3, 128, 5)?;
    let batch = augment_batch(&src, 0, 2 * replicas.len(), 64, 64, &AugmentConfig::default(), 3);
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    let m: Unet<B> = UnetConfig::new().with_filters(8).with_depth(3).with_drop_rate(0.0).init(&device);
    let mut o1 = AdamConfig::new().init::<B, Unet<B>>();
    let (single, _) = crate::train::data_parallel::step(m.clone(), &mut o1, &loss, &batch, std::slice::from_ref(&device), 1e-3)?;
    let mut o2 = AdamConfig::new().init::<B, Unet<B>>();
    let (dp, _) = crate::train::data_parallel::step(m, &mut o2, &loss, &batch, &replicas, 1e-3)?;
    let d = max_diff(&weights(&single.valid()), &weights(&dp.valid()));
    rows.push(Row(
        format!("data-parallel step over {} replica(s) vs one device", replicas.len()),
        format!("max abs weight diff {d:.2e}"),
        d <= 1e-5,
    ));

    // 4. Benchmarks.
    for (filters, size, batch_size) in [(64usize, 512usize, args.batch), (16, 256, 2)] {
        let ips = bench::<B>(filters, size, batch_size, args.steps, std::slice::from_ref(&device))?;
        rows.push(Row(
            format!("train U-Net F={filters} {size}x{size} batch {batch_size} (Adam + BCE)"),
            format!("{ips:.1} images/s, {:.1} ms/step", 1000.0 * batch_size as f64 / ips),
            true,
        ));
        if args.gpus >= 2 {
            let devs = crate::device::replicas::<B>(&device, &(0..args.gpus).collect::<Vec<_>>());
            let ips_dp = bench::<B>(filters, size, batch_size, args.steps, &devs)?;
            rows.push(Row(
                format!("  same, data parallel on {} GPUs (batch {} each)", args.gpus, batch_size),
                format!("{ips_dp:.1} images/s ({:.2}x)", ips_dp / ips),
                true,
            ));
        }
    }
    Ok(())
}

/// Training images per second of a U-Net step on `devices` (one replica each).
pub fn bench<B: AutodiffBackend>(filters: usize, size: usize, batch: usize, steps: usize, devices: &[B::Device]) -> Result<f64> {
    let device = &devices[0];
    let src = samples(2, size, 11)?;
    let global = batch * devices.len();
    let batch_samples = augment_batch(&src, 0, global, size, size, &AugmentConfig::none(), 1);
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    let mut model: Unet<B> = UnetConfig::new().with_filters(filters).with_drop_rate(0.0).init(device);
    let mut optim = AdamConfig::new().init::<B, Unet<B>>();
    let mut t0 = Instant::now();
    for i in 0..steps + 3 {
        if i == 3 {
            B::sync(device).ok();
            t0 = Instant::now();
        }
        let (m, _) = crate::train::data_parallel::step(model, &mut optim, &loss, &batch_samples, devices, 1e-4)?;
        model = m;
    }
    for d in devices {
        B::sync(d).ok();
    }
    Ok((steps * global) as f64 / t0.elapsed().as_secs_f64())
}

/// `bioseg-train gpu-check`.
pub fn gpu_check(args: GpuCheckArgs) -> Result<()> {
    let mut rows = Vec::new();
    let spec = if args.cpu { crate::device::DeviceSpec::Cpu } else { crate::device::DeviceSpec::Cuda(0) };
    let result: Result<()> = crate::with_backend!(&spec, |B, device| checks::<B>(&args, device, &mut rows));
    println!("| check | result | ok |\n|---|---|---|");
    for Row(name, value, ok) in &rows {
        println!("| {name} | {value} | {} |", if *ok { "yes" } else { "NO" });
    }
    result?;
    let failed = rows.iter().filter(|r| !r.2).count();
    anyhow::ensure!(failed == 0, "{failed} GPU check(s) failed");
    Ok(())
}

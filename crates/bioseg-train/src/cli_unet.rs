//! `bioseg-train unet | export | synth | demo`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use bioseg_data::weight_map::BorderWeights;
use bioseg_train::bioimageio::{PackageOptions, RunInfo};
use bioseg_train::device::DeviceSpec;
use bioseg_train::train::losses::{ClassWeights, LossKind};
use bioseg_train::train::schedule::LrSchedule;
use bioseg_train::train::unet::{RunOptions, UnetTraining, train_unet};

/// The library's defaults: the one source of every default `bioseg-train unet --help` shows.
fn defaults() -> UnetTraining {
    UnetTraining::default()
}

/// Per-pixel loss weights of `--weight-map`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMap {
    /// Pixels weigh by class only (--cw).
    None,
    /// The U-Net paper's border-weighted map.
    Unet,
}

/// Options of `bioseg-train unet` (named as in the Biowulf `unet` module's `train.py`).
#[derive(Args, Debug, Clone)]
pub struct UnetArgs {
    /// Data folder in the seed's layout: DATA/<object_class>/train/image/N.png with
    /// DATA/<object_class>/train/label/N.png (or mask/).
    #[arg(short = 'd', long = "data", default_value_os_t = defaults().data_dir)]
    pub data: PathBuf,
    /// Object class: the sub-folder of DATA to train on.
    #[arg(short = 'c', long = "object-class", default_value_t = defaults().object_class)]
    pub object_class: String,
    /// Output folder: checkpoints/, history.json/.csv, curves.png, model.onnx.
    #[arg(short, long, default_value = "runs/unet")]
    pub out: PathBuf,
    /// Augmentation rate: the effective data-size multiplier (steps/epoch = images × rate / batch).
    #[arg(short = 'a', long = "augmentation-rate", default_value_t = defaults().augmentation_rate)]
    pub augmentation_rate: usize,
    /// Turn every augmentation off (crops only).
    #[arg(long)]
    pub no_augment: bool,
    /// Batch size (per device).
    #[arg(short = 'b', long = "batch-size", default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Epochs.
    #[arg(short = 'e', long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    /// Start filters (the classic U-Net has 64).
    #[arg(short = 'F', long = "filters", default_value_t = defaults().filters)]
    pub filters: usize,
    /// Down levels (inputs must be multiples of 2^depth).
    #[arg(long, default_value_t = defaults().depth)]
    pub depth: usize,
    /// Input channels (1 gray, 3 RGB; images are converted).
    #[arg(long, default_value_t = defaults().in_channels)]
    pub in_channels: usize,
    /// Batch normalisation after every 3×3 convolution.
    #[arg(long)]
    pub batch_norm: bool,
    /// Decoder upsampling: nearest (UpSampling2D + Conv 2×2) or transpose (Conv2DTranspose).
    #[arg(long, default_value_t = defaults().upsample)]
    pub upsample: String,
    /// Dropout rate at the deepest levels.
    #[arg(long, default_value_t = defaults().drop_rate)]
    pub drop_rate: f64,
    /// Adam learning rate.
    #[arg(short = 'l', long = "lr", default_value_t = defaults().learning_rate)]
    pub learning_rate: f64,
    /// Loss: bce, wcce (weighted categorical CE), dice or tversky.
    #[arg(long, default_value_t = defaults().loss)]
    pub loss: LossKind,
    /// Tversky β: weight of false negatives (1 − β on false positives).
    #[arg(long, default_value_t = defaults().beta)]
    pub beta: f32,
    /// Focal-Tversky exponent γ ((1 − TI)^γ; 1 = plain Tversky).
    #[arg(long, default_value_t = defaults().gamma)]
    pub gamma: f32,
    /// Per-pixel loss weights: `none`, or `unet`, the U-Net paper's map w(x) = w_c(x) +
    /// w0·exp(−(d1 + d2)²/2σ²) (d1, d2: distances to the nearest and second nearest cell;
    /// w_c: the class weights of --cw, mean 1 over the training pixels), which weighs the thin
    /// gaps between touching cells. With --loss bce or wcce.
    #[arg(long, value_enum, default_value_t = WeightMap::None)]
    pub weight_map: WeightMap,
    /// --weight-map unet: the border weight w0.
    #[arg(long, default_value_t = BorderWeights::default().w0)]
    pub w0: f32,
    /// --weight-map unet: the border width σ in pixels.
    #[arg(long, default_value_t = BorderWeights::default().sigma)]
    pub sigma: f32,
    /// Learning-rate schedule over the run (epochs × steps per epoch): constant, or cosine
    /// (decays to 0 at the last step).
    #[arg(long, default_value_t = defaults().lr_schedule)]
    pub lr_schedule: LrSchedule,
    /// Steps of linear learning-rate warm-up at the start of the run.
    #[arg(long, default_value_t = defaults().warmup_steps)]
    pub warmup_steps: usize,
    /// Class weights: `w0,w1,…`, `auto` (inverse class areas, normalised) or `uniform`.
    #[arg(long = "cw", default_value_t = defaults().class_weights)]
    pub class_weights: ClassWeights,
    /// Training crop width.
    #[arg(short = 'X', long = "width", default_value_t = defaults().crop_width)]
    pub width: usize,
    /// Training crop height.
    #[arg(short = 'Y', long = "height", default_value_t = defaults().crop_height)]
    pub height: usize,
    /// Fraction of the images held out for validation (seeded random choice).
    #[arg(long, default_value_t = defaults().val_fraction)]
    pub val_fraction: f64,
    /// Hold out these images (file stems, e.g. `20,21,22,23,24`) instead of a random fraction.
    #[arg(long, value_delimiter = ',')]
    pub val_names: Vec<String>,
    /// Seed of the initial weights, the split, augmentation and dropout.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Steps per epoch (0: images × augmentation rate / batch).
    #[arg(long, default_value_t = defaults().steps_per_epoch)]
    pub steps_per_epoch: usize,
    /// Stop starting new epochs after this many minutes (0: no limit).
    #[arg(long, default_value_t = defaults().max_minutes)]
    pub max_minutes: f64,
    /// Class names, comma-separated (default: background,<object-class> for binary masks).
    #[arg(long, value_delimiter = ',')]
    pub class_names: Vec<String>,
    /// Resume from a checkpoint folder (or the newest in a folder of checkpoints), e.g.
    /// OUT/checkpoints.
    #[arg(short = 'w', long = "load-weights", conflicts_with = "init_from")]
    pub load_weights: Option<PathBuf>,
    /// Start from the weights of a Keras classic U-Net exported to ONNX (tf2onnx or Keras 3's
    /// `model.export`); its architecture (filters, depth, channels, batch norm, upsampling)
    /// replaces -F/--depth/--in-channels/--batch-norm/--upsample, with a warning where they differ.
    #[arg(long, value_name = "KERAS.onnx")]
    pub init_from: Option<PathBuf>,
    /// Write this many augmented training samples as PNGs into DIR before training.
    #[arg(long, value_name = "DIR")]
    pub save_augmented: Option<PathBuf>,
    /// Number of augmented samples --save-augmented writes.
    #[arg(long, default_value_t = 16)]
    pub save_augmented_count: usize,
    /// ONNX file written at the end [default: OUT/model.onnx].
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N (the first of several GPUs with -g).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Number of GPUs for data-parallel training (devices N, N+1, … from --device cuda:N):
    /// one replica per GPU, effective batch = batch size × GPUs.
    #[arg(short = 'g', long = "num-gpus", default_value_t = 1)]
    pub num_gpus: usize,
    /// Explicit device indices for data-parallel training, e.g. `0,2` (overrides -g).
    #[arg(long, value_delimiter = ',', conflicts_with = "num_gpus")]
    pub devices: Vec<usize>,
    /// Multiply the learning rate by the number of replicas (linear scaling rule).
    #[arg(long)]
    pub scale_lr: bool,
    /// Multi-node data parallel (build with `--features collective`): number of nodes, one
    /// `bioseg-train` process each [default: SLURM_STEP_NUM_NODES or SLURM_NNODES, else 1].
    /// Effective batch = batch size × GPUs × nodes. Rank R > 0 writes into OUT/node-R.
    #[arg(long, help_heading = "Multi-node")]
    pub nodes: Option<usize>,
    /// This node's rank, 0..nodes (rank 0 runs the coordinator) [default: SLURM_NODEID].
    #[arg(long, help_heading = "Multi-node")]
    pub node_rank: Option<usize>,
    /// The coordinator, HOST[:PORT] (rank 0's host; port 29400 by default) [default:
    /// BIOSEG_COORDINATOR, else the first host of SLURM_STEP_NODELIST/SLURM_JOB_NODELIST].
    #[arg(long, value_name = "HOST:PORT", help_heading = "Multi-node")]
    pub coordinator: Option<String>,
    /// Host or address under which the other nodes reach this one [default: SLURMD_NODENAME,
    /// else the host name].
    #[arg(long, value_name = "HOST", help_heading = "Multi-node")]
    pub node_address: Option<String>,
    /// Port of this node's tensor service [default: coordinator port + 1 + rank].
    #[arg(long, help_heading = "Multi-node")]
    pub data_port: Option<u16>,
    /// Seconds to wait for all nodes to join before failing [default: 600].
    #[arg(long, value_name = "SECONDS", help_heading = "Multi-node")]
    pub join_timeout: Option<u64>,
}

impl UnetArgs {
    /// Device indices of the replicas.
    pub fn replica_indices(&self) -> Vec<usize> {
        if !self.devices.is_empty() {
            return self.devices.clone();
        }
        let first = match self.device {
            DeviceSpec::Cuda(i) => i,
            DeviceSpec::Cpu | DeviceSpec::CpuNdarray => 0,
        };
        (first..first + self.num_gpus.max(1)).collect()
    }

    /// The library's run description.
    pub fn training(&self) -> UnetTraining {
        UnetTraining {
            data_dir: self.data.clone(),
            object_class: self.object_class.clone(),
            in_channels: self.in_channels,
            filters: self.filters,
            depth: self.depth,
            drop_rate: self.drop_rate,
            batch_norm: self.batch_norm,
            batch_norm_all: false,
            upsample: self.upsample.clone(),
            augmentation_rate: self.augmentation_rate,
            augment: if self.no_augment {
                bioseg_train::augment::AugmentConfig::none()
            } else {
                bioseg_train::augment::AugmentConfig::default()
            },
            batch_size: self.batch_size,
            epochs: self.epochs,
            learning_rate: if self.scale_lr {
                self.learning_rate * self.replica_indices().len() as f64
            } else {
                self.learning_rate
            },
            loss: self.loss,
            beta: self.beta,
            gamma: self.gamma,
            class_weights: self.class_weights.clone(),
            crop_width: self.width,
            crop_height: self.height,
            val_fraction: self.val_fraction,
            seed: self.seed,
            steps_per_epoch: self.steps_per_epoch,
            max_minutes: self.max_minutes,
            class_names: self.class_names.clone(),
            val_names: self.val_names.clone(),
            weight_map: match self.weight_map {
                WeightMap::None => None,
                WeightMap::Unet => Some(BorderWeights { w0: self.w0, sigma: self.sigma }),
            },
            lr_schedule: self.lr_schedule,
            warmup_steps: self.warmup_steps,
        }
    }
}

/// `bioseg-train unet`.
pub fn unet(mut args: UnetArgs, quiet: bool) -> Result<()> {
    let mut cfg = args.training();
    let multi_node = bioseg_train::train::multi_node::MultiNodeArgs {
        nodes: args.nodes,
        rank: args.node_rank,
        coordinator: args.coordinator.clone(),
        node_address: args.node_address.clone(),
        data_port: args.data_port,
        join_timeout_s: args.join_timeout,
    }
    .resolve()?;
    if let Some(m) = &multi_node {
        if args.scale_lr {
            cfg.learning_rate *= m.nodes as f64;
        }
        if m.rank > 0 {
            // Nodes may share a file system: rank R > 0 writes under OUT/node-R.
            let name = args.onnx.as_ref().and_then(|p| p.file_name()).map(PathBuf::from);
            args.out = args.out.join(format!("node-{}", m.rank));
            args.onnx = name.map(|n| args.out.join(n));
        }
        tracing::info!("multi-node run: {m}");
    }
    if let Some(keras) = &args.init_from {
        for w in bioseg_train::train::unet::adopt_keras_architecture(&mut cfg, keras)? {
            tracing::warn!("{w}");
        }
    }
    if args.out.exists() && !args.out.is_dir() {
        anyhow::bail!("output folder {} exists and is not a folder", args.out.display());
    }
    let onnx = args.onnx.clone().unwrap_or_else(|| args.out.join("model.onnx"));
    let opts = RunOptions {
        checkpoint_dir: Some(args.out.join("checkpoints")),
        resume_from: args.load_weights.clone(),
        quiet,
        on_epoch: Some(bioseg_train::history::write_history),
        out_dir: Some(args.out.clone()),
        save_augmented: args.save_augmented.clone().map(|d| (d, args.save_augmented_count)),
        init_from: args.init_from.clone(),
        multi_node,
    };
    bioseg_train::with_backend!(&args.device, |B, device| {
        let devices = bioseg_train::device::replicas::<B>(&device, &args.replica_indices());
        let trained = train_unet::<B>(&cfg, &opts, &devices)?;
        bioseg_train::history::write_history(&args.out, &trained.history, &trained.class_names);
        bioseg_train::export::export_trained(&trained, &cfg, &onnx)
            .with_context(|| format!("cannot export {}", onnx.display()))?;
        if let Some(h) = trained.history.last() {
            println!(
                "epoch {}: train loss {:.4}, {}",
                h.epoch,
                h.train_loss,
                h.validation_summary(&trained.class_names)
            );
        }
        println!("ONNX written to {}", onnx.display());
        Ok(())
    })
}

/// Options of `bioseg-train export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint folder (epoch-NNNNNN or best) or a folder of checkpoints (its newest).
    #[arg(long, conflicts_with_all = ["run", "model"], required_unless_present_any = ["run", "model"])]
    pub checkpoint: Option<PathBuf>,
    /// A finished run's folder (`bioseg-train unet -o RUN`): its model.onnx and, for the
    /// package's documentation, its best (else newest) checkpoint's configuration and history.
    #[arg(long, conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// An exported ONNX model to package.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The ONNX file to write (with --checkpoint).
    #[arg(long, required_unless_present = "bioimageio")]
    pub onnx: Option<PathBuf>,
    /// Also (or only) write a BioImage Model Zoo package (model spec 0.5): a .zip with the ONNX
    /// weights, rdf.yaml, test tensors computed by bioseg, a cover and documentation of the run.
    #[arg(long, value_name = "OUT.zip")]
    pub bioimageio: Option<PathBuf>,
    /// Package: its name [default: `bioseg U-Net CLASS` for a run or checkpoint, else the model
    /// file's name].
    #[arg(long, help_heading = "Package")]
    pub name: Option<String>,
    /// Package: a one-line description [default: written from the model's metadata].
    #[arg(long, help_heading = "Package")]
    pub description: Option<String>,
    /// Package: an author, `NAME` or `NAME|GITHUB_USER` (repeat for several; the zoo asks for a
    /// GitHub user among them, which its validator looks up online) [default: the login name].
    #[arg(long = "author", help_heading = "Package")]
    pub authors: Vec<String>,
    /// Package: the license, an SPDX identifier.
    #[arg(long, default_value_t = PackageOptions::default().license, help_heading = "Package")]
    pub license: String,
    /// Package: a further citation, `TEXT` or `TEXT|DOI` (repeat for several; the U-Net paper is
    /// always cited), e.g. the training data's papers.
    #[arg(long = "cite", help_heading = "Package")]
    pub cite: Vec<String>,
    /// Package: the image its test tensors and cover come from [default: the run's first
    /// validation image, else its first training image].
    #[arg(long, help_heading = "Package")]
    pub sample: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

/// `bioseg-train export`.
pub fn export(args: ExportArgs) -> Result<()> {
    for out in [&args.onnx, &args.bioimageio].into_iter().flatten() {
        bioseg_data::ensure_absent_or_overwrite(out, args.overwrite)?;
    }
    // The model to package and the run it came from.
    let (model, state) = match (&args.checkpoint, &args.run, &args.model) {
        (Some(ckpt), _, _) => {
            let tmp;
            let onnx = match &args.onnx {
                Some(o) => o.clone(),
                None => {
                    tmp = tempfile::Builder::new()
                        .suffix(".onnx")
                        .tempfile()
                        .context("cannot create a temporary file")?;
                    tmp.path().to_path_buf()
                }
            };
            bioseg_train::export::export_checkpoint(ckpt, &onnx)
                .with_context(|| format!("cannot export {}", onnx.display()))?;
            if args.onnx.is_some() {
                println!("ONNX written to {}", onnx.display());
            }
            let state = bioseg_train::checkpoint::read_state(&bioseg_train::checkpoint::resolve(ckpt)?)?;
            if let Some(out) = &args.bioimageio {
                package(&args, &onnx, Some(state), out)?;
            }
            return Ok(());
        }
        (None, Some(run), _) => {
            let (onnx, info) = RunInfo::from_run_folder(run)?;
            (onnx, info.state)
        }
        (None, None, Some(m)) => (m.clone(), None),
        (None, None, None) => unreachable!("clap requires one of --checkpoint, --run, --model"),
    };
    if let Some(o) = &args.onnx {
        std::fs::copy(&model, o).with_context(|| format!("cannot write {}", o.display()))?;
        println!("ONNX written to {}", o.display());
    }
    if let Some(out) = &args.bioimageio {
        package(&args, &model, state, out)?;
    }
    Ok(())
}

/// Writes the package of `onnx` and prints what it holds.
fn package(
    args: &ExportArgs,
    onnx: &Path,
    state: Option<bioseg_train::checkpoint::CheckpointState>,
    out: &Path,
) -> Result<()> {
    let options = PackageOptions {
        name: args.name.clone(),
        description: args.description.clone(),
        authors: args.authors.clone(),
        license: args.license.clone(),
        cite: args
            .cite
            .iter()
            .map(|c| match c.split_once('|') {
                Some((t, d)) => (t.trim().to_owned(), Some(d.trim().to_owned())),
                None => (c.trim().to_owned(), None),
            })
            .collect(),
        sample: args.sample.clone(),
        ..Default::default()
    };
    let run = RunInfo { state };
    let summary = bioseg_train::bioimageio::export_package(onnx, &run, &options, out, args.overwrite)
        .with_context(|| format!("cannot write the package {}", out.display()))?;
    println!(
        "BioImage Model Zoo package written to {} ({}; test input {:?} from {})",
        summary.path.display(),
        summary.files.join(", "),
        summary.test_shape,
        summary.sample.display()
    );
    Ok(())
}

/// Options of `bioseg-train synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (seed layout: OUT/{membrane,mito,multiclass}/{train,test}/…).
    #[arg(short, long, default_value = "data/synth")]
    pub out: PathBuf,
    /// Training images per class.
    #[arg(long, default_value_t = 12)]
    pub train: usize,
    /// Test images per class.
    #[arg(long, default_value_t = 4)]
    pub test: usize,
    /// Image width and height.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `bioseg-train synth`.
pub fn synth(args: SynthArgs) -> Result<()> {
    let params = bioseg_data::synth::SynthParams { width: args.size, height: args.size, ..Default::default() };
    bioseg_data::synth::write_dataset(&args.out, args.train, args.test, &params, args.seed)
        .with_context(|| format!("cannot write the synthetic dataset to {}", args.out.display()))?;
    println!("synthetic dataset written to {}", args.out.display());
    Ok(())
}

/// Options of `bioseg-train demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output folder for the data, the run and the prediction.
    #[arg(short, long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training time budget in minutes.
    #[arg(long, default_value_t = 3.0)]
    pub minutes: f64,
    /// Start filters of the demo U-Net.
    #[arg(short = 'F', long = "filters", default_value_t = 8)]
    pub filters: usize,
    /// Side of the large synthetic image predicted at the end.
    #[arg(long, default_value_t = 1024)]
    pub predict_size: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `bioseg-train demo`: synth → train → export → `bioseg predict` → metrics and overlay.
pub fn demo(args: DemoArgs, quiet: bool) -> Result<()> {
    let DemoArgs { out, minutes, filters, predict_size, seed } = args;
    bioseg_train::demo::run_demo(&bioseg_train::demo::Demo { out, minutes, filters, predict_size, seed }, quiet)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Unet {
        #[command(flatten)]
        args: UnetArgs,
    }

    /// `bioseg-train unet` without options trains what the library's `UnetTraining::default()`
    /// describes (the defaults have one source).
    #[test]
    fn no_options_give_the_librarys_defaults() {
        assert_eq!(Unet::parse_from(["unet"]).args.training(), UnetTraining::default());
    }
}

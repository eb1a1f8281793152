//! A trained model as a BioImage Model Zoo package (`bioseg-train export --bioimageio`): the
//! ONNX weights, a model description (`rdf.yaml`, model spec 0.5) that says what bioseg's
//! metadata says (axes, the size multiple as the size step, the recommended halo, the
//! normalisation as preprocessing, a sigmoid or softmax as postprocessing where the graph ends in
//! logits), test tensors computed by bioseg and sample tensors to look at, a cover (the test
//! input with its predicted classes) and documentation written from the run (data, recipe,
//! validation metrics).
//!
//! The description is read back with `bioseg_bioimageio::read_description` before anything is
//! written, and the expected test output is computed from what it reads: the package states
//! exactly what bioseg ran. `tools/bioimageio/check.sh` validates packages with the zoo's own
//! tools (`bioimageio.spec`, `bioimageio.core`'s `test_model`).

use std::path::{Path, PathBuf};

use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};
use ndarray::{Array2, ArrayD, Axis, IxDyn, s};
use serde_json::{Value, json};

use crate::checkpoint::CheckpointState;
use crate::error::TrainError;

/// The model spec version packages are written in.
pub const FORMAT_VERSION: &str = "0.5.4";

/// The U-Net paper, cited by every package.
const UNET_CITATION: (&str, &str) = (
    "Ronneberger, O., Fischer, P., Brox, T. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
);

/// What a package says besides the model itself.
#[derive(Clone, Debug)]
pub struct PackageOptions {
    /// `name` (default: the model file's stem).
    pub name: Option<String>,
    /// `description` (default: one generated from the model).
    pub description: Option<String>,
    /// Authors: `NAME` or `NAME|GITHUB_USER` (at least one is written: the default is the
    /// user's login name).
    pub authors: Vec<String>,
    /// SPDX license identifier.
    pub license: String,
    /// Further citations: text and optional DOI (the data's papers).
    pub cite: Vec<(String, Option<String>)>,
    /// Tags (the zoo's search terms).
    pub tags: Vec<String>,
    /// The image the test tensors and the cover come from (default: the run's first validation
    /// or training image).
    pub sample: Option<PathBuf>,
}

impl Default for PackageOptions {
    fn default() -> Self {
        PackageOptions {
            name: None,
            description: None,
            authors: vec![],
            license: "CC-BY-4.0".into(),
            cite: vec![],
            tags: vec!["segmentation".into(), "unet".into(), "bioseg".into()],
            sample: None,
        }
    }
}

/// The run a model came from: its checkpoint state (configuration, history), if known.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    /// The checkpoint state (`state.json`).
    pub state: Option<CheckpointState>,
}

impl RunInfo {
    /// A finished run's folder (`bioseg-train unet -o RUN`): its `model.onnx` and its best
    /// (else newest) checkpoint's state.
    pub fn from_run_folder(run: &Path) -> Result<(PathBuf, RunInfo), TrainError> {
        let onnx = run.join("model.onnx");
        if !onnx.is_file() {
            return Err(config_err(format!("{} has no model.onnx (is the run finished?)", run.display())));
        }
        let checkpoints = run.join("checkpoints");
        let best = checkpoints.join("best");
        let checkpoint =
            if best.is_dir() { Some(best) } else { crate::checkpoint::latest(&checkpoints).ok().flatten() };
        let state = checkpoint.map(|c| crate::checkpoint::read_state(&c)).transpose()?;
        Ok((onnx, RunInfo { state }))
    }
}

/// What [`export_package`] wrote.
#[derive(Clone, Debug)]
pub struct PackageSummary {
    /// The package.
    pub path: PathBuf,
    /// The test input's shape.
    pub test_shape: Vec<usize>,
    /// The image it came from.
    pub sample: PathBuf,
    /// The files in the archive.
    pub files: Vec<String>,
}

fn config_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(e.to_string())
}

/// The run's data folder and object class, from its configuration.
fn run_data(run: &RunInfo) -> Option<(PathBuf, String, Vec<String>)> {
    let c = &run.state.as_ref()?.config;
    let dir = PathBuf::from(c.get("data_dir")?.as_str()?);
    let class = c.get("object_class")?.as_str()?.to_owned();
    let val = c
        .get("val_names")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    Some((dir, class, val))
}

/// The sample image: the option, else the run's first validation image, else its first
/// training image (by name).
fn sample_path(options: &PackageOptions, run: &RunInfo) -> Result<PathBuf, TrainError> {
    if let Some(p) = &options.sample {
        return Ok(p.clone());
    }
    let missing =
        || config_err("no sample image: give one with --sample (the test tensors and the cover come from it)");
    let (dir, class, val) = run_data(run).ok_or_else(missing)?;
    let images = dir.join(&class).join("train").join("image");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images)
        .map_err(|_| missing())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    files.iter().find(|p| val.contains(&stem(p))).or(files.first()).cloned().ok_or_else(missing)
}

/// The test input `[1, C, H, W]` (or NHWC): a crop of the sample of side `side`, raw values.
fn test_input(sample: &Path, channels: usize, layout: TensorLayout, side: usize) -> Result<ArrayD<f32>, TrainError> {
    let image = bioseg_data::read_image(sample)?;
    let (h, w, c) = image.data.dim();
    if h < side || w < side {
        return Err(config_err(format!(
            "sample {} is {w}x{h}; the package's test input needs at least {side}x{side} (the model's halo and size step)",
            sample.display()
        )));
    }
    let (y0, x0) = ((h - side) / 2, (w - side) / 2);
    let crop = image.data.slice(s![y0..y0 + side, x0..x0 + side, ..]);
    let crop = match (c, channels) {
        (c, k) if c == k => crop.to_owned(),
        (3, 1) => crop.mean_axis(Axis(2)).expect("three channels").insert_axis(Axis(2)),
        (1, k) => crop.broadcast((side, side, k)).expect("one channel").to_owned(),
        (c, k) => return Err(config_err(format!("sample {} has {c} channels, the model takes {k}", sample.display()))),
    };
    let hwc = crop.insert_axis(Axis(0)).into_dyn();
    Ok(match layout {
        TensorLayout::Nhwc => hwc,
        _ => hwc.permuted_axes(IxDyn(&[0, 3, 1, 2])).as_standard_layout().to_owned(),
    })
}

/// An author entry from `NAME` or `NAME|GITHUB_USER` (the zoo asks for a GitHub user among the
/// authors).
fn author(a: &str) -> Value {
    match a.split_once('|') {
        Some((name, user)) => json!({"name": name.trim(), "github_user": user.trim()}),
        None => json!({"name": a.trim()}),
    }
}

/// A step with its kwargs, as the spec writes it.
fn step(id: &str, kwargs: Value) -> Value {
    json!({"id": id, "kwargs": kwargs})
}

/// The preprocessing that is `norm` (an 8-bit sample's default: divide by 255).
fn preprocessing(norm: Normalization) -> Result<Vec<Value>, TrainError> {
    Ok(match norm {
        Normalization::None => vec![],
        Normalization::Divide(d) => vec![step("scale_linear", json!({"gain": 1.0 / d as f64, "offset": 0.0}))],
        Normalization::ZScore { mean, std } => {
            vec![step("fixed_zero_mean_unit_variance", json!({"mean": mean as f64, "std": std as f64}))]
        }
        Normalization::ZScorePerImage => vec![step("zero_mean_unit_variance", json!({"eps": 1e-6}))],
        Normalization::Percentile { low, high } => {
            vec![step("scale_range", json!({"min_percentile": low as f64, "max_percentile": high as f64, "eps": 1e-6}))]
        }
    })
}

/// The documentation (`README.md`): the model, its data and recipe, validation metrics, use.
fn documentation(
    name: &str,
    iface: &crate::engine::ModelInterface,
    run: &RunInfo,
    classes: &[String],
    citations: &[(String, Option<String>)],
) -> String {
    let md = &iface.metadata;
    let mut d = format!("# {name}\n\n");
    d += &format!(
        "A {} trained and exported by {} (bioseg, a Rust toolchain for segmentation of biological images).\n\n",
        md.architecture.as_deref().unwrap_or("segmentation network"),
        md.writer.as_deref().unwrap_or("bioseg-train")
    );
    d += "## Model\n\n";
    d += &format!(
        "- input: {} channel(s), layout {}, height and width multiples of {} (at least {} with the halo)\n",
        iface.channels,
        iface.layout,
        iface.size_multiple,
        min_side(iface)
    );
    d += &format!("- output: {} channel(s): {}\n", iface.classes, classes.join(", "));
    d += &format!(
        "- normalisation: {}; recommended tiling halo: {} px\n\n",
        md.normalization.map(|n| n.to_string()).unwrap_or_else(|| "divide:255".into()),
        iface.halo
    );
    if let Some(state) = &run.state {
        let c = &state.config;
        d += "## Training data\n\n";
        d += &format!(
            "Images of `{}` (class `{}`), validation images {}.\n\n",
            c.get("data_dir").and_then(Value::as_str).unwrap_or("?"),
            c.get("object_class").and_then(Value::as_str).unwrap_or("?"),
            c.get("val_names").map(|v| v.to_string()).unwrap_or_else(|| "a random fraction".into())
        );
        d += "## Training recipe\n\n";
        for key in [
            "filters",
            "depth",
            "batch_norm",
            "upsample",
            "loss",
            "class_weights",
            "learning_rate",
            "lr_schedule",
            "warmup_steps",
            "batch_size",
            "crop_width",
            "crop_height",
            "steps_per_epoch",
            "seed",
        ] {
            if let Some(v) = c.get(key) {
                d += &format!("- {key}: {v}\n");
            }
        }
        d += &format!("- epochs: {}\n\n", state.epoch);
    }
    d += "# Validation\n\n";
    let last = run.state.as_ref().and_then(|s| s.history.as_array()).and_then(|h| h.last());
    // Held-out images (a fraction or names) and scores recorded: see UnetTraining::holds_out_validation.
    let held_out = run.state.as_ref().is_some_and(|s| {
        s.config["val_fraction"].as_f64().is_some_and(|f| f > 0.0)
            || s.config["val_names"].as_array().is_some_and(|n| !n.is_empty())
    });
    let validated = |last: &serde_json::Value| held_out && last["val_dice"].as_array().is_some_and(|d| !d.is_empty());
    match last {
        Some(last) if !validated(last) => {
            d += "Trained on all the data (no validation split): see the card of the recipe for its validation.\n\n";
        }
        Some(last) => {
            d += "Validation crops after the last epoch (bioseg-train's own validation):\n\n| metric | value |\n|---|---|\n";
            for key in ["val_loss", "val_pixel_error", "val_dice", "val_iou"] {
                if let Some(v) = last.get(key) {
                    d += &format!("| {key} | {v} |\n");
                }
            }
            d += "\n";
        }
        None => d += "No training history was given with the model.\n\n",
    }
    d += "The package's test tensors were computed by bioseg (tract, CPU); `bioimageio.core`'s \
`test_model` reproduces them with ONNX Runtime.\n\n";
    d += "## Use\n\n```\nbioseg predict -m this_package.zip -i image.png -o probabilities.tif --output-type prob-f32\n```\n\n";
    d += "Any tool that runs BioImage Model Zoo packages with ONNX weights (ilastik, deepImageJ, QuPath, \
`bioimageio.core`) runs it too. Intended for images like the training data; check the predictions \
on your own images before relying on them.\n\n## Citations\n\n";
    for (text, doi) in citations {
        d += &format!("- {text}{}\n", doi.as_ref().map(|d| format!(" doi:{d}")).unwrap_or_default());
    }
    d
}

/// The smallest input side the package allows: a multiple of the size step above twice the
/// halo (the spec's rule for outputs with a halo).
fn min_side(iface: &crate::engine::ModelInterface) -> usize {
    let m = iface.size_multiple.max(1);
    (2 * iface.halo / m + 1) * m
}

/// The cover: the test input's first channel (scaled to 0–255) with the predicted classes over
/// it, as PNG bytes.
fn cover(x: &ArrayD<f32>, probs: &ArrayD<f32>, layout: TensorLayout) -> Result<Vec<u8>, TrainError> {
    let (img, p) = match layout {
        TensorLayout::Nhwc => (
            x.slice(s![0, .., .., 0]).to_owned(),
            probs.index_axis(Axis(0), 0).permuted_axes(IxDyn(&[2, 0, 1])).to_owned(),
        ),
        _ => (x.slice(s![0, 0, .., ..]).to_owned(), probs.index_axis(Axis(0), 0).to_owned()),
    };
    let (lo, hi) = img.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let gray: Array2<u8> = img.mapv(|v| (255.0 * (v - lo) / (hi - lo).max(1e-6)).round() as u8);
    let p = p.into_dimensionality::<ndarray::Ix3>().map_err(config_err)?;
    let labels = crate::engine::labels_of(p.view());
    let rgb = bioseg_data::overlay::overlay_labels(&gray.view(), &labels.view(), 0.4);
    let (h, w, _) = rgb.dim();
    file_bytes("png", |p| {
        Ok(bioseg_data::write_rgb_u8_png(p, w as u32, h as u32, rgb.as_slice().expect("standard layout"))?)
    })
}

/// The bytes `write` puts into a temporary file named `*.ext`.
fn file_bytes(ext: &str, write: impl FnOnce(&Path) -> Result<(), TrainError>) -> Result<Vec<u8>, TrainError> {
    let tmp =
        tempfile::Builder::new().suffix(&format!(".{ext}")).tempfile().map_err(TrainError::io("a temporary file"))?;
    write(tmp.path())?;
    std::fs::read(tmp.path()).map_err(TrainError::io(tmp.path()))
}

/// `[1, C, H, W]` (or NHWC) as `[C, H, W]`.
fn planes(t: &ArrayD<f32>, layout: TensorLayout) -> Result<ndarray::Array3<f32>, TrainError> {
    let t = t.index_axis(Axis(0), 0);
    let t = if layout == TensorLayout::Nhwc { t.permuted_axes(IxDyn(&[2, 0, 1])) } else { t };
    t.to_owned().into_dimensionality::<ndarray::Ix3>().map_err(config_err)
}

/// The sample tensors (images a person can look at): the test input as an 8-bit PNG (gray, or
/// RGB for three channels) and the test output as a float32 TIFF (a page per channel).
fn sample_tensors(x: &ArrayD<f32>, y: &ArrayD<f32>, layout: TensorLayout) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
    let input = planes(x, layout)?;
    let (c, h, w) = input.dim();
    let to_u8 = |v: &f32| v.round().clamp(0.0, 255.0) as u8;
    let png = file_bytes("png", |p| {
        if c == 3 {
            let px: Vec<u8> = input.view().permuted_axes([1, 2, 0]).iter().map(to_u8).collect();
            bioseg_data::write_rgb_u8_png(p, w as u32, h as u32, &px)?;
        } else {
            let px: Vec<u8> = input.index_axis(Axis(0), 0).iter().map(to_u8).collect();
            bioseg_data::write_gray_u8(p, w as u32, h as u32, &px)?;
        }
        Ok(())
    })?;
    let output = planes(y, layout)?;
    let (k, h, w) = output.dim();
    let tif = file_bytes("tif", |p| {
        let mut writer =
            bioseg_data::volume::TiffStackWriter::create(p, w, h, k, bioseg_data::volume::VolumeDType::F32, true)?
                .hyperstack(k, 1)?;
        for plane in output.outer_iter() {
            writer.write_page(&plane.iter().copied().collect::<Vec<f32>>())?;
        }
        Ok(writer.finish()?)
    })?;
    Ok((png, tif))
}

/// Writes the package of the ONNX model at `onnx` (from `run`, if known) to `out` (a `.zip`).
pub fn export_package(
    onnx: &Path,
    run: &RunInfo,
    options: &PackageOptions,
    out: &Path,
    overwrite: bool,
) -> Result<PackageSummary, TrainError> {
    let iface = crate::engine::model_interface(onnx).map_err(config_err)?;
    let md = &iface.metadata;
    let name = options.name.clone().unwrap_or_else(|| match run_data(run) {
        Some((_, class, _)) => format!("bioseg U-Net {class}"),
        None => onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bioseg model".into()),
    });
    // One name per output channel; a binary model's one channel is its second class (`p > 0.5`
    // is class 1).
    let classes: Vec<String> = match (md.classes.len(), iface.classes) {
        (n, k) if n == k => md.classes.clone(),
        (2, 1) => vec![md.classes[1].clone()],
        (_, k) => (0..k).map(|c| format!("class{c}")).collect(),
    };
    let description = options.description.clone().unwrap_or_else(|| {
        format!(
            "{} for {}-channel images: {} output channel(s) ({}), trained with bioseg",
            md.architecture.as_deref().unwrap_or("segmentation network"),
            iface.channels,
            iface.classes,
            classes.join(", ")
        )
    });
    let authors = if options.authors.is_empty() {
        vec![std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "bioseg user".into())]
    } else {
        options.authors.clone()
    };
    let mut citations = vec![(UNET_CITATION.0.to_owned(), Some(UNET_CITATION.1.to_owned()))];
    citations.extend(options.cite.iter().cloned());

    let sample = sample_path(options, run)?;
    let side = min_side(&iface).max(256usize.div_ceil(iface.size_multiple.max(1)) * iface.size_multiple.max(1));
    let x = test_input(&sample, iface.channels, iface.layout, side)?;
    let norm = md.normalization.unwrap_or(Normalization::Divide(255.0));
    let logits = iface.activation == OutputActivation::Logits;
    let post: Vec<Value> = match (logits, iface.classes) {
        (false, _) => vec![],
        (true, 1) => vec![json!({"id": "sigmoid"})],
        (true, _) => vec![json!({"id": "softmax", "kwargs": {"axis": "channel"}})],
    };
    let input_names: Vec<String> = match iface.channels {
        1 => vec!["raw".into()],
        3 => vec!["red".into(), "green".into(), "blue".into()],
        k => (0..k).map(|c| format!("channel{c}")).collect(),
    };
    let space = |id: &str, size: Value, halo: Option<usize>| {
        let mut a = json!({"type": "space", "id": id, "size": size});
        if let Some(h) = halo {
            a["halo"] = json!(h);
        }
        a
    };
    // A graph with a fixed batch takes batches of one.
    let batch = if iface.batch_symbolic { json!({"type": "batch"}) } else { json!({"type": "batch", "size": 1}) };
    let axes = |channel: Value, y: Value, x: Value| match iface.layout {
        TensorLayout::Nhwc => json!([batch, y, x, channel]),
        _ => json!([batch, channel, y, x]),
    };
    let size_in = json!({"min": min_side(&iface), "step": iface.size_multiple});
    let size_out = |a: &str| json!({"tensor_id": "raw", "axis_id": a});
    let onnx_bytes = std::fs::read(onnx).map_err(TrainError::io(onnx))?;
    let opset = bioseg_onnx::decode_model(&onnx_bytes, onnx)?
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(17);
    let timestamp = now_iso8601();
    let mut rdf = json!({
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "authors": authors.iter().map(|a| author(a)).collect::<Vec<_>>(),
        "cite": citations.iter().map(|(t, d)| match d { Some(d) => json!({"text": t, "doi": d}), None => json!({"text": t, "url": "https://bioimage.io"}) }).collect::<Vec<_>>(),
        "license": options.license,
        "tags": options.tags,
        "documentation": "README.md",
        "covers": ["cover.png"],
        "timestamp": timestamp,
        "inputs": [{
            "id": "raw",
            "description": format!("raw image, {} channel(s)", iface.channels),
            "axes": axes(json!({"type": "channel", "channel_names": input_names}), space("y", size_in.clone(), None), space("x", size_in, None)),
            "test_tensor": {"source": "test_input.npy"},
            "sample_tensor": {"source": "sample_input.png"},
            "data": {"type": "float32"},
            "preprocessing": preprocessing(norm)?,
        }],
        "outputs": [{
            "id": "probabilities",
            "description": format!("probability of each class: {}", classes.join(", ")),
            "axes": axes(json!({"type": "channel", "channel_names": classes}), space("y", size_out("y"), Some(iface.halo)), space("x", size_out("x"), Some(iface.halo))),
            "test_tensor": {"source": "test_output.npy"},
            "sample_tensor": {"source": "sample_output.tif"},
            "data": {"type": "float32"},
            "postprocessing": post,
        }],
        "weights": {"onnx": {"source": "model.onnx", "sha256": bioseg_bioimageio::sha256_hex(&onnx_bytes), "opset_version": opset}},
        "config": {"bioseg": {
            "writer": crate::export::writer_tag(),
            "normalization": norm.to_string(),
            "recommended_halo": iface.halo,
            "size_multiple": iface.size_multiple,
        }},
    });
    // The training data, machine-readable (the zoo's `training_data` field takes only zoo
    // dataset ids or full dataset descriptions).
    if let Some((dir, class, val)) = run_data(run) {
        rdf["config"]["bioseg"]["training_data"] =
            json!({"folder": dir.display().to_string(), "object_class": class, "validation_images": val});
    }
    // What a reader makes of the description, and the output it expects.
    let described = bioseg_bioimageio::read_description(&rdf)
        .map_err(|e| config_err(format!("the package's own description: {e}")))?;
    let mut package_md = md.clone();
    package_md.normalization = described.metadata.normalization;
    package_md.output = described.metadata.output;
    package_md.layout = described.metadata.layout;
    let y = crate::engine::package_output(onnx, &package_md, x.clone()).map_err(config_err)?;
    let x_npy = bioseg_data::npy_bytes(&x);
    let y_npy = bioseg_data::npy_bytes(&y);
    rdf["inputs"][0]["test_tensor"]["sha256"] = json!(bioseg_bioimageio::sha256_hex(&x_npy));
    rdf["outputs"][0]["test_tensor"]["sha256"] = json!(bioseg_bioimageio::sha256_hex(&y_npy));
    let readme = documentation(&name, &iface, run, &classes, &citations);
    let (sample_in, sample_out) = sample_tensors(&x, &y, iface.layout)?;
    let files = vec![
        ("model.onnx".to_owned(), onnx_bytes),
        ("test_input.npy".to_owned(), x_npy),
        ("test_output.npy".to_owned(), y_npy),
        ("sample_input.png".to_owned(), sample_in),
        ("sample_output.tif".to_owned(), sample_out),
        ("cover.png".to_owned(), cover(&x, &y, iface.layout)?),
        ("README.md".to_owned(), readme.into_bytes()),
    ];
    bioseg_bioimageio::write_package(out, &rdf, &files, overwrite).map_err(config_err)?;
    Ok(PackageSummary {
        path: out.to_path_buf(),
        test_shape: x.shape().to_vec(),
        sample,
        files: std::iter::once("rdf.yaml".to_owned()).chain(files.into_iter().map(|(n, _)| n)).collect(),
    })
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS` (the description's `timestamp`).
fn now_iso8601() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing_reads_back_as_the_normalisation() {
        for n in [
            Normalization::Divide(255.0),
            Normalization::ZScore { mean: 10.0, std: 4.0 },
            Normalization::ZScorePerImage,
            Normalization::Percentile { low: 1.0, high: 99.8 },
        ] {
            let rdf = json!({
                "type": "model", "format_version": FORMAT_VERSION, "name": "t",
                "inputs": [{"id": "raw", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["raw"]},
                    {"type": "space", "id": "y", "size": {"min": 32, "step": 16}}, {"type": "space", "id": "x", "size": {"min": 32, "step": 16}}],
                    "preprocessing": preprocessing(n).unwrap()}],
                "outputs": [{"id": "p", "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["m"]},
                    {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}}, {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}}]}],
                "weights": {"onnx": {"source": "model.onnx"}}
            });
            let back = bioseg_bioimageio::read_description(&rdf).unwrap().metadata.normalization.unwrap();
            match (n, back) {
                (Normalization::Divide(d), Normalization::ZScore { mean, std }) => {
                    assert!(mean == 0.0 && (std - d).abs() < 1e-3)
                }
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn timestamps_are_iso_dates() {
        let t = now_iso8601();
        assert_eq!(t.len(), 19, "{t}");
        assert!(t.starts_with("20") && &t[4..5] == "-" && &t[10..11] == "T", "{t}");
    }
}

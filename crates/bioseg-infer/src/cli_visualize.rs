//! `bioseg visualize`: one PNG with the panels image | ground truth | prediction | overlay
//! (and, with `--errors`, an error map), the analogue of the NIH Biowulf `unet` module's
//! `visualize.py -d <data_folder> -t <target_id>`.
//!
//! Panels, left to right, separated by a white gap:
//! 1. the image (gray; 16-bit and float images are stretched to their min–max range);
//! 2. the ground truth (binary: white = class 1; multi-class: class colours, class 0 black),
//!    left out without a label;
//! 3. the prediction (binary: the foreground probability as gray levels; multi-class: class
//!    colours of the predicted classes);
//! 4. the overlay: the image with every predicted class ≥ 1 tinted in its class colour at
//!    opacity `--alpha` ([`bioseg_data::overlay::overlay_labels`]);
//! 5. with `--errors` and a label: the error map, false positives (predicted class ≥ 1 where
//!    the truth is 0) in magenta, false negatives in green, other confusions in amber
//!    ([`bioseg_data::overlay::error_map`]).
//!
//! The prediction comes from a file (`--pred`: probabilities, a mask or a class map) or is
//! made on the fly by an ONNX model (`--model`, tiled with [`bioseg_infer::predict::Predictor`]).
//! Images can be single 2-D files or pages of multi-page TIFF stacks (`--slice`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bioseg_data::overlay::{class_color, error_map, overlay_labels};
use bioseg_data::{Image, SampleDepth};
use clap::Args;
use ndarray::{Array2, Array3, Axis, s};

use bioseg_infer::evaluate::ClassMapping;
use bioseg_infer::model::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::TileSize;

/// Options of `bioseg visualize`.
#[derive(Args, Debug, Clone)]
pub struct VisualizeArgs {
    /// The image (PNG/TIFF; a multi-page TIFF with --slice). Not needed with -d/-c/-t.
    #[arg(short, long, conflicts_with = "data")]
    pub image: Option<PathBuf>,
    /// Ground truth for the image (optional).
    #[arg(short, long)]
    pub label: Option<PathBuf>,
    /// A prediction of the image: probabilities, a 0/255 mask or a class map.
    #[arg(short, long, conflicts_with = "model")]
    pub pred: Option<PathBuf>,
    /// Predict with this ONNX model instead of reading --pred.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Dataset root in the seed layout DATA/<class>/<split>/{image,label}/N.png (with -c and -t).
    #[arg(short = 'd', long = "data", requires_all = ["object_class", "target"])]
    pub data: Option<PathBuf>,
    /// Object class folder of the dataset (e.g. membrane).
    #[arg(short = 'c', long = "class", id = "object_class", requires = "data")]
    pub object_class: Option<String>,
    /// Target image id (file stem) in the dataset, e.g. 3 for image/3.png.
    #[arg(short = 't', long, requires = "data")]
    pub target: Option<String>,
    /// Dataset split to read the target from.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Page of multi-page TIFF inputs to show (single-page files are used as they are).
    #[arg(long, default_value_t = 0)]
    pub slice: usize,
    /// Add an error-map panel (false positives magenta, false negatives green); needs a label.
    #[arg(long)]
    pub errors: bool,
    /// The class the overlay tints [default: binary: the class covering fewer predicted pixels
    /// (the membranes of ISBI-style data); multi-class: every class but 0].
    #[arg(long)]
    pub overlay_class: Option<u8>,
    /// Opacity of the class colours in the overlay and error map.
    #[arg(long, default_value_t = 0.45)]
    pub alpha: f32,
    /// Binary: foreground where the prediction is above this fraction of its maximum.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Number of classes: 2 = binary, more = class-index maps (a model's own count wins).
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// White gap between panels, in pixels.
    #[arg(long, default_value_t = 8)]
    pub gap: usize,
    /// Tile core size for --model (symbolic-size models), or `auto` (as `bioseg predict`).
    #[arg(long, default_value_t = PredictOptions::default().tile)]
    pub tile: TileSize,
    /// The PNG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    pub overwrite: bool,
}

/// An RGB panel `[H, W, 3]`.
type Panel = Array3<u8>;

/// The input files resolved from the options.
struct Inputs {
    image: PathBuf,
    label: Option<PathBuf>,
}

fn resolve_inputs(args: &VisualizeArgs) -> Result<Inputs> {
    if let Some(image) = &args.image {
        return Ok(Inputs { image: image.clone(), label: args.label.clone() });
    }
    let (Some(data), Some(class), Some(target)) = (&args.data, &args.object_class, &args.target) else {
        bail!("give --image, or a dataset with -d DATA -c CLASS -t ID");
    };
    let split = data.join(class).join(&args.split);
    let find = |dir: &Path| -> Result<Option<PathBuf>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        Ok(bioseg_data::list_images(dir)?
            .into_iter()
            .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == *target)))
    };
    let image = find(&split.join("image"))?
        .with_context(|| format!("no image named {target} in {}", split.join("image").display()))?;
    let label = match &args.label {
        Some(l) => Some(l.clone()),
        None => match find(&split.join("label"))? {
            Some(l) => Some(l),
            None => find(&split.join("mask"))?,
        },
    };
    Ok(Inputs { image, label })
}

/// Page `z` of `path` (a single-page file is used as it is).
fn read_slice(path: &Path, z: usize) -> Result<Image> {
    let mut pages = bioseg_data::read_image_pages(path)?;
    match pages.len() {
        1 => Ok(pages.swap_remove(0)),
        n if z < n => Ok(pages.swap_remove(z)),
        n => bail!("--slice {z} is out of range: {} has {n} pages", path.display()),
    }
}

/// The image as 8-bit gray for display.
fn display_gray(image: &Image) -> Array2<u8> {
    let g = image.to_gray();
    let (lo, hi) = match image.depth {
        SampleDepth::U8 => (0.0, 255.0),
        _ => g
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v))),
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    g.mapv(|v| if v.is_finite() { ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8 } else { 0 })
}

fn gray_panel(g: &Array2<u8>) -> Panel {
    let (h, w) = g.dim();
    Array3::from_shape_fn((h, w, 3), |(y, x, _)| g[[y, x]])
}

/// Binary maps as white on black, class maps in class colours (class 0 black).
fn class_panel(c: &Array2<u8>, classes: usize) -> Panel {
    let (h, w) = c.dim();
    Array3::from_shape_fn((h, w, 3), |(y, x, k)| {
        let v = c[[y, x]];
        if classes <= 2 {
            if v > 0 { 255 } else { 0 }
        } else if v == 0 {
            0
        } else {
            class_color(v)[k]
        }
    })
}

/// The class map the overlay tints: every class ≥ 1 for multi-class maps without `only`;
/// otherwise only class `only` (default for binary maps: the class with fewer pixels), drawn in
/// its own colour (class 0 in the colour of class 1).
fn overlay_classes(classes: &Array2<u8>, num_classes: usize, only: Option<u8>) -> Array2<u8> {
    let only = match only {
        Some(c) => c,
        None if num_classes > 2 => return classes.clone(),
        None => {
            let ones = classes.iter().filter(|&&c| c == 1).count();
            u8::from(2 * ones <= classes.len())
        }
    };
    let tint = only.max(1);
    classes.mapv(|c| if c == only { tint } else { 0 })
}

/// Places `panels` (same height) side by side with white gaps of `gap` pixels.
pub fn compose(panels: &[Panel], gap: usize) -> Panel {
    let h = panels.iter().map(|p| p.dim().0).max().unwrap_or(0);
    let w: usize = panels.iter().map(|p| p.dim().1).sum::<usize>() + gap * panels.len().saturating_sub(1);
    let mut out = Array3::from_elem((h, w, 3), 255u8);
    let mut x0 = 0;
    for p in panels {
        let (ph, pw, _) = p.dim();
        out.slice_mut(s![..ph, x0..x0 + pw, ..]).assign(p);
        x0 += pw + gap;
    }
    out
}

/// The prediction to show: the panel and the class map.
struct Shown {
    panel: Panel,
    classes: Array2<u8>,
    num_classes: usize,
}

fn predict_with_model(model_path: &Path, image: &Image, args: &VisualizeArgs, quiet: bool) -> Result<Shown> {
    let model = OnnxModel::load(model_path)?;
    let opts = PredictOptions { tile: args.tile, ..PredictOptions::default() };
    let predictor = Predictor::new(&model, opts)?;
    let max_value = image.depth.max_value().unwrap_or(1.0);
    let (h, w, _) = image.data.dim();
    let bar = bioseg_infer::progress::tile_bar(predictor.tile_count(h, w)? as u64, quiet);
    let pred = predictor
        .predict(image.data.view(), max_value, &|n| bar.set_position(n as u64))
        .with_context(|| format!("predicting with {}", model_path.display()))?;
    bar.finish_and_clear();
    let k = pred.probs.dim().0;
    let classes = pred.labels(args.threshold);
    if k == 1 {
        let p = pred.probs.index_axis(Axis(0), 0);
        let g = p.mapv(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8);
        Ok(Shown { panel: gray_panel(&g), classes, num_classes: 2 })
    } else {
        Ok(Shown { panel: class_panel(&classes, k), classes, num_classes: k })
    }
}

fn prediction_from_file(path: &Path, args: &VisualizeArgs, mapping: &ClassMapping) -> Result<Shown> {
    let img = read_slice(path, args.slice)?;
    let classes = mapping.prediction(&img, &format!("prediction {}", path.display()))?;
    let panel = if mapping.classes == 2 {
        let only01 = img.depth != SampleDepth::F32 && img.to_gray().iter().all(|&v| v == 0.0 || v == 1.0);
        if only01 { class_panel(&classes, 2) } else { gray_panel(&display_gray(&img)) }
    } else {
        class_panel(&classes, mapping.classes)
    };
    Ok(Shown { panel, classes, num_classes: mapping.classes })
}

/// `bioseg visualize`.
pub fn visualize(args: VisualizeArgs, quiet: bool) -> Result<()> {
    let mapping = ClassMapping::new(args.classes, args.threshold)?;
    let ext = args.output.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "png" {
        bail!("the output must be a .png file, not {}", args.output.display());
    }
    bioseg_data::ensure_absent_or_overwrite(&args.output, args.overwrite)?;
    let inputs = resolve_inputs(&args)?;
    let image = read_slice(&inputs.image, args.slice)?;
    let (h, w) = (image.height(), image.width());
    let check = |what: &str, p: &Path, img: &Image| -> Result<()> {
        if (img.height(), img.width()) != (h, w) {
            bail!(
                "size mismatch: image {} is {w}x{h} but {what} {} is {}x{}",
                inputs.image.display(),
                p.display(),
                img.width(),
                img.height()
            );
        }
        Ok(())
    };

    let shown = match (&args.pred, &args.model) {
        (Some(p), _) => {
            let s = prediction_from_file(p, &args, &mapping)?;
            let (ph, pw) = s.classes.dim();
            if (ph, pw) != (h, w) {
                bail!(
                    "size mismatch: image {} is {w}x{h} but prediction {} is {pw}x{ph}",
                    inputs.image.display(),
                    p.display()
                );
            }
            Some(s)
        }
        (None, Some(m)) => Some(predict_with_model(m, &image, &args, quiet)?),
        (None, None) => None,
    };
    let num_classes = shown.as_ref().map(|s| s.num_classes).unwrap_or(mapping.classes);
    let truth = match &inputs.label {
        Some(l) => {
            let img = read_slice(l, args.slice)?;
            check("label", l, &img)?;
            let m = ClassMapping::new(num_classes.max(2), 0.5)?;
            Some(m.truth(&img, &format!("label {}", l.display()))?)
        }
        None => None,
    };
    if args.errors && (truth.is_none() || shown.is_none()) {
        bail!("--errors needs a label (--label, or a dataset label) and a prediction (--pred or --model)");
    }

    let gray = display_gray(&image);
    let mut panels = vec![gray_panel(&gray)];
    let mut names = vec!["image"];
    if let Some(t) = &truth {
        panels.push(class_panel(t, num_classes));
        names.push("ground truth");
    }
    if let Some(s) = &shown {
        panels.push(s.panel.clone());
        panels.push(overlay_labels(
            &gray.view(),
            &overlay_classes(&s.classes, s.num_classes, args.overlay_class).view(),
            args.alpha,
        ));
        names.extend(["prediction", "overlay"]);
        if let (true, Some(t)) = (args.errors, &truth) {
            panels.push(error_map(&gray.view(), &s.classes.view(), &t.view(), args.alpha.max(0.6)));
            names.push("errors (FP magenta, FN green)");
        }
    }
    let out = compose(&panels, args.gap);
    let (oh, ow, _) = out.dim();
    let bytes: Vec<u8> = out.iter().copied().collect();
    bioseg_data::write_rgb_u8_png(&args.output, ow as u32, oh as u32, &bytes)?;
    println!("{} ({}x{}): {}", args.output.display(), ow, oh, names.join(" | "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn compose_puts_white_gaps_between_panels() {
        let a = Array3::from_elem((2, 2, 3), 10u8);
        let b = Array3::from_elem((2, 3, 3), 20u8);
        let out = compose(&[a, b], 4);
        assert_eq!(out.dim(), (2, 9, 3));
        assert_eq!(out[[0, 1, 0]], 10);
        assert_eq!(out[[1, 3, 2]], 255);
        assert_eq!(out[[1, 6, 1]], 20);
    }

    #[test]
    fn overlay_tints_the_minority_class_of_binary_maps() {
        let c = array![[1u8, 1, 1, 0]];
        assert_eq!(overlay_classes(&c, 2, None), array![[0u8, 0, 0, 1]]);
        let c = array![[1u8, 0, 0, 0]];
        assert_eq!(overlay_classes(&c, 2, None), array![[1u8, 0, 0, 0]]);
        assert_eq!(overlay_classes(&c, 2, Some(0)), array![[0u8, 1, 1, 1]]);
        let m = array![[0u8, 1, 2]];
        assert_eq!(overlay_classes(&m, 3, None), m);
        assert_eq!(overlay_classes(&m, 3, Some(2)), array![[0u8, 0, 2]]);
    }

    #[test]
    fn panels_for_binary_and_multiclass() {
        let c = array![[0u8, 1], [2, 0]];
        let p = class_panel(&c, 2);
        assert_eq!(p[[0, 1, 0]], 255);
        assert_eq!(p[[1, 0, 1]], 255);
        let p = class_panel(&c, 3);
        assert_eq!(p.slice(s![1, 0, ..]).to_vec(), class_color(2).to_vec());
        assert_eq!(p.slice(s![0, 0, ..]).to_vec(), vec![0, 0, 0]);
        let f = Image::from_gray_f32(array![[0.5f32, 1.5]], SampleDepth::F32);
        assert_eq!(display_gray(&f), array![[0u8, 255]]);
    }
}

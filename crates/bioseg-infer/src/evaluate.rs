//! Scoring predictions against ground truth, per image and on average (`bioseg evaluate`;
//! [`ClassMapping`] is also how `bioseg visualize` reads class maps).
//!
//! Inputs (predictions, labels): a single image (PNG or TIFF), a folder of images, or a
//! multi-page TIFF stack (one image per page). Two folders pair their images by file stem;
//! any other combination pairs images by position (folders in natural order, pages in file
//! order) and needs equal counts.
//!
//! Class maps:
//! * binary (2 classes, `bioseg evaluate`'s default): a prediction pixel is foreground (class 1) when its
//!   value is above `threshold × max` (max = 255 for 8-bit, 65535 for 16-bit, 1 for float
//!   images); a ground-truth pixel when above half its maximum (0/255 → 0/1). Integer images
//!   holding only 0 and 1 are taken as class maps as they are.
//! * multi-class (N > 2 classes): both images hold class indices `0..N`.
//!
//! Scores per image: pixel error, Dice/F1 and IoU per class ([`bioseg_data::metrics`]); and,
//! on the segmentations into cells (4-connected regions of equal class, the
//! boundary class being the membrane between cells; see
//! [`bioseg_data::segmentation_scores`]): the ISBI 2012 foreground-restricted V_rand and
//! V_info, scikit-image's adapted Rand error (with its precision and recall) and variation of
//! information (false splits H(pred|truth), false merges H(truth|pred), in bits), both
//! ignoring the ground truth's boundary pixels. The last row is the mean over images.
//!
//! Binary sets also get the ISBI 2012 challenge's pixel error, a score of the whole set (1 − the
//! maximal F-score of the interior over eleven thresholds, [`bioseg_data::challenge_pixel_error`]):
//! the number the challenge and the U-Net paper report, not comparable with `pixel_error`. With
//! [`Scoring::best_threshold`], binary probabilities are also segmented at each of those
//! thresholds and the set gets its best mean V_rand and V_info and where they were reached (the
//! leader board's protocol: its Rand scores are maxima over thresholds; bioseg's are without the
//! border thinning of its newest version). A model whose probabilities sit high or low scores far
//! better there than at 0.5: the threshold is part of the model.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bioseg_data::challenge_pixel_error::{CHALLENGE_THRESHOLDS, challenge_thresholds};
use bioseg_data::{ChallengePixelError, Image, PixelFScoreSweep, SampleDepth};
use ndarray::Array2;
use rayon::prelude::*;

use crate::InferError;

/// The settings a table was made with (the JSON table's `settings`).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Settings<'a> {
    /// The predictions.
    pub pred: &'a Path,
    /// The ground truth.
    pub label: &'a Path,
    /// Number of classes (2 = binary).
    pub classes: usize,
    /// Binary: foreground fraction of the prediction's maximum value.
    pub threshold: f32,
    /// The class that separates cells.
    pub boundary_class: u8,
    /// Binary probabilities: also the best V_rand and V_info over the challenge's thresholds.
    pub best_threshold: bool,
}

/// The scores of every pair of a prediction and a label, and their mean.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// One row per image, in pairing order.
    pub images: Vec<ImageScores>,
    /// The mean over the images.
    pub mean: ImageScores,
    /// Binary: the ISBI 2012 challenge's scores of the whole set (see the module
    /// documentation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeScores>,
}

/// The ISBI 2012 challenge's scores of a binary set (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ChallengeScores {
    /// 1 − the best F-score of the foreground over the thresholds, and where.
    #[serde(flatten)]
    pub pixel: ChallengePixelError,
    /// With [`Scoring::best_threshold`]: the best mean V_rand over the thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_v_rand: Option<AtThreshold>,
    /// With [`Scoring::best_threshold`]: the best mean V_info over the thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_v_info: Option<AtThreshold>,
}

/// A score and the (first) challenge threshold that reached it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AtThreshold {
    /// The score.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
}

/// How pairs are scored.
#[derive(Clone, Copy, Debug)]
pub struct Scoring {
    /// How images become class maps.
    pub mapping: ClassMapping,
    /// The class that separates cells.
    pub boundary_class: u8,
    /// Binary probabilities: also segment them at every challenge threshold for the best V_rand
    /// and V_info (11 more segmentations per image).
    pub best_threshold: bool,
}

/// One scored pair: its scores and, for binary probability maps, what the challenge's scores
/// of a set need from it.
#[derive(Clone, Debug)]
pub struct ScoredImage {
    /// The pair's scores.
    pub scores: ImageScores,
    /// Binary: the pair's pixel counts at the challenge's thresholds.
    pub sweep: Option<PixelFScoreSweep>,
    /// Binary with [`Scoring::best_threshold`]: `(V_rand, V_info)` at each challenge threshold.
    pub rand_sweep: Option<Vec<(f64, f64)>>,
}

impl Evaluation {
    /// Pairs, reads and scores `settings.pred` against `settings.label` (see the module
    /// documentation).
    pub fn of(settings: &Settings) -> Result<Self, InferError> {
        let mapping = ClassMapping::new(settings.classes, settings.threshold)?;
        mapping.check_boundary(settings.boundary_class)?;
        let pairs = pair_inputs(settings.pred, settings.label)?;
        let scoring =
            Scoring { mapping, boundary_class: settings.boundary_class, best_threshold: settings.best_threshold };
        Ok(Self::from_scored(evaluate_pairs(&pairs, &scoring)?))
    }

    /// The table of scored pairs (in their order): the mean, and the challenge's scores when
    /// every pair has their parts.
    pub fn from_scored(scored: Vec<ScoredImage>) -> Self {
        let mut sweep = Some(PixelFScoreSweep::new());
        let mut rand = Some(vec![(0.0, 0.0); CHALLENGE_THRESHOLDS]);
        let mut images = Vec::with_capacity(scored.len());
        for s in scored {
            match (&mut sweep, &s.sweep) {
                (Some(total), Some(one)) => total.merge(one),
                _ => sweep = None,
            }
            match (&mut rand, &s.rand_sweep) {
                (Some(total), Some(one)) => {
                    total.iter_mut().zip(one).for_each(|(t, o)| (t.0, t.1) = (t.0 + o.0, t.1 + o.1))
                }
                _ => rand = None,
            }
            images.push(s.scores);
        }
        let n = images.len() as f64;
        let best = |rand: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
            let thresholds = challenge_thresholds();
            let (mut value, mut threshold) = (f64::NEG_INFINITY, 0.0);
            for (r, &t) in rand.iter().zip(&thresholds) {
                if f(r) / n > value {
                    (value, threshold) = (f(r) / n, t);
                }
            }
            AtThreshold { value, threshold }
        };
        let challenge = sweep.filter(|_| !images.is_empty()).map(|s| ChallengeScores {
            pixel: s.best(),
            best_v_rand: rand.as_deref().map(|r| best(r, |r| r.0)),
            best_v_info: rand.as_deref().map(|r| best(r, |r| r.1)),
        });
        let mean = mean_scores(&images);
        Evaluation { images, mean, challenge }
    }

    /// The table as CSV: a header, one row per image, the mean last.
    pub fn to_csv(&self) -> String {
        to_csv(&self.images, &self.mean)
    }

    /// The table as a pretty-printed JSON object `{settings, images: [...], mean: {...},
    /// challenge: {...}}` (`challenge` for binary sets only).
    pub fn to_json(&self, settings: &Settings) -> Result<String, InferError> {
        let report = JsonReport { settings, images: &self.images, mean: &self.mean, challenge: self.challenge };
        Ok(serde_json::to_string_pretty(&report)? + "\n")
    }
}

/// The JSON table (fields in this order).
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    settings: &'a Settings<'a>,
    images: &'a [ImageScores],
    mean: &'a ImageScores,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<ChallengeScores>,
}

/// An evaluation setting or input that cannot be scored.
fn invalid(message: String) -> InferError {
    InferError::Input(message)
}

/// Scores of one image (or their mean).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageScores {
    /// The image's name (file stem, `stem[z]` for a page of a stack, or `mean`).
    pub image: String,
    /// Fraction of pixels whose class is wrong.
    pub pixel_error: f64,
    /// Dice (F1) per class.
    pub dice: Vec<f64>,
    /// IoU per class.
    pub iou: Vec<f64>,
    /// ISBI 2012 foreground-restricted Rand F-score (1 = perfect).
    pub v_rand: f64,
    /// ISBI 2012 foreground-restricted information theoretic score (1 = perfect).
    pub v_info: f64,
    /// scikit-image's adapted Rand error (0 = perfect).
    pub adapted_rand_error: f64,
    /// scikit-image's adapted Rand precision.
    pub are_precision: f64,
    /// scikit-image's adapted Rand recall.
    pub are_recall: f64,
    /// Variation of information, false-split part H(pred | truth), bits.
    pub vi_split: f64,
    /// Variation of information, false-merge part H(truth | pred), bits.
    pub vi_merge: f64,
    /// Cells (segments) in the ground truth.
    pub cells_true: f64,
    /// Cells (segments) in the prediction.
    pub cells_pred: f64,
}

/// How images become class maps (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct ClassMapping {
    /// Number of classes (2 = binary).
    pub classes: usize,
    /// Binary: foreground fraction of the prediction's maximum value.
    pub threshold: f32,
}

impl ClassMapping {
    /// Checks the settings.
    pub fn new(classes: usize, threshold: f32) -> Result<Self, InferError> {
        if !(2..=256).contains(&classes) {
            return Err(invalid(format!("--classes must be within 2..=256, not {classes}")));
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(invalid(format!("--threshold must be within [0, 1], not {threshold}")));
        }
        Ok(ClassMapping { classes, threshold })
    }

    /// Checks that `boundary_class` (the class between cells) is one of the classes.
    pub fn check_boundary(&self, boundary_class: u8) -> Result<(), InferError> {
        if boundary_class as usize >= self.classes {
            return Err(invalid(format!("--boundary-class {boundary_class} is not below --classes {}", self.classes)));
        }
        Ok(())
    }

    /// The class map of a prediction image (`what` names it in errors).
    pub fn prediction(&self, image: &Image, what: &str) -> Result<Array2<u8>, InferError> {
        self.classes_of(image, self.threshold, what)
    }

    /// The class map of a ground-truth image (binary: above half the maximum).
    pub fn truth(&self, image: &Image, what: &str) -> Result<Array2<u8>, InferError> {
        self.classes_of(image, 0.5, what)
    }

    /// Binary: the prediction's foreground probability, 0..=1 (its values over its maximum; a
    /// 0/1 class map as it is). `None` for multi-class maps.
    pub fn probability(&self, image: &Image) -> Option<Array2<f32>> {
        if self.classes != 2 {
            return None;
        }
        let gray = image.to_gray();
        if is_zero_one_map(image, &gray) {
            return Some(gray);
        }
        let max = image.depth.max_value().unwrap_or(1.0);
        Some(gray.mapv(|v| v / max))
    }

    fn classes_of(&self, image: &Image, fraction: f32, what: &str) -> Result<Array2<u8>, InferError> {
        let gray = image.to_gray();
        if let Some(v) = gray.iter().find(|v| v.is_nan()) {
            return Err(invalid(format!("{what} holds {v} values")));
        }
        if self.classes == 2 {
            if is_zero_one_map(image, &gray) {
                return Ok(gray.mapv(|v| v as u8));
            }
            let cut = fraction * image.depth.max_value().unwrap_or(1.0);
            return Ok(gray.mapv(|v| u8::from(v > cut)));
        }
        let n = self.classes as f32;
        if let Some(v) = gray.iter().find(|&&v| v < 0.0 || v >= n || v.fract() != 0.0) {
            return Err(invalid(format!(
                "{what} holds the value {v}: with --classes {} images must be class-index maps (0..{})",
                self.classes,
                self.classes - 1
            )));
        }
        Ok(gray.mapv(|v| v as u8))
    }
}

/// Whether a binary image (`gray`, its gray values) is a class map already: integer samples
/// holding only 0 and 1.
fn is_zero_one_map(image: &Image, gray: &Array2<f32>) -> bool {
    image.depth != SampleDepth::F32 && gray.iter().all(|&v| v == 0.0 || v == 1.0)
}

/// Scores one prediction/truth pair of images (`pred_what`/`truth_what` name them in errors):
/// their class maps' scores, and for binary maps what the challenge's scores need.
pub fn score_images(
    name: &str,
    pred: &Image,
    truth: &Image,
    scoring: &Scoring,
    (pred_what, truth_what): (&str, &str),
) -> Result<ScoredImage, InferError> {
    let (mapping, boundary_class) = (scoring.mapping, scoring.boundary_class);
    let pc = mapping.prediction(pred, pred_what)?;
    let tc = mapping.truth(truth, truth_what)?;
    let scores = score_pair(name, &pc, &tc, mapping.classes, boundary_class)?;
    let Some(p) = mapping.probability(pred) else { return Ok(ScoredImage { scores, sweep: None, rand_sweep: None }) };
    let mut sweep = PixelFScoreSweep::new();
    sweep.add(p.view(), tc.view())?;
    let rand_sweep = if scoring.best_threshold {
        let (true_cells, _) = bioseg_data::class_regions(tc.view(), boundary_class);
        let scores = challenge_thresholds().into_iter().map(|t| {
            let classes = p.mapv(|v| u8::from(f64::from(v) > t));
            let (cells, _) = bioseg_data::class_regions(classes.view(), boundary_class);
            let isbi = bioseg_data::isbi_scores(cells.view(), true_cells.view())?;
            Ok((isbi.v_rand, isbi.v_info))
        });
        Some(scores.collect::<Result<Vec<_>, InferError>>()?)
    } else {
        None
    };
    Ok(ScoredImage { scores, sweep: Some(sweep), rand_sweep })
}

/// Scores one prediction/truth pair of class maps.
pub fn score_pair(
    name: &str,
    pred: &Array2<u8>,
    truth: &Array2<u8>,
    classes: usize,
    boundary_class: u8,
) -> Result<ImageScores, InferError> {
    let s = bioseg_data::segmentation_scores(pred.view(), truth.view(), classes)?;
    let (pred_cells, n_pred) = bioseg_data::class_regions(pred.view(), boundary_class);
    let (true_cells, n_true) = bioseg_data::class_regions(truth.view(), boundary_class);
    let isbi = bioseg_data::isbi_scores(pred_cells.view(), true_cells.view())?;
    let are = bioseg_data::adapted_rand_error(true_cells.view(), pred_cells.view(), &[0])?;
    let (vi_split, vi_merge) = bioseg_data::variation_of_information(true_cells.view(), pred_cells.view(), &[0])?;
    Ok(ImageScores {
        image: name.to_string(),
        pixel_error: s.pixel_error,
        dice: s.per_class.iter().map(|c| c.dice).collect(),
        iou: s.per_class.iter().map(|c| c.iou).collect(),
        v_rand: isbi.v_rand,
        v_info: isbi.v_info,
        adapted_rand_error: are.error,
        are_precision: are.precision,
        are_recall: are.recall,
        vi_split,
        vi_merge,
        cells_true: n_true as f64,
        cells_pred: n_pred as f64,
    })
}

/// The mean of every score over `rows` (named `mean`).
pub fn mean_scores(rows: &[ImageScores]) -> ImageScores {
    let n = rows.len().max(1) as f64;
    let mean = |f: &dyn Fn(&ImageScores) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let k = rows.first().map(|r| r.dice.len()).unwrap_or(0);
    ImageScores {
        image: "mean".into(),
        pixel_error: mean(&|r| r.pixel_error),
        dice: (0..k).map(|c| mean(&|r| r.dice[c])).collect(),
        iou: (0..k).map(|c| mean(&|r| r.iou[c])).collect(),
        v_rand: mean(&|r| r.v_rand),
        v_info: mean(&|r| r.v_info),
        adapted_rand_error: mean(&|r| r.adapted_rand_error),
        are_precision: mean(&|r| r.are_precision),
        are_recall: mean(&|r| r.are_recall),
        vi_split: mean(&|r| r.vi_split),
        vi_merge: mean(&|r| r.vi_merge),
        cells_true: mean(&|r| r.cells_true),
        cells_pred: mean(&|r| r.cells_pred),
    }
}

/// Where one 2-D image comes from.
#[derive(Clone)]
pub enum Slice {
    /// A whole file (its first page).
    File(PathBuf),
    /// Page `z` of a stack already read.
    Page(Arc<Vec<Image>>, usize, PathBuf),
}

impl Slice {
    /// Reads (or takes) the image.
    pub fn load(&self) -> Result<Image, InferError> {
        match self {
            Slice::File(p) => Ok(bioseg_data::read_image(p)?),
            Slice::Page(pages, z, _) => Ok(pages[*z].clone()),
        }
    }

    /// The file and page for messages.
    pub fn describe(&self) -> String {
        match self {
            Slice::File(p) => p.display().to_string(),
            Slice::Page(pages, z, p) if pages.len() > 1 => format!("{} page {z}", p.display()),
            Slice::Page(_, _, p) => p.display().to_string(),
        }
    }
}

/// The 2-D images of an input, named: a folder's images (by stem, natural order) or a file's
/// pages (`stem`, or `stem[z]` for stacks).
pub fn slices(path: &Path) -> Result<(bool, Vec<(String, Slice)>), InferError> {
    if path.is_dir() {
        let files = bioseg_data::list_images(path)?;
        let named = files.into_iter().map(|f| (stem(&f), Slice::File(f))).collect();
        return Ok((true, named));
    }
    let pages = Arc::new(bioseg_data::read_image_pages(path)?);
    let s = stem(path);
    let n = pages.len();
    let named = (0..n)
        .map(|z| {
            let name = if n == 1 { s.clone() } else { format!("{s}[{z}]") };
            (name, Slice::Page(pages.clone(), z, path.to_path_buf()))
        })
        .collect();
    Ok((false, named))
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Pairs predictions with labels (see the module documentation).
pub fn pair_inputs(pred: &Path, label: &Path) -> Result<Vec<(String, Slice, Slice)>, InferError> {
    let (pred_dir, preds) =
        slices(pred).map_err(|e| invalid(format!("reading predictions {}: {e}", pred.display())))?;
    let (label_dir, labels) = slices(label).map_err(|e| invalid(format!("reading labels {}: {e}", label.display())))?;
    if pred_dir && label_dir {
        let mut by_stem: HashMap<String, Slice> = labels.iter().cloned().collect();
        let mut pairs = Vec::with_capacity(preds.len());
        let mut missing = Vec::new();
        for (name, p) in preds {
            match by_stem.remove(&name) {
                Some(l) => pairs.push((name, p, l)),
                None => missing.push(name),
            }
        }
        if let Some(first) = missing.first() {
            return Err(invalid(format!(
                "prediction {first} has no label with that name in {}{}",
                label.display(),
                more(missing.len())
            )));
        }
        if !by_stem.is_empty() {
            let mut left: Vec<&String> = by_stem.keys().collect();
            left.sort_by(|a, b| bioseg_data::natural_cmp(a, b));
            return Err(invalid(format!(
                "label {} has no prediction with that name in {}{}",
                left[0],
                pred.display(),
                more(left.len())
            )));
        }
        return Ok(pairs);
    }
    if preds.len() != labels.len() {
        return Err(invalid(format!(
            "count mismatch: {} holds {} image(s) but {} holds {}",
            pred.display(),
            preds.len(),
            label.display(),
            labels.len()
        )));
    }
    Ok(preds.into_iter().zip(labels).map(|((pn, p), (ln, l))| (if label_dir { ln } else { pn }, p, l)).collect())
}

fn more(n: usize) -> String {
    if n > 1 { format!(" (and {} more)", n - 1) } else { String::new() }
}

/// Scores every pair (in parallel), in pairing order.
pub fn evaluate_pairs(pairs: &[(String, Slice, Slice)], scoring: &Scoring) -> Result<Vec<ScoredImage>, InferError> {
    pairs
        .par_iter()
        .map(|(name, p, l)| {
            let pi = p.load()?;
            let li = l.load()?;
            if (pi.height(), pi.width()) != (li.height(), li.width()) {
                return Err(invalid(format!(
                    "size mismatch: prediction {} is {}x{} but label {} is {}x{}",
                    p.describe(),
                    pi.width(),
                    pi.height(),
                    l.describe(),
                    li.width(),
                    li.height()
                )));
            }
            let what = (format!("prediction {}", p.describe()), format!("label {}", l.describe()));
            score_images(name, &pi, &li, scoring, (&what.0, &what.1))
        })
        .collect()
}

/// The table as CSV: a header, one row per image, the mean last.
pub fn to_csv(rows: &[ImageScores], mean: &ImageScores) -> String {
    let k = mean.dice.len();
    let mut out = String::from("image,pixel_error");
    for c in 0..k {
        let _ = write!(out, ",dice_{c},iou_{c}");
    }
    out.push_str(
        ",v_rand,v_info,adapted_rand_error,are_precision,are_recall,vi_split,vi_merge,cells_true,cells_pred\n",
    );
    for r in rows.iter().chain(std::iter::once(mean)) {
        let name = if r.image.contains([',', '"', '\n']) {
            format!("\"{}\"", r.image.replace('"', "\"\""))
        } else {
            r.image.clone()
        };
        let _ = write!(out, "{name},{:.6}", r.pixel_error);
        for c in 0..k {
            let _ = write!(out, ",{:.6},{:.6}", r.dice[c], r.iou[c]);
        }
        let _ = writeln!(
            out,
            ",{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{}",
            r.v_rand,
            r.v_info,
            r.adapted_rand_error,
            r.are_precision,
            r.are_recall,
            r.vi_split,
            r.vi_merge,
            trim(r.cells_true),
            trim(r.cells_pred)
        );
    }
    out
}

/// An integer-valued count without decimals, a mean with two.
fn trim(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn binary_mapping_thresholds_and_keeps_zero_one_maps() {
        let m = ClassMapping::new(2, 0.5).unwrap();
        let img = Image::from_gray_u8(array![[0u8, 127, 128, 255]].view());
        assert_eq!(m.prediction(&img, "p").unwrap(), array![[0u8, 0, 1, 1]]);
        let m9 = ClassMapping::new(2, 0.9).unwrap();
        assert_eq!(m9.prediction(&img, "p").unwrap(), array![[0u8, 0, 0, 1]]);
        // Ground truth always at half the maximum.
        assert_eq!(m9.truth(&img, "t").unwrap(), array![[0u8, 0, 1, 1]]);
        let labels = Image::from_gray_u8(array![[0u8, 1, 1, 0]].view());
        assert_eq!(m.prediction(&labels, "p").unwrap(), array![[0u8, 1, 1, 0]]);
        let float = Image::from_gray_f32(array![[0.2f32, 0.7]], SampleDepth::F32);
        assert_eq!(m.prediction(&float, "p").unwrap(), array![[0u8, 1]]);
        assert!(ClassMapping::new(1, 0.5).is_err());
        assert!(ClassMapping::new(2, 1.5).is_err());
    }

    #[test]
    fn multiclass_mapping_needs_indices() {
        let m = ClassMapping::new(3, 0.5).unwrap();
        let ok = Image::from_gray_u8(array![[0u8, 1, 2]].view());
        assert_eq!(m.truth(&ok, "t").unwrap(), array![[0u8, 1, 2]]);
        let bad = Image::from_gray_u8(array![[0u8, 255]].view());
        let e = m.truth(&bad, "label x.png").unwrap_err().to_string();
        assert!(e.contains("label x.png") && e.contains("255"), "{e}");
    }

    #[test]
    fn scores_of_a_perfect_and_a_merged_prediction() {
        let truth = array![[1u8, 1, 0, 1, 1], [1, 1, 0, 1, 1]];
        let s = score_pair("a", &truth, &truth, 2, 0).unwrap();
        assert_eq!(s.pixel_error, 0.0);
        assert_eq!((s.v_rand, s.v_info, s.adapted_rand_error), (1.0, 1.0, 0.0));
        assert_eq!((s.cells_true, s.cells_pred), (2.0, 2.0));
        let merged = array![[1u8, 1, 1, 1, 1], [1, 1, 0, 1, 1]];
        let m = score_pair("b", &merged, &truth, 2, 0).unwrap();
        assert!(m.v_rand < 1.0 && m.vi_merge > 0.0 && m.vi_split == 0.0);
        assert_eq!(m.cells_pred, 1.0);
        let mean = mean_scores(&[s, m.clone()]);
        assert!((mean.pixel_error - m.pixel_error / 2.0).abs() < 1e-12);
        let csv = to_csv(&[m], &mean);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.starts_with("image,pixel_error,dice_0,iou_0,dice_1,iou_1,v_rand,"));
        assert!(csv.lines().last().unwrap().starts_with("mean,"));
    }
}

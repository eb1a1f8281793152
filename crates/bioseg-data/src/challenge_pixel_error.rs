//! The ISBI 2012 challenge's pixel error: 1 − the maximal F-score of pixel similarity over
//! eleven binarisation thresholds, on a whole set of images.
//!
//! This is the number the challenge's leader board (and the U-Net paper's "pixel error
//! 0.0611") reports, computed as the organisers' Fiji code does
//! (`trainableSegmentation.metrics.PixelError.getPixelErrorMaximalFScore(0.0, 1.0, 0.1)`):
//!
//! * positive pixels are the ground truth's foreground (class 1: the cell interior of ISBI
//!   labels, white); a prediction pixel is positive where its probability, a float32 value
//!   (the challenge's 32-bit TIFFs; an 8-bit prediction's v / 255 in float32), is above the
//!   threshold, compared in `f64` as Java promotes it;
//! * true/false positives and false negatives are summed over every image of the set, per
//!   threshold; precision = tp / (tp + fp) (1 when fp = 0), recall = tp / (tp + fn) (1 when
//!   fn = 0), F = 2·P·R / (P + R) (0 when both are 0);
//! * the thresholds are 0.0, 0.1, … accumulated in `f64` as the Java loop adds them
//!   (0.30000000000000004, …, 0.9999999999999999: eleven in all), and the best F wins.
//!
//! It is not bioseg's `pixel_error` ([`crate::metrics`]: the fraction of misclassified pixels at
//! one threshold). Because the interior is most of an EM section, 1 − F of the interior is
//! roughly that fraction divided by 1.5–1.6 (ISBI validation slices: 0.077 misclassified vs
//! 0.048 here), so the two must never be compared with each other.
//!
//! The sweep keeps, per class of truth, a histogram of how many thresholds each prediction
//! pixel exceeds (one pass over the image, no per-threshold pass); sweeps of images merge.

use ndarray::ArrayView2;

use crate::error::DataError;

/// Number of the challenge's thresholds (0.0 to ~1.0 in steps of 0.1).
pub const CHALLENGE_THRESHOLDS: usize = 11;

/// The challenge's thresholds, accumulated as its Java loop does.
pub fn challenge_thresholds() -> [f64; CHALLENGE_THRESHOLDS] {
    let mut t = [0.0; CHALLENGE_THRESHOLDS];
    let mut th = 0.0f64;
    for v in &mut t {
        *v = th;
        th += 0.1;
    }
    t
}

/// The best F-score of a set and where it was reached.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChallengePixelError {
    /// 1 − `f_score` (0 = perfect).
    pub pixel_error: f64,
    /// The maximal F-score of pixel similarity.
    pub f_score: f64,
    /// The (first) threshold that reached it.
    pub threshold: f64,
}

/// Pixel counts of a set of images at every challenge threshold (see the module
/// documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PixelFScoreSweep {
    /// `[truth is foreground][thresholds exceeded]`: pixel counts.
    histogram: [[u64; CHALLENGE_THRESHOLDS + 1]; 2],
}

impl PixelFScoreSweep {
    /// An empty sweep.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image: `probability` (the prediction's foreground probability, 0..=1) against
    /// `truth` (a class map: nonzero = foreground), of equal shape. Nothing is added on error.
    pub fn add(&mut self, probability: ArrayView2<'_, f32>, truth: ArrayView2<'_, u8>) -> Result<(), DataError> {
        crate::metrics::check_shapes(probability, truth)?;
        if let Some(v) = probability.iter().find(|v| v.is_nan()) {
            return Err(DataError::param("probability", format!("holds {v}")));
        }
        let thresholds = challenge_thresholds();
        let mut local = [[0u64; CHALLENGE_THRESHOLDS + 1]; 2];
        for (&p, &t) in probability.iter().zip(truth.iter()) {
            let p = f64::from(p);
            let exceeded = thresholds.partition_point(|&th| p > th);
            local[usize::from(t != 0)][exceeded] += 1;
        }
        for (h, l) in self.histogram.iter_mut().flatten().zip(local.iter().flatten()) {
            *h += l;
        }
        Ok(())
    }

    /// Adds the counts of another sweep.
    pub fn merge(&mut self, other: &PixelFScoreSweep) {
        for (h, o) in self.histogram.iter_mut().flatten().zip(other.histogram.iter().flatten()) {
            *h += o;
        }
    }

    /// `(tp, fp, fn)` at threshold index `k`: a pixel is predicted positive when it exceeds
    /// more than `k` thresholds.
    fn counts(&self, k: usize) -> (u64, u64, u64) {
        let above = |row: &[u64; CHALLENGE_THRESHOLDS + 1]| row[k + 1..].iter().sum::<u64>();
        let positives: u64 = self.histogram[1].iter().sum();
        let tp = above(&self.histogram[1]);
        (tp, above(&self.histogram[0]), positives - tp)
    }

    /// The F-score at threshold index `k` (Fiji's `ClassificationStatistics`).
    pub fn f_score(&self, k: usize) -> f64 {
        let (tp, fp, fn_) = self.counts(k);
        let precision = if fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
        let recall = if fn_ == 0 { 1.0 } else { tp as f64 / (tp + fn_) as f64 };
        if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 }
    }

    /// The challenge's pixel error of everything added so far.
    pub fn best(&self) -> ChallengePixelError {
        let thresholds = challenge_thresholds();
        let (mut best, mut at) = (0.0, 0);
        for k in 0..CHALLENGE_THRESHOLDS {
            let f = self.f_score(k);
            if f > best {
                (best, at) = (f, k);
            }
        }
        ChallengePixelError { pixel_error: 1.0 - best, f_score: best, threshold: thresholds[at] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    /// The challenge's computation written out as its Java code runs it: one pass per threshold.
    fn reference(pairs: &[(Array2<f32>, Array2<u8>)]) -> (f64, f64) {
        let (mut best, mut best_th) = (0.0, 0.0);
        let mut th = 0.0f64;
        while th <= 1.0 {
            let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
            for (p, t) in pairs {
                for (&p, &t) in p.iter().zip(t.iter()) {
                    let (pix1, pix2) = (t > 0, f64::from(p) > th);
                    match (pix2, pix1) {
                        (true, true) => tp += 1.0,
                        (true, false) => fp += 1.0,
                        (false, true) => fn_ += 1.0,
                        _ => {}
                    }
                }
            }
            let precision = if fp == 0.0 { 1.0 } else { tp / (tp + fp) };
            let recall = if fn_ == 0.0 { 1.0 } else { tp / (tp + fn_) };
            let f = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            if f > best {
                (best, best_th) = (f, th);
            }
            th += 0.1;
        }
        (1.0 - best, best_th)
    }

    #[test]
    fn thresholds_are_the_java_loops() {
        let t = challenge_thresholds();
        assert_eq!(t[0], 0.0);
        assert_eq!(t[3], 0.30000000000000004);
        assert_eq!(t[10], 0.9999999999999999);
    }

    #[test]
    fn matches_the_per_threshold_reference_on_random_sets() {
        // A xorshift generator: probabilities on the 8-bit grid (values on the thresholds
        // included) and in between, truth correlated with them.
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for case in 0..20 {
            let pairs: Vec<_> = (0..3)
                .map(|_| {
                    let p = Array2::from_shape_fn((17, 23), |_| {
                        if case % 2 == 0 { (next() % 256) as f32 / 255.0 } else { (next() % 1000) as f32 / 999.0 }
                    });
                    let t = p.mapv(|p| u8::from((p + (next() % 100) as f32 / 150.0 - 0.33) > 0.5));
                    (p, t)
                })
                .collect();
            let mut sweep = PixelFScoreSweep::new();
            for (p, t) in &pairs {
                let mut one = PixelFScoreSweep::new();
                one.add(p.view(), t.view()).unwrap();
                sweep.merge(&one);
            }
            let best = sweep.best();
            let (error, th) = reference(&pairs);
            assert!((best.pixel_error - error).abs() < 1e-12, "case {case}: {best:?} vs {error}");
            assert_eq!(best.threshold, th, "case {case}");
        }
    }

    #[test]
    fn perfect_inverted_and_empty_predictions() {
        let truth = array![[0u8, 1, 1], [1, 0, 1]];
        let mut perfect = PixelFScoreSweep::new();
        perfect.add(truth.mapv(f32::from).view(), truth.view()).unwrap();
        let b = perfect.best();
        assert_eq!((b.pixel_error, b.threshold), (0.0, 0.0));
        let mut inverted = PixelFScoreSweep::new();
        inverted.add(truth.mapv(|t| 1.0 - f32::from(t)).view(), truth.view()).unwrap();
        // Its ones fall on negatives and its zeros exceed no threshold (0 > 0 is false):
        // tp = 0 at every threshold.
        assert_eq!(inverted.best().f_score, 0.0);
        assert_eq!(inverted.best().pixel_error, 1.0);
        // A constant 0.5: positive up to threshold 0.4, where precision = 4/6 and recall = 1.
        let mut half = PixelFScoreSweep::new();
        half.add(Array2::from_elem((2, 3), 0.5f32).view(), truth.view()).unwrap();
        assert!((half.best().f_score - 0.8).abs() < 1e-12);
        assert!(PixelFScoreSweep::new().add(Array2::<f32>::zeros((2, 2)).view(), truth.view()).is_err());
        let nan = Array2::from_elem((2, 3), f32::NAN);
        assert!(PixelFScoreSweep::new().add(nan.view(), truth.view()).is_err());
    }
}

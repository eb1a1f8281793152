//! Segmentation scores from a confusion matrix: per-class Dice (F1) and IoU,
//! and the pixel error.
//!
//! Label maps are `[height, width]` arrays of class indices. For each class `c`
//! with true positives `tp`, false positives `fp` and false negatives `fn`:
//!
//! * Dice = F1 = `2 tp / (2 tp + fp + fn)`,
//! * IoU (Jaccard) = `tp / (tp + fp + fn)`,
//!
//! both defined as 1 when the class is absent from prediction and target alike
//! (`tp + fp + fn = 0`). The means over classes ([`SegmentationScores::mean_dice`],
//! [`SegmentationScores::mean_iou`]) average only the classes present in the
//! target or the prediction. The pixel error is the fraction of pixels whose
//! predicted class differs from the target (`1 - accuracy`).

use ndarray::ArrayView2;

use crate::error::DataError;

/// Scores of one class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassScores {
    /// Dice coefficient (F1 score), 0..=1.
    pub dice: f64,
    /// Intersection over union (Jaccard index), 0..=1.
    pub iou: f64,
    /// Pixels of this class in the target.
    pub support: u64,
    /// Pixels predicted as this class.
    pub predicted: u64,
}

impl ClassScores {
    /// True when the class occurs in the target or the prediction.
    pub fn is_present(&self) -> bool {
        self.support > 0 || self.predicted > 0
    }
}

/// Scores of a prediction against a target.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentationScores {
    /// One entry per class, in class order.
    pub per_class: Vec<ClassScores>,
    /// Fraction of pixels whose predicted class is wrong, 0..=1.
    pub pixel_error: f64,
}

impl SegmentationScores {
    /// Mean Dice over the classes present in target or prediction (1 when none is).
    pub fn mean_dice(&self) -> f64 {
        mean_present(&self.per_class, |c| c.dice)
    }

    /// Mean IoU over the classes present in target or prediction (1 when none is).
    pub fn mean_iou(&self) -> f64 {
        mean_present(&self.per_class, |c| c.iou)
    }
}

/// Mean of `f` over the present classes.
fn mean_present(classes: &[ClassScores], f: impl Fn(&ClassScores) -> f64) -> f64 {
    let present: Vec<f64> = classes.iter().filter(|c| c.is_present()).map(f).collect();
    if present.is_empty() { 1.0 } else { present.iter().sum::<f64>() / present.len() as f64 }
}

/// Pixel counts by (target class, predicted class), accumulated over any number of images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// Row-major `[target][prediction]` counts.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix for `num_classes` classes (1 to 256).
    pub fn new(num_classes: usize) -> Result<Self, DataError> {
        if !(1..=256).contains(&num_classes) {
            return Err(DataError::param("num_classes", format!("{num_classes} (label maps hold 1 to 256 classes)")));
        }
        Ok(ConfusionMatrix { num_classes, counts: vec![0; num_classes * num_classes] })
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Pixels of target class `target` predicted as `predicted` (0 for indices out of range).
    pub fn get(&self, target: usize, predicted: usize) -> u64 {
        if target < self.num_classes && predicted < self.num_classes {
            self.counts[target * self.num_classes + predicted]
        } else {
            0
        }
    }

    /// Total pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds one prediction/target pair of equal shape. Nothing is added when the
    /// shapes differ ([`DataError::ShapeMismatch`]) or a class index is
    /// `>= num_classes` ([`DataError::ClassOutOfRange`]).
    pub fn add(&mut self, prediction: ArrayView2<'_, u8>, target: ArrayView2<'_, u8>) -> Result<(), DataError> {
        check_shapes(prediction, target)?;
        let n = self.num_classes;
        let mut local = vec![0u64; n * n];
        for (&p, &t) in prediction.iter().zip(target.iter()) {
            if p as usize >= n {
                return Err(DataError::ClassOutOfRange { which: "prediction", value: p, num_classes: n });
            }
            if t as usize >= n {
                return Err(DataError::ClassOutOfRange { which: "target", value: t, num_classes: n });
            }
            local[t as usize * n + p as usize] += 1;
        }
        for (c, l) in self.counts.iter_mut().zip(local) {
            *c += l;
        }
        Ok(())
    }

    /// Adds the counts of another matrix with the same number of classes.
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<(), DataError> {
        if other.num_classes != self.num_classes {
            return Err(DataError::param(
                "other",
                format!("confusion matrix has {} classes, expected {}", other.num_classes, self.num_classes),
            ));
        }
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
        Ok(())
    }

    /// The scores of everything added so far (pixel error 0 when nothing was added).
    pub fn scores(&self) -> SegmentationScores {
        let n = self.num_classes;
        let total = self.total();
        let mut correct = 0u64;
        let per_class = (0..n)
            .map(|c| {
                let tp = self.get(c, c);
                correct += tp;
                let support: u64 = (0..n).map(|p| self.get(c, p)).sum();
                let predicted: u64 = (0..n).map(|t| self.get(t, c)).sum();
                let fp = predicted - tp;
                let fn_ = support - tp;
                let (dice, iou) = if tp + fp + fn_ == 0 {
                    (1.0, 1.0)
                } else {
                    (2.0 * tp as f64 / (2 * tp + fp + fn_) as f64, tp as f64 / (tp + fp + fn_) as f64)
                };
                ClassScores { dice, iou, support, predicted }
            })
            .collect();
        let pixel_error = if total == 0 { 0.0 } else { (total - correct) as f64 / total as f64 };
        SegmentationScores { per_class, pixel_error }
    }
}

/// Errors unless both maps have the same shape.
pub(crate) fn check_shapes<A, B>(prediction: ArrayView2<'_, A>, target: ArrayView2<'_, B>) -> Result<(), DataError> {
    if prediction.dim() != target.dim() {
        return Err(DataError::ShapeMismatch {
            pred_width: prediction.ncols(),
            pred_height: prediction.nrows(),
            target_width: target.ncols(),
            target_height: target.nrows(),
        });
    }
    Ok(())
}

/// The confusion matrix of one prediction/target pair.
pub fn confusion_matrix(
    prediction: ArrayView2<'_, u8>,
    target: ArrayView2<'_, u8>,
    num_classes: usize,
) -> Result<ConfusionMatrix, DataError> {
    let mut m = ConfusionMatrix::new(num_classes)?;
    m.add(prediction, target)?;
    Ok(m)
}

/// Per-class Dice and IoU and the pixel error of one prediction/target pair.
pub fn segmentation_scores(
    prediction: ArrayView2<'_, u8>,
    target: ArrayView2<'_, u8>,
    num_classes: usize,
) -> Result<SegmentationScores, DataError> {
    Ok(confusion_matrix(prediction, target, num_classes)?.scores())
}

/// Fraction of pixels where `prediction` and `target` differ (any class values;
/// 0 for empty maps).
pub fn pixel_error(prediction: ArrayView2<'_, u8>, target: ArrayView2<'_, u8>) -> Result<f64, DataError> {
    check_shapes(prediction, target)?;
    let total = prediction.len();
    if total == 0 {
        return Ok(0.0);
    }
    let wrong = prediction.iter().zip(target.iter()).filter(|(p, t)| p != t).count();
    Ok(wrong as f64 / total as f64)
}

/// Dice coefficient of one class (1 when the class is absent from both maps).
pub fn dice(prediction: ArrayView2<'_, u8>, target: ArrayView2<'_, u8>, class: u8) -> Result<f64, DataError> {
    let (tp, fp, fn_) = class_counts(prediction, target, class)?;
    Ok(if tp + fp + fn_ == 0 { 1.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 })
}

/// IoU of one class (1 when the class is absent from both maps).
pub fn iou(prediction: ArrayView2<'_, u8>, target: ArrayView2<'_, u8>, class: u8) -> Result<f64, DataError> {
    let (tp, fp, fn_) = class_counts(prediction, target, class)?;
    Ok(if tp + fp + fn_ == 0 { 1.0 } else { tp as f64 / (tp + fp + fn_) as f64 })
}

/// `(tp, fp, fn)` of one class.
fn class_counts(
    prediction: ArrayView2<'_, u8>,
    target: ArrayView2<'_, u8>,
    class: u8,
) -> Result<(u64, u64, u64), DataError> {
    check_shapes(prediction, target)?;
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (&p, &t) in prediction.iter().zip(target.iter()) {
        match (p == class, t == class) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    Ok((tp, fp, fn_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_binary() {
        // target:     prediction:
        // 1 1 0 0     1 0 0 0
        // 1 1 0 0     1 1 1 0
        let t = array![[1u8, 1, 0, 0], [1, 1, 0, 0]];
        let p = array![[1u8, 0, 0, 0], [1, 1, 1, 0]];
        // class 1: tp=3, fp=1, fn=1 → dice 6/8, iou 3/5
        // class 0: tp=3, fp=1, fn=1 → same
        let s = segmentation_scores(p.view(), t.view(), 2).unwrap();
        assert!(close(s.per_class[1].dice, 0.75));
        assert!(close(s.per_class[1].iou, 0.6));
        assert!(close(s.per_class[0].dice, 0.75));
        assert_eq!(s.per_class[1].support, 4);
        assert_eq!(s.per_class[1].predicted, 4);
        assert!(close(s.pixel_error, 2.0 / 8.0));
        assert!(close(s.mean_dice(), 0.75));
        assert!(close(dice(p.view(), t.view(), 1).unwrap(), 0.75));
        assert!(close(iou(p.view(), t.view(), 1).unwrap(), 0.6));
        assert!(close(pixel_error(p.view(), t.view()).unwrap(), 0.25));
    }

    #[test]
    fn hand_computed_three_classes() {
        // target: 0 0 1 2 2 2 ; prediction: 0 1 1 2 2 0
        let t = array![[0u8, 0, 1, 2, 2, 2]];
        let p = array![[0u8, 1, 1, 2, 2, 0]];
        let m = confusion_matrix(p.view(), t.view(), 3).unwrap();
        assert_eq!(m.get(0, 0), 1);
        assert_eq!(m.get(0, 1), 1);
        assert_eq!(m.get(2, 0), 1);
        assert_eq!(m.total(), 6);
        let s = m.scores();
        // class 0: tp1 fp1 fn1 → dice 2/4, iou 1/3
        // class 1: tp1 fp1 fn0 → dice 2/3, iou 1/2
        // class 2: tp2 fp0 fn1 → dice 4/5, iou 2/3
        assert!(close(s.per_class[0].dice, 0.5));
        assert!(close(s.per_class[0].iou, 1.0 / 3.0));
        assert!(close(s.per_class[1].dice, 2.0 / 3.0));
        assert!(close(s.per_class[1].iou, 0.5));
        assert!(close(s.per_class[2].dice, 0.8));
        assert!(close(s.per_class[2].iou, 2.0 / 3.0));
        assert!(close(s.pixel_error, 2.0 / 6.0));
        assert!(close(s.mean_dice(), (0.5 + 2.0 / 3.0 + 0.8) / 3.0));
        assert!(close(s.mean_iou(), (1.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0));
    }

    #[test]
    fn absent_class_is_perfect_and_left_out_of_means() {
        let t = array![[0u8, 1]];
        let s = segmentation_scores(t.view(), t.view(), 3).unwrap();
        assert_eq!(s.per_class[2].dice, 1.0);
        assert!(!s.per_class[2].is_present());
        assert_eq!(s.mean_dice(), 1.0);
        let p = array![[0u8, 0]];
        let s = segmentation_scores(p.view(), t.view(), 3).unwrap();
        // class 0: tp1 fp1 → 2/3; class 1: fn1 → 0; class 2 absent.
        assert!(close(s.mean_dice(), (2.0 / 3.0) / 2.0));
    }

    #[test]
    fn accumulates_over_images() {
        let mut m = ConfusionMatrix::new(2).unwrap();
        m.add(array![[1u8]].view(), array![[1u8]].view()).unwrap();
        m.add(array![[0u8, 1]].view(), array![[1u8, 1]].view()).unwrap();
        let mut other = ConfusionMatrix::new(2).unwrap();
        other.add(array![[0u8]].view(), array![[0u8]].view()).unwrap();
        m.merge(&other).unwrap();
        assert_eq!(m.total(), 4);
        let s = m.scores();
        assert!(close(s.per_class[1].dice, 4.0 / 5.0));
        assert!(close(s.pixel_error, 0.25));
        assert!(m.merge(&ConfusionMatrix::new(3).unwrap()).is_err());
    }

    #[test]
    fn errors() {
        let a = array![[0u8, 1]];
        let b = array![[0u8], [1]];
        let err = segmentation_scores(a.view(), b.view(), 2).unwrap_err();
        assert_eq!(err.to_string(), "shape mismatch: prediction is 2x1 but target is 1x2");
        assert!(pixel_error(a.view(), b.view()).is_err());
        assert!(dice(a.view(), b.view(), 0).is_err());
        let c = array![[0u8, 5]];
        let err = segmentation_scores(c.view(), a.view(), 2).unwrap_err();
        assert!(matches!(err, DataError::ClassOutOfRange { which: "prediction", value: 5, .. }));
        let mut m = ConfusionMatrix::new(2).unwrap();
        assert!(m.add(a.view(), c.view()).is_err());
        assert_eq!(m.total(), 0, "nothing is added on error");
        assert!(ConfusionMatrix::new(0).is_err());
        assert!(ConfusionMatrix::new(257).is_err());
    }

    #[test]
    fn empty_and_non_contiguous_views() {
        let e = ndarray::Array2::<u8>::zeros((0, 3));
        assert_eq!(pixel_error(e.view(), e.view()).unwrap(), 0.0);
        let s = segmentation_scores(e.view(), e.view(), 2).unwrap();
        assert_eq!(s.pixel_error, 0.0);
        let t = array![[0u8, 1], [1, 0]];
        let p = array![[0u8, 1], [0, 1]];
        // Transposed views work element by element in logical order.
        let s1 = segmentation_scores(p.t(), t.t(), 2).unwrap();
        let s2 = segmentation_scores(p.view(), t.view(), 2).unwrap();
        assert_eq!(s1, s2);
    }
}

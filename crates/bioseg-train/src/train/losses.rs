//! Segmentation losses with the Biowulf `unet` module's knobs.
//!
//! All take class logits `[N, K, H, W]` and a one-hot target of the same shape. For a binary
//! model (K = 1) the single channel is the foreground probability after a sigmoid, and the
//! background is `1 − p`; class weights then apply to `[background, foreground]`.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax, sigmoid, softmax};
use serde::{Deserialize, Serialize};

/// The loss to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// (Binary) cross-entropy, unweighted.
    Bce,
    /// Class-weighted categorical cross-entropy.
    Wcce,
    /// Soft Dice loss, averaged over classes with the class weights.
    Dice,
    /// (Focal) Tversky loss: `(1 − TI)^γ`, TI = TP / (TP + β·FN + (1 − β)·FP).
    Tversky,
}

impl FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "bce" => Ok(LossKind::Bce),
            "wcce" => Ok(LossKind::Wcce),
            "dice" => Ok(LossKind::Dice),
            "tversky" => Ok(LossKind::Tversky),
            o => Err(format!("unknown loss `{o}` (expected bce, wcce, dice or tversky)")),
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossKind::Bce => "bce",
            LossKind::Wcce => "wcce",
            LossKind::Dice => "dice",
            LossKind::Tversky => "tversky",
        })
    }
}

/// `--cw`: explicit class weights or `auto` (inverse class areas, normalised to sum 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClassWeights {
    /// All classes weigh 1.
    Uniform,
    /// w_c = (1/A_c) / Σ_k (1/A_k), A_c the fraction of training pixels in class c.
    Auto,
    /// One weight per class (for binary models: background, foreground).
    Explicit(Vec<f32>),
}

/// Written as parsed: `uniform`, `auto` or `w0,w1,…`.
impl fmt::Display for ClassWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassWeights::Uniform => f.write_str("uniform"),
            ClassWeights::Auto => f.write_str("auto"),
            ClassWeights::Explicit(w) => {
                let list: Vec<String> = w.iter().map(f32::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

impl FromStr for ClassWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(ClassWeights::Auto),
            "none" | "uniform" => Ok(ClassWeights::Uniform),
            list => list
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|w| w.is_finite() && *w >= 0.0)
                        .ok_or_else(|| format!("class weight `{v}` is not a non-negative number"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(ClassWeights::Explicit),
        }
    }
}

impl ClassWeights {
    /// The weights for `classes` classes given the training class frequencies (fractions).
    pub fn resolve(&self, classes: usize, frequencies: &[f64]) -> Result<Vec<f32>, String> {
        match self {
            ClassWeights::Uniform => Ok(vec![1.0; classes]),
            ClassWeights::Explicit(w) if w.len() == classes => Ok(w.clone()),
            ClassWeights::Explicit(w) => {
                Err(format!("--cw gives {} weights but the data has {classes} classes", w.len()))
            }
            ClassWeights::Auto => Ok(auto_class_weights(frequencies)),
        }
    }
}

/// w_c = (1/A_c)/Σ_k(1/A_k); a class absent from the data (A_c = 0) gets weight 0.
pub fn auto_class_weights(frequencies: &[f64]) -> Vec<f32> {
    let inv: Vec<f64> = frequencies.iter().map(|&a| if a > 0.0 { 1.0 / a } else { 0.0 }).collect();
    let total: f64 = inv.iter().sum();
    inv.iter().map(|&v| if total > 0.0 { (v / total) as f32 } else { 0.0 }).collect()
}

/// The loss with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// Which loss.
    pub kind: LossKind,
    /// Per-class weights (length = classes, or 2 for a binary model).
    pub class_weights: Vec<f32>,
    /// Tversky β: weight of false negatives (1 − β on false positives).
    pub beta: f32,
    /// Focal exponent γ of the Tversky loss.
    pub gamma: f32,
}

const EPS: f64 = 1e-6;

/// Per-class probabilities and log-probabilities `[N, K', H, W]` (K' = 2 for binary models).
fn class_probabilities<B: Backend>(logits: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
    if logits.dims()[1] == 1 {
        let log_fg = log_sigmoid(logits.clone());
        let log_bg = log_sigmoid(logits.clone().neg());
        let p = sigmoid(logits);
        let probs = Tensor::cat(vec![p.clone().neg().add_scalar(1.0), p], 1);
        (probs, Tensor::cat(vec![log_bg, log_fg], 1))
    } else {
        (softmax(logits.clone(), 1), log_softmax(logits, 1))
    }
}

/// Expands a one-channel binary target to `[background, foreground]`.
fn two_class_target<B: Backend>(target: Tensor<B, 4>) -> Tensor<B, 4> {
    if target.dims()[1] == 1 { Tensor::cat(vec![target.clone().neg().add_scalar(1.0), target], 1) } else { target }
}

impl Loss {
    /// The scalar loss of `logits` against the one-hot `target` (both `[N, K, H, W]`).
    ///
    /// With `pixel_weights` (`[N, 1, H, W]`, the U-Net paper's weight map, class weights
    /// included), bce and wcce are `−Σ w(x)·log p_true(x) / pixels` and the class weights are not
    /// applied again; Dice and Tversky ignore them ([`UnetTraining::check`] refuses the pair).
    ///
    /// [`UnetTraining::check`]: crate::train::unet::UnetTraining::check
    pub fn forward<B: Backend>(
        &self,
        logits: Tensor<B, 4>,
        target: Tensor<B, 4>,
        pixel_weights: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 1> {
        let device = logits.device();
        let (probs, log_probs) = class_probabilities(logits);
        let target = two_class_target(target);
        let [n, k, h, w] = target.dims();
        let weights = if self.class_weights.len() == k { self.class_weights.clone() } else { vec![1.0; k] };
        let wt = Tensor::<B, 1>::from_data(TensorData::new(weights.clone(), [k]), &device);
        let pixels = (n * h * w) as f64;
        match self.kind {
            LossKind::Bce | LossKind::Wcce if pixel_weights.is_some() => {
                let w = pixel_weights.expect("matched");
                (target * log_probs * w).sum().neg().div_scalar(pixels)
            }
            LossKind::Bce | LossKind::Wcce => {
                let per_class = (target * log_probs).sum_dim(0).sum_dim(2).sum_dim(3).reshape([k]);
                let per_class = if self.kind == LossKind::Wcce { per_class * wt } else { per_class };
                per_class.sum().neg().div_scalar(pixels)
            }
            LossKind::Dice | LossKind::Tversky => {
                let sum = |t: Tensor<B, 4>| t.sum_dim(0).sum_dim(2).sum_dim(3).reshape([k]);
                let tp = sum(probs.clone() * target.clone());
                let score = if self.kind == LossKind::Dice {
                    let denom = sum(probs) + sum(target);
                    tp.mul_scalar(2.0).add_scalar(EPS) / denom.add_scalar(EPS)
                } else {
                    let fn_ = sum(target.clone()) - tp.clone();
                    let fp = sum(probs) - tp.clone();
                    let denom = tp.clone() + fn_.mul_scalar(self.beta as f64) + fp.mul_scalar(1.0 - self.beta as f64);
                    tp.add_scalar(EPS) / denom.add_scalar(EPS)
                };
                let mut per_class = score.neg().add_scalar(1.0);
                if self.kind == LossKind::Tversky && self.gamma != 1.0 {
                    per_class = per_class.clamp_min(0.0).powf_scalar(self.gamma as f64);
                }
                let wsum: f32 = weights.iter().sum();
                (per_class * wt).sum().div_scalar(wsum.max(1e-12) as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;

    fn t4(data: Vec<f32>, shape: [usize; 4]) -> Tensor<CpuBackend, 4> {
        Tensor::from_data(TensorData::new(data, shape), &Default::default())
    }

    fn scalar(t: Tensor<CpuBackend, 1>) -> f32 {
        t.into_scalar()
    }

    fn loss(kind: LossKind, w: Vec<f32>) -> Loss {
        Loss { kind, class_weights: w, beta: 0.5, gamma: 1.0 }
    }

    #[test]
    fn bce_matches_hand_computation() {
        // Two pixels, logits 0 (p = 0.5) and ln 3 (p = 0.75); targets 1 and 0.
        let logits = t4(vec![0.0, 3f32.ln()], [1, 1, 1, 2]);
        let target = t4(vec![1.0, 0.0], [1, 1, 1, 2]);
        let expected = -((0.5f64).ln() + (0.25f64).ln()) / 2.0;
        let got = scalar(loss(LossKind::Bce, vec![]).forward(logits, target, None));
        assert!((got as f64 - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn weighted_cce_weights_each_class() {
        let logits = t4(vec![0.0, 3f32.ln()], [1, 1, 1, 2]);
        let target = t4(vec![1.0, 0.0], [1, 1, 1, 2]);
        // class 1 (foreground) pixel weighted 3, class 0 pixel weighted 1.
        let expected = -(3.0 * (0.5f64).ln() + 1.0 * (0.25f64).ln()) / 2.0;
        let got = scalar(loss(LossKind::Wcce, vec![1.0, 3.0]).forward(logits, target, None));
        assert!((got as f64 - expected).abs() < 1e-5);
    }

    #[test]
    fn pixel_weights_replace_class_weights() {
        let logits = t4(vec![0.0, 3f32.ln()], [1, 1, 1, 2]);
        let target = t4(vec![1.0, 0.0], [1, 1, 1, 2]);
        let w = t4(vec![11.0, 0.5], [1, 1, 1, 2]);
        let expected = -(11.0 * (0.5f64).ln() + 0.5 * (0.25f64).ln()) / 2.0;
        for (kind, cw) in [(LossKind::Bce, vec![]), (LossKind::Wcce, vec![1.0, 3.0])] {
            let got = scalar(loss(kind, cw).forward(logits.clone(), target.clone(), Some(w.clone())));
            assert!((got as f64 - expected).abs() < 1e-5, "{kind}: {got} vs {expected}");
        }
        // Weights of 1 give the plain loss; three classes (softmax) too.
        let ones = t4(vec![1.0, 1.0], [1, 1, 1, 2]);
        let plain = scalar(loss(LossKind::Bce, vec![]).forward(logits.clone(), target.clone(), None));
        let got = scalar(loss(LossKind::Bce, vec![]).forward(logits, target, Some(ones.clone())));
        assert!((got - plain).abs() < 1e-6);
        let l3 = t4(vec![1.0, 0.0, 0.5, 2.0, -1.0, 0.0], [1, 3, 1, 2]);
        let t3 = t4(vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [1, 3, 1, 2]);
        let plain = scalar(loss(LossKind::Wcce, vec![1.0, 1.0, 1.0]).forward(l3.clone(), t3.clone(), None));
        let got = scalar(loss(LossKind::Wcce, vec![1.0, 1.0, 1.0]).forward(l3, t3, Some(ones)));
        assert!((got - plain).abs() < 1e-6);
    }

    #[test]
    fn dice_and_tversky_are_zero_for_perfect_and_known_for_half() {
        // Softmax over 2 channels with huge logits: perfect prediction.
        let target = t4(vec![1.0, 0.0, 0.0, 1.0], [1, 2, 1, 2]);
        let logits = t4(vec![50.0, -50.0, -50.0, 50.0], [1, 2, 1, 2]);
        for kind in [LossKind::Dice, LossKind::Tversky] {
            let got = scalar(loss(kind, vec![1.0, 1.0]).forward(logits.clone(), target.clone(), None));
            assert!(got.abs() < 1e-4, "{kind}: {got}");
        }
        // Uniform prediction p = 0.5 everywhere: Dice per class = 2·0.5/(1 + 1) = 0.5.
        let flat = t4(vec![0.0; 4], [1, 2, 1, 2]);
        let got = scalar(loss(LossKind::Dice, vec![1.0, 1.0]).forward(flat.clone(), target.clone(), None));
        assert!((got - 0.5).abs() < 1e-4, "{got}");
        // Tversky with β = 0.5 equals Dice; γ = 2 squares it.
        let mut tv = loss(LossKind::Tversky, vec![1.0, 1.0]);
        let got = scalar(tv.forward(flat.clone(), target.clone(), None));
        assert!((got - 0.5).abs() < 1e-4, "{got}");
        tv.gamma = 2.0;
        let got = scalar(tv.forward(flat, target, None));
        assert!((got - 0.25).abs() < 1e-4, "{got}");
    }

    #[test]
    fn auto_weights_follow_the_slide() {
        let w = auto_class_weights(&[0.75, 0.25]);
        // (1/0.75)/(1/0.75 + 1/0.25) = 0.25, and 0.75 for the rare class.
        assert!((w[0] - 0.25).abs() < 1e-6 && (w[1] - 0.75).abs() < 1e-6);
        assert_eq!(auto_class_weights(&[1.0, 0.0]), vec![1.0, 0.0]);
        assert!("1,x".parse::<ClassWeights>().is_err());
        assert_eq!("0.2, 0.8".parse::<ClassWeights>().unwrap(), ClassWeights::Explicit(vec![0.2, 0.8]));
    }
}

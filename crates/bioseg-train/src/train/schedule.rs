//! The learning rate of each step: constant, or a linear warm-up followed by a cosine decay
//! to zero over the run (Loshchilov & Hutter 2017, without restarts), the schedule of most
//! current segmentation recipes (nnU-Net uses a polynomial decay of the same shape).

use serde::{Deserialize, Serialize};

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The base rate at every step (after the warm-up, if any).
    #[default]
    Constant,
    /// After the warm-up, `base · ½(1 + cos(π·t))` with `t` going from 0 to 1 over the
    /// remaining steps of the run.
    Cosine,
}

impl LrSchedule {
    /// Every schedule and its name on the command line.
    const NAMES: [(LrSchedule, &'static str); 2] = [(LrSchedule::Constant, "constant"), (LrSchedule::Cosine, "cosine")];

    /// The rate of step `step` (0-based) of a run of `total` steps with base rate `base`, the
    /// first `warmup` steps rising linearly from `base / warmup` to `base`.
    pub fn rate(self, base: f64, step: usize, total: usize, warmup: usize) -> f64 {
        if step < warmup {
            return base * (step + 1) as f64 / warmup as f64;
        }
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LrSchedule::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s.trim()))
            .map(|(v, _)| *v)
            .ok_or_else(|| format!("unknown learning-rate schedule `{s}` (expected constant or cosine)"))
    }
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = LrSchedule::NAMES.iter().find(|(v, _)| v == self).map(|(_, n)| *n).unwrap_or("?");
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine_to_zero() {
        let s = LrSchedule::Cosine;
        assert_eq!(s.rate(1.0, 0, 100, 10), 0.1);
        assert_eq!(s.rate(1.0, 9, 100, 10), 1.0);
        assert_eq!(s.rate(1.0, 10, 100, 10), 1.0);
        assert!((s.rate(1.0, 55, 100, 10) - 0.5).abs() < 1e-12);
        assert!(s.rate(1.0, 99, 100, 10) < 0.001);
        assert_eq!(s.rate(1.0, 500, 100, 10), 0.0);
        // Monotone after the warm-up.
        let r: Vec<f64> = (10..100).map(|i| s.rate(2e-4, i, 100, 10)).collect();
        assert!(r.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(LrSchedule::Constant.rate(3e-4, 70, 100, 0), 3e-4);
        assert_eq!(LrSchedule::Constant.rate(3e-4, 0, 100, 4), 3e-4 / 4.0);
        assert_eq!("Cosine".parse::<LrSchedule>(), Ok(LrSchedule::Cosine));
        assert!("step".parse::<LrSchedule>().is_err());
        assert_eq!(LrSchedule::Cosine.to_string(), "cosine");
    }
}

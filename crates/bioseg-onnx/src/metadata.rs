//! The metadata bioseg stores in an ONNX file's `metadata_props` (all keys start with `bioseg.`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::OnnxError;

/// Axis order of a model's image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorLayout {
    /// Batch, channels, height, width (PyTorch, Burn, bioseg's own exports).
    Nchw,
    /// Batch, height, width, channels (Keras / TensorFlow).
    Nhwc,
    /// Batch, features (tabular models such as the perceptron).
    Nc,
}

impl fmt::Display for TensorLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TensorLayout::Nchw => "nchw",
            TensorLayout::Nhwc => "nhwc",
            TensorLayout::Nc => "nc",
        })
    }
}

impl FromStr for TensorLayout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(TensorLayout::Nchw),
            "nhwc" => Ok(TensorLayout::Nhwc),
            "nc" => Ok(TensorLayout::Nc),
            other => Err(format!("unknown layout `{other}` (expected nchw, nhwc or nc)")),
        }
    }
}

/// What the model's last layer produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputActivation {
    /// One channel of foreground probability.
    Sigmoid,
    /// C channels of class probabilities.
    Softmax,
    /// C channels of unnormalised scores.
    Logits,
}

impl fmt::Display for OutputActivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputActivation::Sigmoid => "sigmoid",
            OutputActivation::Softmax => "softmax",
            OutputActivation::Logits => "logits",
        })
    }
}

impl FromStr for OutputActivation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(OutputActivation::Sigmoid),
            "softmax" => Ok(OutputActivation::Softmax),
            "logits" => Ok(OutputActivation::Logits),
            other => Err(format!("unknown output `{other}` (expected sigmoid, softmax or logits)")),
        }
    }
}

/// How raw pixel values are turned into model input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalization {
    /// Values are used as they are.
    None,
    /// `x / divisor` (e.g. 255 for 8-bit images, 65535 for 16-bit).
    Divide(f32),
    /// `(x - mean) / std` with fixed statistics.
    ZScore {
        /// Mean subtracted.
        mean: f32,
        /// Standard deviation divided by.
        std: f32,
    },
    /// `(x - mean) / std` with each image's (or tile source's) own statistics.
    ZScorePerImage,
    /// `(x - p_low) / (p_high - p_low + 1e-6)` with the `low` and `high` percentiles (0–100) of
    /// each image's own values (the BioImage Model Zoo's `scale_range`; NumPy's linear
    /// interpolation between order statistics).
    Percentile {
        /// Lower percentile, mapped to 0.
        low: f32,
        /// Upper percentile, mapped to 1.
        high: f32,
    },
}

/// The value at percentile `p` (0–100) of `values` (not empty), as NumPy's `percentile` with
/// linear interpolation: between order statistics `⌊q⌋` and `⌈q⌉`, `q = p/100 · (n − 1)`.
fn percentile(values: &mut [f32], p: f32) -> f32 {
    let q = (p.clamp(0.0, 100.0) as f64 / 100.0) * (values.len() - 1) as f64;
    let (i, frac) = (q.floor() as usize, q - q.floor());
    let lower = *values.select_nth_unstable_by(i, f32::total_cmp).1;
    if frac == 0.0 {
        return lower;
    }
    // The next order statistic is the smallest value above position i.
    let upper = values[i + 1..].iter().copied().fold(f32::INFINITY, f32::min);
    (lower as f64 + frac * (upper as f64 - lower as f64)) as f32
}

impl Normalization {
    /// Whether the statistics come from each image's own values ([`Normalization::fixed_for`]).
    pub fn per_image(&self) -> bool {
        matches!(self, Normalization::ZScorePerImage | Normalization::Percentile { .. })
    }

    /// The normalisation with the statistics of `values` fixed: a per-image z-score or
    /// percentile range becomes the [`Normalization::ZScore`] that applies it to these values
    /// (and to tiles of them alike); the others are returned as they are.
    pub fn fixed_for<'a>(&self, values: impl Iterator<Item = &'a f32> + Clone) -> Normalization {
        match *self {
            Normalization::ZScorePerImage => {
                let n = values.clone().count().max(1) as f64;
                let mean = values.clone().map(|&v| v as f64).sum::<f64>() / n;
                let var = values.map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                Normalization::ZScore { mean: mean as f32, std: var.sqrt().max(1e-6) as f32 }
            }
            Normalization::Percentile { low, high } => {
                let mut v: Vec<f32> = values.copied().collect();
                if v.is_empty() {
                    return Normalization::None;
                }
                let lo = percentile(&mut v, low);
                let hi = percentile(&mut v, high);
                Normalization::ZScore { mean: lo, std: hi - lo + 1e-6 }
            }
            n => n,
        }
    }

    /// Applies the normalisation in place (per-image statistics are computed over `values`).
    pub fn apply(&self, values: &mut [f32]) {
        match self.fixed_for(values.iter()) {
            Normalization::Divide(d) => values.iter_mut().for_each(|v| *v /= d),
            Normalization::ZScore { mean, std } => values.iter_mut().for_each(|v| *v = (*v - mean) / std),
            _ => {}
        }
    }
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Normalization::None => write!(f, "none"),
            Normalization::Divide(d) => write!(f, "divide:{d}"),
            Normalization::ZScore { mean, std } => write!(f, "zscore:{mean}:{std}"),
            Normalization::ZScorePerImage => write!(f, "zscore"),
            Normalization::Percentile { low, high } => write!(f, "percentile:{low}:{high}"),
        }
    }
}

impl FromStr for Normalization {
    type Err = String;
    /// Parses `none`, `divide:255`, `zscore` (per image), `zscore:MEAN:STD` or
    /// `percentile:LOW:HIGH` (per image).
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |p: &str| {
            p.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("`{p}` is not a finite number"))
        };
        match parts.as_slice() {
            ["none"] => Ok(Normalization::None),
            ["divide", d] => {
                let d = num(d)?;
                if d == 0.0 {
                    return Err("divide:0 would divide by zero".into());
                }
                Ok(Normalization::Divide(d))
            }
            ["zscore"] => Ok(Normalization::ZScorePerImage),
            ["zscore", m, s] => {
                let std = num(s)?;
                if std <= 0.0 {
                    return Err("zscore needs a positive standard deviation".into());
                }
                Ok(Normalization::ZScore { mean: num(m)?, std })
            }
            ["percentile", lo, hi] => {
                let (low, high) = (num(lo)?, num(hi)?);
                if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                    return Err(format!("percentile:{lo}:{hi} needs 0 ≤ LOW < HIGH ≤ 100"));
                }
                Ok(Normalization::Percentile { low, high })
            }
            _ => Err(format!(
                "unknown normalisation `{s}` (expected none, divide:D, zscore, zscore:MEAN:STD or percentile:LOW:HIGH)"
            )),
        }
    }
}

/// bioseg's model metadata. Every field is optional so that models from other exporters (which
/// carry none of it) read as an empty record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMetadata {
    /// Architecture name (`perceptron`, `unet`).
    pub architecture: Option<String>,
    /// Task (`binary-classification`, `binary-segmentation`, `multiclass-segmentation`).
    pub task: Option<String>,
    /// Input description in words.
    pub input_description: Option<String>,
    /// Input layout.
    pub layout: Option<TensorLayout>,
    /// Input channels.
    pub input_channels: Option<usize>,
    /// Class names, one per output channel (binary models name the foreground).
    pub classes: Vec<String>,
    /// Output activation.
    pub output: Option<OutputActivation>,
    /// Input normalisation inference must apply.
    pub normalization: Option<Normalization>,
    /// Height and width must be multiples of this (2^depth for a U-Net).
    pub size_multiple: Option<usize>,
    /// Receptive-field radius in pixels (half the receptive field's width).
    pub receptive_field_radius: Option<usize>,
    /// Recommended tiling halo in pixels.
    pub recommended_halo: Option<usize>,
    /// The tool and version that wrote the file.
    pub writer: Option<String>,
    /// Free-form training summary (JSON).
    pub training: Option<String>,
    /// Any other `metadata_props` entries, kept verbatim.
    pub extra: BTreeMap<String, String>,
}

const K_ARCH: &str = "bioseg.architecture";
const K_TASK: &str = "bioseg.task";
const K_INPUT: &str = "bioseg.input";
const K_LAYOUT: &str = "bioseg.layout";
const K_CHANNELS: &str = "bioseg.input_channels";
const K_CLASSES: &str = "bioseg.classes";
const K_OUTPUT: &str = "bioseg.output";
const K_NORM: &str = "bioseg.normalization";
const K_MULTIPLE: &str = "bioseg.size_multiple";
const K_RF: &str = "bioseg.receptive_field_radius";
const K_HALO: &str = "bioseg.recommended_halo";
const K_WRITER: &str = "bioseg.writer";
const K_TRAINING: &str = "bioseg.training";

impl ModelMetadata {
    /// The entries to store as `metadata_props`, sorted by key.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut m = self.extra.clone();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put(K_ARCH, self.architecture.clone());
        put(K_TASK, self.task.clone());
        put(K_INPUT, self.input_description.clone());
        put(K_LAYOUT, self.layout.map(|l| l.to_string()));
        put(K_CHANNELS, self.input_channels.map(|c| c.to_string()));
        put(K_CLASSES, (!self.classes.is_empty()).then(|| self.classes.join(",")));
        put(K_OUTPUT, self.output.map(|o| o.to_string()));
        put(K_NORM, self.normalization.map(|n| n.to_string()));
        put(K_MULTIPLE, self.size_multiple.map(|v| v.to_string()));
        put(K_RF, self.receptive_field_radius.map(|v| v.to_string()));
        put(K_HALO, self.recommended_halo.map(|v| v.to_string()));
        put(K_WRITER, self.writer.clone());
        put(K_TRAINING, self.training.clone());
        m.into_iter().collect()
    }

    /// Reads the record back from `metadata_props` entries; unknown keys land in `extra`.
    pub fn from_props<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, OnnxError> {
        let mut md = ModelMetadata::default();
        for (k, v) in props {
            let bad = |reason: String| OnnxError::Metadata { key: k.to_string(), value: v.to_string(), reason };
            let int = || v.trim().parse::<usize>().map_err(|e| bad(e.to_string()));
            match k {
                K_ARCH => md.architecture = Some(v.into()),
                K_TASK => md.task = Some(v.into()),
                K_INPUT => md.input_description = Some(v.into()),
                K_LAYOUT => md.layout = Some(v.parse().map_err(bad)?),
                K_CHANNELS => md.input_channels = Some(int()?),
                K_CLASSES => md.classes = v.split(',').map(|s| s.trim().to_string()).collect(),
                K_OUTPUT => md.output = Some(v.parse().map_err(bad)?),
                K_NORM => md.normalization = Some(v.parse().map_err(bad)?),
                K_MULTIPLE => md.size_multiple = Some(int()?),
                K_RF => md.receptive_field_radius = Some(int()?),
                K_HALO => md.recommended_halo = Some(int()?),
                K_WRITER => md.writer = Some(v.into()),
                K_TRAINING => md.training = Some(v.into()),
                _ => {
                    md.extra.insert(k.to_string(), v.to_string());
                }
            }
        }
        Ok(md)
    }

    /// Reads the record of a decoded model.
    pub fn from_model(model: &crate::proto::ModelProto) -> Result<Self, OnnxError> {
        Self::from_props(model.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_props() {
        let md = ModelMetadata {
            architecture: Some("unet".into()),
            layout: Some(TensorLayout::Nchw),
            classes: vec!["interior".into(), "membrane".into()],
            output: Some(OutputActivation::Softmax),
            normalization: Some(Normalization::ZScore { mean: 0.5, std: 0.25 }),
            size_multiple: Some(16),
            recommended_halo: Some(44),
            extra: [("other.key".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        let props = md.to_props();
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(md, back);
    }

    #[test]
    fn bad_metadata_values_are_errors_naming_the_key() {
        let err = ModelMetadata::from_props([("bioseg.size_multiple", "sixteen")]).unwrap_err();
        assert!(err.to_string().contains("bioseg.size_multiple"), "{err}");
        let err = ModelMetadata::from_props([("bioseg.normalization", "divide:0")]).unwrap_err();
        assert!(err.to_string().contains("divide"), "{err}");
    }

    #[test]
    fn normalizations_parse_and_apply() {
        let mut v = [0.0, 127.5, 255.0];
        "divide:255".parse::<Normalization>().unwrap().apply(&mut v);
        assert_eq!(v, [0.0, 0.5, 1.0]);
        let mut v = [1.0, 3.0];
        Normalization::ZScorePerImage.apply(&mut v);
        assert!((v[0] + 1.0).abs() < 1e-6 && (v[1] - 1.0).abs() < 1e-6);
        assert!("zscore:0:0".parse::<Normalization>().is_err());
        // Percentiles as NumPy's: np.percentile([4, 0, 1, 2, 3], [10, 90]) = [0.4, 3.6].
        let p: Normalization = "percentile:10:90".parse().unwrap();
        assert_eq!(p.to_string(), "percentile:10:90");
        let Normalization::ZScore { mean, std } = p.fixed_for([4.0f32, 0.0, 1.0, 2.0, 3.0].iter()) else { panic!() };
        assert!((mean - 0.4).abs() < 1e-6 && (std - 3.2).abs() < 1e-5, "{mean} {std}");
        assert_eq!(
            Normalization::Percentile { low: 0.0, high: 100.0 }.fixed_for([7.0f32].iter()),
            Normalization::ZScore { mean: 7.0, std: 1e-6 }
        );
        assert!("percentile:90:10".parse::<Normalization>().is_err());
        assert!("bogus".parse::<Normalization>().is_err());
    }
}

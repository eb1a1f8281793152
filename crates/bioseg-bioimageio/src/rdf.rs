//! The model description (`rdf.yaml`, BioImage Model Zoo model spec 0.5) read into what bioseg
//! runs: one input and its output, their axes, pre- and postprocessing as bioseg's
//! normalisation and output activation, the halo and size constraints, the ONNX weights and the
//! test tensors.
//!
//! The YAML is parsed with budgets (nesting depth, node count, scalar bytes, aliases: see
//! [`parse_yaml`]) into a JSON value and read field by field, so a hostile or malformed file gets
//! one error naming the field (`inputs[0].axes[2].size`), never a panic. What the spec allows
//! and bioseg cannot run is refused with the step or field named; see [`supported`].

use bioseg_onnx::{ModelMetadata, Normalization, OutputActivation, TensorLayout};
use serde_json::Value;

/// Bytes an `rdf.yaml` may hold.
pub const MAX_RDF_BYTES: u64 = 1 << 20;

/// What bioseg supports of the spec, for `--help` texts and error messages.
pub fn supported() -> &'static str {
    "model descriptions of format 0.5; one input with a batch axis, a channel axis and y, x (and z) space axes; \
preprocessing: ensure_dtype float32, scale_linear and fixed_zero_mean_unit_variance (single values), \
zero_mean_unit_variance and scale_range (per sample, over all axes but batch); postprocessing: ensure_dtype float32, \
sigmoid (one channel), softmax (over the channels); ONNX weights inside the package"
}

/// A file of the package named by the description, with its checksum if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// Relative name inside the package.
    pub source: String,
    /// Lower-case hex sha256, if the description gives one.
    pub sha256: Option<String>,
}

/// A model description as bioseg runs it.
#[derive(Clone, Debug)]
pub struct ModelDescription {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `format_version`.
    pub format_version: String,
    /// The input's `id`.
    pub input_id: String,
    /// The (first) output's `id`.
    pub output_id: String,
    /// Outputs declared (bioseg runs the first).
    pub outputs: usize,
    /// The ONNX weights.
    pub weights: FileRef,
    /// `weights.onnx.opset_version`.
    pub opset: Option<u64>,
    /// The input's and output's test tensors (`.npy`), if given.
    pub test_tensors: Option<(FileRef, FileRef)>,
    /// The description as bioseg's model metadata: layout, channels, classes, normalisation,
    /// output activation, size multiple, halo.
    pub metadata: ModelMetadata,
    /// The smallest input height and width (`size.min`).
    pub min_size: Option<usize>,
}

/// A field's location and what is wrong with it.
type FieldError = String;

/// Parses YAML from a stranger into a JSON value within budgets: nesting depth 32, 100 000
/// nodes, 1 MiB of scalars, 1 000 aliases (a "billion laughs" file is refused, not expanded),
/// one document.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    // YAML 1.2 (as bioimageio.spec reads it): only true/false are booleans (`y`, the axis, is
    // text).
    let options = serde_saphyr::options! {
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_nodes: 100_000,
            max_total_scalar_bytes: MAX_RDF_BYTES as usize,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_documents: 1,
        },
    };
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .map_err(|e| e.to_string().lines().next().unwrap_or("invalid YAML").to_owned())
}

/// Field access with the path for errors.
#[derive(Clone, Copy)]
struct Field<'a> {
    at: &'a str,
    value: Option<&'a Value>,
}

impl<'a> Field<'a> {
    fn root(value: &'a Value) -> Self {
        Field { at: "", value: Some(value) }
    }

    fn name(&self, key: &str) -> String {
        if self.at.is_empty() { key.to_owned() } else { format!("{}.{key}", self.at) }
    }

    fn get(&self, key: &str, path: &'a mut String) -> Field<'a> {
        *path = self.name(key);
        let path: &'a String = path;
        Field { at: path.as_str(), value: self.value.and_then(|v| v.get(key)) }
    }

    fn present(&self) -> bool {
        self.value.is_some_and(|v| !v.is_null())
    }

    fn str(&self) -> Result<&'a str, FieldError> {
        match self.value {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(format!("{}: expected text, found {}", self.at, kind(v))),
            None => Err(format!("{}: missing", self.at)),
        }
    }

    fn f64(&self) -> Result<f64, FieldError> {
        match self.value {
            Some(Value::Number(n)) => {
                n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| format!("{}: not a finite number", self.at))
            }
            Some(v) => Err(format!("{}: expected a number, found {}", self.at, kind(v))),
            None => Err(format!("{}: missing", self.at)),
        }
    }

    fn usize(&self) -> Result<usize, FieldError> {
        match self.value {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v <= 1 << 32)
                .ok_or_else(|| format!("{}: expected a whole number up to 2^32, found {n}", self.at)),
            Some(v) => Err(format!("{}: expected a whole number, found {}", self.at, kind(v))),
            None => Err(format!("{}: missing", self.at)),
        }
    }

    fn list(&self) -> Result<&'a [Value], FieldError> {
        match self.value {
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(format!("{}: expected a list, found {}", self.at, kind(v))),
            None => Err(format!("{}: missing", self.at)),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// One axis of a tensor description.
#[derive(Clone, Debug, PartialEq)]
enum AxisKind {
    Batch,
    Channel { count: usize, names: Vec<String> },
    Space { id: String, size: Size, halo: usize },
    Other(String),
}

/// A space axis' size.
#[derive(Clone, Debug, PartialEq)]
enum Size {
    Fixed(usize),
    Parameterized { min: usize, step: usize },
    Reference { tensor: String, axis: String, offset: i64 },
    Unknown,
}

fn file_ref(f: Field<'_>) -> Result<FileRef, FieldError> {
    let (mut p1, mut p2) = (String::new(), String::new());
    let source = f.get("source", &mut p1).str()?;
    if source.contains("://") {
        return Err(format!("{}.source: {source} is a link; bioseg runs files inside the package", f.at));
    }
    crate::archive::check_name(source).map_err(|e| format!("{}.source: {e}", f.at))?;
    let sha = f.get("sha256", &mut p2);
    let sha256 = if sha.present() {
        let s = sha.str()?.to_ascii_lowercase();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{}: not a sha256 (64 hex digits)", sha.at));
        }
        Some(s)
    } else {
        None
    };
    Ok(FileRef { source: source.trim_start_matches("./").to_owned(), sha256 })
}

fn axes(t: Field<'_>) -> Result<Vec<AxisKind>, FieldError> {
    let mut p = String::new();
    let list = t.get("axes", &mut p);
    let mut out = vec![];
    for (i, a) in list.list()?.iter().enumerate() {
        let at = format!("{}[{i}]", list.at);
        let f = Field { at: &at, value: Some(a) };
        let (mut p1, mut p2, mut p3, mut p4, mut p5) = Default::default();
        let ty = f.get("type", &mut p1).str()?;
        out.push(match ty {
            "batch" => AxisKind::Batch,
            "channel" => {
                let names = f.get("channel_names", &mut p2);
                let names: Vec<String> = names
                    .list()?
                    .iter()
                    .enumerate()
                    .map(|(k, n)| {
                        n.as_str().map(str::to_owned).ok_or_else(|| format!("{}[{k}]: expected text", names.at))
                    })
                    .collect::<Result<_, _>>()?;
                if names.is_empty() || names.len() > 4096 {
                    return Err(format!("{}.channel_names: {} channels", at, names.len()));
                }
                AxisKind::Channel { count: names.len(), names }
            }
            "space" => {
                let id = f.get("id", &mut p3).str()?.to_owned();
                let size = f.get("size", &mut p4);
                let size = match size.value {
                    Some(Value::Number(_)) => Size::Fixed(size.usize()?),
                    Some(Value::Object(o)) if o.contains_key("tensor_id") => {
                        let (mut q1, mut q2, mut q3) = Default::default();
                        let offset = size.get("offset", &mut q3);
                        Size::Reference {
                            tensor: size.get("tensor_id", &mut q1).str()?.to_owned(),
                            axis: size.get("axis_id", &mut q2).str()?.to_owned(),
                            offset: if offset.present() { offset.f64()? as i64 } else { 0 },
                        }
                    }
                    Some(Value::Object(_)) => {
                        let (mut q1, mut q2) = Default::default();
                        let step = size.get("step", &mut q2);
                        Size::Parameterized {
                            min: size.get("min", &mut q1).usize()?,
                            step: if step.present() { step.usize()? } else { 0 },
                        }
                    }
                    Some(v) => return Err(format!("{}: expected a number or a mapping, found {}", size.at, kind(v))),
                    None => Size::Unknown,
                };
                let halo = f.get("halo", &mut p5);
                let halo = if halo.present() { halo.usize()? } else { 0 };
                AxisKind::Space { id, size, halo }
            }
            other => AxisKind::Other(other.to_owned()),
        });
    }
    Ok(out)
}

/// The layout and channels of a tensor's axes: batch first, then channel + y, x (NCHW) or
/// y, x + channel (NHWC), with z before y for volumes.
fn tensor_layout(axes: &[AxisKind], at: &str) -> Result<(TensorLayout, usize, Vec<String>), FieldError> {
    let describe = || {
        axes.iter()
            .map(|a| match a {
                AxisKind::Batch => "batch".to_owned(),
                AxisKind::Channel { .. } => "channel".to_owned(),
                AxisKind::Space { id, .. } => id.clone(),
                AxisKind::Other(t) => t.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(AxisKind::Other(t)) = axes.iter().find(|a| matches!(a, AxisKind::Other(_))) {
        return Err(format!("{at}: axis type {t} ({}); bioseg runs batch, channel and space axes", describe()));
    }
    if axes.first() != Some(&AxisKind::Batch) {
        return Err(format!("{at}: axes {} do not start with a batch axis", describe()));
    }
    let space: Vec<&str> = axes
        .iter()
        .filter_map(|a| match a {
            AxisKind::Space { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if space != ["y", "x"] && space != ["z", "y", "x"] {
        return Err(format!("{at}: space axes {} (bioseg runs y, x or z, y, x)", space.join(", ")));
    }
    let (layout, channel) = match (&axes[1], axes.last()) {
        (AxisKind::Channel { count, names }, _) => (TensorLayout::Nchw, (count, names)),
        (_, Some(AxisKind::Channel { count, names })) => (TensorLayout::Nhwc, (count, names)),
        _ => return Err(format!("{at}: axes {} have no channel axis after batch or at the end", describe())),
    };
    if axes.len() != space.len() + 2 {
        return Err(format!("{at}: axes {}", describe()));
    }
    Ok((layout, *channel.0, channel.1.clone()))
}

/// Space axis `id` of `axes`.
fn space<'a>(axes: &'a [AxisKind], id: &str) -> Option<(&'a Size, usize)> {
    axes.iter().find_map(|a| match a {
        AxisKind::Space { id: i, size, halo } if i == id => Some((size, *halo)),
        _ => None,
    })
}

/// Pre- or postprocessing steps as `(id, kwargs)`.
fn steps(t: Field<'_>, key: &str) -> Result<Vec<(String, Value)>, FieldError> {
    let mut p = String::new();
    let f = t.get(key, &mut p);
    if !f.present() {
        return Ok(vec![]);
    }
    f.list()?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{}[{i}]", f.at);
            let step = Field { at: &at, value: Some(s) };
            let mut q = String::new();
            let id = step.get("id", &mut q).str()?.to_owned();
            Ok((id, s.get("kwargs").cloned().unwrap_or(Value::Null)))
        })
        .collect()
}

/// A scalar kwarg (or a one-element list), with a default.
fn kwarg(kwargs: &Value, key: &str, default: Option<f64>, at: &str) -> Result<f64, FieldError> {
    match kwargs.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| format!("{at}.kwargs.{key}: missing")),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| format!("{at}.kwargs.{key}: not finite"))
        }
        Some(Value::Array(a)) if a.len() == 1 => kwarg(&serde_json::json!({ key: a[0] }), key, default, at),
        Some(Value::Array(a)) if !a.is_empty() && a.windows(2).all(|w| w[0] == w[1]) => {
            kwarg(&serde_json::json!({ key: a[0] }), key, default, at)
        }
        Some(v) => Err(format!(
            "{at}.kwargs.{key}: {} (bioseg applies one value to every channel)",
            if v.is_array() { "different values per channel" } else { kind(v) }
        )),
    }
}

/// Whether a per-sample step's `axes` (absent: all) cover every axis but batch (bioseg takes
/// statistics over the whole image, all channels).
fn all_axes(kwargs: &Value, channels: usize, at: &str) -> Result<(), FieldError> {
    let Some(axes) = kwargs.get("axes").filter(|a| !a.is_null()) else { return Ok(()) };
    let names: Vec<&str> = axes.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let spatial = names.contains(&"y") && names.contains(&"x");
    if spatial && (channels == 1 || names.contains(&"channel")) {
        return Ok(());
    }
    Err(format!("{at}.kwargs.axes: statistics over {axes} (bioseg takes them over the whole image, every channel)"))
}

/// The input's preprocessing as one normalisation: fixed linear steps compose into one map; a
/// per-sample step (`zero_mean_unit_variance`, `scale_range`) absorbs the increasing linear
/// steps before it and may be followed by none.
fn normalization(steps: &[(String, Value)], channels: usize, at: &str) -> Result<Normalization, FieldError> {
    let (mut gain, mut offset) = (1.0f64, 0.0f64);
    let mut per_sample: Option<Normalization> = None;
    for (i, (id, kw)) in steps.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let linear = match id.as_str() {
            "ensure_dtype" => {
                let dtype = kw.get("dtype").and_then(Value::as_str).unwrap_or("");
                if dtype != "float32" {
                    return Err(format!("{at}: ensure_dtype {dtype} (bioseg feeds float32)"));
                }
                continue;
            }
            "scale_linear" => (kwarg(kw, "gain", Some(1.0), &at)?, kwarg(kw, "offset", Some(0.0), &at)?),
            "fixed_zero_mean_unit_variance" => {
                let (mean, std) = (kwarg(kw, "mean", None, &at)?, kwarg(kw, "std", None, &at)?);
                if std <= 0.0 {
                    return Err(format!("{at}.kwargs.std: {std} is not positive"));
                }
                (1.0 / std, -mean / std)
            }
            "zero_mean_unit_variance" | "scale_range" => {
                if per_sample.is_some() {
                    return Err(format!("{at}: a second per-sample normalisation"));
                }
                if gain <= 0.0 {
                    return Err(format!("{at}: {id} after a decreasing scale_linear"));
                }
                all_axes(kw, channels, &at)?;
                per_sample = Some(if id == "scale_range" {
                    if let Some(r) = kw.get("reference_tensor").and_then(Value::as_str) {
                        return Err(format!(
                            "{at}.kwargs.reference_tensor: statistics of {r} (bioseg takes the input's)"
                        ));
                    }
                    if kw.get("mode").and_then(Value::as_str).is_some_and(|m| m != "per_sample") {
                        return Err(format!("{at}.kwargs.mode: bioseg computes per_sample statistics"));
                    }
                    let low = kwarg(kw, "min_percentile", Some(0.0), &at)? as f32;
                    let high = kwarg(kw, "max_percentile", Some(100.0), &at)? as f32;
                    if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                        return Err(format!("{at}.kwargs: percentiles {low} and {high}"));
                    }
                    Normalization::Percentile { low, high }
                } else {
                    Normalization::ZScorePerImage
                });
                // The statistics of a positively scaled input give the same result.
                (gain, offset) = (1.0, 0.0);
                continue;
            }
            other => return Err(format!("{at}: preprocessing step {other} is not supported ({})", supported())),
        };
        if per_sample.is_some() && linear != (1.0, 0.0) {
            return Err(format!("{at}: {id} after a per-sample normalisation"));
        }
        (gain, offset) = (linear.0 * gain, linear.0 * offset + linear.1);
    }
    if let Some(n) = per_sample {
        return Ok(n);
    }
    if gain == 0.0 {
        return Err(format!("{at}: the preprocessing multiplies by zero"));
    }
    // a·x + b = (x − mean)/std with std = 1/a, mean = −b/a.
    Ok(if (gain, offset) == (1.0, 0.0) {
        Normalization::None
    } else {
        Normalization::ZScore { mean: (-offset / gain) as f32, std: (1.0 / gain) as f32 }
    })
}

/// The output's postprocessing as bioseg's output activation: a sigmoid or softmax step is
/// [`OutputActivation::Logits`] (bioseg applies it); without one the model's output is used as
/// it is ([`OutputActivation::Sigmoid`] or [`OutputActivation::Softmax`]: already
/// probabilities).
fn activation(steps: &[(String, Value)], channels: usize, at: &str) -> Result<OutputActivation, FieldError> {
    let mut out = None;
    for (i, (id, kw)) in steps.iter().enumerate() {
        let at = format!("{at}[{i}]");
        match id.as_str() {
            "ensure_dtype" if kw.get("dtype").and_then(Value::as_str) == Some("float32") => {}
            "sigmoid" if channels == 1 && out.is_none() => out = Some(OutputActivation::Logits),
            "sigmoid" => {
                return Err(format!(
                    "{at}: sigmoid over {channels} channels (bioseg runs one channel through a sigmoid)"
                ));
            }
            "softmax" if channels > 1 && out.is_none() => {
                if kw.get("axis").and_then(Value::as_str).is_some_and(|a| a != "channel") {
                    return Err(format!("{at}: softmax over an axis other than the channels"));
                }
                out = Some(OutputActivation::Logits);
            }
            other => return Err(format!("{at}: postprocessing step {other} is not supported here ({})", supported())),
        }
    }
    Ok(out.unwrap_or(if channels == 1 { OutputActivation::Sigmoid } else { OutputActivation::Softmax }))
}

/// Reads a model description (a parsed `rdf.yaml`).
pub fn read_description(rdf: &Value) -> Result<ModelDescription, FieldError> {
    let root = Field::root(rdf);
    let (mut p1, mut p2, mut p3, mut p4, mut p5, mut p6, mut p7) = Default::default();
    if !rdf.is_object() {
        return Err(format!("expected a mapping at the top, found {}", kind(rdf)));
    }
    let ty = root.get("type", &mut p1).str()?;
    if ty != "model" {
        return Err(format!("type: {ty} (bioseg runs model descriptions)"));
    }
    let format_version = root.get("format_version", &mut p2).str()?.to_owned();
    if !format_version.starts_with("0.5.") {
        return Err(format!(
            "format_version: {format_version} (bioseg reads 0.5.x; `bioimageio update-format` converts older descriptions)"
        ));
    }
    let name = root.get("name", &mut p3).str()?.to_owned();
    let d = root.get("description", &mut p4);
    let description = if d.present() { d.str()?.to_owned() } else { String::new() };
    let inputs = root.get("inputs", &mut p5);
    let inputs_list = inputs.list()?;
    if inputs_list.len() != 1 {
        return Err(format!("inputs: {} tensors (bioseg runs models with one input)", inputs_list.len()));
    }
    let in_at = format!("{}[0]", inputs.at);
    let input = Field { at: &in_at, value: Some(&inputs_list[0]) };
    let outputs = root.get("outputs", &mut p6);
    let outputs_list = outputs.list()?;
    if outputs_list.is_empty() {
        return Err("outputs: none".into());
    }
    let out_at = format!("{}[0]", outputs.at);
    let output = Field { at: &out_at, value: Some(&outputs_list[0]) };
    let (mut q1, mut q2, mut q3, mut q4) = Default::default();
    let input_id = input.get("id", &mut q1).str()?.to_owned();
    let output_id = output.get("id", &mut q2).str()?.to_owned();

    let in_axes = axes(input)?;
    let (layout, channels, _) = tensor_layout(&in_axes, &in_at)?;
    let out_axes = axes(output)?;
    let (out_layout, classes, class_names) = tensor_layout(&out_axes, &out_at)?;
    if out_layout != layout || out_axes.len() != in_axes.len() {
        return Err(format!("{out_at}: its axes are not in the input's order"));
    }
    // Size constraints of the input's y and x; the output must be the input's size.
    let mut multiple = None;
    let mut min_size = None;
    for id in ["y", "x"] {
        let (size, _) = space(&in_axes, id).expect("layout checked y and x");
        if let Size::Parameterized { min, step } = *size {
            if step == 0 {
                return Err(format!("{in_at}: axis {id} has one size, {min}; give it as a number"));
            }
            if min % step != 0 {
                return Err(format!(
                    "{in_at}: axis {id} takes sizes {min} + n·{step}; bioseg tiles in multiples of the step"
                ));
            }
            if multiple.is_some_and(|m| m != step) {
                return Err(format!("{in_at}: y and x have different size steps"));
            }
            multiple = Some(step);
            min_size = Some(min_size.map_or(min, |m: usize| m.max(min)));
        }
    }
    let mut halo = 0;
    for id in ["z", "y", "x"] {
        let Some((size, h)) = space(&out_axes, id) else { continue };
        halo = halo.max(h);
        match size {
            Size::Reference { tensor, axis, offset } if *tensor == input_id && axis == id && *offset == 0 => {}
            Size::Reference { .. } | Size::Unknown => {
                return Err(format!(
                    "{out_at}: axis {id} is not the input's {id} (bioseg needs outputs of the input's size)"
                ));
            }
            Size::Fixed(n) if space(&in_axes, id).is_some_and(|(s, _)| *s == Size::Fixed(*n)) => {}
            _ => {
                return Err(format!(
                    "{out_at}: axis {id} is not the input's {id} (bioseg needs outputs of the input's size)"
                ));
            }
        }
    }
    let pre = steps(input, "preprocessing")?;
    let post = steps(output, "postprocessing")?;
    let normalization = normalization(&pre, channels, &format!("{in_at}.preprocessing"))?;
    let activation = activation(&post, classes, &format!("{out_at}.postprocessing"))?;

    let weights = root.get("weights", &mut p7);
    let onnx = weights.get("onnx", &mut q3);
    if !onnx.present() {
        let formats: Vec<&str> = weights
            .value
            .and_then(Value::as_object)
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(format!("weights: no onnx weights (the package has {}); bioseg runs ONNX", formats.join(", ")));
    }
    let weights_file = file_ref(onnx)?;
    let opset = onnx.get("opset_version", &mut q4);
    let opset = if opset.present() { Some(opset.usize()? as u64) } else { None };
    let (mut t1, mut t2) = Default::default();
    let (ti, to) = (input.get("test_tensor", &mut t1), output.get("test_tensor", &mut t2));
    let test_tensors = if ti.present() && to.present() { Some((file_ref(ti)?, file_ref(to)?)) } else { None };

    let metadata = ModelMetadata {
        layout: Some(layout),
        input_channels: Some(channels),
        classes: class_names,
        output: Some(activation),
        normalization: Some(normalization),
        size_multiple: multiple,
        recommended_halo: (halo > 0).then_some(halo),
        input_description: Some(format!("BioImage Model Zoo package `{name}`, input `{input_id}`")),
        ..Default::default()
    };
    Ok(ModelDescription {
        name,
        description,
        format_version,
        input_id,
        output_id,
        outputs: outputs_list.len(),
        weights: weights_file,
        opset,
        test_tensors,
        metadata,
        min_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdf(pre: &str, post: &str) -> String {
        format!(
            r#"
type: model
format_version: 0.5.4
name: t
description: d
inputs:
  - id: raw
    axes:
      - type: batch
      - {{type: channel, channel_names: [raw]}}
      - {{type: space, id: y, size: {{min: 64, step: 16}}}}
      - {{type: space, id: x, size: {{min: 64, step: 16}}}}
    preprocessing: {pre}
outputs:
  - id: prob
    axes:
      - type: batch
      - {{type: channel, channel_names: [a, b]}}
      - {{type: space, id: y, size: {{tensor_id: raw, axis_id: y}}, halo: 24}}
      - {{type: space, id: x, size: {{tensor_id: raw, axis_id: x}}, halo: 32}}
    postprocessing: {post}
weights:
  onnx: {{source: w.onnx, opset_version: 17}}
"#
        )
    }

    fn read(pre: &str, post: &str) -> Result<ModelDescription, String> {
        read_description(&parse_yaml(&rdf(pre, post)).unwrap())
    }

    #[test]
    fn a_description_becomes_bioseg_metadata() {
        let d = read("[{id: scale_linear, kwargs: {gain: 0.5, offset: -1}}]", "[{id: softmax}]").unwrap();
        let m = &d.metadata;
        assert_eq!(
            (m.layout, m.input_channels, m.size_multiple, m.recommended_halo),
            (Some(TensorLayout::Nchw), Some(1), Some(16), Some(32))
        );
        assert_eq!(m.classes, ["a", "b"]);
        assert_eq!(m.output, Some(OutputActivation::Logits));
        // 0.5·x − 1 = (x − 2)/2.
        assert_eq!(m.normalization, Some(Normalization::ZScore { mean: 2.0, std: 2.0 }));
        assert_eq!((d.weights.source.as_str(), d.opset, d.min_size), ("w.onnx", Some(17), Some(64)));
        let d = read("[{id: ensure_dtype, kwargs: {dtype: float32}}, {id: scale_range, kwargs: {min_percentile: 1, max_percentile: 99.8}}]", "[]").unwrap();
        assert_eq!(d.metadata.normalization, Some(Normalization::Percentile { low: 1.0, high: 99.8 }));
        assert_eq!(d.metadata.output, Some(OutputActivation::Softmax), "no postprocessing: the output as it is");
        let d = read("[{id: zero_mean_unit_variance, kwargs: {axes: [y, x]}}]", "[]").unwrap();
        assert_eq!(d.metadata.normalization, Some(Normalization::ZScorePerImage));
        let d = read("[{id: fixed_zero_mean_unit_variance, kwargs: {mean: 10, std: 4}}]", "[]").unwrap();
        assert_eq!(d.metadata.normalization, Some(Normalization::ZScore { mean: 10.0, std: 4.0 }));
    }

    #[test]
    fn what_bioseg_cannot_run_is_named() {
        for (pre, post, words) in [
            ("[{id: clip, kwargs: {min: 0, max: 1}}]", "[]", "inputs[0].preprocessing[0]: preprocessing step clip"),
            (
                "[]",
                "[{id: binarize, kwargs: {threshold: 0.5}}]",
                "outputs[0].postprocessing[0]: postprocessing step binarize",
            ),
            ("[]", "[{id: sigmoid}]", "sigmoid over 2 channels"),
            ("[{id: scale_linear, kwargs: {gain: [1, 2]}}]", "[]", "different values per channel"),
            ("[{id: zero_mean_unit_variance}, {id: scale_linear, kwargs: {gain: 2}}]", "[]", "after a per-sample"),
            ("[{id: scale_range, kwargs: {reference_tensor: other}}]", "[]", "reference_tensor"),
        ] {
            let e = read(pre, post).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
        let wrong_type = rdf("[]", "[]").replace("halo: 24", "halo: lots");
        let e = read_description(&parse_yaml(&wrong_type).unwrap()).unwrap_err();
        assert_eq!(e, "outputs[0].axes[2].halo: expected a whole number, found text");
        let old = rdf("[]", "[]").replace("0.5.4", "0.4.10");
        assert!(read_description(&parse_yaml(&old).unwrap()).unwrap_err().contains("bioseg reads 0.5.x"));
        let link = rdf("[]", "[]").replace("w.onnx", "https://example.org/w.onnx");
        assert!(read_description(&parse_yaml(&link).unwrap()).unwrap_err().contains("is a link"));
        let escape = rdf("[]", "[]").replace("w.onnx", "../../etc/passwd");
        assert!(read_description(&parse_yaml(&escape).unwrap()).unwrap_err().contains("outside the package"));
    }

    #[test]
    fn hostile_yaml_is_refused_within_budgets() {
        let deep = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_yaml(&deep).is_err());
        let mut laughs = String::from("l0: &L0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..12 {
            laughs += &format!("l{i}: &L{i} [{}]\n", vec![format!("*L{}", i - 1); 10].join(", "));
        }
        assert!(parse_yaml(&laughs).is_err(), "a billion laughs must not expand");
        assert!(
            read_description(&parse_yaml("- just\n- a list\n").unwrap()).unwrap_err().contains("expected a mapping")
        );
    }
}

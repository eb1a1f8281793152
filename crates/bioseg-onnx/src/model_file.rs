//! Whole ONNX files: wrapping a graph into a model, encoding, decoding, reading, writing.

use std::io::Write;
use std::path::Path;

use prost::Message;

use crate::error::OnnxError;
use crate::metadata::ModelMetadata;
use crate::proto::{DataType, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto};

/// The default-domain opset bioseg writes (IR version 8).
pub const OPSET_VERSION: i64 = 17;

/// Wraps `graph` into a model with bioseg's producer fields and `metadata` as `metadata_props`.
pub fn model_from_graph(graph: GraphProto, metadata: &ModelMetadata, doc: &str) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET_VERSION }],
        producer_name: "bioseg".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "org.bioseg".into(),
        model_version: 1,
        doc_string: doc.into(),
        graph: Some(graph),
        metadata_props: metadata
            .to_props()
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    }
}

/// Serialises a model to protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Parses protobuf bytes; `origin` names the source in errors.
pub fn decode_model(bytes: &[u8], origin: &Path) -> Result<ModelProto, OnnxError> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| OnnxError::Decode { path: origin.to_path_buf(), reason: e.to_string() })?;
    if model.graph.is_none() {
        return Err(OnnxError::Decode { path: origin.to_path_buf(), reason: "the file holds no graph".into() });
    }
    Ok(model)
}

/// Reads and parses an ONNX file.
pub fn read_model(path: &Path) -> Result<ModelProto, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })?;
    decode_model(&bytes, path)
}

/// Writes a model atomically: a temporary file in the same folder, renamed on success, so an
/// existing file is never left half-written.
pub fn write_model(model: &ModelProto, path: &Path) -> Result<(), OnnxError> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("model.onnx");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode_model(model))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// The values of a float32 (or float64) initializer, whichever storage field it uses.
pub fn initializer_to_f32(t: &TensorProto) -> Result<Vec<f32>, OnnxError> {
    if !t.external_data.is_empty() {
        return Err(OnnxError::Invalid(format!(
            "initializer `{}` stores its data in an external file, which is not supported",
            t.name
        )));
    }
    // Checked: a shape whose size overflows i64 is an error, not a panic (or, without overflow
    // checks, a wrapped size that a short value list could match).
    let n = t.dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        OnnxError::Invalid(format!("initializer `{}` has shape {:?}, whose size overflows", t.name, t.dims))
    })?;
    let values = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        Ok(DataType::Float) => t.float_data.clone(),
        Ok(DataType::Double) if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        Ok(DataType::Double) => t.double_data.iter().map(|&v| v as f32).collect(),
        _ => {
            return Err(OnnxError::Invalid(format!(
                "initializer `{}` has element type {} where float32 was expected",
                t.name, t.data_type
            )));
        }
    };
    if values.len() as i64 != n {
        return Err(OnnxError::Invalid(format!(
            "initializer `{}` holds {} values for shape {:?}",
            t.name,
            values.len(),
            t.dims
        )));
    }
    Ok(values)
}

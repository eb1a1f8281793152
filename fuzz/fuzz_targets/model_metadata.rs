//! Bytes -> bioseg-onnx: `decode_model` (prost `ModelProto`), `ModelMetadata::from_model`,
//! `initializer_to_f32` on every initializer, and the metadata's props round trip
//! (`from_props(to_props(m)) == m` for every record that parsed).
#![no_main]

use std::path::Path;

use bioseg_onnx::{ModelMetadata, decode_model, encode_model, initializer_to_f32};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = decode_model(data, Path::new("fuzz.onnx")) else {
        return;
    };
    if let Ok(md) = ModelMetadata::from_model(&model) {
        let props = md.to_props();
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap_or_else(|e| panic!("to_props output does not parse back: {e}"));
        assert_eq!(back, md);
    }
    if let Some(graph) = &model.graph {
        for t in &graph.initializer {
            if let Ok(v) = initializer_to_f32(t) {
                assert_eq!(v.len() as i64, t.dims.iter().product::<i64>());
            }
        }
    }
    // Re-encoding a decoded model decodes to a model that encodes to the same bytes.
    let bytes = encode_model(&model);
    let again = decode_model(&bytes, Path::new("fuzz.onnx")).unwrap();
    assert_eq!(encode_model(&again), bytes);
});

//! Inputs found by the `model_metadata` fuzz target (`fuzz/`, see `fuzz/README.md`) that once
//! panicked; each must now give an error or a value, never a panic.

use std::path::{Path, PathBuf};

use bioseg_onnx::proto::{DataType, TensorProto};
use bioseg_onnx::{ModelMetadata, decode_model, initializer_to_f32};

/// `fuzz/regressions/model_metadata/<name>` of the repository.
fn regression(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/model_metadata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `initializer_to_f32` multiplied the dims with `product()`: a shape whose size overflows i64
/// panicked ("attempt to multiply with overflow") with overflow checks, and wrapped silently
/// without them (so dims like [2^32, 2^32] matched an empty value list).
#[test]
fn initializer_with_overflowing_shape_is_an_error() {
    let bytes = regression("initializer_dims_overflow.bin");
    let model = decode_model(&bytes, Path::new("crash.onnx")).expect("the input decodes");
    let _ = ModelMetadata::from_model(&model);
    let graph = model.graph.expect("a graph");
    let mut overflowing = 0;
    for t in &graph.initializer {
        let overflows = t.dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d)).is_none();
        let r = initializer_to_f32(t);
        if overflows {
            overflowing += 1;
            let err = r.expect_err("an overflowing shape is an error").to_string();
            assert!(err.contains("overflows"), "{err}");
        }
    }
    assert!(overflowing > 0, "the regression input no longer has an overflowing shape");

    for dims in [vec![i64::MAX, 2], vec![1 << 32, 1 << 32], vec![-(1 << 62), 4]] {
        let t = TensorProto {
            name: "w".into(),
            dims: dims.clone(),
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        let err = initializer_to_f32(&t).expect_err("overflowing shape").to_string();
        assert!(err.contains("overflows") && err.contains("`w`"), "{dims:?}: {err}");
    }
    // Shapes that fit still read.
    let t = TensorProto {
        name: "ok".into(),
        dims: vec![2, 1],
        data_type: DataType::Float as i32,
        float_data: vec![1.0, 2.0],
        ..Default::default()
    };
    assert_eq!(initializer_to_f32(&t).unwrap(), vec![1.0, 2.0]);
}

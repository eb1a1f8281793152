//! Bytes -> small label `Image`s -> `LabelValues::of`, `MaskEncoding::detect` /
//! `detect_named`, `decode`, `class_counts`.
//!
//! Header bytes: width (1..=64), height (1..=64), channels (1 or 3, sometimes 2 or 4), depth
//! (u8 / u16 / f32), number of labels (1..=3), the `num_classes` hint (none or 1..=40). The
//! rest are the samples of the labels in turn (u8: one byte each; u16: two bytes, LE; f32: four
//! bytes, LE bit patterns so NaN, infinities and negative values occur), cycled when short.
//!
//! Properties checked: an encoding detected from labels decodes every one of them, with class
//! indices below `num_classes()`, and per-class counts from the scan equal those of the mask.
#![no_main]

use std::path::{Path, PathBuf};

use bioseg_data::{Image, LabelValues, MaskEncoding, SampleDepth};
use libfuzzer_sys::fuzz_target;
use ndarray::Array3;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (hdr, body) = data.split_at(6);
    let w = 1 + usize::from(hdr[0] % 64);
    let h = 1 + usize::from(hdr[1] % 64);
    let channels = match hdr[2] % 8 {
        0..=3 => 1,
        4..=5 => 3,
        6 => 2,
        _ => 4,
    };
    let depth = match hdr[3] % 3 {
        0 => SampleDepth::U8,
        1 => SampleDepth::U16,
        _ => SampleDepth::F32,
    };
    let count = 1 + usize::from(hdr[4] % 3);
    let hint = match hdr[5] % 41 {
        0 => None,
        k => Some(usize::from(k)),
    };
    let width = match depth {
        SampleDepth::U8 => 1,
        SampleDepth::U16 => 2,
        SampleDepth::F32 => 4,
    };
    let n = w * h * channels;
    let mut pos = 0usize;
    let mut next = || -> f32 {
        if body.is_empty() {
            return 0.0;
        }
        let mut b = [0u8; 4];
        for byte in b.iter_mut().take(width) {
            *byte = body[pos % body.len()];
            pos += 1;
        }
        match depth {
            SampleDepth::U8 => f32::from(b[0]),
            SampleDepth::U16 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            SampleDepth::F32 => f32::from_le_bytes(b),
        }
    };
    let labels: Vec<Image> = (0..count)
        .map(|_| {
            let v: Vec<f32> = (0..n).map(|_| next()).collect();
            Image {
                data: Array3::from_shape_vec((h, w, channels), v).unwrap(),
                depth,
            }
        })
        .collect();
    let refs: Vec<&Image> = labels.iter().collect();
    let values: Vec<LabelValues> = labels.iter().map(LabelValues::of).collect();
    for v in &values {
        assert_eq!((v.width, v.height, v.channels), (w, h, channels));
        if !v.overflow && !v.has_nan && matches!(channels, 1 | 3) {
            let total: u64 = v.values.iter().map(|(_, c)| c).sum();
            assert_eq!(total, (w * h) as u64, "pixel counts of {v:?}");
        }
    }
    let names: Vec<PathBuf> = (0..count).map(|i| PathBuf::from(format!("l{i}.png"))).collect();
    let named: Vec<(&Path, &LabelValues)> =
        names.iter().map(PathBuf::as_path).zip(values.iter()).collect();
    let detected = [MaskEncoding::detect(&refs).ok(), MaskEncoding::detect_named(&named, hint).ok()];
    for enc in detected.into_iter().flatten() {
        let k = enc.num_classes();
        assert!(k >= 1);
        let _ = enc.to_string();
        for ((label, v), name) in labels.iter().zip(&values).zip(&names) {
            let mask = enc
                .decode(label, name)
                .unwrap_or_else(|e| panic!("{enc:?} was detected from {name:?} but does not decode it: {e}"));
            assert_eq!((mask.width(), mask.height()), (w, h));
            assert_eq!(mask.num_classes, k);
            assert!(mask.classes.iter().all(|&c| usize::from(c) < k));
            let counts = enc
                .class_counts(v, name)
                .unwrap_or_else(|e| panic!("{enc:?}: class_counts of {name:?} failed: {e}"));
            assert_eq!(counts, mask.class_counts(), "{enc:?}");
        }
    }
});

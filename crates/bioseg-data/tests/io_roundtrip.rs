//! End-to-end checks of the file formats through the public API.

use bioseg_data::{
    DataError, Image, SampleDepth, ensure_absent_or_overwrite, read_image, read_tensor, write_gray_f32_tiff,
    write_gray_u8_png, write_gray_u16_png, write_image, write_tensor,
};
use ndarray::{Array, IxDyn};

#[test]
fn images_keep_their_scale() {
    let d = tempfile::tempdir().unwrap();
    write_gray_u8_png(d.path().join("a.png"), 2, 1, &[0, 255]).unwrap();
    write_gray_u16_png(d.path().join("b.png"), 2, 1, &[0, 65535]).unwrap();
    write_gray_f32_tiff(d.path().join("c.tif"), 2, 1, &[-1.0, 1e9]).unwrap();
    let a = read_image(d.path().join("a.png")).unwrap();
    let b = read_image(d.path().join("b.png")).unwrap();
    let c = read_image(d.path().join("c.tif")).unwrap();
    assert_eq!((a.depth, a.data[[0, 1, 0]]), (SampleDepth::U8, 255.0));
    assert_eq!((b.depth, b.data[[0, 1, 0]]), (SampleDepth::U16, 65535.0));
    assert_eq!((c.depth, c.data[[0, 1, 0]]), (SampleDepth::F32, 1e9));
    assert_eq!(a.to_unit_range()[[0, 1, 0]], 1.0);
    assert_eq!(b.to_unit_range()[[0, 1, 0]], 1.0);
}

#[test]
fn rgb_tiff_written_by_write_image_reads_back() {
    let d = tempfile::tempdir().unwrap();
    let img = Image {
        data: Array::from_shape_fn((3, 4, 3), |(y, x, c)| (y * 100 + x * 10 + c) as f32),
        depth: SampleDepth::U16,
    };
    let p = d.path().join("rgb16.tiff");
    write_image(&p, &img).unwrap();
    assert_eq!(read_image(&p).unwrap(), img);
}

#[test]
fn tensors_round_trip_and_overwrite_guard() {
    let d = tempfile::tempdir().unwrap();
    let t = Array::from_shape_fn(IxDyn(&[4, 3]), |ix| ix[0] as f32 * 0.25 - ix[1] as f32);
    for name in ["t.npy", "t.csv"] {
        let p = d.path().join(name);
        ensure_absent_or_overwrite(&p, false).unwrap();
        write_tensor(&p, &t).unwrap();
        assert_eq!(read_tensor(&p).unwrap(), t);
        let err = ensure_absent_or_overwrite(&p, false).unwrap_err();
        assert!(matches!(err, DataError::OutputExists { .. }));
    }
}

/// A PNG header declaring far more pixels than its bytes can expand to (deflate: ~1032:1) is
/// refused as truncated before the decoder allocates the image; a maximally compressible real
/// image (all zeros) still reads.
#[test]
fn png_declaring_more_pixels_than_its_bytes_can_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(40_000u32.to_be_bytes());
    ihdr.extend(40_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc32fast::hash(&ihdr).to_be_bytes());
    // A few bytes of (zlib) image data, then the end: a file of 70 bytes.
    for (kind, data) in [(&b"IDAT"[..], &b"\x78\x9c\x63\x60\x00\x00\x00\x02\x00\x01"[..]), (&b"IEND"[..], &b""[..])] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        bytes.extend((data.len() as u32).to_be_bytes());
        bytes.extend(&chunk);
        bytes.extend(crc32fast::hash(&chunk).to_be_bytes());
    }
    let path = dir.path().join("huge_header.png");
    std::fs::write(&path, &bytes).unwrap();
    let err = bioseg_data::read_image(&path).unwrap_err().to_string();
    assert!(err.contains("huge_header.png") && err.contains("40000x40000") && err.contains("truncated"), "{err}");

    let zeros = dir.path().join("zeros.png");
    bioseg_data::write_gray_u8_png(&zeros, 2000, 2000, &vec![0u8; 2000 * 2000]).unwrap();
    let len = std::fs::metadata(&zeros).unwrap().len();
    let img = bioseg_data::read_image(&zeros).unwrap();
    assert_eq!(img.data.dim(), (2000, 2000, 1), "{len} bytes");
}

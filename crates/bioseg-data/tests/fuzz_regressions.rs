//! Replays the fuzz corpora and crash inputs of `fuzz/` (see `fuzz/README.md`) through the
//! readers on stable Rust: every input must give a value or a `DataError`, never a panic.
//!
//! The fuzz targets run these readers under libFuzzer with sanitizers; this test keeps the
//! committed inputs (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) exercised by
//! `cargo test --workspace`. Like the targets, it decodes pixels only when the header declares
//! at most `MAX_DECODED_PIXELS` pixels: the crate accepts up to 2^31 pixels by design, and a
//! small corrupt header may declare that many.

use std::path::{Path, PathBuf};

use bioseg_data::{
    DataError, TiffVolume, VolumeReader, image_dimensions, read_image, read_image_pages, tiff_page_count,
};

/// Same budget as `fuzz/src/lib.rs` `FUZZ_MAX_PIXELS`.
const MAX_DECODED_PIXELS: u64 = 1 << 22;

/// The files of `fuzz/<kind>/<target>/` (none when the folder is missing).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join(target);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn within_budget(path: &Path) -> bool {
    match image_dimensions(path) {
        Ok((w, h)) => u64::from(w) * u64::from(h) <= MAX_DECODED_PIXELS,
        // A rejected header fails the full readers before they allocate pixels.
        Err(_) => true,
    }
}

#[test]
fn image_reader_inputs_give_images_or_errors() {
    let files: Vec<PathBuf> = ["corpus", "regressions"].iter().flat_map(|k| inputs(k, "image_reader")).collect();
    for path in &files {
        if !within_budget(path) {
            continue;
        }
        if let Ok(img) = read_image(path) {
            assert!(matches!(img.channels(), 1 | 3), "{}", path.display());
            assert!(img.width() > 0 && img.height() > 0, "{}", path.display());
        }
    }
}

#[test]
fn volume_reader_inputs_give_volumes_or_errors() {
    let files: Vec<PathBuf> = ["corpus", "regressions"].iter().flat_map(|k| inputs(k, "volume_reader")).collect();
    for path in &files {
        let _ = tiff_page_count(path);
        if !within_budget(path) {
            continue;
        }
        let Ok(vol) = TiffVolume::open(path) else {
            continue;
        };
        let [d, h, w] = vol.info().shape;
        if (d.min(16) * h * w) as u64 > MAX_DECODED_PIXELS {
            continue;
        }
        for z in 0..d.min(16) {
            if let Ok(s) = vol.read_slab(z..z + 1, 0..h, 0..w) {
                assert_eq!(s.dim(), (1, h, w, vol.info().channels), "{}", path.display());
            }
        }
        if d <= 16 {
            let _ = read_image_pages(path);
        }
    }
}

/// CRC-32 (ISO-HDLC) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A 2x2 8-bit palette PNG with a `PLTE` chunk of `plte_len` bytes (zlib "stored" IDAT).
fn palette_png(plte_len: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut png, b"IHDR", &[0, 0, 0, 2, 0, 0, 0, 2, 8, 3, 0, 0, 0]);
    let plte: Vec<u8> = (0..plte_len).map(|i| (i * 40) as u8).collect();
    png_chunk(&mut png, b"PLTE", &plte);
    let raw = [0u8, 0, 0, 0, 0, 0]; // two rows: filter byte + two palette indices
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut idat = vec![0x78, 0x01, 0x01, raw.len() as u8, 0, !(raw.len() as u8), 0xff];
    idat.extend_from_slice(&raw);
    idat.extend_from_slice(&((b << 16) | a).to_be_bytes());
    png_chunk(&mut png, b"IDAT", &idat);
    png_chunk(&mut png, b"IEND", &[]);
    png
}

/// Found by `image_reader`: a palette PNG whose `PLTE` length is not a multiple of 3 made
/// `png` 0.18.1 panic ("range end index 3 out of range for slice of length 2") while expanding
/// palette indices to RGB (`create_rgba_palette`). `read_image` now rejects such a file as
/// corrupt before decoding.
#[test]
fn png_palette_of_partial_entries_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    for plte_len in [4, 5, 7, 134] {
        let path = dir.path().join(format!("plte{plte_len}.png"));
        std::fs::write(&path, palette_png(plte_len)).unwrap();
        match read_image(&path) {
            Err(DataError::CorruptImage { reason, .. }) => {
                assert!(reason.contains("PLTE"), "{plte_len}: {reason}")
            }
            other => panic!("PLTE of {plte_len} bytes: {other:?}"),
        }
        assert!(read_image_pages(&path).is_err());
    }
    // Whole entries still read (two entries, indices 0 -> RGB (0, 40, 80)).
    let path = dir.path().join("plte6.png");
    std::fs::write(&path, palette_png(6)).unwrap();
    let img = read_image(&path).unwrap();
    assert_eq!((img.width(), img.height(), img.channels()), (2, 2, 3));
    assert_eq!(img.data[[1, 1, 2]], 80.0);
    // The input the fuzzer found.
    let found = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/image_reader/png_plte_not_multiple_of_3.png");
    assert!(matches!(read_image(&found), Err(DataError::CorruptImage { .. })));
}

/// A little-endian classic TIFF: page 0 is a 1x1 8-bit gray image, page 1's directory declares
/// `StripOffsets` with `count` LONG values (stored at an offset past the end of the file).
fn tiff_with_huge_second_directory(count: u32) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32) {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&typ.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&10u32.to_le_bytes()); // first directory at 10
    t.extend_from_slice(&[7, 0]); // the one pixel at 8 (and padding)
    let directory = |t: &mut Vec<u8>, strip_count: u32, strip_offsets: u32, next: u32| {
        t.extend_from_slice(&7u16.to_le_bytes());
        entry(t, 256, 4, 1, 1); // ImageWidth
        entry(t, 257, 4, 1, 1); // ImageLength
        entry(t, 258, 3, 1, 8); // BitsPerSample
        entry(t, 262, 3, 1, 1); // PhotometricInterpretation: black is zero
        entry(t, 273, 4, strip_count, strip_offsets); // StripOffsets
        entry(t, 278, 4, 1, 1); // RowsPerStrip
        entry(t, 279, 4, 1, 1); // StripByteCounts
        t.extend_from_slice(&next.to_le_bytes());
    };
    let second = 10 + 2 + 7 * 12 + 4;
    directory(&mut t, 1, 8, second);
    directory(&mut t, count, 0x7fff_0000, 0);
    t
}

/// Found by `volume_reader`: a second page directory declaring ~4 billion `StripOffsets` made
/// `tiff_page_count` allocate 128 GiB (`Vec::with_capacity` in `tiff` 0.11) before reading
/// any, because the readers lifted `decoding_buffer_size`, which in `tiff` 0.11 also bounds
/// directory value arrays. `tiff_page_count`, `TiffVolume::open` and `read_image_pages` now
/// parse later page directories with the default limits and return an error.
#[test]
fn tiff_directory_with_billions_of_values_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.tif");
    for count in [u32::MAX, 0xfff_ffff, 0x7ff_ffff] {
        std::fs::write(&path, tiff_with_huge_second_directory(count)).unwrap();
        assert!(tiff_page_count(&path).is_err(), "count {count}");
        assert!(TiffVolume::open(&path).is_err(), "count {count}");
        assert!(read_image_pages(&path).is_err(), "count {count}");
    }
    // The same file with a sane second directory reads as two pages.
    std::fs::write(&path, tiff_with_huge_second_directory(1)).unwrap();
    // (its strip offset points past the end: the pages count, the pixels do not read)
    assert_eq!(tiff_page_count(&path).unwrap(), 2);
    assert_eq!(read_image(&path).unwrap().data[[0, 0, 0]], 7.0);
    // The input the fuzzer found.
    let found = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/volume_reader/tiff_page2_huge_strip_offsets_count.tif");
    assert!(tiff_page_count(&found).is_err());
    assert!(TiffVolume::open(&found).is_err());
    assert!(read_image_pages(&found).is_err());
}

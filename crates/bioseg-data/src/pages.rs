//! Multi-page TIFF stacks as lists of 2-D pages (for `bioseg evaluate` and `visualize`).
//!
//! [`read_image_pages`] reads every page of a TIFF (a PNG is one page) into [`Image`]s with
//! the same conventions as [`crate::read_image`]: gray or RGB, 8/16-bit or float samples on
//! their original scale, alpha dropped. [`write_gray_u8_pages`] writes a multi-page 8-bit
//! gray TIFF atomically.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ndarray::Array3;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{TiffEncoder, colortype};

use crate::atomic::write_atomic_seekable;
use crate::error::{DataError, one_line};
use crate::image::{Image, ImageFormat, SampleDepth, read_image};

/// Reads every page of a multi-page TIFF, or the one image of a PNG (or one-page TIFF).
///
/// Errors name the file (and the page for a bad page): missing or unreadable files, corrupt
/// data, pages with an unsupported sample type or colour model, empty or oversized pages.
/// Pages may differ in size; callers that need equal sizes check them.
pub fn read_image_pages(path: impl AsRef<Path>) -> Result<Vec<Image>, DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::Read { path: path.to_path_buf(), error: e })?;
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = &file;
        let n = f.read(&mut magic).unwrap_or(0);
        if n < 4 || !(magic == *b"II*\0" || magic == *b"MM\0*" || magic == *b"II+\0" || magic == *b"MM\0+") {
            // Not a TIFF: PNG (or an error naming the file) through the single-image reader.
            return Ok(vec![read_image(path)?]);
        }
    }
    let file = File::open(path).map_err(|e| DataError::Read { path: path.to_path_buf(), error: e })?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = usize::MAX;
    limits.intermediate_buffer_size = usize::MAX;
    let mut decoder = Decoder::new(BufReader::new(file))
        .map_err(|e| crate::volume::tiff_err(path, 0, e))?
        .with_limits(limits.clone());
    let mut pages = Vec::new();
    loop {
        let page = pages.len();
        pages.push(read_page(path, page, &mut decoder)?);
        if !decoder.more_images() {
            break;
        }
        // The next page's directory with the default limits, which bound its value arrays
        // (see `tiff_page_count` in volume.rs); its pixels with the lifted ones.
        decoder = decoder.with_limits(Limits::default());
        decoder.next_image().map_err(|e| crate::volume::tiff_err(path, page + 1, e))?;
        decoder = decoder.with_limits(limits.clone());
    }
    Ok(pages)
}

/// Decodes the decoder's current page.
fn read_page(path: &Path, page: usize, decoder: &mut Decoder<BufReader<File>>) -> Result<Image, DataError> {
    let unsupported = |reason: String| DataError::UnsupportedImage {
        path: path.to_path_buf(),
        reason: format!("page {page}: {reason}"),
    };
    // Dimensions, channel layout and unsupported layouts: the volume reader's checks.
    let layout = crate::volume::page_layout(path, page, decoder)?;
    let (w, h, cin, cout) = (layout.width, layout.height, layout.samples, layout.channels);
    let decoded = decoder.read_image().map_err(|e| crate::volume::tiff_err(path, page, e))?;
    let (samples, depth): (Vec<f32>, SampleDepth) = match decoded {
        DecodingResult::U8(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U8),
        DecodingResult::U16(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U16),
        DecodingResult::F32(v) => (v, SampleDepth::F32),
        DecodingResult::F64(v) => (v.into_iter().map(|x| x as f32).collect(), SampleDepth::F32),
        _ => {
            return Err(unsupported("sample format (expected unsigned 8/16-bit or float)".into()));
        }
    };
    if samples.len() < w * h * cin {
        return Err(unsupported(format!(
            "decoded {} samples but {w}x{h}x{cin} needs {} (planar TIFF?)",
            samples.len(),
            w * h * cin
        )));
    }
    let data: Vec<f32> = samples.chunks_exact(cin).take(w * h).flat_map(|px| px[..cout].to_vec()).collect();
    let data = Array3::from_shape_vec((h, w, cout), data).map_err(|e| unsupported(one_line(e)))?;
    Ok(Image { data, depth })
}

/// Writes `pages` (each `[height, width]` row-major, all `width * height` samples) as one
/// multi-page 8-bit gray TIFF, atomically. `path` must end in `.tif` or `.tiff`.
pub fn write_gray_u8_pages(
    path: impl AsRef<Path>,
    width: u32,
    height: u32,
    pages: &[Vec<u8>],
) -> Result<(), DataError> {
    let path = path.as_ref();
    if ImageFormat::from_path(path)? != ImageFormat::Tiff {
        return Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".tif or .tiff" });
    }
    let n = width as usize * height as usize;
    if width == 0 || height == 0 || pages.is_empty() {
        return Err(DataError::BadBuffer {
            path: path.to_path_buf(),
            reason: format!("{} page(s) of {width}x{height}: nothing to write", pages.len()),
        });
    }
    if let Some((i, p)) = pages.iter().enumerate().find(|(_, p)| p.len() != n) {
        return Err(DataError::BadBuffer {
            path: path.to_path_buf(),
            reason: format!("page {i} has {} samples, expected {width}x{height} = {n}", p.len()),
        });
    }
    write_atomic_seekable(path, |w| {
        let mut enc = TiffEncoder::new(w).map_err(std::io::Error::other)?;
        for p in pages {
            enc.write_image::<colortype::Gray8>(width, height, p).map_err(std::io::Error::other)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_round_trip_and_png_is_one_page() {
        let dir = tempfile::tempdir().unwrap();
        let tif = dir.path().join("s.tif");
        let pages: Vec<Vec<u8>> = (0..3u8).map(|k| (0..6u8).map(|v| v * 10 + k).collect()).collect();
        write_gray_u8_pages(&tif, 3, 2, &pages).unwrap();
        let read = read_image_pages(&tif).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[2].data.dim(), (2, 3, 1));
        assert_eq!(read[2].data[[1, 2, 0]], 52.0);
        assert_eq!(read[0].depth, SampleDepth::U8);
        let png = dir.path().join("one.png");
        crate::write_gray_u8_png(&png, 3, 2, &pages[1]).unwrap();
        let read = read_image_pages(&png).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].data[[0, 1, 0]], 11.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tif = dir.path().join("s.tif");
        assert!(write_gray_u8_pages(&tif, 2, 2, &[vec![0; 3]]).is_err());
        assert!(write_gray_u8_pages(dir.path().join("s.png"), 2, 2, &[vec![0; 4]]).is_err());
        std::fs::write(&tif, b"II*\0garbage").unwrap();
        let e = read_image_pages(&tif).unwrap_err();
        assert!(e.to_string().contains("s.tif"), "{e}");
        assert!(read_image_pages(dir.path().join("missing.tif")).is_err());
    }
}

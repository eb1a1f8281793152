//! Bytes -> bioseg-data's multi-page TIFF readers: `tiff_page_count`, `TiffVolume::open` and
//! `read_slab` of every slice plus small off-origin boxes (strip/tile index arithmetic), and
//! `read_image_pages`, which must agree with the volume reader sample for sample.
#![no_main]

use bioseg_data::{
    TiffVolume, VolumeReader, image_dimensions, read_image_pages, tiff_page_count,
};
use bioseg_fuzz::{FUZZ_MAX_PIXELS, scratch_file};
use libfuzzer_sys::fuzz_target;

/// Most slices read per input (every slice is read when the volume has fewer).
const MAX_SLICES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("vol.tif", data);
    let _ = tiff_page_count(&path);
    // `TiffVolume::open` decodes the first page's first strip or tile: keep within budget.
    if let Ok((w, h)) = image_dimensions(&path) {
        if u64::from(w) * u64::from(h) > FUZZ_MAX_PIXELS {
            return;
        }
    }
    let Ok(vol) = TiffVolume::open(&path) else {
        return;
    };
    let info = vol.info().clone();
    let [d, h, w] = info.shape;
    assert!(d >= 1 && h >= 1 && w >= 1);
    assert!(matches!(info.channels, 1 | 3));
    assert!(info.chunks.iter().all(|&c| c >= 1));
    let total = (d.min(MAX_SLICES) as u64) * (h as u64) * (w as u64);
    if total > FUZZ_MAX_PIXELS {
        return;
    }
    let mut slices = Vec::new();
    for z in 0..d.min(MAX_SLICES) {
        match vol.read_slab(z..z + 1, 0..h, 0..w) {
            Ok(s) => {
                assert_eq!(s.dim(), (1, h, w, info.channels));
                slices.push(s);
            }
            Err(_) => return,
        }
    }
    // Small boxes away from the origin, crossing strip/tile boundaries.
    for (y0, x0) in [(h / 2, w / 2), (h - 1, w - 1), (h.saturating_sub(3), 0)] {
        let (y1, x1) = ((y0 + 3).min(h), (x0 + 3).min(w));
        if let Ok(s) = vol.read_slab(0..1, y0..y1, x0..x1) {
            assert_eq!(s.dim(), (1, y1 - y0, x1 - x0, info.channels));
            for y in y0..y1 {
                for x in x0..x1 {
                    for c in 0..info.channels {
                        let a = s[[0, y - y0, x - x0, c]];
                        let b = slices[0][[0, y, x, c]];
                        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    }
                }
            }
        }
    }
    // Out-of-range requests are errors.
    assert!(vol.read_slab(0..1, 0..h + 1, 0..w).is_err());
    assert!(vol.read_slab(d..d + 1, 0..h, 0..w).is_err());
    // The page-list reader decodes whole pages; where both succeed they agree.
    if d <= MAX_SLICES {
        if let Ok(pages) = read_image_pages(&path) {
            assert_eq!(pages.len(), d);
            for (z, page) in pages.iter().enumerate() {
                assert_eq!(page.data.dim(), (h, w, info.channels));
                assert_eq!(page.depth, info.depth);
                for ((y, x, c), &a) in page.data.indexed_iter() {
                    let b = slices[z][[0, y, x, c]];
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "page {z} ({y},{x},{c}): read_image_pages {a} vs TiffVolume {b}"
                    );
                }
            }
        }
    }
});

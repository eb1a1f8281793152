//! Bytes -> bioseg-data's 2-D image reader (`read_image`, `image_dimensions`), PNG and TIFF.
//!
//! The bytes are written to a file on a RAM disk (the readers take paths; the format is
//! sniffed from the magic bytes, the extension only picks the error kind).
#![no_main]

use bioseg_data::{image_dimensions, read_image};
use bioseg_fuzz::{FUZZ_MAX_PIXELS, scratch_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = if data.starts_with(b"\x89PNG") { "in.png" } else { "in.tif" };
    let path = scratch_file(name, data);
    match image_dimensions(&path) {
        Ok((w, h)) => {
            assert!(w > 0 && h > 0);
            if u64::from(w) * u64::from(h) > FUZZ_MAX_PIXELS {
                return; // see FUZZ_MAX_PIXELS
            }
            if let Ok(img) = read_image(&path) {
                assert_eq!((img.width(), img.height()), (w as usize, h as usize));
                assert!(matches!(img.channels(), 1 | 3), "{} channels", img.channels());
                let gray = img.to_gray();
                assert_eq!(gray.dim(), (h as usize, w as usize));
                let _ = img.to_unit_range();
            }
        }
        // The header is already rejected, so the full reader fails before allocating pixels.
        Err(_) => {
            let _ = read_image(&path);
        }
    }
});

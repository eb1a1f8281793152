//! Bytes -> Zarr metadata files in a temporary store -> `ZarrVolume::open` and a small read.
//!
//! The first byte picks the layout; the rest is split at the first NUL byte into a first and a
//! second JSON document (JSON text never holds a raw NUL):
//!
//! | mode | files |
//! | --- | --- |
//! | 0 | `zarr.json` = first (a v3 array or group) |
//! | 1 | `.zarray` = first, `.zattrs` = second (v2 array, `_ARRAY_DIMENSIONS`) |
//! | 2 | `.zgroup` = `{"zarr_format":2}`, `.zattrs` = first, `0/.zarray` = second (OME-Zarr v2) |
//! | 3 | `zarr.json` = first (a group), `0/zarr.json` = second (OME-Zarr v3) |
//!
//! No chunk files exist, so reads return the fill value: this target covers metadata
//! parsing, axis assignment and subset arithmetic, not codecs.
#![no_main]

use bioseg_data::{VolumeReader, ZarrVolume};
use bioseg_fuzz::{FUZZ_MAX_PIXELS, fresh_dir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let dir = fresh_dir("store.zarr");
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    match mode % 4 {
        0 => put("zarr.json", first),
        1 => {
            put(".zarray", first);
            if !second.is_empty() {
                put(".zattrs", second);
            }
        }
        2 => {
            put(".zgroup", br#"{"zarr_format":2}"#);
            put(".zattrs", first);
            put("0/.zarray", second);
        }
        _ => {
            put("zarr.json", first);
            put("0/zarr.json", second);
        }
    }
    let Ok(vol) = ZarrVolume::open(&dir) else {
        return;
    };
    let info = vol.info().clone();
    let [d, h, w] = info.shape;
    assert!(d >= 1 && h >= 1 && w >= 1 && info.channels >= 1);
    // A read holds every channel of the box: keep it within budget.
    for (z, y, x) in [(0, 0, 0), (d - 1, h / 2, w / 2), (d / 2, h - 1, w - 1)] {
        let (y1, x1) = ((y + 4).min(h), (x + 4).min(w));
        let n = (info.channels as u64).saturating_mul(((y1 - y) * (x1 - x)) as u64);
        if n > FUZZ_MAX_PIXELS {
            return;
        }
        if let Ok(s) = vol.read_slab(z..z + 1, y..y1, x..x1) {
            assert_eq!(s.dim(), (1, y1 - y, x1 - x, info.channels));
        }
    }
    assert!(vol.read_slab(0..1, 0..h + 1, 0..w).is_err());
});

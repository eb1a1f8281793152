//! Helpers shared by the fuzz targets: a per-process scratch folder on a RAM disk, and the
//! harness's decode budget.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The most pixels (per page/slice) a target lets the library decode.
///
/// bioseg-data accepts images up to `MAX_PIXELS` = 2^31 pixels by design (large EM slices), which
/// as `f32` is 8 GiB or more; a 60-byte header can legitimately declare that. libFuzzer runs
/// with a 2 GiB malloc limit, so the targets only decode pixel data when the header declares at
/// most this many pixels (a few hundred MiB in the worst case: 4 x f64 samples + f32 output).
/// Header parsing, the dimension checks themselves and every error path still run for larger
/// declarations.
pub const FUZZ_MAX_PIXELS: u64 = 1 << 22;

/// A scratch folder for this process (on /dev/shm when present), created once.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("bioseg-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

/// Writes `data` to `name` in the scratch folder and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("write scratch file");
    path
}

/// An empty folder `name` inside the scratch folder (removed and re-created).
pub fn fresh_dir(name: &str) -> PathBuf {
    let path = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("create scratch subdir");
    path
}

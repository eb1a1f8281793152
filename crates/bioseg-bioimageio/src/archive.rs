//! Where a package's files come from: a zip archive or a folder, both from strangers.
//!
//! Contract: a file is read only by a relative name that [`check_name`] accepts (no absolute
//! paths, no `..`, no backslashes or drive letters), whole into memory and never past a limit
//! the caller gives (a declared size beyond it is refused before reading; an entry whose data
//! runs past its declared size, as a zip bomb's does, is refused after `limit + 1` bytes).
//! Nothing is ever extracted to disk. An archive with any unsafe entry name, or more than
//! [`MAX_ENTRIES`] entries, is refused as a whole when opened, whether or not that entry would
//! be read; a folder's file that resolves (through links) outside the folder is refused.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::error::PackageError;

/// Entries an archive may hold.
pub const MAX_ENTRIES: usize = 4096;

/// A package's file tree.
pub(crate) enum Source {
    /// A zip archive (the handle behind a lock: reads take `&self`).
    Zip { path: PathBuf, archive: Mutex<zip::ZipArchive<File>> },
    /// A folder.
    Dir { root: PathBuf },
}

/// Whether `name` is a safe relative file name inside a package: `/`-separated normal
/// components only.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("unsafe file name {name:?} ({why})"));
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('\\') || name.contains('\0') || name.contains(':') {
        return bad("backslash, NUL or drive letter");
    }
    if name.starts_with('/') {
        return bad("absolute");
    }
    for c in Path::new(name).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return bad("outside the package"),
        }
    }
    Ok(())
}

impl Source {
    /// Opens a zip archive and checks every entry's name and the entry count.
    pub(crate) fn zip(path: &Path) -> Result<Source, PackageError> {
        let bad = |reason: String| PackageError::Archive { path: path.to_path_buf(), reason };
        let file = File::open(path).map_err(|e| PackageError::io(path, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a valid zip archive: {e}")))?;
        if archive.len() > MAX_ENTRIES {
            return Err(bad(format!("{} entries; a package may hold {MAX_ENTRIES}", archive.len())));
        }
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
            let name = entry.name().trim_end_matches('/');
            if entry.is_dir() && name.is_empty() {
                continue;
            }
            check_name(name).map_err(|e| bad(format!("refused: {e}")))?;
        }
        Ok(Source::Zip { path: path.to_path_buf(), archive: Mutex::new(archive) })
    }

    /// A folder.
    pub(crate) fn dir(root: &Path) -> Result<Source, PackageError> {
        let root = root.canonicalize().map_err(|e| PackageError::io(root, e))?;
        Ok(Source::Dir { root })
    }

    /// The package's path (archive or folder).
    pub(crate) fn path(&self) -> &Path {
        match self {
            Source::Zip { path, .. } => path,
            Source::Dir { root } => root,
        }
    }

    /// The files at the package's top level.
    pub(crate) fn top_level_files(&self) -> Result<Vec<String>, PackageError> {
        match self {
            Source::Zip { archive, .. } => {
                let archive = archive.lock().map_err(|_| PackageError::io(self.path(), "poisoned lock"))?;
                Ok(archive.file_names().filter(|n| !n.contains('/')).map(str::to_owned).collect())
            }
            Source::Dir { root } => {
                let mut names = vec![];
                for e in std::fs::read_dir(root).map_err(|e| PackageError::io(root, e))? {
                    let e = e.map_err(|e| PackageError::io(root, e))?;
                    if e.file_type().is_ok_and(|t| t.is_file()) {
                        names.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
                Ok(names)
            }
        }
    }

    /// The bytes of file `name` (relative to the package's root), at most `limit` of them.
    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>, PackageError> {
        let path = self.path();
        let bad = |reason: String| PackageError::Archive { path: path.to_path_buf(), reason };
        check_name(name).map_err(bad)?;
        let too_big = |size: u64| bad(format!("{name} holds {size} bytes; bioseg reads at most {limit}"));
        match self {
            Source::Zip { archive, .. } => {
                let mut archive = archive.lock().map_err(|_| PackageError::io(path, "poisoned lock"))?;
                let name = name.trim_start_matches("./");
                let mut entry = archive.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
                let declared = entry.size();
                if declared > limit {
                    return Err(too_big(declared));
                }
                let mut bytes = Vec::with_capacity(declared as usize);
                (&mut entry)
                    .take(declared + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("{name}: cannot decompress: {e}")))?;
                if bytes.len() as u64 != declared {
                    return Err(bad(format!("{name}: {} bytes of data, {declared} declared", bytes.len())));
                }
                Ok(bytes)
            }
            Source::Dir { root } => {
                let file = root.join(name);
                let real = file.canonicalize().map_err(|e| PackageError::io(&file, e))?;
                if !real.starts_with(root) {
                    return Err(bad(format!("{name} resolves outside the package folder")));
                }
                let size = std::fs::metadata(&real).map_err(|e| PackageError::io(&file, e))?.len();
                if size > limit {
                    return Err(too_big(size));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                File::open(&real)
                    .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
                    .map_err(|e| PackageError::io(&file, e))?;
                if bytes.len() as u64 > limit {
                    return Err(too_big(bytes.len() as u64));
                }
                Ok(bytes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_pass() {
        for ok in ["rdf.yaml", "weights/model.onnx", "./a.npy", "a..b.npy"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "C:/x", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

//! Atomic file writes: a file appears complete under its final name or not at all.
//!
//! Data goes to a hidden temporary file in the target's folder (so the final
//! rename never crosses a file system), is flushed and synced, and is renamed
//! over the target only when the writer succeeded. On failure the temporary file
//! is removed and an existing target is left untouched.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Prefix of the temporary files; dataset listings skip hidden files, so a
/// temporary file left by a killed process is never taken for data.
const TEMP_PREFIX: &str = ".bioseg-tmp-";

/// Writes `path` atomically with the bytes that `write` produces.
///
/// `write` gets a buffered writer; returning an error from it aborts the write and
/// leaves any existing file at `path` as it was. The parent folder must exist and be
/// writable, otherwise the error ([`DataError::OutputFolder`]) names that folder.
/// New files get mode `0644` on Unix (an existing target's permissions are kept).
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<(), DataError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    write_atomic_seekable(path.as_ref(), |w| write(w))
}

/// Like [`write_atomic`], but the writer can also seek (needed by the TIFF encoder).
pub(crate) fn write_atomic_seekable<F>(path: &Path, write: F) -> Result<(), DataError>
where
    F: FnOnce(&mut BufWriter<&mut File>) -> io::Result<()>,
{
    let dir = parent_dir(path);
    check_output_folder(&dir)?;
    if path.is_dir() {
        return Err(DataError::write(
            path,
            io::Error::new(io::ErrorKind::IsADirectory, "a folder exists at this path"),
        ));
    }

    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(".tmp");
    #[cfg(unix)]
    let permissions = {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) => meta.permissions(),
            Err(_) => std::fs::Permissions::from_mode(0o644),
        }
    };
    #[cfg(unix)]
    builder.permissions(permissions);
    let mut tmp =
        builder.tempfile_in(&dir).map_err(|e| DataError::OutputFolder { dir: dir.clone(), reason: e.to_string() })?;

    {
        let mut buffered = BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        write(&mut buffered).map_err(|e| DataError::write(path, e))?;
        buffered.flush().map_err(|e| DataError::write(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| DataError::write(path, e))?;
    tmp.persist(path).map_err(|e| DataError::write(path, e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), DataError> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Refuses to go on when `path` exists and `overwrite` is false.
///
/// Returns [`DataError::OutputExists`] ("output exists: PATH (use --overwrite)") in that
/// case; with `overwrite` set, or when nothing exists at `path`, returns `Ok(())` and
/// deletes nothing (the atomic writers replace the file when they finish).
pub fn ensure_absent_or_overwrite(path: impl AsRef<Path>, overwrite: bool) -> Result<(), DataError> {
    let path = path.as_ref();
    match std::fs::symlink_metadata(path) {
        Ok(_) if !overwrite => Err(DataError::OutputExists { path: path.to_path_buf() }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(DataError::OutputFolder { dir: parent_dir(path), reason: "not a folder".into() })
        }
        Err(e) => Err(DataError::read(path, e)),
    }
}

/// The folder a file at `path` lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `dir` exists and is a folder.
fn check_output_folder(dir: &Path) -> Result<(), DataError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DataError::OutputFolder { dir: dir.to_path_buf(), reason: "not a folder".into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(DataError::OutputFolder { dir: dir.to_path_buf(), reason: "folder does not exist".into() })
        }
        Err(e) => Err(DataError::OutputFolder { dir: dir.to_path_buf(), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_bytes_atomic(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn failure_keeps_the_old_file_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_bytes_atomic(&p, b"old").unwrap();
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(matches!(err, DataError::Write { .. }));
        assert!(err.to_string().contains("a.txt"), "{err}");
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn missing_parent_names_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = write_bytes_atomic(missing.join("a.txt"), b"x").unwrap_err();
        match &err {
            DataError::OutputFolder { dir, .. } => assert_eq!(dir, &missing),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn parent_that_is_a_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = write_bytes_atomic(file.join("a.txt"), b"x").unwrap_err();
        assert!(matches!(err, DataError::OutputFolder { .. }), "{err}");
    }

    #[test]
    fn target_that_is_a_folder_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_bytes_atomic(dir.path(), b"x");
        assert!(err.is_err());
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_bytes_atomic(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn ensure_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.png");
        ensure_absent_or_overwrite(&p, false).unwrap();
        std::fs::write(&p, b"").unwrap();
        let err = ensure_absent_or_overwrite(&p, false).unwrap_err();
        assert_eq!(err.to_string(), format!("output exists: {} (use --overwrite)", p.display()));
        ensure_absent_or_overwrite(&p, true).unwrap();
        assert!(p.exists());
    }
}

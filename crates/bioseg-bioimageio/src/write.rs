//! Writing a package: the description as `rdf.yaml` and its files, zipped (deflate) into a
//! hidden temporary file beside the target and renamed into place, so a failed export leaves
//! no partial archive.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::PackageError;

/// Writes `rdf` (a model description, written as `rdf.yaml`) and `files` (relative names and
/// bytes) into the zip archive `out`. An existing `out` is replaced only with `overwrite`.
pub fn write_package(
    out: &Path,
    rdf: &Value,
    files: &[(String, Vec<u8>)],
    overwrite: bool,
) -> Result<(), PackageError> {
    if !overwrite && std::fs::symlink_metadata(out).is_ok() {
        return Err(PackageError::io(out, "exists (replace it with --overwrite)"));
    }
    for (name, _) in files {
        crate::archive::check_name(name).map_err(|e| PackageError::io(out, e))?;
    }
    let yaml = serde_saphyr::to_string(rdf).map_err(|e| PackageError::io(out, format!("writing rdf.yaml: {e}")))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".bioseg-package-")
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(|e| PackageError::io(parent, e))?;
    let io = |e: &dyn std::fmt::Display| PackageError::io(out, e.to_string());
    {
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(tmp.as_file()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        let entries =
            std::iter::once(("rdf.yaml", yaml.as_bytes())).chain(files.iter().map(|(n, b)| (n.as_str(), &b[..])));
        for (name, bytes) in entries {
            zip.start_file(name, options).map_err(|e| io(&e))?;
            zip.write_all(bytes).map_err(|e| io(&e))?;
        }
        let mut inner = zip.finish().map_err(|e| io(&e))?;
        inner.flush().map_err(|e| io(&e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io(&e))?;
    tmp.persist(out).map_err(|e| io(&e.error))?;
    Ok(())
}

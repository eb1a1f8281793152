//! Float32 tensors in `.npy` files and as rows of numbers in text files.
//!
//! * `.npy` (NumPy format 1.0–3.0): read `float32` and `float64` arrays of any
//!   rank, either byte order, C or Fortran order (`float64` is converted);
//!   written as little-endian `float32`, C order.
//! * `.csv`, `.tsv`, `.txt`: one sample per row, values separated by commas (when
//!   the line has any) or else by whitespace/semicolons; an optional first line
//!   of non-numeric text (a header) is skipped, as are blank lines and lines that
//!   start with `#`. Read as a 2-D `[rows, columns]` tensor; written from a 0-, 1-
//!   (one row) or 2-D tensor, comma-separated, with values printed so that they
//!   read back exactly.

use std::io;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use crate::atomic::write_atomic;
use crate::error::{DataError, one_line};

/// The tensor file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorFormat {
    /// NumPy `.npy`.
    Npy,
    /// Delimited text (`.csv`, `.tsv`, `.txt`).
    Text,
}

impl TensorFormat {
    /// The format named by `path`'s extension (case-insensitive), or
    /// [`DataError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Self, DataError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => Ok(TensorFormat::Npy),
            Some("csv" | "tsv" | "txt") => Ok(TensorFormat::Text),
            _ => Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".npy, .csv, .tsv or .txt" }),
        }
    }
}

/// Reads a tensor from a `.npy` or text file (see the module documentation).
pub fn read_tensor(path: impl AsRef<Path>) -> Result<ArrayD<f32>, DataError> {
    let path = path.as_ref();
    let format = TensorFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|e| DataError::read(path, e))?;
    match format {
        TensorFormat::Npy => parse_npy(path, &bytes),
        TensorFormat::Text => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| DataError::Tensor { path: path.to_path_buf(), reason: format!("not UTF-8 text ({e})") })?;
            parse_text(path, text)
        }
    }
}

/// Writes a tensor atomically as `.npy` (any rank) or as text (rank 0, 1 or 2, not
/// empty), chosen by `path`'s extension.
pub fn write_tensor(path: impl AsRef<Path>, tensor: &ArrayD<f32>) -> Result<(), DataError> {
    let path = path.as_ref();
    match TensorFormat::from_path(path)? {
        TensorFormat::Npy => write_atomic(path, |w| {
            tensor.as_standard_layout().write_npy(w).map_err(|e| io::Error::other(e.to_string()))
        }),
        TensorFormat::Text => {
            let rows = match tensor.ndim() {
                0 | 1 => 1,
                2 => tensor.shape()[0],
                n => {
                    return Err(DataError::Tensor {
                        path: path.to_path_buf(),
                        reason: format!(
                            "text files hold 1-D or 2-D tensors, this one has {n} dimensions {:?} (use .npy)",
                            tensor.shape()
                        ),
                    });
                }
            };
            if tensor.is_empty() {
                return Err(DataError::Tensor {
                    path: path.to_path_buf(),
                    reason: format!("cannot write an empty tensor {:?} as text (use .npy)", tensor.shape()),
                });
            }
            let cols = tensor.len() / rows;
            let flat: Vec<f32> = tensor.iter().copied().collect();
            write_atomic(path, |w| {
                let mut line = String::new();
                for row in flat.chunks_exact(cols) {
                    line.clear();
                    for (i, v) in row.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        line.push_str(&v.to_string());
                    }
                    line.push('\n');
                    w.write_all(line.as_bytes())?;
                }
                Ok(())
            })
        }
    }
}

/// Encodes a tensor as `.npy` bytes (little-endian `float32`, C order).
pub fn npy_bytes(tensor: &ArrayD<f32>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into memory cannot fail.
    let _ = tensor.as_standard_layout().write_npy(&mut out);
    out
}

/// Decodes a `.npy` file held in memory (`path` names it in errors).
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<ArrayD<f32>, DataError> {
    let bad = |reason: String| DataError::Tensor { path: path.to_path_buf(), reason };
    // Check the header's claimed size against the file before anything allocates it.
    let header = NpyHeaderInfo::parse(bytes).map_err(bad)?;
    let available = (bytes.len() - header.data_offset) as u128;
    let needed = header.elements as u128 * header.item_size as u128;
    if needed > available {
        return Err(bad(format!("truncated: header promises {needed} data bytes but the file holds {available}")));
    }
    match ArrayD::<f32>::read_npy(bytes) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<f64>::read_npy(bytes) {
            Ok(a) => Ok(a.mapv(|v| v as f32)),
            Err(ReadNpyError::WrongDescriptor(d)) => {
                Err(bad(format!("dtype {d} is not supported (expected float32 or float64)")))
            }
            Err(e) => Err(bad(one_line(e))),
        },
        Err(e) => Err(bad(one_line(e))),
    }
}

/// What [`parse_npy`] needs from a `.npy` header to bound the allocation.
struct NpyHeaderInfo {
    data_offset: usize,
    elements: u64,
    item_size: u64,
}

impl NpyHeaderInfo {
    /// Parses the preamble and the `descr`/`shape` entries of the header dict.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        if !bytes.starts_with(b"\x93NUMPY") {
            return Err("not a .npy file (bad magic)".into());
        }
        let (len, start): (usize, usize) = match bytes.get(6) {
            Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            Some(2 | 3) if bytes.len() >= 12 => {
                (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
            }
            Some(1..=3) => return Err("truncated header".into()),
            Some(v) => return Err(format!("unsupported .npy format version {v}")),
            None => return Err("truncated header".into()),
        };
        let end = start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or("truncated header")?;
        let dict = String::from_utf8_lossy(&bytes[start..end]);
        let descr = dict_value(&dict, "descr").ok_or("header has no 'descr'")?;
        let descr = descr.trim_start_matches(['\'', '"']);
        let item_size: u64 = descr
            .trim_start_matches(['<', '>', '|', '='])
            .get(1..)
            .and_then(|s| s.split(['\'', '"']).next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("unsupported dtype in header {dict:?}"))?;
        let shape = dict_value(&dict, "shape").ok_or("header has no 'shape'")?;
        let shape = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("malformed 'shape' in header")?;
        let mut elements: u64 = 1;
        for dim in shape.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let dim = dim.trim_end_matches('L');
            let n: u64 = dim.parse().map_err(|_| format!("malformed dimension {dim:?} in header"))?;
            elements = elements.checked_mul(n).ok_or("shape overflows")?;
        }
        Ok(NpyHeaderInfo { data_offset: end, elements, item_size })
    }
}

/// The text after `'key':` in a Python dict literal, left-trimmed.
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let pat = format!("{quote}{key}{quote}");
        if let Some(i) = dict.find(&pat) {
            let rest = dict[i + pat.len()..].trim_start();
            return rest.strip_prefix(':').map(str::trim_start);
        }
    }
    None
}

/// Parses rows of numbers (see the module documentation).
fn parse_text(path: &Path, text: &str) -> Result<ArrayD<f32>, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut data = Vec::new();
    let mut cols: Option<usize> = None;
    let mut rows = 0usize;
    let mut first_content_line = true;
    for (lineno, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = parse_row(line);
        let is_first = std::mem::replace(&mut first_content_line, false);
        let values = match parsed {
            Ok(v) => v,
            Err(_) if is_first => continue, // header line
            Err(token) => {
                return Err(DataError::Tensor {
                    path: path.to_path_buf(),
                    reason: format!("line {lineno}: {token:?} is not a number"),
                });
            }
        };
        match cols {
            None => cols = Some(values.len()),
            Some(c) if c != values.len() => {
                return Err(DataError::Tensor {
                    path: path.to_path_buf(),
                    reason: format!("line {lineno} has {} values but earlier rows have {c}", values.len()),
                });
            }
            Some(_) => {}
        }
        data.extend(values);
        rows += 1;
    }
    let Some(cols) = cols else {
        return Err(DataError::Tensor { path: path.to_path_buf(), reason: "no rows of numbers".into() });
    };
    ArrayD::from_shape_vec(IxDyn(&[rows, cols]), data)
        .map_err(|e| DataError::Tensor { path: path.to_path_buf(), reason: e.to_string() })
}

/// Splits and parses one line; on failure returns the offending token.
fn parse_row(line: &str) -> Result<Vec<f32>, String> {
    let parse = |t: &str| t.trim().parse::<f32>().map_err(|_| t.trim().to_string());
    if line.contains(',') {
        line.split(',').map(parse).collect()
    } else {
        line.split(|c: char| c.is_whitespace() || c == ';').filter(|t| !t.is_empty()).map(parse).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, array};

    #[test]
    fn npy_round_trip_any_rank() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.npy");
        let t = Array::from_shape_fn(IxDyn(&[2, 3, 4]), |ix| (ix[0] * 100 + ix[1] * 10 + ix[2]) as f32 - 0.5);
        write_tensor(&p, &t).unwrap();
        assert_eq!(read_tensor(&p).unwrap(), t);
        // Non-standard layout is written in logical order.
        let tt = t.t().to_owned().into_dyn();
        let transposed = t.t().into_dyn().to_owned();
        write_tensor(&p, &transposed).unwrap();
        assert_eq!(read_tensor(&p).unwrap(), tt);
        // Scalars.
        let s = ArrayD::from_elem(IxDyn(&[]), 7.0f32);
        write_tensor(&p, &s).unwrap();
        assert_eq!(read_tensor(&p).unwrap(), s);
    }

    #[test]
    fn npy_f64_is_converted() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.npy");
        let a = array![[1.5f64, -2.0], [1e-3, 4.0]];
        let mut f = std::fs::File::create(&p).unwrap();
        a.write_npy(&mut f).unwrap();
        drop(f);
        let t = read_tensor(&p).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t[[1, 0]], 1e-3f32);
    }

    #[test]
    fn npy_other_dtype_and_garbage_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("i.npy");
        let mut f = std::fs::File::create(&p).unwrap();
        array![1i32, 2].write_npy(&mut f).unwrap();
        drop(f);
        let err = read_tensor(&p).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(err.to_string().contains("i.npy"), "{err}");

        std::fs::write(&p, b"hello").unwrap();
        assert!(matches!(read_tensor(&p).unwrap_err(), DataError::Tensor { .. }));
    }

    #[test]
    fn npy_lying_header_does_not_allocate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.npy");
        let mut header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000), }".to_vec();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(&header);
        bytes.extend([0u8; 16]);
        std::fs::write(&p, &bytes).unwrap();
        let err = read_tensor(&p).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Truncated data of a valid file.
        let good = d.path().join("g.npy");
        write_tensor(&good, &Array::zeros(IxDyn(&[10, 10]))).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read_tensor(&p).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn csv_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        let t = array![[0.1f32, -2.5, 1e-7], [3.0, f32::MAX, 1e30]].into_dyn();
        write_tensor(&p, &t).unwrap();
        assert_eq!(read_tensor(&p).unwrap(), t);
        let v = array![1.0f32, 2.0, 3.0].into_dyn();
        write_tensor(&p, &v).unwrap();
        assert_eq!(read_tensor(&p).unwrap().shape(), &[1, 3]);
    }

    #[test]
    fn text_parsing_rules() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.txt");
        std::fs::write(&p, "\u{feff}x y z\r\n1 2 3\r\n\n# comment\n4\t5;6\n").unwrap();
        assert_eq!(read_tensor(&p).unwrap(), array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        let p = d.path().join("h.csv");
        std::fs::write(&p, "a,b\n1, 2\n-3e2,inf\n").unwrap();
        let t = read_tensor(&p).unwrap();
        assert_eq!(t[[1, 0]], -300.0);
        assert!(t[[1, 1]].is_infinite());
    }

    #[test]
    fn text_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("e.csv");
        std::fs::write(&p, "1,2\n3,x\n").unwrap();
        let err = read_tensor(&p).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("\"x\"") && err.contains("e.csv"), "{err}");
        std::fs::write(&p, "1,2\n3\n").unwrap();
        assert!(read_tensor(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, "1,,2\n").unwrap();
        assert!(read_tensor(&p).is_err());
        std::fs::write(&p, "header only\n").unwrap();
        assert!(read_tensor(&p).unwrap_err().to_string().contains("no rows"));
    }

    #[test]
    fn text_writer_limits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        let err = write_tensor(&p, &Array::zeros(IxDyn(&[2, 2, 2]))).unwrap_err();
        assert!(err.to_string().contains("use .npy"), "{err}");
        let err = write_tensor(&p, &Array::zeros(IxDyn(&[0, 2]))).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = write_tensor(d.path().join("t.bin"), &Array::zeros(IxDyn(&[1]))).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedFormat { .. }));
        assert!(!p.exists());
    }
}

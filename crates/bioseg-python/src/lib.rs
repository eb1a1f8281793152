//! `bioseg._bioseg`: the extension module behind the Python package `bioseg` (python/bioseg).
//!
//! The Python layer (`python/bioseg/__init__.py`) checks and converts arguments (dtypes, axes,
//! progress bars) and parses the JSON this module returns; this module runs bioseg-infer with
//! the GIL released ([`interrupt`]) and turns its errors into the package's exceptions
//! ([`errors`]). Like the `bioseg` binary, it holds no Burn: inference only.

use pyo3::prelude::*;

mod errors;
mod evaluate;
mod files;
mod interrupt;
mod model;
mod options;

/// Large tensors come and go for every tile: the same allocator and page policy as the `bioseg`
/// binary (its main.rs), so a prediction from Python runs at the CLI's speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _bioseg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    bioseg_data::cli_support::keep_freed_pages(1000);
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(files::predict_file, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! Bytes -> bioseg-bioimageio: a BioImage Model Zoo package from a stranger, as a zip archive or
//! an `rdf.yaml` in a folder (`bioseg_bioimageio::fuzz_package`): `Package::open` (archive entry
//! names, the description's budgets and fields), the weights and test tensors within limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bioseg_bioimageio::fuzz_package(data, &bioseg_fuzz::fresh_dir("bioimageio_package"));
});

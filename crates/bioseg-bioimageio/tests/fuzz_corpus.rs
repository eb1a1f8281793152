//! The `bioimageio_package` fuzz target's committed corpus (`fuzz/corpus/bioimageio_package`,
//! see `fuzz/README.md`) on stable Rust: every input gives a value or an error, never a panic.

use std::path::PathBuf;

#[test]
fn the_fuzz_corpus_reads_without_panics() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/bioimageio_package");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&corpus).unwrap_or_else(|e| panic!("{}: {e}", corpus.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        bioseg_bioimageio::fuzz_package(&data, scratch.path());
        inputs += 1;
    }
    assert!(inputs >= 2, "the corpus holds its seeds");
}

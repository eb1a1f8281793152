//! Packages from strangers: archives with entries outside the package, absolute paths, bombs and
//! sizes past the limits, descriptions nested too deep or with wrong types, files that differ
//! from their checksums. Each is refused with one error naming the problem; nothing is written
//! anywhere, and nothing past the limits is allocated.

use std::io::Write;
use std::path::Path;

use bioseg_bioimageio::{Package, PackageError, sha256_hex};

/// A valid description naming `weights` (with `sha` if given) and test tensors.
fn rdf(weights: &str, sha: Option<&str>) -> String {
    format!(
        r#"type: model
format_version: 0.5.4
name: hostile
inputs:
  - id: raw
    axes: [{{type: batch}}, {{type: channel, channel_names: [raw]}}, {{type: space, id: y, size: {{min: 16, step: 16}}}}, {{type: space, id: x, size: {{min: 16, step: 16}}}}]
    test_tensor: {{source: in.npy}}
outputs:
  - id: prob
    axes: [{{type: batch}}, {{type: channel, channel_names: [fg]}}, {{type: space, id: y, size: {{tensor_id: raw, axis_id: y}}}}, {{type: space, id: x, size: {{tensor_id: raw, axis_id: x}}}}]
    test_tensor: {{source: out.npy}}
weights:
  onnx: {{source: {weights}{}}}
"#,
        sha.map(|s| format!(", sha256: {s}")).unwrap_or_default()
    )
}

/// A zip at `path` holding `entries` as they are (names unchecked: the writer is the attacker).
fn zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        z.start_file(*name, options).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn refused(path: &Path) -> String {
    let e = Package::open(path).and_then(|p| p.onnx_bytes().map(|_| p)).and_then(|p| p.test_tensors().map(|_| p));
    let e = e.expect_err("a hostile package must be refused").to_string();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn hostile_archives_are_refused_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("inside");
    std::fs::create_dir(&d).unwrap();
    let good = rdf("model.onnx", None);
    for (name, entries, words) in [
        ("dotdot.zip", vec![("rdf.yaml", good.as_bytes()), ("../evil.onnx", &b"x"[..])], "outside the package"),
        ("absolute.zip", vec![("rdf.yaml", good.as_bytes()), ("/tmp/evil.onnx", &b"x"[..])], "absolute"),
        ("backslash.zip", vec![("rdf.yaml", good.as_bytes()), ("..\\evil.onnx", &b"x"[..])], "backslash"),
        ("no_rdf.zip", vec![("model.onnx", &b"x"[..])], "no rdf.yaml"),
    ] {
        let p = d.join(name);
        zip(&p, &entries);
        let e = refused(&p);
        assert!(e.contains(words) && e.contains(name), "{name}: {e}");
    }
    // A description naming a file outside the package, and one naming a link.
    for (weights, words) in [("../../etc/passwd", "outside the package"), ("https://example.org/w.onnx", "is a link")] {
        let p = d.join("names.zip");
        zip(&p, &[("rdf.yaml", rdf(weights, None).as_bytes())]);
        assert!(refused(&p).contains(words), "{weights}");
    }
    // Not a zip at all.
    let p = d.join("garbage.zip");
    std::fs::write(&p, b"PK\x03\x04 not really").unwrap();
    assert!(refused(&p).contains("not a valid zip archive"));
    // Too many entries.
    let p = d.join("many.zip");
    let names: Vec<String> = (0..=bioseg_bioimageio::MAX_ENTRIES).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    zip(&p, &entries);
    assert!(refused(&p).contains("entries"));
    // Nothing was written beside or above the packages.
    let mut beside: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    beside.sort();
    assert_eq!(beside, ["inside"]);
}

#[test]
fn sizes_past_the_limits_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    // A 300 MB test tensor of zeros: a few hundred KB compressed, refused by its declared size.
    let p = dir.path().join("bomb.zip");
    let zeros = vec![0u8; (bioseg_bioimageio::MAX_TEST_TENSOR_BYTES + 1) as usize];
    zip(
        &p,
        &[
            ("rdf.yaml", rdf("model.onnx", None).as_bytes()),
            ("model.onnx", b"onnx"),
            ("in.npy", &zeros),
            ("out.npy", b""),
        ],
    );
    drop(zeros);
    let e = refused(&p);
    assert!(e.contains("in.npy holds 268435457 bytes; bioseg reads at most 268435456"), "{e}");
    // An rdf.yaml over 1 MiB.
    let p = dir.path().join("big_rdf.zip");
    let big = format!("{}\n# {}", rdf("model.onnx", None), "x".repeat(1 << 20));
    zip(&p, &[("rdf.yaml", big.as_bytes())]);
    assert!(refused(&p).contains("rdf.yaml holds"));
}

#[test]
fn hostile_descriptions_and_checksums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(String, &str)> = vec![
        (format!("type: model\nformat_version: 0.5.4\nname: {}1{}\n", "[".repeat(100), "]".repeat(100)), "rdf.yaml"),
        (
            rdf("model.onnx", None).replace("min: 16", "min: lots"),
            "inputs[0].axes[2].size.min: expected a whole number",
        ),
        (rdf("model.onnx", None).replace("type: model", "type: dataset"), "bioseg runs model descriptions"),
        ("\u{0}\u{1}binary".to_owned(), "rdf.yaml"),
    ];
    for (i, (text, words)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("d{i}.zip"));
        zip(&p, &[("rdf.yaml", text.as_bytes())]);
        let e = refused(&p);
        assert!(e.contains(words), "case {i}: {e}");
    }
    // Weights that differ from their checksum.
    let p = dir.path().join("sha.zip");
    let wrong = sha256_hex(b"other bytes");
    zip(&p, &[("rdf.yaml", rdf("model.onnx", Some(&wrong)).as_bytes()), ("model.onnx", b"the weights")]);
    let e = Package::open(&p).unwrap().onnx_bytes().unwrap_err();
    assert!(matches!(e, PackageError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains(&format!("model.onnx has sha256 {}", sha256_hex(b"the weights"))), "{e}");
    // The same package as a folder, and its rdf.yaml given directly, read the same way.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("rdf.yaml"), rdf("model.onnx", None)).unwrap();
    std::fs::write(folder.join("model.onnx"), b"the weights").unwrap();
    for p in [folder.clone(), folder.join("rdf.yaml")] {
        assert_eq!(Package::open(&p).unwrap().onnx_bytes().unwrap(), b"the weights");
    }
    // A folder whose weights link outside it.
    #[cfg(unix)]
    {
        std::fs::write(dir.path().join("secret.onnx"), b"secret").unwrap();
        std::fs::remove_file(folder.join("model.onnx")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.onnx"), folder.join("model.onnx")).unwrap();
        let e = Package::open(&folder).unwrap().onnx_bytes().unwrap_err().to_string();
        assert!(e.contains("resolves outside the package folder"), "{e}");
    }
}

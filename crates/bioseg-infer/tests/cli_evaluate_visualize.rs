//! `bioseg evaluate` and `bioseg visualize` end to end through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bioseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bioseg")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = bioseg(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(args: &[&str], needle: &str) {
    let out = bioseg(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(errors[0].contains(needle), "{args:?}: expected {needle:?} in {stderr}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 0/255 label with two cells split by a vertical membrane at x = 7 (16×12).
fn label_pixels() -> Vec<u8> {
    (0..12 * 16).map(|i| if i % 16 == 7 { 0 } else { 255 }).collect()
}

fn write_png(path: &Path, w: u32, h: u32, px: &[u8]) {
    bioseg_data::write_gray_u8_png(path, w, h, px).unwrap();
}

/// pred/ and label/ folders with images 1, 2, 10: perfect, membrane missing (merge), perfect.
fn folders(dir: &Path) -> (PathBuf, PathBuf) {
    let (pd, ld) = (dir.join("pred"), dir.join("label"));
    std::fs::create_dir_all(&pd).unwrap();
    std::fs::create_dir_all(&ld).unwrap();
    let label = label_pixels();
    // Probabilities: 200 inside, 30 on the membrane.
    let prob: Vec<u8> = label.iter().map(|&v| if v > 0 { 200 } else { 30 }).collect();
    let merged = vec![220u8; 16 * 12];
    for (name, p) in [("1", &prob), ("2", &merged), ("10", &prob)] {
        write_png(&ld.join(format!("{name}.png")), 16, 12, &label);
        write_png(&pd.join(format!("{name}.png")), 16, 12, p);
    }
    (pd, ld)
}

#[test]
fn evaluate_folders_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (pd, ld) = folders(dir.path());
    let csv = ok(&["evaluate", "--pred", s(&pd), "--label", s(&ld)]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in
        ["image", "pixel_error", "dice_1", "iou_0", "v_rand", "v_info", "adapted_rand_error", "vi_split", "vi_merge"]
    {
        assert!(header.contains(&col), "{col} missing from {header:?}");
    }
    let col = |row: &str, name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        row.split(',').nth(i).unwrap().parse().unwrap()
    };
    // Natural order 1, 2, 10, then the mean.
    assert!(lines[1].starts_with("1,") && lines[2].starts_with("2,") && lines[3].starts_with("10,"), "{csv}");
    assert_eq!(col(lines[1], "pixel_error"), 0.0);
    assert_eq!(col(lines[1], "v_rand"), 1.0);
    assert_eq!(col(lines[1], "cells_pred"), 2.0);
    // Image 2 merges the two cells: pixel error = 12 / 192, V_rand < 1, false merges.
    assert!((col(lines[2], "pixel_error") - 12.0 / 192.0).abs() < 1e-6);
    assert!(col(lines[2], "v_rand") < 0.9 && col(lines[2], "vi_merge") > 0.5);
    assert_eq!(col(lines[2], "vi_split"), 0.0);
    assert!(lines[4].starts_with("mean,"));
    assert!((col(lines[4], "pixel_error") - 12.0 / 192.0 / 3.0).abs() < 1e-6);

    // A high threshold turns image 1's probabilities (200/255 = 0.78) into background.
    let csv = ok(&["evaluate", "--pred", s(&pd), "--label", s(&ld), "--threshold", "0.9"]);
    assert!(csv.lines().nth(1).unwrap().split(',').nth(1).unwrap() != "0.000000", "{csv}");

    // JSON into a file: atomic, refuses to overwrite without --overwrite.
    let out = dir.path().join("scores.json");
    ok(&["evaluate", "--pred", s(&pd), "--label", s(&ld), "--format", "json", "-o", s(&out)]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"][0]["image"], "1");
    assert_eq!(v["mean"]["dice"].as_array().unwrap().len(), 2);
    assert_eq!(v["settings"]["classes"], 2);
    // The challenge's pixel error pools the three images: from threshold 0.2 to 0.7 only image
    // 2's 12 membrane pixels are wrong (fp = 12, tp = 540, fn = 0), F = 1080 / 1092.
    let challenge = &v["challenge"];
    assert!((challenge["pixel_error"].as_f64().unwrap() - 12.0 / 1092.0).abs() < 1e-12, "{challenge}");
    assert_eq!(challenge["threshold"].as_f64().unwrap(), 0.2);
    fails_with(&["evaluate", "--pred", s(&pd), "--label", s(&ld), "-o", s(&out)], "--overwrite");
    ok(&["evaluate", "--pred", s(&pd), "--label", s(&ld), "-o", s(&out), "--overwrite"]);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("image,"));
}

#[test]
fn evaluate_stacks_and_single_images() {
    let dir = tempfile::tempdir().unwrap();
    let (pd, ld) = folders(dir.path());
    // A 3-page label stack against the prediction folder (paired by position).
    let stack = dir.path().join("labels.tif");
    let label = label_pixels();
    bioseg_data::write_gray_u8_pages(&stack, 16, 12, &[label.clone(), label.clone(), label.clone()]).unwrap();
    let csv = ok(&["evaluate", "--pred", s(&pd), "--label", s(&stack)]);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // Rows are named after the folder's files.
    assert!(csv.lines().nth(3).unwrap().starts_with("10,"), "{csv}");
    // Stack against stack, and one image against one image.
    let csv = ok(&["evaluate", "--pred", s(&stack), "--label", s(&stack)]);
    assert!(csv.lines().nth(1).unwrap().starts_with("labels[0],0.000000,"), "{csv}");
    ok(&["evaluate", "--pred", s(&pd.join("2.png")), "--label", s(&ld.join("2.png"))]);
    // Multi-class class maps.
    let a = dir.path().join("a.png");
    write_png(&a, 4, 1, &[0, 1, 2, 2]);
    let b = dir.path().join("b.png");
    write_png(&b, 4, 1, &[0, 1, 2, 1]);
    let csv = ok(&["evaluate", "--pred", s(&a), "--label", s(&b), "--classes", "3"]);
    assert!(csv.lines().next().unwrap().contains("dice_2"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("a,0.250000,"), "{csv}");
    // No challenge score for class maps of several classes.
    let json = ok(&["evaluate", "--pred", s(&a), "--label", s(&b), "--classes", "3", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v.get("challenge").is_none(), "{json}");
}

#[test]
fn best_threshold_finds_where_a_faint_membrane_separates_the_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (p, l) = (dir.path().join("p.png"), dir.path().join("l.png"));
    let label = label_pixels();
    // Interior 0.9, the membrane at 0.6: at 0.5 (and at 0.6) it counts as interior and merges
    // the two cells; from 0.7 on it separates them.
    let prob: Vec<u8> = label.iter().map(|&v| if v > 0 { 230 } else { 153 }).collect();
    write_png(&l, 16, 12, &label);
    write_png(&p, 16, 12, &prob);
    let args = ["evaluate", "--pred", s(&p), "--label", s(&l), "--format", "json"];
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert!(v["mean"]["v_rand"].as_f64().unwrap() < 0.9, "{v}");
    assert!(v["challenge"].get("best_v_rand").is_none(), "{v}");
    let v: serde_json::Value = serde_json::from_str(&ok(&[&args[..], &["--best-threshold"]].concat())).unwrap();
    let c = &v["challenge"];
    assert_eq!((c["best_v_rand"]["value"].as_f64(), c["best_v_rand"]["threshold"].as_f64()), (Some(1.0), Some(0.7)));
    assert_eq!(c["best_v_info"]["value"].as_f64(), Some(1.0), "{c}");
    // The scores at the given threshold are unchanged.
    assert!(v["mean"]["v_rand"].as_f64().unwrap() < 0.9, "{v}");
}

#[test]
fn evaluate_reports_mismatches_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (pd, ld) = folders(dir.path());
    let small = dir.path().join("small.png");
    write_png(&small, 8, 8, &[0; 64]);
    fails_with(&["evaluate", "--pred", s(&small), "--label", s(&ld.join("1.png"))], "size mismatch");
    std::fs::remove_file(pd.join("10.png")).unwrap();
    fails_with(&["evaluate", "--pred", s(&pd), "--label", s(&ld)], "label 10 has no prediction");
    let stack = dir.path().join("s.tif");
    bioseg_data::write_gray_u8_pages(&stack, 16, 12, &[label_pixels()]).unwrap();
    fails_with(&["evaluate", "--pred", s(&pd), "--label", s(&stack)], "count mismatch");
    fails_with(&["evaluate", "--pred", s(&pd), "--label", s(&dir.path().join("nope"))], "nope");
    let bad = dir.path().join("bad.png");
    write_png(&bad, 16, 12, &[7; 192]);
    fails_with(&["evaluate", "--pred", s(&bad), "--label", s(&ld.join("1.png")), "--classes", "3"], "class-index maps");
}

fn png_size(path: &Path) -> (usize, usize) {
    let img = bioseg_data::read_image(path).unwrap();
    assert_eq!(img.channels(), 3);
    (img.width(), img.height())
}

#[test]
fn visualize_panels_from_files_and_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (pd, ld) = folders(dir.path());
    let image = dir.path().join("image.png");
    let px: Vec<u8> = (0..192u32).map(|i| (i % 256) as u8).collect();
    write_png(&image, 16, 12, &px);
    let out = dir.path().join("v.png");
    let text = ok(&[
        "visualize",
        "--image",
        s(&image),
        "--label",
        s(&ld.join("2.png")),
        "--pred",
        s(&pd.join("2.png")),
        "--errors",
        "-o",
        s(&out),
    ]);
    assert!(text.contains("errors"), "{text}");
    // 5 panels of 16 px and 4 gaps of 8 px.
    assert_eq!(png_size(&out), (5 * 16 + 4 * 8, 12));
    let v = bioseg_data::read_image(&out).unwrap();
    // The gap is white; the error map marks image 2's membrane (predicted interior there) magenta.
    assert_eq!(v.data[[0, 16, 0]], 255.0);
    let err_x0 = 4 * (16 + 8);
    let p = v.data.slice(ndarray::s![5, err_x0 + 7, ..]).to_vec();
    assert!(p[0] > p[1] && p[2] > p[1], "error pixel {p:?}");
    fails_with(&["visualize", "--image", s(&image), "--pred", s(&pd.join("2.png")), "-o", s(&out)], "--overwrite");
    fails_with(
        &[
            "visualize",
            "--image",
            s(&image),
            "--pred",
            s(&pd.join("2.png")),
            "--errors",
            "-o",
            s(&dir.path().join("e.png")),
        ],
        "--errors needs a label",
    );
    let small = dir.path().join("small.png");
    write_png(&small, 8, 8, &[0; 64]);
    fails_with(
        &["visualize", "--image", s(&image), "--label", s(&small), "-o", s(&dir.path().join("m.png"))],
        "size mismatch",
    );

    // The seed layout: DATA/membrane/train/{image,label}/N.png, 3 panels without a prediction.
    let data = dir.path().join("data");
    let split = data.join("membrane/train");
    std::fs::create_dir_all(split.join("image")).unwrap();
    std::fs::create_dir_all(split.join("label")).unwrap();
    write_png(&split.join("image/3.png"), 16, 12, &px);
    write_png(&split.join("label/3.png"), 16, 12, &label_pixels());
    let out = dir.path().join("d.png");
    ok(&["visualize", "-d", s(&data), "-c", "membrane", "-t", "3", "--pred", s(&pd.join("1.png")), "-o", s(&out)]);
    assert_eq!(png_size(&out), (4 * 16 + 3 * 8, 12));
    let out = dir.path().join("d2.png");
    ok(&["visualize", "-d", s(&data), "-c", "membrane", "-t", "3", "-o", s(&out)]);
    assert_eq!(png_size(&out), (2 * 16 + 8, 12));
    fails_with(
        &["visualize", "-d", s(&data), "-c", "membrane", "-t", "4", "-o", s(&dir.path().join("x.png"))],
        "no image named 4",
    );
}

#[test]
fn visualize_a_stack_slice_with_a_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keras/unet_dynamic_tf2onnx_op13.onnx");
    if !model.exists() {
        eprintln!("skipping: {} is missing", model.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.tif");
    let pages: Vec<Vec<u8>> =
        (0..3u32).map(|k| (0..48 * 40u32).map(|i| ((i * 7 + k * 50) % 256) as u8).collect()).collect();
    bioseg_data::write_gray_u8_pages(&stack, 48, 40, &pages).unwrap();
    let labels = dir.path().join("labels.tif");
    let lab: Vec<Vec<u8>> =
        (0..3).map(|_| (0..48 * 40u32).map(|i| if i % 48 < 20 { 255 } else { 0 }).collect()).collect();
    bioseg_data::write_gray_u8_pages(&labels, 48, 40, &lab).unwrap();
    let out = dir.path().join("m.png");
    ok(&[
        "visualize",
        "-q",
        "--image",
        s(&stack),
        "--label",
        s(&labels),
        "--slice",
        "2",
        "--model",
        s(&model),
        "--errors",
        "-o",
        s(&out),
    ]);
    assert_eq!(png_size(&out), (5 * 48 + 4 * 8, 40));
    fails_with(
        &["visualize", "--image", s(&stack), "--slice", "3", "-o", s(&dir.path().join("n.png"))],
        "out of range",
    );
}

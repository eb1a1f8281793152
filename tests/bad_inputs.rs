//! The bad-input catalogue: every way users point `bioseg` and `bioseg-train` at the wrong
//! thing. Each case must exit non-zero with exactly one `error:` line that names the file (or
//! option) and the problem, must not panic or print a backtrace, and must leave the case's
//! folder exactly as it was: no partial output, existing outputs untouched, no temporary files.
//!
//! Every case runs in a folder of its own; the folder's files are snapshotted before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bioseg_onnx::{Dim, GraphBuilder, ModelMetadata};
use bioseg_suite::{bioseg, bioseg_train};
use bioseg_train::device::CpuBackend;
use bioseg_train::model::unet::{Unet, UnetConfig};

/// Shared read-only fixtures: models and a valid image.
struct Fixtures {
    /// Tiny 1-channel U-Net (depth 2, symbolic size).
    unet: PathBuf,
    /// A 3-channel U-Net.
    unet_rgb: PathBuf,
    /// A perceptron-like model: input `[batch, 10]`.
    vector: PathBuf,
    /// An image model whose graph uses an op no runtime knows.
    unknown_op: PathBuf,
    /// A valid 8-bit gray PNG, 80 × 96.
    png: PathBuf,
    /// A valid 8-bit gray TIFF, 80 × 96.
    tif: PathBuf,
    /// A valid 3-page TIFF volume, 3 × 40 × 48.
    stack: PathBuf,
}

fn pattern(w: usize, h: usize, seed: usize) -> Vec<u8> {
    (0..w * h).map(|i| ((i * 37 + seed * 11 + i / w * 5) % 251) as u8).collect()
}

fn export_unet(path: &Path, in_channels: usize) {
    let _serial = bioseg_suite::burn_lock();
    let model: Unet<CpuBackend> =
        UnetConfig::new().with_filters(2).with_depth(2).with_in_channels(in_channels).init(&Default::default());
    bioseg_train::export::write_onnx(&model.to_onnx(&bioseg_train::export::base_metadata()), path).unwrap();
}

fn write_graph(path: &Path, input: &[Dim], op: &str) {
    let mut g = GraphBuilder::new("bad");
    let x = g.input("input", input);
    let y = g.node(op, "y", &[&x], vec![]);
    g.output(&y, "y", input);
    bioseg_onnx::write_model(&bioseg_onnx::model_from_graph(g.finish(), &ModelMetadata::default(), ""), path).unwrap();
}

fn fixtures(dir: &Path) -> Fixtures {
    std::fs::create_dir_all(dir).unwrap();
    let f = Fixtures {
        unet: dir.join("unet.onnx"),
        unet_rgb: dir.join("unet_rgb.onnx"),
        vector: dir.join("vector.onnx"),
        unknown_op: dir.join("unknown_op.onnx"),
        png: dir.join("image.png"),
        tif: dir.join("image.tif"),
        stack: dir.join("stack.tif"),
    };
    export_unet(&f.unet, 1);
    export_unet(&f.unet_rgb, 3);
    write_graph(&f.vector, &[Dim::symbol("batch"), Dim::Fixed(10)], "Sigmoid");
    let image_dims = [Dim::symbol("batch"), Dim::Fixed(1), Dim::symbol("height"), Dim::symbol("width")];
    write_graph(&f.unknown_op, &image_dims, "FrobnicateMembranes");
    bioseg_data::write_gray_u8_png(&f.png, 96, 80, &pattern(96, 80, 0)).unwrap();
    bioseg_data::write_gray_u8_tiff(&f.tif, 96, 80, &pattern(96, 80, 1)).unwrap();
    let pages: Vec<Vec<u8>> = (0..3).map(|z| pattern(48, 40, z)).collect();
    bioseg_data::write_gray_u8_pages(&f.stack, 48, 40, &pages).unwrap();
    f
}

/// Every file and folder under `dir`: relative path → contents (`None` for folders).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// A PNG holding only a signature and an IHDR chunk (valid CRC) of the given size.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(width.to_be_bytes());
    chunk.extend(height.to_be_bytes());
    chunk.extend([8, 0, 0, 0, 0]); // 8-bit gray, deflate, no filter, no interlace
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&chunk);
    bytes.extend(crc32fast::hash(&chunk).to_be_bytes());
    bytes
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A synthetic training set: `DATA/membrane/train/{image,label}`, `n` images of 64 × 64.
fn dataset(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("data");
    let params = bioseg_data::SynthParams { width: 64, height: 64, ..Default::default() };
    bioseg_data::write_dataset(&data, n, 0, &params, 5).unwrap();
    data
}

/// `bioseg-train unet` on `data` into `out`: a tiny quick run; `options` replace the defaults of
/// the same name and add others (a flag without value has an empty value).
fn train_cmd(data: &Path, out: &Path, options: &[(&str, &str)]) -> Command {
    let mut all: Vec<(&str, &str)> =
        vec![("-F", "2"), ("--depth", "2"), ("-X", "64"), ("-Y", "64"), ("-e", "1"), ("--steps-per-epoch", "1")];
    for &(k, v) in options {
        match all.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => all.push((k, v)),
        }
    }
    let mut cmd = bioseg_train();
    cmd.args(["-q", "unet", "-d", s(data), "-o", s(out)]);
    for (k, v) in all {
        cmd.arg(k);
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    cmd
}

/// A package description of the fixtures' 1-channel U-Net (`sha256` of its weights if given),
/// without test tensors.
fn package_rdf(sha256: Option<&str>) -> String {
    format!(
        "type: model\nformat_version: 0.5.4\nname: t\ninputs:\n  - id: raw\n    axes: [{{type: batch}}, {{type: channel, channel_names: [raw]}}, {{type: space, id: y, size: {{min: 16, step: 4}}}}, {{type: space, id: x, size: {{min: 16, step: 4}}}}]\n    preprocessing: []\noutputs:\n  - id: p\n    axes: [{{type: batch}}, {{type: channel, channel_names: [fg]}}, {{type: space, id: y, size: {{tensor_id: raw, axis_id: y}}}}, {{type: space, id: x, size: {{tensor_id: raw, axis_id: x}}}}]\nweights:\n  onnx: {{source: model.onnx{}}}\n",
        sha256.map(|h| format!(", sha256: {h}")).unwrap_or_default()
    )
}

/// A package zip at `path`: the description (`sha256` in it if given), the weights of `onnx`,
/// and `extra` entries (an `rdf.yaml` among them replaces the description).
fn package_zip(path: &Path, onnx: &Path, extra: &[(&str, &[u8])], sha256: Option<&str>) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    let rdf = package_rdf(sha256);
    let mut entries: Vec<(&str, Vec<u8>)> = vec![("model.onnx", std::fs::read(onnx).unwrap())];
    if !extra.iter().any(|(n, _)| *n == "rdf.yaml") {
        entries.push(("rdf.yaml", rdf.into_bytes()));
    }
    entries.extend(extra.iter().map(|(n, b)| (*n, b.to_vec())));
    for (name, bytes) in entries {
        z.start_file(name, options).unwrap();
        z.write_all(&bytes).unwrap();
    }
    z.finish().unwrap();
}

fn predict_cmd(model: &Path, input: &Path, output: &Path) -> Command {
    let mut cmd = bioseg();
    cmd.args(["-q", "predict", "-m", s(model), "-i", s(input), "-o", s(output)]);
    cmd
}

/// One case: builds its inputs inside its folder and returns the command and the words its
/// error line must contain.
/// Builds a case's command and the words its error must contain.
type CaseFn = Box<dyn Fn(&Path, &Fixtures) -> (Command, Vec<String>)>;
type Case = (&'static str, CaseFn);

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

fn cases() -> Vec<Case> {
    let mut c: Vec<Case> = Vec::new();
    let mut add = |name: &'static str, f: CaseFn| c.push((name, f));

    // ---- bioseg predict: inputs ----
    add(
        "predict: missing input",
        Box::new(|d, f| (predict_cmd(&f.unet, &d.join("missing.png"), &d.join("out.png")), words(&["missing.png"]))),
    );
    add(
        "predict: missing model",
        Box::new(|d, f| (predict_cmd(&d.join("nomodel.onnx"), &f.png, &d.join("out.png")), words(&["nomodel.onnx"]))),
    );
    add(
        "predict: corrupt PNG",
        Box::new(|d, f| {
            let p = d.join("corrupt.png");
            let mut bytes = std::fs::read(&f.png).unwrap();
            for b in bytes.iter_mut().skip(40).step_by(7) {
                *b ^= 0x5a;
            }
            std::fs::write(&p, bytes).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["corrupt.png"]))
        }),
    );
    add(
        "predict: truncated PNG",
        Box::new(|d, f| {
            let p = d.join("truncated.png");
            let bytes = std::fs::read(&f.png).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() * 3 / 5]).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["truncated.png"]))
        }),
    );
    add(
        "predict: truncated TIFF",
        Box::new(|d, f| {
            let p = d.join("truncated.tif");
            let bytes = std::fs::read(&f.tif).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["truncated.tif"]))
        }),
    );
    add(
        "predict: text file named .png",
        Box::new(|d, f| {
            let p = d.join("notes.png");
            std::fs::write(&p, "slice 12: check the membranes\n").unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["notes.png"]))
        }),
    );
    add(
        "predict: zero-sized image",
        Box::new(|d, f| {
            let p = d.join("zero.png");
            std::fs::write(&p, png_header_only(0, 16)).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["zero.png"]))
        }),
    );
    add(
        "predict: absurd dimensions",
        Box::new(|d, f| {
            let p = d.join("huge.png");
            std::fs::write(&p, png_header_only(100_000, 100_000)).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["huge.png"]))
        }),
    );
    add(
        "predict: NaN in a float image",
        Box::new(|d, f| {
            let p = d.join("nan.tif");
            let mut v: Vec<f32> = pattern(96, 80, 2).into_iter().map(f32::from).collect();
            v[1234] = f32::NAN;
            v[2000] = f32::INFINITY;
            bioseg_data::write_gray_f32_tiff(&p, 96, 80, &v).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["nan.tif", "NaN"]))
        }),
    );
    add(
        "predict: truncated volume",
        Box::new(|d, f| {
            let p = d.join("stack_cut.tif");
            let bytes = std::fs::read(&f.stack).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.zarr")), words(&["stack_cut.tif"]))
        }),
    );
    add(
        "predict: Zarr with corrupt metadata",
        Box::new(|d, f| {
            let z = d.join("vol.zarr");
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("zarr.json"), "{\"zarr_format\": 3, \"node_type\": \"array\", ").unwrap();
            (predict_cmd(&f.unet, &z, &d.join("out.zarr")), words(&["vol.zarr"]))
        }),
    );
    add(
        "predict: empty slice folder",
        Box::new(|d, f| {
            let z = d.join("slices");
            std::fs::create_dir_all(&z).unwrap();
            (predict_cmd(&f.unet, &z, &d.join("out.zarr")), words(&["slices"]))
        }),
    );

    // ---- bioseg predict: models ----
    add(
        "predict: garbage ONNX",
        Box::new(|d, f| {
            let m = d.join("garbage.onnx");
            std::fs::write(&m, b"\x08\x07\xff\xff\xff\xff this is not a model").unwrap();
            (predict_cmd(&m, &f.png, &d.join("out.png")), words(&["garbage.onnx"]))
        }),
    );
    add(
        "predict: empty ONNX file",
        Box::new(|d, f| {
            let m = d.join("empty.onnx");
            std::fs::write(&m, b"").unwrap();
            (predict_cmd(&m, &f.png, &d.join("out.png")), words(&["empty.onnx"]))
        }),
    );
    add(
        "predict: ONNX with a non-image input",
        Box::new(|d, f| (predict_cmd(&f.vector, &f.png, &d.join("out.png")), words(&["vector.onnx", "rank"]))),
    );
    add(
        "predict: ONNX with an op tract lacks",
        Box::new(|d, f| {
            (predict_cmd(&f.unknown_op, &f.png, &d.join("out.png")), words(&["unknown_op.onnx", "FrobnicateMembranes"]))
        }),
    );
    add(
        "predict: model/data channel mismatch",
        Box::new(|d, f| {
            let p = d.join("rgb.png");
            bioseg_data::write_rgb_u8_png(&p, 32, 32, &pattern(96, 32, 3)).unwrap();
            (predict_cmd(&f.unet, &p, &d.join("out.png")), words(&["rgb.png", "channel"]))
        }),
    );
    add(
        "predict: gray image into an RGB model",
        Box::new(|d, f| (predict_cmd(&f.unet_rgb, &f.png, &d.join("out.png")), words(&["image.png", "channel"]))),
    );

    // ---- bioseg predict: outputs and options ----
    add(
        "predict: existing output without --overwrite",
        Box::new(|d, f| {
            let out = d.join("out.png");
            std::fs::write(&out, b"yesterday's result").unwrap();
            (predict_cmd(&f.unet, &f.png, &out), words(&["out.png", "--overwrite"]))
        }),
    );
    add(
        "predict: output folder is a file",
        Box::new(|d, f| {
            let parent = d.join("results.txt");
            std::fs::write(&parent, b"not a folder").unwrap();
            (predict_cmd(&f.unet, &f.png, &parent.join("out.png")), words(&["results.txt"]))
        }),
    );
    add(
        "predict: output extension unknown",
        Box::new(|d, f| (predict_cmd(&f.unet, &f.png, &d.join("out.jpeg")), words(&["out.jpeg"]))),
    );
    add(
        "predict: --tile 0",
        Box::new(|d, f| {
            let mut cmd = predict_cmd(&f.unet, &f.png, &d.join("out.png"));
            cmd.args(["--tile", "0"]);
            (cmd, words(&["--tile"]))
        }),
    );
    add(
        "predict: --shard 5/3",
        Box::new(|d, f| {
            let mut cmd = predict_cmd(&f.unet, &f.stack, &d.join("out.zarr"));
            cmd.args(["--shard", "5/3"]);
            (cmd, words(&["5/3"]))
        }),
    );
    add(
        "predict: --resume with --overwrite",
        Box::new(|d, f| {
            let mut cmd = predict_cmd(&f.unet, &f.stack, &d.join("out.zarr"));
            cmd.args(["--resume", "--overwrite"]);
            (cmd, words(&["--resume", "--overwrite"]))
        }),
    );
    add(
        "predict: --threshold outside 0..1",
        Box::new(|d, f| {
            let mut cmd = predict_cmd(&f.unet, &f.png, &d.join("out.png"));
            cmd.args(["--output-type", "mask", "--threshold", "1.5"]);
            (cmd, words(&["--threshold", "1.5"]))
        }),
    );

    // ---- bioseg evaluate / visualize / run ----
    add(
        "evaluate: prediction and label sizes differ",
        Box::new(|d, f| {
            let label = d.join("label.png");
            bioseg_data::write_gray_u8_png(&label, 64, 64, &pattern(64, 64, 4)).unwrap();
            let mut cmd = bioseg();
            cmd.args(["evaluate", "--pred", s(&f.png), "--label", s(&label)]);
            (cmd, words(&["label.png", "96"]))
        }),
    );
    add(
        "evaluate: empty prediction folder",
        Box::new(|d, f| {
            let pred = d.join("pred");
            std::fs::create_dir_all(&pred).unwrap();
            let labels = d.join("labels");
            std::fs::create_dir_all(&labels).unwrap();
            std::fs::copy(&f.png, labels.join("0.png")).unwrap();
            let mut cmd = bioseg();
            cmd.args(["evaluate", "--pred", s(&pred), "--label", s(&labels)]);
            (cmd, words(&["pred"]))
        }),
    );
    add(
        "visualize: missing image",
        Box::new(|d, f| {
            let mut cmd = bioseg();
            cmd.args([
                "visualize",
                "--image",
                s(&d.join("nothere.png")),
                "--pred",
                s(&f.png),
                "-o",
                s(&d.join("v.png")),
            ]);
            (cmd, words(&["nothere.png"]))
        }),
    );
    add(
        "run: tensor with the wrong width",
        Box::new(|d, f| {
            let x = d.join("x.csv");
            std::fs::write(&x, "0.1,0.2,0.3\n0.4,0.5,0.6\n").unwrap();
            let mut cmd = bioseg();
            cmd.args(["run", "-m", s(&f.vector), "--input", s(&x)]);
            (cmd, words(&["vector.onnx"]))
        }),
    );

    // ---- bioseg-train ----
    add(
        "train: missing data folder",
        Box::new(|d, _| (train_cmd(&d.join("nodata"), &d.join("run"), &[]), words(&["nodata"]))),
    );
    add(
        "train: empty image folder",
        Box::new(|d, _| {
            let data = d.join("data");
            std::fs::create_dir_all(data.join("membrane/train/image")).unwrap();
            std::fs::create_dir_all(data.join("membrane/train/label")).unwrap();
            (train_cmd(&data, &d.join("run"), &[]), words(&["image"]))
        }),
    );
    add(
        "train: image/label count mismatch",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            std::fs::remove_file(data.join("membrane/train/label/2.png")).unwrap();
            (train_cmd(&data, &d.join("run"), &[]), words(&["2.png"]))
        }),
    );
    add(
        "train: image/label size mismatch",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let label = data.join("membrane/train/label/1.png");
            bioseg_data::write_gray_u8_png(&label, 48, 64, &vec![255; 48 * 64]).unwrap();
            (train_cmd(&data, &d.join("run"), &[]), words(&["1.png", "48"]))
        }),
    );
    add(
        "train: label values outside the classes",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let label = data.join("membrane/train/label/0.png");
            let v: Vec<u8> = (0..64 * 64).map(|i| [0u8, 90, 170, 255][i % 4]).collect();
            bioseg_data::write_gray_u8_png(&label, 64, 64, &v).unwrap();
            let cmd = train_cmd(&data, &d.join("run"), &[("--class-names", "background,membrane")]);
            (cmd, words(&["membrane/train", "4 classes"]))
        }),
    );
    add(
        "train: corrupt training image",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let p = data.join("membrane/train/image/3.png");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            (train_cmd(&data, &d.join("run"), &[]), words(&["3.png"]))
        }),
    );
    add(
        "train: NaN in a float training image",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let dir = data.join("membrane/train/image");
            std::fs::remove_file(dir.join("1.png")).unwrap();
            let mut v = vec![0.5f32; 64 * 64];
            v[77] = f32::NAN;
            bioseg_data::write_gray_f32_tiff(dir.join("1.tif"), 64, 64, &v).unwrap();
            (train_cmd(&data, &d.join("run"), &[]), words(&["1.tif", "NaN"]))
        }),
    );
    add(
        "train: crop larger than the images",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("-X", "128")]);
            (cmd, words(&["128x64", "larger than image"]))
        }),
    );
    add(
        "train: crop not a multiple of 2^depth",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("-Y", "62")]);
            (cmd, words(&["62"]))
        }),
    );
    add(
        "train: wrong channel count",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("--in-channels", "2")]);
            (cmd, words(&["--in-channels"]))
        }),
    );
    add(
        "train: --val-names of a missing image",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("--val-names", "2,17")]);
            (cmd, words(&["17"]))
        }),
    );
    add(
        "train: output folder is a file",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let out = d.join("run");
            std::fs::write(&out, b"a file").unwrap();
            (train_cmd(&data, &out, &[]), words(&["run"]))
        }),
    );
    add(
        "train: --load-weights of a missing checkpoint",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("-w", s(&d.join("nockpt")))]);
            (cmd, words(&["nockpt"]))
        }),
    );
    add(
        "train: truncated checkpoint",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let run = d.join("run");
            let out = train_cmd(&data, &run, &[]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let ckpt = run.join("checkpoints/epoch-000001");
            let file = std::fs::read_dir(&ckpt)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "mpk"))
                .max_by_key(|p| std::fs::metadata(p).unwrap().len())
                .expect("a .mpk file in the checkpoint");
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            let cmd = train_cmd(&data, &run, &[("-e", "2"), ("-w", s(&ckpt))]);
            (cmd, vec![name])
        }),
    );
    add(
        "train: conflicting -g and --devices",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("-g", "2"), ("--devices", "0,1")]);
            (cmd, words(&["--devices", "--num-gpus"]))
        }),
    );
    add(
        "train: conflicting --load-weights and --init-from",
        Box::new(|d, _| {
            let data = dataset(d, 4);
            let cmd = train_cmd(&data, &d.join("run"), &[("-w", "ckpt"), ("--init-from", "keras.onnx")]);
            (cmd, words(&["--load-weights", "--init-from"]))
        }),
    );
    // ---- BioImage Model Zoo packages from strangers ----
    add(
        "predict: package with an entry outside it",
        Box::new(|d, f| {
            let p = d.join("evil.zip");
            package_zip(&p, &f.unet, &[("../evil.onnx", b"x")], None);
            (predict_cmd(&p, &f.png, &d.join("out.png")), words(&["evil.zip", "outside the package"]))
        }),
    );
    add(
        "predict: package whose weights differ from their sha256",
        Box::new(|d, f| {
            let p = d.join("tampered.zip");
            package_zip(&p, &f.unet, &[], Some(&"f".repeat(64)));
            (predict_cmd(&p, &f.png, &d.join("out.png")), words(&["tampered.zip", "model.onnx has sha256"]))
        }),
    );
    add(
        "predict: package description nested too deep",
        Box::new(|d, f| {
            let p = d.join("deep.zip");
            let text = format!("type: model\nname: {}x{}\n", "[".repeat(100), "]".repeat(100));
            package_zip(&p, &f.unet, &[("rdf.yaml", text.as_bytes())], None);
            (predict_cmd(&p, &f.png, &d.join("out.png")), words(&["deep.zip", "rdf.yaml"]))
        }),
    );
    add(
        "predict: package preprocessing bioseg cannot run",
        Box::new(|d, f| {
            let p = d.join("clip.zip");
            let text =
                package_rdf(None).replace("preprocessing: []", "preprocessing: [{id: clip, kwargs: {min: 0, max: 1}}]");
            package_zip(&p, &f.unet, &[("rdf.yaml", text.as_bytes())], None);
            (
                predict_cmd(&p, &f.png, &d.join("out.png")),
                words(&["clip.zip", "preprocessing step clip is not supported"]),
            )
        }),
    );
    add(
        "inspect --test: package without test tensors",
        Box::new(|d, f| {
            let p = d.join("untested.zip");
            package_zip(&p, &f.unet, &[], None);
            let mut cmd = bioseg();
            cmd.args(["inspect", "-m", s(&p), "--test"]);
            (cmd, words(&["untested.zip", "no test tensors"]))
        }),
    );
    add(
        "export: package without a sample image",
        Box::new(|d, f| {
            let mut cmd = bioseg_train();
            cmd.args(["export", "--model", s(&f.unet), "--bioimageio", s(&d.join("p.zip"))]);
            (cmd, words(&["p.zip", "--sample"]))
        }),
    );
    add(
        "export: missing checkpoint",
        Box::new(|d, _| {
            let mut cmd = bioseg_train();
            cmd.args(["export", "--checkpoint", s(&d.join("gone")), "--onnx", s(&d.join("m.onnx"))]);
            (cmd, words(&["gone"]))
        }),
    );
    c
}

/// Runs one case; returns what went wrong, if anything.
fn check(name: &str, dir: &Path, mut cmd: Command, needles: &[String]) -> Result<String, String> {
    let before = snapshot(dir);
    let out = cmd.env("RUST_BACKTRACE", "1").output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fail = |why: &str| Err(format!("[{name}] {why}\n  command: {cmd:?}\n  stderr:\n{stderr}"));
    if out.status.success() {
        return fail("succeeded");
    }
    if out.status.code() == Some(101) || stderr.contains("panicked") || stderr.contains("stack backtrace") {
        return fail("panicked");
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    if errors.len() != 1 {
        return fail("expected exactly one `error:` line");
    }
    for n in needles {
        if !errors[0].contains(n.as_str()) {
            return fail(&format!("the error line does not mention `{n}`"));
        }
    }
    let after = snapshot(dir);
    if before != after {
        let changed: Vec<_> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
        return fail(&format!("the folder changed: {changed:?}"));
    }
    Ok(errors[0].to_string())
}

#[test]
fn every_bad_input_fails_with_one_clean_line_and_leaves_files_untouched() {
    let root = tempfile::tempdir().unwrap();
    let f = fixtures(&root.path().join("fixtures"));
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (i, (name, case)) in cases.iter().enumerate() {
        let dir = root.path().join(format!("case-{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (cmd, needles) = case(&dir, &f);
        match check(name, &dir, cmd, &needles) {
            Ok(line) => eprintln!("{name:<48} {line}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

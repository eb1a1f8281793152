//! Tests of the volume readers and writers.

use std::fs::File;
use std::io::BufWriter;

use ::tiff::encoder::{TiffEncoder, colortype};
use ndarray::s;
use rayon::prelude::*;
use serde_json::{Value, json};

use super::*;

fn ramp(z: usize, y: usize, x: usize) -> Vec<Vec<u8>> {
    (0..z).map(|k| (0..y * x).map(|i| ((i * 7 + k * 31) % 251) as u8).collect()).collect()
}

fn expect_slab(r: &dyn VolumeReader, pages: &[Vec<u8>], w: usize, z: Range<usize>, y: Range<usize>, x: Range<usize>) {
    let a = r.read_slab(z.clone(), y.clone(), x.clone()).unwrap();
    assert_eq!(a.dim(), (z.len(), y.len(), x.len(), 1));
    for (i, zz) in z.enumerate() {
        for (j, yy) in y.clone().enumerate() {
            for (k, xx) in x.clone().enumerate() {
                assert_eq!(a[[i, j, k, 0]], f32::from(pages[zz][yy * w + xx]), "at {zz},{yy},{xx}");
            }
        }
    }
}

#[test]
fn tiff_stack_round_trip_reads_only_what_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.tif");
    let pages = ramp(5, 300, 70);
    let mut w = TiffStackWriter::create(&p, 70, 300, 5, VolumeDType::U8, false).unwrap();
    for pg in &pages {
        w.write_page(pg).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(tiff_page_count(&p).unwrap(), 5);
    assert_eq!(detect_volume_format(&p).unwrap(), VolumeFormat::Tiff);
    let v = open_volume(&p, None).unwrap();
    assert_eq!(v.info().shape, [5, 300, 70]);
    assert_eq!(v.info().depth, SampleDepth::U8);
    expect_slab(v.as_ref(), &pages, 70, 1..4, 37..250, 5..61);
    expect_slab(v.as_ref(), &pages, 70, 0..5, 0..300, 0..70);
    assert!(v.read_slab(0..6, 0..1, 0..1).is_err());
    assert!(v.read_slab(2..2, 0..1, 0..1).is_err());
    // Existing files are kept without overwrite.
    assert!(matches!(
        TiffStackWriter::create(&p, 70, 300, 5, VolumeDType::U8, false),
        Err(DataError::OutputExists { .. })
    ));
    // An unfinished writer leaves nothing behind.
    let q = dir.path().join("partial.tif");
    let mut w = TiffStackWriter::create(&q, 70, 300, 5, VolumeDType::U8, false).unwrap();
    w.write_page(&pages[0]).unwrap();
    assert!(w.finish().is_err());
    assert!(!q.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn bigtiff_and_tiled_pages_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.tif");
    let pages: Vec<Vec<f32>> = (0..3).map(|k| (0..40 * 30).map(|i| (i + k * 1000) as f32 * 0.5).collect()).collect();
    {
        let f = File::create(&p).unwrap();
        let mut enc = TiffEncoder::new_big(BufWriter::new(f)).unwrap();
        for pg in &pages {
            enc.write_image::<colortype::Gray32Float>(40, 30, pg).unwrap();
        }
    }
    let v = open_volume(&p, None).unwrap();
    assert_eq!(v.info().shape, [3, 30, 40]);
    assert_eq!(v.info().depth, SampleDepth::F32);
    let a = v.read_slab(1..3, 10..20, 3..9).unwrap();
    assert_eq!(a[[1, 2, 3, 0]], pages[2][12 * 40 + 6]);
}

#[test]
fn slice_folder_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let pages = ramp(11, 20, 30);
    let out = SliceFolderWriter::create(dir.path().join("s"), VolumeDType::U8).unwrap();
    for (z, pg) in pages.iter().enumerate() {
        // Names without padding: natural order must still put 2 before 10.
        crate::write_gray_u8_png(out.dir().join(format!("slice{z}.png")), 30, 20, pg).unwrap();
    }
    let v = open_volume(out.dir(), None).unwrap();
    assert_eq!(v.info().format, VolumeFormat::Slices);
    assert_eq!(v.info().shape, [11, 20, 30]);
    expect_slab(v.as_ref(), &pages, 30, 1..11, 3..17, 0..30);
    assert_eq!(out.slice_path(7, None).file_name().unwrap(), "00007.png");
    assert_eq!(out.slice_path(7, Some(1)).file_name().unwrap(), "00007_c1.png");
}

fn spec(channels: Option<usize>, identity: Value) -> ZarrVolumeSpec {
    ZarrVolumeSpec {
        shape: [5, 40, 70],
        channels,
        chunks: [2, 16, 32],
        dtype: VolumeDType::U8,
        origin: [3, 0, 0],
        name: "test".into(),
        identity,
        planar: false,
        channel_labels: vec![],
    }
}

#[test]
fn zarr_v3_writer_round_trip_join_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.zarr");
    let data = Array4::from_shape_fn((2, 5, 40, 70), |(c, z, y, x)| ((c * 97 + z * 13 + y * 3 + x) % 256) as u8);
    let (w, created) = ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::New).unwrap();
    assert!(created);
    assert_eq!(w.chunk_grid(), [3, 3, 3]);
    // Two z-slabs of chunks, the second (ending at the array's end) written twice.
    let r = w.write_region([0, 0, 0], data.slice(s![.., 0..2, .., ..]), true).unwrap();
    assert_eq!(r, RegionWrite { written: 9, skipped: 0 });
    assert!(w.chunk_exists([0, 2, 2]) && !w.chunk_exists([1, 0, 0]));
    w.write_region([2, 0, 0], data.slice(s![.., 2..5, .., ..]), true).unwrap();
    let r = w.write_region([4, 0, 0], data.slice(s![.., 4..5, .., ..]), true).unwrap();
    assert_eq!(r, RegionWrite { written: 0, skipped: 9 });
    assert!(w.write_region([1, 0, 0], data.slice(s![.., 1..2, .., ..]), true).is_err());
    // No temporary files are left in the store.
    let mut stack = vec![p.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            assert!(!e.file_name().to_string_lossy().starts_with('.'), "{:?}", e.path());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    // Read back through the OME-Zarr group.
    let v = open_volume(&p, None).unwrap();
    assert_eq!(v.info().shape, [5, 40, 70]);
    assert_eq!(v.info().channels, 2);
    assert_eq!(v.info().chunks, [2, 16, 32]);
    let a = v.read_slab(1..5, 3..39, 10..70).unwrap();
    for (i, j, k, c) in [(0, 0, 0, 0), (3, 35, 59, 1), (2, 17, 33, 0)] {
        assert_eq!(a[[i, j, k, c]], f32::from(data[[c, i + 1, j + 3, k + 10]]));
    }
    // The metadata: OME 0.5 with a translation, identity kept.
    let g: Value = serde_json::from_slice(&std::fs::read(p.join("zarr.json")).unwrap()).unwrap();
    assert_eq!(g["attributes"]["ome"]["version"], "0.5");
    assert_eq!(
        g["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"],
        json!([0.0, 3.0, 0.0, 0.0])
    );
    // New refuses, Join accepts the same spec and refuses another.
    assert!(matches!(
        ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::New),
        Err(DataError::OutputExists { .. })
    ));
    let (_, created) = ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::Join).unwrap();
    assert!(!created);
    let e = ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "b"})), CreateMode::Join).unwrap_err();
    assert!(matches!(e, DataError::IncompatibleOutput { .. }), "{e}");
    assert!(e.to_string().contains("model"), "{e}");
    let e = ZarrVolumeWriter::create(&p, spec(None, json!({"model": "a"})), CreateMode::Join).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    // Overwrite replaces the store with an empty one.
    let (w, created) = ZarrVolumeWriter::create(&p, spec(None, json!({"model": "b"})), CreateMode::Overwrite).unwrap();
    assert!(created && !w.chunk_exists([0, 0, 0]));
    // Overwrite never deletes a folder that is not a store.
    let not_zarr = dir.path().join("data");
    std::fs::create_dir(&not_zarr).unwrap();
    std::fs::write(not_zarr.join("keep.txt"), b"x").unwrap();
    assert!(ZarrVolumeWriter::create(&not_zarr, spec(None, json!(1)), CreateMode::Overwrite).is_err());
    assert!(not_zarr.join("keep.txt").exists());
}

#[test]
fn racing_creators_agree_on_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("race.zarr");
    let created: Vec<bool> = (0..8)
        .into_par_iter()
        .map(|_| ZarrVolumeWriter::create(&p, spec(None, json!({"k": 1})), CreateMode::Join).unwrap().1)
        .collect();
    assert_eq!(created.iter().filter(|&&c| c).count(), 1);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn zarr_v2_array_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v2.zarr");
    std::fs::create_dir(&p).unwrap();
    let (z, y, x) = (3usize, 5usize, 7usize);
    let zarray = json!({
        "zarr_format": 2, "shape": [z, y, x], "chunks": [2, 4, 4], "dtype": "<u2",
        "compressor": null, "fill_value": 0, "order": "C", "filters": null
    });
    std::fs::write(p.join(".zarray"), serde_json::to_vec(&zarray).unwrap()).unwrap();
    let value = |zz: usize, yy: usize, xx: usize| (zz * 1000 + yy * 10 + xx) as u16;
    for iz in 0..2 {
        for iy in 0..2 {
            for ix in 0..2 {
                let mut bytes = Vec::new();
                for a in 0..2 {
                    for b in 0..4 {
                        for c in 0..4 {
                            let (zz, yy, xx) = (iz * 2 + a, iy * 4 + b, ix * 4 + c);
                            let v = if zz < z && yy < y && xx < x { value(zz, yy, xx) } else { 0 };
                            bytes.extend(v.to_le_bytes());
                        }
                    }
                }
                std::fs::write(p.join(format!("{iz}.{iy}.{ix}")), bytes).unwrap();
            }
        }
    }
    let v = open_volume(&p, None).unwrap();
    assert_eq!(v.info().shape, [3, 5, 7]);
    assert_eq!(v.info().depth, SampleDepth::U16);
    let a = v.read_slab(1..3, 2..5, 3..7).unwrap();
    assert_eq!(a[[1, 2, 3, 0]], f32::from(value(2, 4, 6)));
    assert_eq!(a[[0, 0, 0, 0]], f32::from(value(1, 2, 3)));
}

#[test]
fn detection_and_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_volume(dir.path().join("missing.tif"), None).unwrap_err();
    assert!(e.to_string().contains("missing.tif"), "{e}");
    let f = dir.path().join("v.npy");
    std::fs::write(&f, b"x").unwrap();
    assert!(matches!(detect_volume_format(&f), Err(DataError::UnsupportedFormat { .. })));
    let z = dir.path().join("empty.zarr");
    std::fs::create_dir(&z).unwrap();
    assert_eq!(detect_volume_format(&z).unwrap(), VolumeFormat::Zarr);
    let e = open_volume(&z, None).unwrap_err();
    assert!(e.to_string().contains("not a Zarr store"), "{e}");
    assert_eq!("slices".parse::<VolumeFormat>().unwrap(), VolumeFormat::Slices);
    assert!("png".parse::<VolumeFormat>().is_err());
}

//! Writes a synthetic dataset and reads it back through the dataset layer.

use bioseg_data::{
    MaskEncoding, SegmentationDataset, SynthParams, generate, read_image, segmentation_scores, write_dataset,
};

fn params() -> SynthParams {
    SynthParams { width: 96, height: 64, mito_per_cell: 1.0, ..SynthParams::default() }
}

#[test]
fn write_dataset_round_trips() {
    let out = tempfile::tempdir().unwrap();
    write_dataset(out.path(), 3, 2, &params(), 42).unwrap();

    let membrane = SegmentationDataset::open(out.path(), "membrane", "train").unwrap();
    let mito = SegmentationDataset::open(out.path(), "mito", "train").unwrap();
    let multi = SegmentationDataset::open(out.path(), "multiclass", "train").unwrap();
    assert_eq!(membrane.len(), 3);
    assert_eq!(membrane.encoding(), &MaskEncoding::Binary { max: 255.0 });
    assert_eq!(mito.encoding(), &MaskEncoding::Binary { max: 255.0 });
    assert_eq!(multi.encoding(), &MaskEncoding::Indexed { num_classes: 3 });
    let test = SegmentationDataset::open(out.path(), "multiclass", "test").unwrap();
    assert_eq!(test.len(), 2);

    for i in 0..3 {
        let (img_a, mem) = membrane.load_pair(i).unwrap();
        let (img_b, mi) = mito.load_pair(i).unwrap();
        let (img_c, mc) = multi.load_pair(i).unwrap();
        assert_eq!(img_a, img_b);
        assert_eq!(img_a, img_c);
        assert_eq!(img_a.data.dim(), (64, 96, 1));
        for ((&m, &t), &c) in mem.classes.iter().zip(&mi.classes).zip(&mc.classes) {
            // membrane class 0 = membrane; mito class 1 = mitochondrion.
            assert_eq!(m == 0, c == 1);
            assert_eq!(t == 1, c == 2);
        }
        // Labels are their own perfect prediction.
        let s = segmentation_scores(mc.classes.view(), mc.classes.view(), 3).unwrap();
        assert_eq!(s.pixel_error, 0.0);
        assert_eq!(s.mean_dice(), 1.0);
    }

    // Train and test samples differ.
    let a = read_image(out.path().join("membrane/train/image/0.png")).unwrap();
    let b = read_image(out.path().join("membrane/test/image/0.png")).unwrap();
    assert_ne!(a, b);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(out.path().join("mito/train/label"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn same_seed_same_dataset() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_dataset(a.path(), 2, 0, &params(), 5).unwrap();
    write_dataset(b.path(), 2, 0, &params(), 5).unwrap();
    for f in ["membrane/train/image/1.png", "multiclass/train/label/1.png"] {
        assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
    }
}

#[test]
fn write_dataset_into_a_file_fails_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("occupied");
    std::fs::write(&file, b"").unwrap();
    let err = write_dataset(&file, 1, 1, &params(), 0).unwrap_err();
    assert!(err.to_string().contains("occupied"), "{err}");
}

#[test]
fn large_images_can_be_generated() {
    let p = SynthParams { width: 2048, height: 1024, ..SynthParams::default() };
    let s = generate(&p, 1).unwrap();
    assert_eq!(s.image.dim(), (1024, 2048));
    assert!(s.classes.iter().any(|&c| c == 2));
}

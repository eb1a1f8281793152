//! Opens the real ISBI 2012 data (skipped, with a note, where it is absent).

use bioseg_data::{MaskEncoding, SampleDepth, SegmentationDataset, isbi2012_dir, list_images};

#[test]
fn isbi_membrane_train_has_25_binary_pairs() {
    let dir = isbi2012_dir();
    if !dir.join("membrane/train").is_dir() {
        eprintln!(
            "note: skipping the ISBI 2012 test: {} not found (set BIOSEG_ISBI2012)",
            dir.join("membrane/train").display()
        );
        return;
    }
    let ds = SegmentationDataset::open(&dir, "membrane", "train").expect("open ISBI membrane/train");
    assert_eq!(ds.len(), 25);
    let names: Vec<&str> = ds.pairs().iter().map(|p| p.name.as_str()).collect();
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(names, expected, "natural order");
    assert_eq!(ds.encoding(), &MaskEncoding::Binary { max: 255.0 });
    assert_eq!(ds.num_classes(), 2);
    for i in 0..ds.len() {
        assert_eq!(ds.size(i).unwrap(), (512, 512));
    }
    // Class 1 (value 255) is the cell interior, the majority of pixels.
    let freq = ds.class_frequencies();
    assert_eq!(freq.iter().sum::<u64>(), 25 * 512 * 512);
    assert!(freq[1] > freq[0] * 2, "{freq:?}");
    let w = ds.class_weights();
    assert!(w[0] > w[1]);

    let (image, mask) = ds.load_pair(0).unwrap();
    assert_eq!(image.depth, SampleDepth::U8);
    assert_eq!(image.data.dim(), (512, 512, 1));
    assert_eq!(mask.classes.dim(), (512, 512));
    assert!(mask.classes.iter().all(|&c| c <= 1));
    let last = ds.load_pair(24).unwrap();
    assert_eq!(last.1.num_classes, 2);

    let test_images = list_images(dir.join("membrane/test/image")).unwrap();
    assert_eq!(test_images.len(), 30);
}

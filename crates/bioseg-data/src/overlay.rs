//! Colour overlays of label maps on gray images (for `visualize` and the demo).

use ndarray::{Array3, ArrayView2};

/// Colour of class `c` (class 0 is drawn transparent by [`overlay_labels`]).
pub fn class_color(c: u8) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 8] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ];
    PALETTE[c as usize % PALETTE.len()]
}

/// RGB image `[H, W, 3]`: the gray `image` with every pixel of class ≥ 1 blended with its
/// class colour at opacity `alpha`. Shapes should match; pixels outside `labels` are
/// drawn as background (no panic).
pub fn overlay_labels(image: &ArrayView2<u8>, labels: &ArrayView2<u8>, alpha: f32) -> Array3<u8> {
    let (h, w) = image.dim();
    let a = alpha.clamp(0.0, 1.0);
    Array3::from_shape_fn((h, w, 3), |(y, x, k)| {
        let g = image[[y, x]] as f32;
        let c = labels.get([y, x]).copied().unwrap_or(0);
        if c == 0 { g as u8 } else { ((1.0 - a) * g + a * class_color(c)[k] as f32).round() as u8 }
    })
}

/// RGB error map `[H, W, 3]`: the gray image with false positives (predicted foreground, true
/// background) in magenta, false negatives (missed foreground) in green and other
/// confusions in amber. Pixels outside `pred` or `truth` are drawn as correct (no panic).
pub fn error_map(image: &ArrayView2<u8>, pred: &ArrayView2<u8>, truth: &ArrayView2<u8>, alpha: f32) -> Array3<u8> {
    let (h, w) = image.dim();
    let a = alpha.clamp(0.0, 1.0);
    Array3::from_shape_fn((h, w, 3), |(y, x, k)| {
        let g = image[[y, x]] as f32;
        let (p, t) = match (pred.get([y, x]), truth.get([y, x])) {
            (Some(&p), Some(&t)) => (p, t),
            _ => (0, 0),
        };
        let color: Option<[u8; 3]> = if p == t {
            None
        } else if t == 0 {
            Some([255, 0, 255])
        } else if p == 0 {
            Some([0, 220, 0])
        } else {
            Some([255, 200, 0])
        };
        match color {
            None => g as u8,
            Some(c) => ((1.0 - a) * g + a * c[k] as f32).round() as u8,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn background_stays_gray_and_classes_are_tinted() {
        let img = array![[100u8, 100], [100, 100]];
        let lab = array![[0u8, 1], [0, 2]];
        let o = overlay_labels(&img.view(), &lab.view(), 1.0);
        assert_eq!(o.slice(ndarray::s![0, 0, ..]).to_vec(), vec![100, 100, 100]);
        assert_eq!(o.slice(ndarray::s![0, 1, ..]).to_vec(), class_color(1).to_vec());
        let e = error_map(&img.view(), &array![[1u8, 0], [0, 0]].view(), &array![[0u8, 1], [0, 0]].view(), 1.0);
        assert_eq!(e.slice(ndarray::s![0, 0, ..]).to_vec(), vec![255, 0, 255]);
        assert_eq!(e.slice(ndarray::s![0, 1, ..]).to_vec(), vec![0, 220, 0]);
    }

    #[test]
    fn mismatched_shapes_do_not_panic() {
        let img = array![[7u8, 7], [7, 7]];
        let small = array![[1u8]];
        let o = overlay_labels(&img.view(), &small.view(), 1.0);
        assert_eq!(o.slice(ndarray::s![1, 1, ..]).to_vec(), vec![7, 7, 7]);
        let e = error_map(&img.view(), &small.view(), &img.view(), 1.0);
        assert_eq!(e.dim(), (2, 2, 3));
    }
}

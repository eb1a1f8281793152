//! Segmentation (clustering) scores of the ISBI 2012 challenge and of scikit-image, on label
//! images whose values name segments ("cells") rather than classes.
//!
//! A boundary map (membrane probability or label image) becomes a segmentation by
//! [`cells`]: the pixels whose value is above a threshold are cell interior, and every
//! 4-connected component of the interior is one cell (labels 1, 2, …; 0 = boundary).
//! [`class_regions`] does the same for class maps (one segment per 4-connected region of
//! equal class, one class being the boundary).
//!
//! The scores compare a proposed segmentation `S` with the ground truth `T` through their
//! contingency table: `n_ij` = pixels with label `i` in `S` and `j` in `T`
//! ([`ContingencyTable`], sparse).
//!
//! * [`isbi_scores`]: the **foreground-restricted** Rand F-score `V_rand` and information
//!   theoretic score `V_info` of the ISBI 2012 challenge (Arganda-Carreras et al., *Front.
//!   Neuroanat.* 2015). Only pixels that are foreground (label ≠ 0) in the ground truth count;
//!   with `n` of them, `p_ij = n_ij / n`, `s_i = Σ_j p_ij`, `t_j = Σ_i p_ij`. Proposed boundary
//!   pixels (label 0 in `S`) are each their own singleton segment, as in the challenge's
//!   Fiji script. Then
//!   - `V_rand = Σ p_ij² / (α Σ s_i² + (1 − α) Σ t_j²)`, with split score `Σ p_ij² / Σ t_j²`
//!     and merge score `Σ p_ij² / Σ s_i²`;
//!   - `V_info = I(S;T) / ((1 − α) H(S) + α H(T))`, with split score `I / H(S)` and merge
//!     score `I / H(T)` (natural logarithms; the ratio does not depend on the base);
//!
//!   α = 0.5 in the challenge ([`ISBI_ALPHA`]). Both are 1 for a perfect segmentation; higher
//!   is better. The challenge's Rand error is `1 − V_rand`.
//! * [`adapted_rand_error`]: scikit-image's `adapted_rand_error(image_true, image_test)`
//!   (pair counts `Σ n_ij² − N`, pixels whose *true* label is ignored are left out, test
//!   label 0 is an ordinary segment): `(error, precision, recall)`.
//! * [`variation_of_information`]: scikit-image's `variation_of_information(image0, image1)`:
//!   the conditional entropies `(H(image1 | image0), H(image0 | image1))` in bits; with
//!   `image0` the truth these are the false splits and the false merges.
//!
//! Degenerate cases are given values instead of NaN (where scikit-image divides 0 by 0):
//! a score whose numerator and denominator are both 0 is 1 (nothing could be wrong), and a
//! ground truth without foreground gives perfect ISBI scores. Nothing here panics on bad
//! input; arrays of different shapes give [`DataError::ShapeMismatch`] (or
//! [`DataError::InvalidParameter`] for other than 2-D arrays).

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView, ArrayView2, Dimension};

use crate::error::DataError;

/// The α of the ISBI 2012 challenge (split and merge weighted equally).
pub const ISBI_ALPHA: f64 = 0.5;

/// A sparse contingency table of two label images: pixel counts per (row label, column
/// label) pair, with pixels whose row label is ignored left out. Ordered maps: every sum over
/// the table runs in one order, so a score is the same to the last bit on every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContingencyTable {
    counts: BTreeMap<(u32, u32), u64>,
    rows: BTreeMap<u32, u64>,
    cols: BTreeMap<u32, u64>,
    total: u64,
}

impl ContingencyTable {
    /// Counts the pixels of `rows` and `cols` (same shape) by label pair, leaving out the pixels
    /// whose `rows` label is in `ignore_rows`.
    pub fn new<D: Dimension>(
        rows: ArrayView<'_, u32, D>,
        cols: ArrayView<'_, u32, D>,
        ignore_rows: &[u32],
    ) -> Result<Self, DataError> {
        check_shapes(rows.shape(), cols.shape())?;
        let mut t = ContingencyTable::default();
        // Label images have long runs of equal pairs: count runs before touching the maps.
        let mut run: Option<((u32, u32), u64)> = None;
        for (&r, &c) in rows.iter().zip(cols.iter()) {
            if ignore_rows.contains(&r) {
                continue;
            }
            match &mut run {
                Some((pair, n)) if *pair == (r, c) => *n += 1,
                _ => {
                    if let Some((pair, n)) = run.take() {
                        t.add(pair, n);
                    }
                    run = Some(((r, c), 1));
                }
            }
        }
        if let Some((pair, n)) = run {
            t.add(pair, n);
        }
        Ok(t)
    }

    /// Adds `n` pixels to `pair`.
    fn add(&mut self, pair: (u32, u32), n: u64) {
        *self.counts.entry(pair).or_default() += n;
        *self.rows.entry(pair.0).or_default() += n;
        *self.cols.entry(pair.1).or_default() += n;
        self.total += n;
    }

    /// Pixels counted (those not ignored).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Pixels with row label `row` and column label `col`.
    pub fn get(&self, row: u32, col: u32) -> u64 {
        self.counts.get(&(row, col)).copied().unwrap_or(0)
    }

    /// The non-zero cells: `((row label, column label), pixels)`, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = ((u32, u32), u64)> + '_ {
        self.counts.iter().map(|(&k, &v)| (k, v))
    }

    /// Pixels per row label (non-zero only), in no particular order.
    pub fn row_sums(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.rows.iter().map(|(&k, &v)| (k, v))
    }

    /// Pixels per column label (non-zero only), in no particular order.
    pub fn col_sums(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.cols.iter().map(|(&k, &v)| (k, v))
    }
}

/// Errors unless the shapes are equal.
fn check_shapes(a: &[usize], b: &[usize]) -> Result<(), DataError> {
    if a == b {
        return Ok(());
    }
    match (a, b) {
        ([ah, aw], [bh, bw]) => {
            Err(DataError::ShapeMismatch { pred_width: *aw, pred_height: *ah, target_width: *bw, target_height: *bh })
        }
        _ => Err(DataError::param("labels", format!("label images differ in shape: {a:?} and {b:?}"))),
    }
}

/// Labels the 4-connected components of `foreground`: 0 for background pixels, 1, 2, … for
/// the components in the raster order of their first pixel. Returns the labels and the
/// number of components.
pub fn connected_components(foreground: ArrayView2<'_, bool>) -> (Array2<u32>, usize) {
    label_regions(foreground.dim(), |y, x| foreground[[y, x]], |a, b| foreground[a] == foreground[b])
}

/// The ISBI cells of a boundary map: pixels with a value above `threshold` are cell interior
/// (NaN is boundary), and each 4-connected component of the interior is one cell (labels
/// 1, 2, …; 0 = boundary). Returns the labels and the number of cells.
///
/// For ISBI 2012 labels (255 = interior, 0 = membrane) and for interior probabilities,
/// `threshold` is half the maximum.
pub fn cells(map: ArrayView2<'_, f32>, threshold: f32) -> (Array2<u32>, usize) {
    let fg = map.mapv(|v| v > threshold);
    connected_components(fg.view())
}

/// Segments of a class map: each 4-connected region of one class other than `boundary` is a
/// segment (labels 1, 2, …; 0 for the boundary class). Two touching regions of different
/// classes are different segments. For a binary map with `boundary = 0` this is [`cells`].
/// Returns the labels and the number of segments.
pub fn class_regions(classes: ArrayView2<'_, u8>, boundary: u8) -> (Array2<u32>, usize) {
    label_regions(classes.dim(), |y, x| classes[[y, x]] != boundary, |a, b| classes[a] == classes[b])
}

/// Flood-fills the pixels where `inside` holds into regions of 4-neighbours for which `same`
/// holds (an explicit stack, so no recursion depth limit).
fn label_regions(
    (h, w): (usize, usize),
    inside: impl Fn(usize, usize) -> bool,
    same: impl Fn([usize; 2], [usize; 2]) -> bool,
) -> (Array2<u32>, usize) {
    let mut labels = Array2::<u32>::zeros((h, w));
    let mut next = 0u32;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for y0 in 0..h {
        for x0 in 0..w {
            if labels[[y0, x0]] != 0 || !inside(y0, x0) {
                continue;
            }
            next += 1;
            labels[[y0, x0]] = next;
            stack.push((y0, x0));
            while let Some((y, x)) = stack.pop() {
                let neighbours = [(y.wrapping_sub(1), x), (y + 1, x), (y, x.wrapping_sub(1)), (y, x + 1)];
                for (ny, nx) in neighbours {
                    if ny < h && nx < w && labels[[ny, nx]] == 0 && inside(ny, nx) && same([y, x], [ny, nx]) {
                        labels[[ny, nx]] = next;
                        stack.push((ny, nx));
                    }
                }
            }
        }
    }
    (labels, next as usize)
}

/// The ISBI 2012 scores of a proposed segmentation (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IsbiScores {
    /// Foreground-restricted Rand F-score `V_rand` (1 = perfect).
    pub v_rand: f64,
    /// Rand split score `Σ p_ij² / Σ t_j²` (low when cells are split).
    pub v_rand_split: f64,
    /// Rand merge score `Σ p_ij² / Σ s_i²` (low when cells are merged).
    pub v_rand_merge: f64,
    /// Foreground-restricted information theoretic score `V_info` (1 = perfect).
    pub v_info: f64,
    /// Information split score `I(S;T) / H(S)`.
    pub v_info_split: f64,
    /// Information merge score `I(S;T) / H(T)`.
    pub v_info_merge: f64,
}

/// [`isbi_scores_with_alpha`] with the challenge's α = 0.5.
pub fn isbi_scores(proposal: ArrayView2<'_, u32>, truth: ArrayView2<'_, u32>) -> Result<IsbiScores, DataError> {
    isbi_scores_with_alpha(proposal, truth, ISBI_ALPHA)
}

/// The foreground-restricted `V_rand` and `V_info` of the segmentation `proposal` against
/// `truth` (both label images, 0 = boundary), split and merge weighted by `alpha` in 0..=1
/// (see the module documentation).
pub fn isbi_scores_with_alpha(
    proposal: ArrayView2<'_, u32>,
    truth: ArrayView2<'_, u32>,
    alpha: f64,
) -> Result<IsbiScores, DataError> {
    check_alpha(alpha)?;
    // Rows = ground truth (boundary ignored), columns = proposal.
    let table = ContingencyTable::new(truth, proposal, &[0])?;
    let n = table.total();
    if n == 0 {
        return Ok(IsbiScores {
            v_rand: 1.0,
            v_rand_split: 1.0,
            v_rand_merge: 1.0,
            v_info: 1.0,
            v_info_split: 1.0,
            v_info_merge: 1.0,
        });
    }
    let nf = n as f64;
    // Proposed boundary pixels (column 0) are singletons: p = 1/n each.
    let singletons = table.cols.get(&0).copied().unwrap_or(0) as f64;
    let p = |count: u64| count as f64 / nf;
    let plogp = |q: f64| if q > 0.0 { q * q.ln() } else { 0.0 };

    let mut sum_p2 = singletons / (nf * nf);
    let mut sum_plogp = -singletons / nf * nf.ln();
    for ((_, col), count) in table.entries() {
        if col != 0 {
            let q = p(count);
            sum_p2 += q * q;
            sum_plogp += plogp(q);
        }
    }
    let mut sum_s2 = singletons / (nf * nf);
    let mut sum_slogs = -singletons / nf * nf.ln();
    for (col, count) in table.col_sums() {
        if col != 0 {
            let q = p(count);
            sum_s2 += q * q;
            sum_slogs += plogp(q);
        }
    }
    let mut sum_t2 = 0.0;
    let mut sum_tlogt = 0.0;
    for (_, count) in table.row_sums() {
        let q = p(count);
        sum_t2 += q * q;
        sum_tlogt += plogp(q);
    }
    let (h_s, h_t, h_st) = (-sum_slogs, -sum_tlogt, -sum_plogp);
    // Rounding can leave a tiny negative mutual information; it is 0 then.
    let info = (h_s + h_t - h_st).max(0.0);
    Ok(IsbiScores {
        v_rand: ratio(sum_p2, alpha * sum_s2 + (1.0 - alpha) * sum_t2),
        v_rand_split: ratio(sum_p2, sum_t2),
        v_rand_merge: ratio(sum_p2, sum_s2),
        v_info: ratio(info, (1.0 - alpha) * h_s + alpha * h_t),
        v_info_split: ratio(info, h_s),
        v_info_merge: ratio(info, h_t),
    })
}

/// `a / b`, 1 when `b` is 0 (both are 0 then for every score here), clamped to 0..=1 against
/// rounding.
fn ratio(a: f64, b: f64) -> f64 {
    if b <= 0.0 { 1.0 } else { (a / b).clamp(0.0, 1.0) }
}

/// Errors unless `alpha` is within 0..=1.
fn check_alpha(alpha: f64) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(DataError::param("alpha", format!("{alpha} (must be within 0..=1)")))
    }
}

/// scikit-image's adapted Rand error, with its precision and recall.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdaptedRand {
    /// `1 − F`, the adapted Rand error (0 = perfect).
    pub error: f64,
    /// scikit-image's "precision": `(Σ n_ij² − N) / (Σ a_i² − N)`, `a_i` the true segment sizes.
    pub precision: f64,
    /// scikit-image's "recall": `(Σ n_ij² − N) / (Σ b_j² − N)`, `b_j` the test segment sizes.
    pub recall: f64,
}

/// scikit-image's `adapted_rand_error(image_true, image_test, ignore_labels=ignore_labels,
/// alpha=0.5)`: pixels whose *true* label is in `ignore_labels` (scikit-image's default is
/// `[0]`) are left out; every other label, 0 in the test image included, is a segment.
///
/// With `N` pixels counted, true segment sizes `a_i`, test segment sizes `b_j`:
/// `precision = (Σ n_ij² − N) / (Σ a_i² − N)`, `recall = (Σ n_ij² − N) / (Σ b_j² − N)` (the
/// names are scikit-image's), `error = 1 − (Σ n_ij² − N) / (α (Σ a_i² − N) + (1 − α) (Σ b_j² − N))`.
/// A ratio of 0 to 0 (only single-pixel segments, or nothing counted) is taken as 1.
pub fn adapted_rand_error<D: Dimension>(
    image_true: ArrayView<'_, u32, D>,
    image_test: ArrayView<'_, u32, D>,
    ignore_labels: &[u32],
) -> Result<AdaptedRand, DataError> {
    let table = ContingencyTable::new(image_true, image_test, ignore_labels)?;
    let n = table.total() as f64;
    let sq = |c: u64| (c as f64) * (c as f64);
    let sum_p2 = table.entries().map(|(_, c)| sq(c)).sum::<f64>() - n;
    let sum_a2 = table.row_sums().map(|(_, c)| sq(c)).sum::<f64>() - n;
    let sum_b2 = table.col_sums().map(|(_, c)| sq(c)).sum::<f64>() - n;
    let alpha = 0.5;
    let frac = |num: f64, den: f64| if den <= 0.0 { 1.0 } else { num / den };
    Ok(AdaptedRand {
        error: 1.0 - frac(sum_p2, alpha * sum_a2 + (1.0 - alpha) * sum_b2),
        precision: frac(sum_p2, sum_a2),
        recall: frac(sum_p2, sum_b2),
    })
}

/// scikit-image's `variation_of_information(image0, image1, ignore_labels=ignore_labels)`:
/// the conditional entropies `(H(image1 | image0), H(image0 | image1))` in bits, over the
/// pixels whose `image0` label is not in `ignore_labels` (scikit-image's default: none).
/// Their sum is the variation of information; with `image0` the truth, the first is the
/// false-split part and the second the false-merge part. `(0, 0)` when nothing is counted.
pub fn variation_of_information<D: Dimension>(
    image0: ArrayView<'_, u32, D>,
    image1: ArrayView<'_, u32, D>,
    ignore_labels: &[u32],
) -> Result<(f64, f64), DataError> {
    let table = ContingencyTable::new(image0, image1, ignore_labels)?;
    let n = table.total() as f64;
    if n == 0.0 {
        return Ok((0.0, 0.0));
    }
    let (rows, cols) = (&table.rows, &table.cols);
    // H(1|0) = −Σ p_ij log2(p_ij / p_i), H(0|1) = −Σ p_ij log2(p_ij / p_j); p_ij / p_i = n_ij / n_i.
    let mut h1g0 = 0.0;
    let mut h0g1 = 0.0;
    for ((r, c), count) in table.entries() {
        let nij = count as f64;
        let pij = nij / n;
        let ni = rows.get(&r).copied().unwrap_or(count) as f64;
        let nj = cols.get(&c).copied().unwrap_or(count) as f64;
        h1g0 -= pij * (nij / ni).log2();
        h0g1 -= pij * (nij / nj).log2();
    }
    Ok((h1g0.max(0.0), h0g1.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn components_are_four_connected() {
        // Diagonal neighbours are separate cells.
        let fg = array![[true, false, true], [false, true, false], [true, true, false]];
        let (l, n) = connected_components(fg.view());
        assert_eq!(n, 3);
        assert_eq!(l, array![[1, 0, 2], [0, 3, 0], [3, 3, 0]]);
        let (l, n) = cells(array![[0.0f32, 255.0, 255.0], [255.0, 0.0, f32::NAN]].view(), 127.5);
        assert_eq!(n, 2);
        assert_eq!(l, array![[0, 1, 1], [2, 0, 0]]);
    }

    #[test]
    fn class_regions_split_touching_classes() {
        let c = array![[2u8, 2, 1, 0], [2, 1, 1, 0], [0, 0, 1, 2]];
        let (l, n) = class_regions(c.view(), 0);
        assert_eq!(n, 3);
        assert_eq!(l, array![[1, 1, 2, 0], [1, 2, 2, 0], [0, 0, 2, 3]]);
        let (l, n) = class_regions(c.view(), 1);
        assert_eq!(n, 4);
        assert_eq!(l[[0, 3]], l[[1, 3]]);
        assert_eq!(l[[0, 2]], 0);
    }

    #[test]
    fn empty_and_large_images_do_not_panic() {
        let (l, n) = connected_components(Array2::<bool>::from_elem((0, 5), true).view());
        assert_eq!((l.dim(), n), ((0, 5), 0));
        // One big snake-free region (the stack, not recursion, carries the fill).
        let (_, n) = connected_components(Array2::from_elem((600, 600), true).view());
        assert_eq!(n, 1);
    }

    #[test]
    fn perfect_segmentation_scores_one() {
        let t = array![[1u32, 1, 0, 2], [1, 1, 0, 2]];
        // Relabelled proposal: scores are invariant to label names.
        let p = array![[7u32, 7, 0, 3], [7, 7, 0, 3]];
        let s = isbi_scores(p.view(), t.view()).unwrap();
        assert!(close(s.v_rand, 1.0) && close(s.v_info, 1.0));
        let a = adapted_rand_error(t.view(), p.view(), &[0]).unwrap();
        assert!(close(a.error, 0.0) && close(a.precision, 1.0) && close(a.recall, 1.0));
        let (x, y) = variation_of_information(t.view(), p.view(), &[]).unwrap();
        assert!(close(x, 0.0) && close(y, 0.0));
    }

    #[test]
    fn isbi_hand_computed_merge() {
        // Truth: two cells of 2 pixels, separated by a membrane; proposal merges them.
        let t = array![[1u32, 1, 0, 2, 2]];
        let p = array![[1u32, 1, 1, 1, 1]];
        // n = 4, p_ij: (1,1) = 1/2, (2,1) = 1/2. Σp² = 1/2, Σt² = 1/2, Σs² = 1.
        let s = isbi_scores(p.view(), t.view()).unwrap();
        assert!(close(s.v_rand_split, 1.0));
        assert!(close(s.v_rand_merge, 0.5));
        assert!(close(s.v_rand, 0.5 / (0.5 * 1.0 + 0.5 * 0.5)));
        // H(S) = 0, H(T) = ln 2, H(S,T) = ln 2 → I = 0.
        assert!(close(s.v_info, 0.0));
        assert!(close(s.v_info_merge, 0.0));
        assert!(close(s.v_info_split, 1.0)); // 0 / 0
    }

    #[test]
    fn isbi_hand_computed_split_and_boundary_singletons() {
        // Truth: one cell of 4 pixels. Proposal: one 2-pixel cell and 2 boundary pixels,
        // which become singletons.
        let t = array![[1u32, 1, 1, 1]];
        let p = array![[5u32, 5, 0, 0]];
        // p = (1/2, 1/4, 1/4); Σp² = 1/4 + 1/16 + 1/16 = 3/8 = Σs²; Σt² = 1.
        let s = isbi_scores(p.view(), t.view()).unwrap();
        assert!(close(s.v_rand_merge, 1.0));
        assert!(close(s.v_rand_split, 0.375));
        assert!(close(s.v_rand, 0.375 / (0.5 * 0.375 + 0.5)));
        // H(T) = 0, H(S) = H(S,T) = 1.5 ln 2 → I = 0 → V_info = 0.
        assert!(close(s.v_info, 0.0));
        // Truth boundary pixels are left out entirely.
        let t2 = array![[1u32, 1, 1, 1, 0, 0]];
        let p2 = array![[5u32, 5, 0, 0, 9, 9]];
        assert_eq!(isbi_scores(p2.view(), t2.view()).unwrap(), s);
    }

    #[test]
    fn isbi_hand_computed_mixed() {
        // Truth cells A (3 px) and B (1 px); proposal: X = {A,A}, Y = {A,B}.
        let t = array![[1u32, 1, 1, 2]];
        let p = array![[1u32, 1, 2, 2]];
        // p_ij = 1/2, 1/4, 1/4 → Σp² = 3/8; Σt² = 9/16 + 1/16 = 10/16; Σs² = 1/4 + 1/4 = 1/2.
        let s = isbi_scores(p.view(), t.view()).unwrap();
        assert!(close(s.v_rand_split, 0.375 / 0.625));
        assert!(close(s.v_rand_merge, 0.375 / 0.5));
        assert!(close(s.v_rand, 0.375 / (0.25 + 0.3125)));
        let ln = f64::ln;
        let h_s = ln(2.0);
        let h_t = -(0.75 * ln(0.75) + 0.25 * ln(0.25));
        let h_st = 1.5 * ln(2.0);
        let i = h_s + h_t - h_st;
        assert!(close(s.v_info, i / (0.5 * h_s + 0.5 * h_t)));
        assert!(close(s.v_info_split, i / h_s));
        assert!(close(s.v_info_merge, i / h_t));
    }

    #[test]
    fn isbi_edge_cases() {
        let t = array![[0u32, 0]];
        let p = array![[1u32, 0]];
        let s = isbi_scores(p.view(), t.view()).unwrap();
        assert_eq!(s.v_rand, 1.0);
        assert!(isbi_scores_with_alpha(p.view(), t.view(), 1.5).is_err());
        let err = isbi_scores(array![[1u32]].view(), t.view()).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { .. }), "{err}");
    }

    #[test]
    fn adapted_rand_hand_computed() {
        // true: 1 1 1 2 ; test: 1 1 2 2 (no ignored pixels).
        let t = array![[1u32, 1, 1, 2]];
        let p = array![[1u32, 1, 2, 2]];
        // n_ij: 2, 1, 1 → Σn² − N = 6 − 4 = 2; a = (3, 1) → 10 − 4 = 6; b = (2, 2) → 8 − 4 = 4.
        let a = adapted_rand_error(t.view(), p.view(), &[]).unwrap();
        assert!(close(a.precision, 2.0 / 6.0));
        assert!(close(a.recall, 2.0 / 4.0));
        assert!(close(a.error, 1.0 - 2.0 / 5.0));
        // Ignoring true label 2 leaves the 3 pixels of label 1: n = (2, 1) → 5 − 3 = 2;
        // a = 3 → 6; b = (2, 1) → 2.
        let a = adapted_rand_error(t.view(), p.view(), &[2]).unwrap();
        assert!(close(a.precision, 2.0 / 6.0));
        assert!(close(a.recall, 1.0));
        // Test label 0 is an ordinary segment here.
        let a = adapted_rand_error(array![[1u32, 1]].view(), array![[0u32, 0]].view(), &[0]).unwrap();
        assert!(close(a.error, 0.0));
        // Nothing counted: 0/0 → perfect.
        let a = adapted_rand_error(array![[0u32, 0]].view(), array![[3u32, 4]].view(), &[0]).unwrap();
        assert!(close(a.error, 0.0));
    }

    #[test]
    fn variation_of_information_hand_computed() {
        let t = array![[1u32, 1, 1, 2]];
        let p = array![[1u32, 1, 2, 2]];
        // H(p|t): row 1 splits 2:1 (p = 3/4), row 2 pure → 3/4 · H(2/3, 1/3).
        let h = |q: f64| -(q * q.log2() + (1.0 - q) * (1.0 - q).log2());
        let (a, b) = variation_of_information(t.view(), p.view(), &[]).unwrap();
        assert!(close(a, 0.75 * h(2.0 / 3.0)));
        // H(t|p): column 1 pure, column 2 = {1, 2} (p = 1/2) → 1/2 · 1 bit.
        assert!(close(b, 0.5));
        // 3-D arrays work too.
        let t3 = t.clone().into_shape_with_order((1, 1, 4)).unwrap();
        let p3 = p.clone().into_shape_with_order((1, 1, 4)).unwrap();
        let (a3, b3) = variation_of_information(t3.view(), p3.view(), &[]).unwrap();
        assert!(close(a3, a) && close(b3, b));
        let err = variation_of_information(t3.view(), p3.view().into_shape_with_order((1, 4, 1)).unwrap(), &[]);
        assert!(err.is_err());
        assert_eq!(variation_of_information(t.view(), p.view(), &[1, 2]).unwrap(), (0.0, 0.0));
    }

    #[test]
    fn contingency_table_counts_runs() {
        let t = array![[1u32, 1, 0, 2], [1, 1, 0, 2]];
        let p = array![[1u32, 1, 1, 3], [1, 4, 0, 3]];
        let c = ContingencyTable::new(t.view(), p.view(), &[0]).unwrap();
        assert_eq!(c.total(), 6);
        assert_eq!(c.get(1, 1), 3);
        assert_eq!(c.get(1, 4), 1);
        assert_eq!(c.get(2, 3), 2);
        assert_eq!(c.get(0, 1), 0);
        assert_eq!(c.entries().count(), 3);
        assert_eq!(c.row_sums().map(|(_, n)| n).sum::<u64>(), 6);
        assert_eq!(c.col_sums().count(), 3);
    }

    #[test]
    fn scores_are_the_same_to_the_last_bit_on_every_computation() {
        // Hundreds of segments with uneven overlaps: a sum over a hashed table would change
        // its order, and its last bits, from one table to the next.
        let t = Array2::from_shape_fn((96, 96), |(y, x)| ((y / 5) * 20 + x / 5) as u32 + 1);
        let p = Array2::from_shape_fn((96, 96), |(y, x)| ((y * 7 / 31) * 40 + (x * 3 + y) / 7) as u32 + 1);
        let run = || {
            let isbi = isbi_scores(p.view(), t.view()).unwrap();
            let are = adapted_rand_error(t.view(), p.view(), &[0]).unwrap();
            let (split, merge) = variation_of_information(t.view(), p.view(), &[0]).unwrap();
            [isbi.v_rand, isbi.v_info, are.error, split, merge].map(f64::to_bits)
        };
        let first = run();
        for _ in 0..8 {
            assert_eq!(run(), first);
        }
    }
}

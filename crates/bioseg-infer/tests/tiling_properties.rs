//! Properties of the tiling geometry, for arbitrary sizes, tiles, overlaps, halos and size
//! multiples: every output pixel is covered; crop blending takes each pixel from exactly one
//! tile; Gaussian blending weights are positive wherever a tile writes and sum to 1 after
//! normalisation; windows read real neighbouring data and mirror only outside it; volume
//! blocks and `--shard I/N` parts partition the volume exactly.

use bioseg_infer::tiling::{AxisPlan, gaussian_weights};
use bioseg_infer::volume_predict::{Shard, VolumePlan};
use proptest::prelude::*;

fn multiples() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1usize, 2, 4, 8, 16, 32])
}

/// Checks one axis plan against every property; `aligned`: starts must be multiples of `m`.
fn check_axis(p: &AxisPlan, m: usize) -> Result<(), TestCaseError> {
    let n = p.size;
    prop_assert!(!p.starts.is_empty());
    prop_assert!(p.starts.windows(2).all(|w| w[0] < w[1]), "starts not increasing: {:?}", p.starts);
    // Coverage: every pixel lies in some tile's core.
    let mut covered = vec![0u32; n];
    for &s in &p.starts {
        prop_assert!(s < n, "a tile starts past the data: {s} >= {n}");
        for c in covered.iter_mut().take((s + p.core).min(n)).skip(s) {
            *c += 1;
        }
    }
    prop_assert!(covered.iter().all(|&c| c > 0), "uncovered pixels in {p:?}");
    // Crop blending: ranges inside their cores, consecutive, partitioning [0, n).
    let mut next = 0;
    for (k, &s) in p.starts.iter().enumerate() {
        let (from, to) = p.crop_range(k);
        prop_assert_eq!(from, next, "crop ranges do not meet at tile {} of {:?}", k, p);
        prop_assert!(from <= to && from >= s && to <= s + p.core);
        next = to;
    }
    prop_assert_eq!(next, n);
    // Gaussian blending: positive total weight everywhere, normalised weights sum to 1.
    let g = gaussian_weights(p.core);
    let mut total = vec![0f64; n];
    for &s in &p.starts {
        for i in s..(s + p.core).min(n) {
            total[i] += f64::from(g[i - s]);
        }
    }
    for (i, &t) in total.iter().enumerate() {
        prop_assert!(t > 0.0, "pixel {i} has no blending weight");
        let sum: f64 = p.starts.iter().filter(|&&s| s <= i && i < s + p.core).map(|&s| f64::from(g[i - s]) / t).sum();
        prop_assert!((sum - 1.0).abs() < 1e-9, "weights at {i} sum to {sum}");
    }
    // Windows: real data wherever the window lies inside it, a valid mirror elsewhere.
    for &s in &p.starts {
        for i in 0..p.window() {
            let src = p.source_index(s, i);
            prop_assert!(src < n);
            let pos = s as i64 - p.halo as i64 + i as i64;
            if (0..n as i64).contains(&pos) {
                prop_assert_eq!(src as i64, pos, "window of tile {} reads a mirror inside the data", s);
            }
        }
    }
    prop_assert_eq!(p.window() % m, 0, "window {} not a multiple of {}", p.window(), m);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn symbolic_size_plans_cover_blend_and_read_real_context(
        size in 1usize..1500,
        tile in 1usize..400,
        overlap_frac in 0.0f64..0.9,
        halo in 0usize..80,
        m in multiples(),
    ) {
        let overlap = (tile as f64 * overlap_frac) as usize;
        match AxisPlan::new(size, tile, overlap, halo, m) {
            Ok(p) => {
                check_axis(&p, m)?;
                prop_assert!(p.starts.iter().all(|s| s % m == 0), "unaligned starts {:?}", p.starts);
                prop_assert!(p.halo >= halo, "halo shrank from {} to {}", halo, p.halo);
            }
            // The only refusal: an overlap that leaves no step once the core is aligned.
            Err(e) => prop_assert!(e.contains("overlap"), "{}", e),
        }
    }

    #[test]
    fn fixed_size_plans_cover_and_blend(
        size in 1usize..1500,
        window in 8usize..600,
        overlap in 0usize..64,
        halo in 0usize..80,
        m in multiples(),
    ) {
        let window = window / m * m;
        prop_assume!(window > 0);
        if let Ok(p) = AxisPlan::fixed_window(size, window, overlap, halo, m) {
            prop_assert_eq!(p.window(), window);
            check_axis(&p, 1)?;
        }
    }

    #[test]
    fn shards_partition_the_blocks(total in 0usize..5000, count in 1usize..300) {
        let mut next = 0;
        let mut sizes = Vec::new();
        for index in 1..=count {
            let r = Shard { index, count }.blocks(total);
            prop_assert_eq!(r.start, next);
            next = r.end;
            sizes.push(r.len());
        }
        prop_assert_eq!(next, total);
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "shard sizes {}..{}", lo, hi);
    }

    #[test]
    fn volume_blocks_partition_the_region(
        z0 in 0usize..5, nz in 1usize..20,
        y0 in 0usize..9, ny in 1usize..70,
        x0 in 0usize..9, nx in 1usize..70,
        slab in 1usize..9, by in 1usize..40, bx in 1usize..40,
        count in 1usize..7,
    ) {
        let plan = VolumePlan {
            region: [z0..z0 + nz, y0..y0 + ny, x0..x0 + nx],
            slab,
            block_yx: (by.min(ny), bx.min(nx)),
            chunk_yx: (by.min(ny), bx.min(nx)),
            context: 0,
            multiple: 1,
            block_bytes: 0,
        };
        let mut hits = vec![0u8; nz * ny * nx];
        // Every shard's blocks, together: each voxel of the region exactly once.
        for index in 1..=count {
            for b in (Shard { index, count }).blocks(plan.len()) {
                let blk = plan.block(b);
                prop_assert_eq!(blk.index, b);
                for z in blk.z.clone() {
                    for y in blk.y.clone() {
                        for x in blk.x.clone() {
                            hits[(z * ny + y) * nx + x] += 1;
                        }
                    }
                }
            }
        }
        prop_assert!(hits.iter().all(|&h| h == 1), "voxels covered {:?} times", hits.iter().max());
    }
}

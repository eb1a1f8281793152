//! Nearest-neighbour up-sampling by whole factors (NCHW f32) and its gradient, the sum of each
//! `fy × fx` block. One task per plane.

use rayon::prelude::*;

use crate::error::KernelError;

/// The whole factors that take `in_hw` to `out_hw`.
pub fn whole_factors(in_hw: [usize; 2], out_hw: [usize; 2]) -> Result<[usize; 2], KernelError> {
    let mut f = [0; 2];
    for a in 0..2 {
        if in_hw[a] == 0 || out_hw[a] == 0 || !out_hw[a].is_multiple_of(in_hw[a]) {
            return Err(KernelError::NotWholeFactor { input: in_hw[a], output: out_hw[a] });
        }
        f[a] = out_hw[a] / in_hw[a];
    }
    Ok(f)
}

fn check(what: &'static str, got: usize, expected: usize) -> Result<(), KernelError> {
    if got == expected { Ok(()) } else { Err(KernelError::Length { what, got, expected }) }
}

/// `y[r, c] = x[r / fy, c / fx]` for `planes` planes of `in_hw`.
pub fn upsample_nearest(
    planes: usize,
    in_hw: [usize; 2],
    factor: [usize; 2],
    x: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    let ([h, w], [fy, fx]) = (in_hw, factor);
    let (in_len, out_len) = (h * w, h * w * fy * fx);
    check("input", x.len(), planes * in_len)?;
    check("output", y.len(), planes * out_len)?;
    if out_len == 0 {
        return Ok(());
    }
    y.par_chunks_mut(out_len).enumerate().for_each(|(p, y)| {
        let x = &x[p * in_len..][..in_len];
        for (r, row) in y.chunks_exact_mut(w * fx).enumerate() {
            let src = &x[r / fy * w..][..w];
            for (d, &s) in row.chunks_exact_mut(fx).zip(src) {
                d.fill(s);
            }
        }
    });
    Ok(())
}

/// The gradient of [`upsample_nearest`]: `dx[r, c] = Σ dy` over the block it was copied to.
pub fn upsample_nearest_backward(
    planes: usize,
    in_hw: [usize; 2],
    factor: [usize; 2],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    let ([h, w], [fy, fx]) = (in_hw, factor);
    let (in_len, out_len) = (h * w, h * w * fy * fx);
    check("output gradient", dy.len(), planes * out_len)?;
    check("input gradient", dx.len(), planes * in_len)?;
    if in_len == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(in_len).enumerate().for_each(|(p, dx)| {
        let dy = &dy[p * out_len..][..out_len];
        for (r, row) in dx.chunks_exact_mut(w).enumerate() {
            row.fill(0.0);
            for dr in 0..fy {
                let src = &dy[(r * fy + dr) * w * fx..][..w * fx];
                for (d, s) in row.iter_mut().zip(src.chunks_exact(fx)) {
                    *d += s.iter().sum::<f32>();
                }
            }
        }
    });
    Ok(())
}

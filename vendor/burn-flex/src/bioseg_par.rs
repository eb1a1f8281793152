//! bioseg: element-wise passes spread over rayon's threads.
//!
//! Upstream flex runs every element-wise operation (ReLU and its gradient, gradient sums, the
//! optimiser's scalar arithmetic, concatenation and strided copies) on the calling thread. In a
//! U-Net training step on two cores these passes were ~14 % of all samples and ran while the
//! other core idled (`perf`, vendor/README.md). The helpers below split a pass into chunks of
//! [`CHUNK`] elements over the pool when it has at least [`PARALLEL_MIN`] elements, and run it in
//! place otherwise; results are identical to the serial loop (each element is computed alone).

use alloc::vec::Vec;
use core::mem::MaybeUninit;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Fewest elements for which a pass is split over threads (256 KiB of f32: below it, waking the
/// pool costs more than the pass).
pub(crate) const PARALLEL_MIN: usize = 1 << 16;

/// Elements per task (64 KiB of f32, in L2).
pub(crate) const CHUNK: usize = 1 << 14;

/// `f(chunk)` over consecutive chunks of `v`.
pub(crate) fn chunks_mut<E: Send>(v: &mut [E], f: impl Fn(&mut [E]) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if v.len() >= PARALLEL_MIN {
        v.par_chunks_mut(CHUNK).for_each(f);
        return;
    }
    f(v)
}

/// `f(l_chunk, r_chunk)` over matching chunks of `l` and `r` (`r` at least as long as `l`).
pub(crate) fn zip_chunks_mut<E: Send + Sync, R: Sync>(l: &mut [E], r: &[R], f: impl Fn(&mut [E], &[R]) + Sync + Send) {
    let r = &r[..l.len()];
    #[cfg(feature = "rayon")]
    if l.len() >= PARALLEL_MIN {
        l.par_chunks_mut(CHUNK).zip(r.par_chunks(CHUNK)).for_each(|(l, r)| f(l, r));
        return;
    }
    f(l, r)
}

/// `x = op(x)` for every element.
pub(crate) fn map_in_place<E: Copy + Send>(v: &mut [E], op: impl Fn(E) -> E + Sync + Send) {
    chunks_mut(v, |c| c.iter_mut().for_each(|x| *x = op(*x)));
}

/// `l = op(l, r)` element by element.
pub(crate) fn zip_in_place<E: Copy + Send + Sync>(l: &mut [E], r: &[E], op: impl Fn(E, E) -> E + Sync + Send) {
    zip_chunks_mut(l, r, |l, r| l.iter_mut().zip(r).for_each(|(l, &r)| *l = op(*l, r)));
}

/// A new vector of `n` elements, each chunk of [`CHUNK`] written once by `fill(first_index,
/// chunk)`.
fn collect<E: Copy + Send + Sync>(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<E>]) + Sync + Send) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    #[cfg(feature = "rayon")]
    if n >= PARALLEL_MIN {
        spare.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| fill(i * CHUNK, c));
    } else {
        fill(0, spare);
    }
    #[cfg(not(feature = "rayon"))]
    fill(0, spare);
    // SAFETY: `fill` writes every element of its chunk (the contract of this function; each
    // caller below writes its chunk in full), and the chunks cover 0..n.
    unsafe { out.set_len(n) };
    out
}

/// `op(x)` for every element of `src`, as a new vector.
pub(crate) fn map<E: Copy + Send + Sync>(src: &[E], op: impl Fn(E) -> E + Sync + Send) -> Vec<E> {
    collect(src.len(), |i, c| {
        for (d, &s) in c.iter_mut().zip(&src[i..]) {
            d.write(op(s));
        }
    })
}

/// `op(a, b)` element by element, as a new vector of `a.len()` elements.
pub(crate) fn zip_map<E: Copy + Send + Sync>(a: &[E], b: &[E], op: impl Fn(E, E) -> E + Sync + Send) -> Vec<E> {
    let b = &b[..a.len()];
    collect(a.len(), |i, c| {
        for ((d, &x), &y) in c.iter_mut().zip(&a[i..]).zip(&b[i..]) {
            d.write(op(x, y));
        }
    })
}

/// `runs` runs of `run` elements, run `r` read from `src[start_of(r)..][..run]`, as one vector
/// (a strided view made contiguous). Tasks are [`CHUNK`] elements of the result, cutting through
/// runs where they end: a channel slice of a batch of 2 is 2 runs of a million values, which
/// whole-run tasks had copied on one thread (and flex's 2-D tiled copy on the caller's).
pub(crate) fn gather_runs<E: Copy + Send + Sync>(
    src: &[E],
    run: usize,
    runs: usize,
    start_of: impl Fn(usize) -> usize + Sync + Send,
) -> Vec<E> {
    let n = run * runs;
    if n == 0 {
        return Vec::new();
    }
    collect(n, |first, c| {
        let (mut at, mut done) = (first, 0);
        while done < c.len() {
            let (r, within) = (at / run, at % run);
            let len = (run - within).min(c.len() - done);
            let from = &src[start_of(r) + within..][..len];
            for (d, &s) in c[done..done + len].iter_mut().zip(from) {
                d.write(s);
            }
            (at, done) = (at + len, done + len);
        }
    })
}

/// `op(a[i], b[i])` for `a` and `b` read as `runs` runs of `run` elements, run `r` at
/// `a[a_start(r)..]` and `b[b_start(r)..]`, as one vector: a binary operation on views whose
/// innermost axis is contiguous (slices, or operands broadcast along an outer axis: the
/// loss's per-class sums' gradients), which had walked a `StridedIter` per element on the
/// calling thread. Tasks as in [`gather_runs`].
pub(crate) fn zip_runs<E: Copy + Send + Sync>(
    (a, a_start): (&[E], &(dyn Fn(usize) -> usize + Sync)),
    (b, b_start): (&[E], &(dyn Fn(usize) -> usize + Sync)),
    run: usize,
    runs: usize,
    op: impl Fn(E, E) -> E + Sync + Send,
) -> Vec<E> {
    let n = run * runs;
    if n == 0 {
        return Vec::new();
    }
    collect(n, |first, c| {
        let (mut at, mut done) = (first, 0);
        while done < c.len() {
            let (r, within) = (at / run, at % run);
            let len = (run - within).min(c.len() - done);
            let x = &a[a_start(r) + within..][..len];
            let y = &b[b_start(r) + within..][..len];
            for ((d, &x), &y) in c[done..done + len].iter_mut().zip(x).zip(y) {
                d.write(op(x, y));
            }
            (at, done) = (at + len, done + len);
        }
    })
}

/// The concatenation of `segments` (their total length `n`), copied in pieces of at most
/// [`CHUNK`] elements over the threads.
pub(crate) fn concat<E: Copy + Send + Sync>(n: usize, segments: &[&[E]]) -> Vec<E> {
    let mut out: Vec<E> = Vec::with_capacity(n);
    assert_eq!(segments.iter().map(|s| s.len()).sum::<usize>(), n, "concat: segment lengths");
    #[cfg(feature = "rayon")]
    if n >= PARALLEL_MIN {
        let mut pieces = Vec::new();
        let mut offset = 0;
        for s in segments {
            for (i, piece) in s.chunks(CHUNK).enumerate() {
                pieces.push((offset + i * CHUNK, piece));
            }
            offset += s.len();
        }
        let dst = SendPtr(out.as_mut_ptr());
        pieces.into_par_iter().for_each(|(at, piece)| {
            // SAFETY: the pieces tile 0..n (capacity n) without overlap; each is written once.
            unsafe { core::ptr::copy_nonoverlapping(piece.as_ptr(), dst.get().add(at), piece.len()) };
        });
        // SAFETY: every element 0..n was written above.
        unsafe { out.set_len(n) };
        return out;
    }
    for s in segments {
        out.extend_from_slice(s);
    }
    out
}

/// A pointer to a vector's buffer that tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SendPtr<E>(*mut E);

impl<E> SendPtr<E> {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn get(self) -> *mut E {
        self.0
    }
}
// SAFETY: used only for writes to disjoint elements (see `concat`).
unsafe impl<E: Send> Send for SendPtr<E> {}
// SAFETY: as above.
unsafe impl<E: Send> Sync for SendPtr<E> {}

//! The matrix product every kernel of this crate ends in (the `gemm` crate: AVX-512 / AVX2 /
//! NEON microkernels chosen at run time), and the reusable scratch buffers around it.

/// A strided matrix view: (pointer, column stride, row stride), in elements.
pub type View<P> = (P, usize, usize);

/// `dst = lhs × rhs` (or `dst += lhs × rhs` when `accumulate`) for `[m, n, k]` matrices, on one
/// thread: the callers parallelise over blocks of pixels, which keeps each thread's operands in
/// its own cache.
///
/// # Safety
/// Every element the three strided views address must be inside its allocation, and `dst` must
/// not overlap the inputs.
pub unsafe fn product_acc(
    [m, n, k]: [usize; 3],
    dst: View<*mut f32>,
    lhs: View<*const f32>,
    rhs: View<*const f32>,
    accumulate: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1 as isize,
            dst.2 as isize,
            accumulate,
            lhs.0,
            lhs.1 as isize,
            lhs.2 as isize,
            rhs.0,
            rhs.1 as isize,
            rhs.2 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst = lhs × rhs` ([`product_acc`] without accumulation).
///
/// # Safety
/// As [`product_acc`].
pub unsafe fn product(mnk: [usize; 3], dst: View<*mut f32>, lhs: View<*const f32>, rhs: View<*const f32>) {
    // SAFETY: forwarded from the caller.
    unsafe { product_acc(mnk, dst, lhs, rhs, false) }
}

/// The first `len` values of `v`, grown (zero-filled) to at least that length.
pub fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// A raw pointer that may cross threads: the parallel kernels write disjoint parts of one output
/// through it (each use states why the parts are disjoint).
#[derive(Clone, Copy)]
pub struct SendPtr(pub *mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: only used for writes to disjoint elements, see each use.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// The rate of [`product`] on this machine in GFLOP/s, all rayon threads busy: each multiplies
/// its own 384 × 384 matrices (in L2, the shape of a large convolution block) for about
/// `seconds`. The ceiling for any kernel of this crate; benchmarks print achieved rates
/// against it.
pub fn matrix_product_rate(seconds: f64) -> f64 {
    use rayon::prelude::*;
    const N: usize = 384;
    let threads = rayon::current_num_threads();
    let start = std::time::Instant::now();
    let products: usize = (0..threads)
        .into_par_iter()
        .map(|t| {
            let a: Vec<f32> = (0..N * N).map(|i| ((i + t) % 7) as f32 * 0.1).collect();
            let b = a.clone();
            let mut c = vec![0f32; N * N];
            let mut count = 0;
            while count == 0 || start.elapsed().as_secs_f64() < seconds {
                // SAFETY: three N × N row-major matrices.
                unsafe { product([N, N, N], (c.as_mut_ptr(), 1, N), (a.as_ptr(), 1, N), (b.as_ptr(), 1, N)) };
                count += 1;
            }
            std::hint::black_box(&c);
            count
        })
        .sum();
    (2 * N * N * N * products) as f64 / start.elapsed().as_secs_f64() / 1e9
}

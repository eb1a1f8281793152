//! The AVX upper-register state at the seams between vector code and the rest.
//!
//! Code that leaves the upper halves of the ymm/zmm registers dirty (assembly kernels that end
//! without `vzeroupper`, such as some of tract's matrix-product kernels) makes every later
//! legacy-SSE instruction pay a transition or a merge with them, and bioseg's Rust outside its
//! AVX-512 kernels is compiled for baseline x86-64 (SSE2). Measured: the channel softmax after a
//! 3-class U-Net's 1×1 head (tract's matrix product) took 101 ms of a 308 ms 544² window, its
//! `expf` calls each crossing between SSE and VEX code; after [`clean_upper_state`] at the op's
//! start, 2.8–3.2 ms (one thread, Intel Xeon, `bioseg run --profile`, alternating runs). bioseg's
//! ops call it when they start.

/// Clears the upper halves of the vector registers (`vzeroupper`) where the CPU has AVX; a
/// no-op elsewhere. Costs one instruction.
#[inline]
pub fn clean_upper_state() {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX.get_or_init(|| std::arch::is_x86_feature_detected!("avx")) {
            // SAFETY: the CPU has AVX (checked above).
            unsafe { zero_upper() }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}

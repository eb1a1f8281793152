//! The one error type of this crate.

/// Why a kernel cannot run a request; the caller then uses another implementation or reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A size, stride or dilation of zero.
    #[error("{0} must not be zero")]
    Zero(&'static str),
    /// The (dilated) kernel is larger than the padded input.
    #[error("a {kernel}-tap dilated kernel does not fit an input of {input} with padding {padding}")]
    KernelTooLarge { kernel: usize, input: usize, padding: usize },
    /// A buffer of the wrong length.
    #[error("{what} holds {got} values, expected {expected}")]
    Length { what: &'static str, got: usize, expected: usize },
    /// The output size is not the input size times a whole factor.
    #[error("{input} → {output} is not a whole up-sampling factor")]
    NotWholeFactor { input: usize, output: usize },
}

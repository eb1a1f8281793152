//! Which backend and device(s) a run uses.

use std::fmt;
use std::str::FromStr;

/// The CPU backend: Burn's `flex` (SIMD, multi-threaded).
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend with automatic differentiation.
pub type CpuAutodiff = burn::backend::Autodiff<CpuBackend>;

/// Burn's `ndarray` CPU backend (feature `ndarray`), compared with `flex` in BENCHMARKS.md.
#[cfg(feature = "ndarray")]
pub type NdarrayAutodiff = burn::backend::Autodiff<burn::backend::NdArray>;

/// The CUDA backend (cubecl-cuda; CUDA is loaded at run time).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
/// The CUDA backend with automatic differentiation.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<CudaBackend>;

/// A device request from the command line: `cpu`, `cuda`, `cuda:1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU backend.
    Cpu,
    /// Burn's `ndarray` CPU backend (builds with the `ndarray` feature).
    CpuNdarray,
    /// One CUDA device by index.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "ndarray" | "cpu-ndarray" => Ok(DeviceSpec::CpuNdarray),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(i) => i.parse().map(DeviceSpec::Cuda).map_err(|_| format!("bad CUDA device index in `{s}`")),
                None => Err(format!("unknown device `{s}` (expected cpu, cuda, cuda:N or ndarray)")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::CpuNdarray => write!(f, "ndarray"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Devices of `B` with the given indices, of the same kind as `base` (on the CPU, the one CPU
/// device repeated: replicas then share it, which is how data parallelism is tested without GPUs).
pub fn replicas<B: burn::tensor::backend::Backend>(base: &B::Device, indices: &[usize]) -> Vec<B::Device> {
    use burn::prelude::DeviceOps;
    indices
        .iter()
        .map(|&i| {
            let mut id = base.to_id();
            id.index_id = i as u16;
            B::Device::from_id(id)
        })
        .collect()
}

/// Checks that CUDA device `index` can be used (driver library present, device exists) before
/// any work starts; cudarc and cubecl panic otherwise, so the check runs under `catch_unwind`
/// with the panic message kept off stderr, and returns it as a one-line error.
#[cfg(feature = "cuda")]
pub fn probe_cuda(index: usize) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice::new(index);
        let t = burn::tensor::Tensor::<CudaBackend, 1>::from_floats([1.0f32], &device);
        t.into_data().to_vec::<f32>().map(|_| ()).map_err(|e| format!("{e:?}"))
    });
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("CUDA device {index} is not usable: {e}")),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into());
            let first = msg.lines().next().unwrap_or("").chars().take(300).collect::<String>();
            Err(format!("CUDA device {index} is not usable (no GPU or driver here?): {first}"))
        }
    }
}

/// Whether this build can use CUDA.
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Runs `$body` with `$B` bound to the autodiff backend and `$device` to the device that
/// `$spec` names. Errors when CUDA is asked for in a build without the `cuda` feature.
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $spec {
            $crate::device::DeviceSpec::Cpu => {
                type $B = $crate::device::CpuAutodiff;
                let $device = burn::backend::flex::FlexDevice;
                $body
            }
            #[cfg(feature = "ndarray")]
            $crate::device::DeviceSpec::CpuNdarray => {
                type $B = $crate::device::NdarrayAutodiff;
                let $device = burn::backend::ndarray::NdArrayDevice::Cpu;
                $body
            }
            #[cfg(not(feature = "ndarray"))]
            $crate::device::DeviceSpec::CpuNdarray => Err($crate::TrainError::Config(
                "this bioseg-train was built without the ndarray backend; rebuild with `--features ndarray`".into(),
            )
            .into()),
            #[cfg(feature = "cuda")]
            $crate::device::DeviceSpec::Cuda(index) => match $crate::device::probe_cuda(*index) {
                Err(e) => Err($crate::TrainError::Config(e).into()),
                Ok(()) => {
                    type $B = $crate::device::CudaAutodiff;
                    let $device = burn::backend::cuda::CudaDevice::new(*index);
                    $body
                }
            },
            #[cfg(not(feature = "cuda"))]
            $crate::device::DeviceSpec::Cuda(_) => Err($crate::TrainError::Config(
                "this bioseg-train was built without CUDA; rebuild with `--features cuda`".into(),
            )
            .into()),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("CUDA:2".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(2));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!("ndarray".parse::<DeviceSpec>().unwrap(), DeviceSpec::CpuNdarray);
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }
}

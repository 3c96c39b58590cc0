//! `--device cpu|cuda[:N]` and `--precision f32|bf16`: parsing, the backends, and the one-line
//! errors of a build or machine without CUDA, a precision the device lacks, or a model that does
//! not fit.

use tokenformer_train::backend::Precision;

/// Where training runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

pub fn parse(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(Device::Cuda(i)),
            _ => Err(format!("--device must be cpu, cuda or cuda:N, got `{s}`")),
        },
    }
}

/// `--precision f32|bf16`.
pub fn precision(s: &str) -> Result<Precision, String> {
    s.parse()
        .map_err(|e: tokenformer_train::backend::PrecisionError| e.to_string())
}

/// The CPU backend, which computes in f32 only.
pub fn cpu(p: Precision) -> Result<tokenformer_train::Cpu, String> {
    tokenformer_train::backend::cpu_precision(p).map_err(|e| format!("--device cpu: {e}"))?;
    Ok(tokenformer_train::Cpu)
}

/// The CUDA backend on device `index`, or a one-line reason why not.
#[cfg(feature = "cuda")]
pub fn cuda(
    index: usize,
    p: Precision,
) -> Result<tokenformer_train::backend::cuda::CudaBackend, String> {
    let be = tokenformer_train::backend::cuda::CudaBackend::with_precision(index, p)
        .map_err(|e| format!("--device cuda:{index}: {e}"))?;
    eprintln!("device: {}", be.describe());
    Ok(be)
}

/// A typed one-line error when `need` bytes do not fit in device `index`'s free memory.
#[cfg(feature = "cuda")]
pub fn check_fits(
    be: &tokenformer_train::backend::cuda::CudaBackend,
    index: usize,
    need: usize,
) -> Result<(), String> {
    be.check_fits(need)
        .map_err(|e| format!("--device cuda:{index}: {e}"))
}

#[cfg(not(feature = "cuda"))]
pub fn no_cuda(index: usize) -> String {
    format!("--device cuda:{index}: this build has no CUDA support (rebuild with --features cuda)")
}

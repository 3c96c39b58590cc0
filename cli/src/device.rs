//! `--device cpu|cuda[:N]`: parsing, and the one-line error of a build or machine without CUDA.

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

/// The CUDA backend on device `index`, or a one-line reason why not.
#[cfg(feature = "cuda")]
pub fn cuda(index: usize) -> Result<tokenformer_train::backend::cuda::CudaBackend, String> {
    let be = tokenformer_train::backend::cuda::CudaBackend::new(index)
        .map_err(|e| format!("--device cuda:{index}: {e}"))?;
    eprintln!("device: {}", be.describe());
    Ok(be)
}

#[cfg(not(feature = "cuda"))]
pub fn no_cuda(index: usize) -> String {
    format!("--device cuda:{index}: this build has no CUDA support (rebuild with --features cuda)")
}

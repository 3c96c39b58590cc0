//! The kernel sources (one `.cu` file per op family, each prefixed with `common.cuh`) and their
//! compilation with NVRTC: to CUBIN for the device's exact architecture, because PTX from a
//! newer NVRTC does not JIT on an older driver while SASS runs under CUDA's minor-version
//! compatibility. Each architecture is compiled once per process (`cubins`).

use super::CudaError;
use cudarc::nvrtc::{result, sys};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::sync::{Arc, Mutex, OnceLock};

const COMMON: &str = include_str!("kernels/common.cuh");

/// (family, source without the common prelude, kernel entry points).
pub const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "embedding",
        include_str!("kernels/embedding.cu"),
        &["embed_forward", "embed_backward"],
    ),
    (
        "norm",
        include_str!("kernels/norm.cu"),
        &[
            "layer_norm_forward",
            "layer_norm_backward",
            "affine_forward",
            "affine_params_backward",
        ],
    ),
    (
        "theta",
        include_str!("kernels/theta.cu"),
        &["theta_forward", "theta_backward"],
    ),
    ("rotary", include_str!("kernels/rotary.cu"), &["rotary"]),
    (
        "attention",
        include_str!("kernels/attention.cu"),
        &["causal_softmax", "causal_softmax_backward"],
    ),
    (
        "cross_entropy",
        include_str!("kernels/cross_entropy.cu"),
        &["cross_entropy"],
    ),
    (
        "elementwise",
        include_str!("kernels/elementwise.cu"),
        &[
            "add_assign",
            "scale",
            "adamw",
            "sum_squares_parts",
            "sum_parts",
            "to_bf16",
        ],
    ),
];

/// The full source NVRTC compiles for one family.
pub fn source(family_src: &str) -> String {
    format!("{COMMON}\n{family_src}")
}

/// Options shared by every compile: no fused multiply-add contraction (closer to the CPU's
/// arithmetic), IEEE division and square root.
fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".into(),
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
        "--std=c++17".into(),
    ]
}

/// Whether the NVRTC library can be loaded (dynamic loading: it may be absent).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::Nvrtc {
            family: "version",
            log: format!("{e:?}"),
        })?;
    Ok((major, minor))
}

/// What one compile produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// SASS for a real architecture (`sm_90`): what the backend loads.
    Cubin,
    /// PTX text.
    Ptx,
}

/// Compile one family for `arch` (`sm_80`, `sm_90`, ...), returning the image bytes or the
/// compiler's log as a typed error.
pub fn compile(
    family: &'static str,
    src: &str,
    arch: &str,
    out: Output,
) -> Result<Vec<u8>, CudaError> {
    let err = |log: String| CudaError::Nvrtc { family, log };
    let code = std::ffi::CString::new(source(src)).map_err(|e| err(e.to_string()))?;
    let name = std::ffi::CString::new(format!("{family}.cu")).map_err(|e| err(e.to_string()))?;
    let prog = result::create_program(&code, Some(&name)).map_err(|e| err(format!("{e:?}")))?;
    // SAFETY: prog was just created and is destroyed once, below.
    let res = unsafe { compile_program(prog, arch, out) };
    // SAFETY: prog is live; destroyed exactly once.
    let _ = unsafe { result::destroy_program(prog) };
    res.map_err(err)
}

/// Every family's CUBIN for `arch`, in `FAMILIES` order: compiled on first use and kept for the
/// process, so a second backend (another precision, another device of the same kind) does not
/// compile again.
pub fn cubins(arch: &str) -> Result<Arc<Vec<Vec<u8>>>, CudaError> {
    type Cache = Mutex<HashMap<String, Arc<Vec<Vec<u8>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(images) = cache.get(arch) {
        return Ok(images.clone());
    }
    let images = FAMILIES
        .iter()
        .map(|&(family, src, _)| compile(family, src, arch, Output::Cubin))
        .collect::<Result<Vec<_>, _>>()?;
    let images = Arc::new(images);
    cache.insert(arch.to_string(), images.clone());
    Ok(images)
}

/// # Safety
/// `prog` must be a live NVRTC program.
unsafe fn compile_program(
    prog: sys::nvrtcProgram,
    arch: &str,
    out: Output,
) -> Result<Vec<u8>, String> {
    if let Err(e) = result::compile_program(prog, &options(arch)) {
        let log = result::get_program_log(prog).map_err(|e| format!("{e:?}"))?;
        let log = CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned();
        return Err(format!("{e:?}: {log}"));
    }
    match out {
        Output::Ptx => {
            let ptx = result::get_ptx(prog).map_err(|e| format!("{e:?}"))?;
            Ok(ptx.iter().map(|&c| c as u8).collect())
        }
        Output::Cubin => {
            let mut size = 0usize;
            sys::nvrtcGetCUBINSize(prog, &mut size)
                .result()
                .map_err(|e| format!("{e:?}"))?;
            let mut bin = vec![0u8; size];
            sys::nvrtcGetCUBIN(prog, bin.as_mut_ptr() as *mut c_char)
                .result()
                .map_err(|e| format!("{e:?}"))?;
            Ok(bin)
        }
    }
}

//! Every CUDA kernel family compiles with NVRTC for sm_80 and sm_90, to PTX and to CUBIN (what
//! the backend loads), a kernel with an error is rejected, and an architecture's images are
//! compiled once per process. Needs the NVRTC library only, no GPU. Without it the test prints
//! `skipped: ...`, unless TOKENFORMER_REQUIRE_NVRTC=1 (CI), where a missing library is a failure.
#![cfg(feature = "cuda")]

use tokenformer_train::backend::cuda::kernels::{self, Output};

/// Whether NVRTC is loadable; panics when it is required and missing.
fn nvrtc_or_skip() -> bool {
    if kernels::nvrtc_present() {
        return true;
    }
    let required = std::env::var("TOKENFORMER_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "TOKENFORMER_REQUIRE_NVRTC=1 but libnvrtc could not be loaded (LD_LIBRARY_PATH={:?})",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    println!("skipped: NVRTC library not found (set LD_LIBRARY_PATH to its folder)");
    false
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = kernels::nvrtc_version().unwrap();
    println!("nvrtcVersion {major}.{minor}");
    let mut failures = Vec::new();
    for &(family, src, names) in kernels::FAMILIES {
        for arch in ["sm_80", "sm_90"] {
            for out in [Output::Ptx, Output::Cubin] {
                match kernels::compile(family, src, arch, out) {
                    Ok(image) => {
                        assert!(!image.is_empty());
                        if out == Output::Ptx {
                            // Every entry point the backend loads is in the module.
                            let text = String::from_utf8_lossy(&image);
                            for name in names {
                                assert!(
                                    text.contains(&format!(".entry {name}(")),
                                    "{family}: {name} missing from the {arch} PTX"
                                );
                            }
                        }
                        println!(
                            "ok {family:14} {arch} {out:?} {} bytes: {}",
                            image.len(),
                            names.join(", ")
                        );
                    }
                    Err(e) => failures.push(format!("{family} {arch} {out:?}: {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "NVRTC failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_kernel_with_an_error_is_rejected() {
    if !nvrtc_or_skip() {
        return;
    }
    let bad = "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }";
    let err = kernels::compile("broken", bad, "sm_90", Output::Cubin).unwrap_err();
    println!("rejected as expected: {err}");
    assert!(err.to_string().contains("undefined_name"), "{err}");
}

#[test]
fn each_architecture_is_compiled_once_per_process() {
    if !nvrtc_or_skip() {
        return;
    }
    let first = kernels::cubins("sm_80").unwrap();
    assert_eq!(first.len(), kernels::FAMILIES.len());
    assert!(first.iter().all(|image| !image.is_empty()));
    let again = kernels::cubins("sm_80").unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again), "compiled twice");
    println!("sm_80: {} images, kept for the process", first.len());
}

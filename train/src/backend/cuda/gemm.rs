//! Row-major products on cuBLAS (column-major): C = A·B row-major is Cᵀ = Bᵀ·Aᵀ column-major,
//! so the operands swap and each keeps its own transpose flag; ld is a stored row's stride.

use cudarc::cublas::sys::cublasOperation_t as Op;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{DevicePtr, DevicePtrMut};

/// One row-major operand: its stored row stride, whether it is used transposed, and the
/// element stride between batch items.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    pub ld: usize,
    pub t: bool,
    pub stride: usize,
}

fn op(t: bool) -> Op {
    if t {
        Op::CUBLAS_OP_T
    } else {
        Op::CUBLAS_OP_N
    }
}

fn int(x: usize) -> i32 {
    i32::try_from(x).expect("cuBLAS dimension exceeds i32")
}

/// c[m, n] (+)= a[m, k]·b[k, n] for `batch` items, all row-major with the given strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    a: (&A, Operand),
    b: (&B, Operand),
    c: (&mut C, Operand),
    batch: usize,
    accumulate: bool,
) {
    let cfg = GemmConfig {
        transa: op(b.1.t),
        transb: op(a.1.t),
        m: int(n),
        n: int(m),
        k: int(k),
        alpha: 1.0f32,
        lda: int(b.1.ld),
        ldb: int(a.1.ld),
        beta: if accumulate { 1.0 } else { 0.0 },
        ldc: int(c.1.ld),
    };
    // SAFETY: the callers size every buffer for these shapes and strides (asserted there).
    let r = unsafe {
        if batch == 1 {
            blas.gemm(cfg, b.0, a.0, c.0)
        } else {
            let cfg = StridedBatchedConfig {
                gemm: cfg,
                batch_size: int(batch),
                stride_a: b.1.stride as i64,
                stride_b: a.1.stride as i64,
                stride_c: c.1.stride as i64,
            };
            blas.gemm_strided_batched(cfg, b.0, a.0, c.0)
        }
    };
    r.expect("cuBLAS sgemm");
}

//! Row-major products on cuBLAS (column-major): C = A·B row-major is Cᵀ = Bᵀ·Aᵀ column-major,
//! so the operands swap and each keeps its own transpose flag; ld is a stored row's stride.
//!
//! One call, `cublasGemmStridedBatchedEx` (one item for a plain product), for both precisions: f32 operands
//! with pedantic f32 compute (no TF32: the parity mode), or bf16 operands with f32 output and
//! f32 accumulation (`CUBLAS_COMPUTE_32F`, tensor cores).

use cudarc::cublas::result;
use cudarc::cublas::sys::{
    cublasComputeType_t as Compute, cublasGemmAlgo_t, cublasOperation_t as Op, cudaDataType,
};
use cudarc::cublas::CudaBlas;
use std::ffi::c_void;

/// An operand's device address and element type. Addresses are taken from live buffers by the
/// backend, which issues everything on one stream, so the products are ordered after the
/// kernels that wrote them.
#[derive(Clone, Copy, Debug)]
pub struct Ptr {
    pub addr: u64,
    pub ty: cudaDataType,
}

impl Ptr {
    pub fn f32(addr: u64) -> Ptr {
        Ptr {
            addr,
            ty: cudaDataType::CUDA_R_32F,
        }
    }

    pub fn bf16(addr: u64) -> Ptr {
        Ptr {
            addr,
            ty: cudaDataType::CUDA_R_16BF,
        }
    }

    /// The address `elems` elements further on.
    pub fn at(self, elems: usize) -> Ptr {
        let bytes = match self.ty {
            cudaDataType::CUDA_R_16BF => 2,
            _ => 4,
        };
        Ptr {
            addr: self.addr + (elems * bytes) as u64,
            ty: self.ty,
        }
    }
}

/// One row-major operand's layout: its stored row stride, whether it is used transposed, and
/// the element stride between batch items.
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

/// The compute type for operands of type `ty`.
fn compute(ty: cudaDataType) -> Compute {
    match ty {
        cudaDataType::CUDA_R_32F => Compute::CUBLAS_COMPUTE_32F_PEDANTIC,
        _ => Compute::CUBLAS_COMPUTE_32F,
    }
}

/// c[m, n] (+)= a[m, k]·b[k, n] for `batch` items, all row-major with the given strides; a and
/// b of one element type, c f32.
pub fn gemm(
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    a: (Ptr, Operand),
    b: (Ptr, Operand),
    c: (Ptr, Operand),
    batch: usize,
    accumulate: bool,
) {
    assert!(a.0.ty == b.0.ty && c.0.ty == cudaDataType::CUDA_R_32F);
    let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
    let alpha = &alpha as *const f32 as *const c_void;
    let beta = &beta as *const f32 as *const c_void;
    let (pa, pb, pc) = (
        b.0.addr as *const c_void,
        a.0.addr as *const c_void,
        c.0.addr as *mut c_void,
    );
    let (ty, ct, algo) = (
        a.0.ty,
        compute(a.0.ty),
        cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
    );
    let (ta, tb, mm, nn, kk) = (op(b.1.t), op(a.1.t), int(n), int(m), int(k));
    let (lda, ldb, ldc) = (int(b.1.ld), int(a.1.ld), int(c.1.ld));
    // One call for both cases: the strided-batched form with one item is a plain GEMM.
    // SAFETY: the callers size every buffer for these shapes and strides (asserted there) and
    // keep them alive until the call is queued; alpha and beta outlive the call.
    let r = unsafe {
        result::gemm_strided_batched_ex(
            *blas.handle(),
            ta,
            tb,
            mm,
            nn,
            kk,
            alpha,
            pa,
            ty,
            lda,
            b.1.stride as i64,
            pb,
            ty,
            ldb,
            a.1.stride as i64,
            beta,
            pc,
            c.0.ty,
            ldc,
            c.1.stride as i64,
            int(batch),
            ct,
            algo,
        )
    };
    r.expect("cuBLAS GemmEx");
}

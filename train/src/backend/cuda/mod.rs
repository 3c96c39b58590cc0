//! The CUDA backend (feature `cuda`): device buffers (`CudaSlice<f32>`), every product on
//! cuBLAS, every other op an NVRTC kernel from `kernels/*.cu`, compiled once per process to
//! CUBIN for the device's architecture.
//!
//! Precision: `F32` computes the products in pedantic f32 (TF32 off: the parity mode).
//! `Bf16` rounds both operands of every product to bfloat16 just before it (the `to_bf16`
//! kernel, into a scratch buffer) and multiplies on the tensor cores with f32 accumulation and
//! f32 output; weights, gradients, moments, and all arithmetic in the norms, Θ, softmax and the
//! loss stay f32. Departure from llm.c: activations are *stored* in f32 and rounded per product,
//! so bf16 saves tensor-core time but not activation memory or bandwidth.
//!
//! Reductions run in a fixed order (block trees, per-column loops; no float atomics), so two runs
//! are bit-identical. Status: compiled and NVRTC-checked; not yet run on a GPU.
//!
//! The `Backend` methods cannot return errors: a device failure after a successful `new`
//! (a lost device, out of memory mid-step) panics with the driver's error. Everything that can
//! be checked up front (no driver, no device, a bad index, NVRTC, cuBLAS) is a typed
//! `CudaError` from `CudaBackend::new`.

mod gemm;
pub mod kernels;

use super::{AdamStep, Affine, Backend, Dims, Mat, MatMul, Precision, Qkv, RopeTables, Theta};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use gemm::{Operand, Ptr};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokenformer_core::ThetaKind;

/// Why the CUDA backend could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// libcuda (the driver library) is not on this machine.
    NoDriver,
    /// The driver loaded but reports no usable device.
    NoDevice(String),
    /// `cuda:N` with N past the device count.
    BadIndex {
        /// The index asked for.
        index: usize,
        /// Devices present.
        count: usize,
    },
    /// NVRTC missing or a kernel family failed to compile.
    Nvrtc {
        /// The kernel family (source file) that failed.
        family: &'static str,
        /// NVRTC's log, or why it could not be loaded.
        log: String,
    },
    /// Another driver or cuBLAS failure.
    Driver(String),
    /// The model's training state does not fit in the device's free memory.
    OutOfMemory {
        /// Bytes the run needs (`footprint::training`).
        need: usize,
        /// Bytes free on the device.
        free: usize,
    },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NoDriver => {
                write!(f, "no CUDA device: libcuda (the NVIDIA driver) not found")
            }
            CudaError::NoDevice(why) => write!(f, "no CUDA device: {why}"),
            CudaError::BadIndex { index, count } => {
                write!(f, "no CUDA device {index}: this machine has {count}")
            }
            CudaError::Nvrtc { family, log } => write!(f, "NVRTC ({family}): {log}"),
            CudaError::Driver(e) => write!(f, "CUDA: {e}"),
            CudaError::OutOfMemory { need, free } => write!(
                f,
                "model does not fit on the device: needs about {need} bytes, {free} free"
            ),
        }
    }
}

impl std::error::Error for CudaError {}

fn driver<E: fmt::Debug>(e: E) -> CudaError {
    CudaError::Driver(format!("{e:?}"))
}

/// The number of CUDA devices, or why there are none.
pub fn device_count() -> Result<usize, CudaError> {
    // SAFETY: only tries to open the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    cudarc::driver::result::init().map_err(|e| CudaError::NoDevice(format!("{e:?}")))?;
    let n = cudarc::driver::result::device::get_count()
        .map_err(|e| CudaError::NoDevice(format!("{e:?}")))?;
    if n <= 0 {
        return Err(CudaError::NoDevice("the driver reports 0 devices".into()));
    }
    Ok(n as usize)
}

/// The driver's CUDA version as (major, minor).
pub fn driver_version() -> Result<(i32, i32), CudaError> {
    device_count()?;
    let mut v = 0;
    // SAFETY: a valid out-pointer; the driver is loaded and initialised.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(driver)?;
    Ok((v / 1000, (v % 1000) / 10))
}

/// The CUDA backend (feature `cuda`): buffers in device memory, products in cuBLAS, every other
/// op an NVRTC-compiled kernel. The driver and libraries are loaded at run time, so a build with
/// the feature starts on machines without CUDA (and reports that no device is found).
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: HashMap<&'static str, CudaFunction>,
    arch: String,
    precision: Precision,
}

/// A product's input as cuBLAS reads it: the f32 buffer itself, or its bf16 rounding (kept
/// alive here until the product is queued).
struct Input {
    ptr: Ptr,
    _rounded: Option<CudaSlice<u16>>,
}

impl Input {
    fn at(&self, part: Part) -> (Ptr, Part) {
        (self.ptr, part)
    }
}

/// Threads per block; must match BLOCK in common.cuh.
const BLOCK: u32 = 256;

fn elems(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn rows(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn theta_kind(k: ThetaKind) -> i32 {
    match k {
        ThetaKind::L2NormGelu => 0,
        ThetaKind::GeluL2Norm => 1,
        ThetaKind::Softmax => 2,
    }
}

/// Elements summed per block in `sum_squares` (fixed: the order does not depend on the device).
const SQ_CHUNK: usize = 1 << 16;

/// An attention operand, used transposed or not: one head's columns of a [rows, d] activation,
/// or one head's [seq, seq] slab of scores.
#[derive(Clone, Copy, Debug)]
enum Part {
    Head(bool),
    Slab(bool),
}
use Part::{Head, Slab};

impl Part {
    /// Its cuBLAS layout (heads are the batch of a strided-batched product) and the elements
    /// between two sequences.
    fn layout(self, dims: Dims) -> (Operand, usize) {
        let (t, d, heads) = (dims.rows.seq, dims.d, dims.heads);
        match self {
            Head(tr) => (
                Operand {
                    ld: d,
                    t: tr,
                    stride: d / heads,
                },
                t * d,
            ),
            Slab(tr) => (
                Operand {
                    ld: t,
                    t: tr,
                    stride: t * t,
                },
                heads * t * t,
            ),
        }
    }
}

/// Attention's sizes: the sequence length, the (m, n, k) of S = Q·Kᵀ and of O = P·V, the
/// softmax scale, and the softmax kernels' launch (one block per score row).
struct AttentionSizes {
    seq: u64,
    scores: (usize, usize, usize),
    values: (usize, usize, usize),
    scale: f32,
    rows: LaunchConfig,
}

/// Launch `$k` with config `$cfg` and the given arguments (each passed by reference).
macro_rules! launch {
    ($be:expr, $k:literal, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let cfg = $cfg;
        let f = $be.f($k);
        let mut b = $be.stream.launch_builder(f);
        $(b.arg($arg);)*
        // SAFETY: the arguments match the kernel's signature in kernels/*.cu and the buffers
        // are sized by the callers' shapes (the trait's contract, asserted where cheap).
        unsafe { b.launch(cfg) }.expect(concat!("CUDA launch ", $k));
    }};
}

impl CudaBackend {
    /// The backend on device `index` in f32 (the parity mode).
    pub fn new(index: usize) -> Result<CudaBackend, CudaError> {
        Self::with_precision(index, Precision::F32)
    }

    /// The backend on device `index`: checks the driver, the index, compiles every kernel family
    /// for the device's compute capability, and makes a cuBLAS handle (pedantic math, so no
    /// TF32, in f32; default math, so tensor cores, in bf16).
    pub fn with_precision(index: usize, precision: Precision) -> Result<CudaBackend, CudaError> {
        let count = device_count()?;
        if index >= count {
            return Err(CudaError::BadIndex { index, count });
        }
        if !kernels::nvrtc_present() {
            return Err(CudaError::Nvrtc {
                family: "library",
                log: "libnvrtc not found (put its folder on LD_LIBRARY_PATH)".into(),
            });
        }
        // SAFETY: only tries to open the library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(CudaError::Driver(
                "libcublas not found (put its folder on LD_LIBRARY_PATH)".into(),
            ));
        }
        let ctx = CudaContext::new(index).map_err(driver)?;
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        let arch = format!("sm_{major}{minor}");
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(driver)?;
        use cudarc::cublas::sys::cublasMath_t as Math;
        let math = match precision {
            Precision::F32 => Math::CUBLAS_PEDANTIC_MATH,
            Precision::Bf16 => Math::CUBLAS_DEFAULT_MATH,
        };
        // SAFETY: a live handle.
        unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), math) }
            .result()
            .map_err(driver)?;
        let mut map = HashMap::new();
        let images = kernels::cubins(&arch)?;
        for (&(_, _, names), bin) in kernels::FAMILIES.iter().zip(images.iter()) {
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(bin.clone()))
                .map_err(driver)?;
            for &name in names {
                map.insert(name, module.load_function(name).map_err(driver)?);
            }
        }
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            kernels: map,
            arch,
            precision,
        })
    }

    /// The device's name and architecture, for logs.
    pub fn describe(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|_| "unknown".into());
        format!(
            "{name} ({}, device {}, {})",
            self.arch,
            self.ctx.ordinal(),
            self.precision.name()
        )
    }

    /// The precision of its products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), CudaError> {
        self.ctx.mem_get_info().map_err(driver)
    }

    /// A typed error when `need` bytes do not fit in the free device memory.
    pub fn check_fits(&self, need: usize) -> Result<(), CudaError> {
        let (free, _) = self.memory()?;
        if need > free {
            return Err(CudaError::OutOfMemory { need, free });
        }
        Ok(())
    }

    /// The stream every op of this backend is queued on (NCCL's collectives join it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Wait for every queued kernel (timing).
    pub fn synchronize(&self) {
        self.stream.synchronize().expect("CUDA synchronize");
    }

    /// cuBLAS calls do not bind the context themselves (kernel launches and copies do): bind it
    /// to the calling thread first, whichever thread the trainer runs on.
    fn bind(&self) {
        self.ctx.bind_to_thread().expect("CUDA bind context");
    }

    fn f(&self, name: &str) -> &CudaFunction {
        &self.kernels[name]
    }

    fn upload_u32(&self, x: &[u32]) -> CudaSlice<u32> {
        self.stream.clone_htod(x).expect("CUDA upload")
    }

    /// `x` as a product reads it in this backend's precision.
    fn input(&self, x: &CudaSlice<f32>) -> Input {
        match self.precision {
            Precision::F32 => {
                let addr = x.device_ptr(&self.stream).0;
                Input {
                    ptr: Ptr::f32(addr),
                    _rounded: None,
                }
            }
            Precision::Bf16 => {
                // SAFETY: to_bf16 writes every element before any read.
                let mut y: CudaSlice<u16> =
                    unsafe { self.stream.alloc(x.len().max(1)) }.expect("CUDA alloc");
                let n = x.len() as u64;
                launch!(self, "to_bf16", elems(x.len()), x, &n, &mut y);
                let addr = y.device_ptr(&self.stream).0;
                Input {
                    ptr: Ptr::bf16(addr),
                    _rounded: Some(y),
                }
            }
        }
    }

    /// A product's f32 output.
    fn output(&self, c: &mut CudaSlice<f32>) -> Ptr {
        let addr = c.device_ptr_mut(&self.stream).0;
        Ptr::f32(addr)
    }

    /// What attention's forward and backward share: the context bound to this thread, every
    /// [rows, d] activation's length and the probabilities' checked, and the sizes.
    fn attention_sizes(&self, dims: Dims, acts: &[usize], probs: usize) -> AttentionSizes {
        self.bind();
        let (t, hd) = (dims.rows.seq, dims.head_dim());
        let slabs = dims.rows.batch * dims.heads * t * t;
        assert!(acts.iter().all(|&n| n == dims.numel()) && probs == slabs);
        AttentionSizes {
            seq: t as u64,
            scores: (t, t, hd),
            values: (t, hd, t),
            scale: 1.0 / (hd as f32).sqrt(),
            rows: rows(dims.rows.batch * dims.heads * t),
        }
    }

    /// c = a·b of sizes (m, n, k) for every head of every sequence: one strided-batched product
    /// over the heads per sequence.
    fn per_head(
        &self,
        dims: Dims,
        mnk: (usize, usize, usize),
        a: (Ptr, Part),
        b: (Ptr, Part),
        c: (Ptr, Part),
    ) {
        let ((la, sa), (lb, sb), (lc, sc)) = (a.1.layout(dims), b.1.layout(dims), c.1.layout(dims));
        for s in 0..dims.rows.batch {
            let (pa, pb, pc) = (a.0.at(s * sa), b.0.at(s * sb), c.0.at(s * sc));
            gemm::gemm(
                &self.blas,
                mnk,
                (pa, la),
                (pb, lb),
                (pc, lc),
                dims.heads,
                false,
            );
        }
    }
}

impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn zeros(&self, n: usize) -> CudaSlice<f32> {
        self.stream.alloc_zeros(n.max(1)).expect("CUDA alloc")
    }

    fn upload(&self, x: &[f32]) -> CudaSlice<f32> {
        if x.is_empty() {
            return self.zeros(0);
        }
        self.stream.clone_htod(x).expect("CUDA upload")
    }

    fn download(&self, x: &CudaSlice<f32>) -> Vec<f32> {
        self.stream.clone_dtoh(x).expect("CUDA download")
    }

    fn fill_zero(&self, x: &mut CudaSlice<f32>) {
        self.stream.memset_zeros(x).expect("CUDA memset");
    }

    fn len(&self, x: &CudaSlice<f32>) -> usize {
        x.len()
    }

    fn copy_into(&self, x: &CudaSlice<f32>, y: &mut CudaSlice<f32>) {
        self.stream.memcpy_dtod(x, y).expect("CUDA copy");
    }

    /// With an NCCL collective the gradients are summed on the device, in place; otherwise
    /// through the host.
    #[cfg(feature = "nccl")]
    fn all_reduce_sum(
        &self,
        comm: &dyn crate::collective::Collective,
        bufs: &mut [CudaSlice<f32>],
    ) {
        match comm.nccl() {
            Some(n) => {
                assert_eq!(n.ordinal(), self.ctx.ordinal(), "NCCL on another GPU");
                n.all_reduce_device(bufs)
            }
            None => crate::collective::all_reduce_via_host(self, comm, bufs),
        }
    }

    fn matmul(
        &self,
        size: MatMul,
        a: Mat<'_, Self>,
        b: Mat<'_, Self>,
        c: &mut CudaSlice<f32>,
        accumulate: bool,
    ) {
        let MatMul { m, n, k } = size;
        self.bind();
        assert!(a.buf.len() >= m * k && b.buf.len() >= k * n && c.len() >= m * n);
        // A stored row's length: k for a as stored [m, k], m for aᵀ stored as [k, m].
        let oa = Operand {
            ld: if a.transposed { m } else { k },
            t: a.transposed,
            stride: 0,
        };
        let ob = Operand {
            ld: if b.transposed { k } else { n },
            t: b.transposed,
            stride: 0,
        };
        let oc = Operand {
            ld: n,
            t: false,
            stride: 0,
        };
        let (ia, ib) = (self.input(a.buf), self.input(b.buf));
        let pc = self.output(c);
        gemm::gemm(
            &self.blas,
            (m, n, k),
            (ia.ptr, oa),
            (ib.ptr, ob),
            (pc, oc),
            1,
            accumulate,
        );
    }

    fn add_assign(&self, y: &mut CudaSlice<f32>, x: &CudaSlice<f32>) {
        assert_eq!(y.len(), x.len());
        let n = y.len() as u64;
        launch!(self, "add_assign", elems(y.len()), y, x, &n);
    }

    fn embed_forward(
        &self,
        table: &CudaSlice<f32>,
        tokens: &[u32],
        dims: Dims,
        out: &mut CudaSlice<f32>,
    ) {
        let tok = self.upload_u32(tokens);
        let (r, d) = (tokens.len() as u64, dims.d as u64);
        launch!(
            self,
            "embed_forward",
            elems(tokens.len() * dims.d),
            table,
            &tok,
            &r,
            &d,
            out
        );
    }

    fn embed_backward(
        &self,
        tokens: &[u32],
        dout: &CudaSlice<f32>,
        dims: Dims,
        dtable: &mut CudaSlice<f32>,
    ) {
        let tok = self.upload_u32(tokens);
        let (r, d) = (tokens.len() as u64, dims.d as u64);
        launch!(
            self,
            "embed_backward",
            elems(dims.d),
            &tok,
            dout,
            &r,
            &d,
            dtable
        );
    }

    fn layer_norm_forward(
        &self,
        x: &CudaSlice<f32>,
        dims: Dims,
        eps: f32,
        y: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
    ) {
        let d = dims.d as u64;
        launch!(
            self,
            "layer_norm_forward",
            rows(dims.rows.count()),
            x,
            &d,
            &eps,
            y,
            rstd
        );
    }

    fn layer_norm_backward(
        &self,
        y: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dims: Dims,
        dx: &mut CudaSlice<f32>,
    ) {
        let (d, has_w) = (dims.d as u64, 0i32);
        // w is unused without has_w; y stands in for the pointer.
        launch!(
            self,
            "layer_norm_backward",
            rows(dims.rows.count()),
            y,
            rstd,
            dy,
            y,
            &has_w,
            &d,
            dx
        );
    }

    fn theta_forward(&self, a: &CudaSlice<f32>, spec: Theta, s: &mut CudaSlice<f32>) {
        let (n, kind, sqrt_n) = (
            spec.n as u64,
            theta_kind(spec.norm),
            (spec.scale_n as f64).sqrt(),
        );
        launch!(
            self,
            "theta_forward",
            rows(a.len() / spec.n),
            a,
            &n,
            &kind,
            &sqrt_n,
            s
        );
    }

    fn theta_backward(
        &self,
        a: &CudaSlice<f32>,
        s: &CudaSlice<f32>,
        ds: &CudaSlice<f32>,
        spec: Theta,
        da: &mut CudaSlice<f32>,
    ) {
        let (n, kind, sqrt_n) = (
            spec.n as u64,
            theta_kind(spec.norm),
            (spec.scale_n as f64).sqrt(),
        );
        launch!(
            self,
            "theta_backward",
            rows(a.len() / spec.n),
            a,
            s,
            ds,
            &n,
            &kind,
            &sqrt_n,
            da
        );
    }

    fn rotary(&self, x: &mut CudaSlice<f32>, dims: Dims, rope: &RopeTables<Self>, inverse: bool) {
        if rope.half == 0 {
            return;
        }
        let r = dims.rows.count();
        let (rows_, seq, d, hd, half, inv) = (
            r as u64,
            dims.rows.seq as u64,
            dims.d as u64,
            dims.head_dim() as u64,
            rope.half as u64,
            inverse as i32,
        );
        let cfg = elems(r * dims.heads * rope.half);
        launch!(self, "rotary", cfg, x, &rows_, &seq, &d, &hd, &half, &rope.cos, &rope.sin, &inv);
    }

    fn attention_forward(
        &self,
        x: Qkv<&CudaSlice<f32>>,
        dims: Dims,
        out: &mut CudaSlice<f32>,
        probs: &mut CudaSlice<f32>,
    ) {
        let Qkv { q, k, v } = x;
        let z = self.attention_sizes(dims, &[q.len(), k.len(), v.len(), out.len()], probs.len());
        // S = Q·Kᵀ into the probability slabs, softmax in place, O = P·V into out's head columns.
        let (iq, ik, pp) = (self.input(q), self.input(k), self.output(probs));
        let (qh, kh) = (iq.at(Head(false)), ik.at(Head(true)));
        self.per_head(dims, z.scores, qh, kh, (pp, Slab(false)));
        launch!(
            self,
            "causal_softmax",
            z.rows,
            &mut *probs,
            &z.seq,
            &z.scale
        );
        let (ip, iv, po) = (self.input(probs), self.input(v), self.output(out));
        let (ps, vh) = (ip.at(Slab(false)), iv.at(Head(false)));
        self.per_head(dims, z.values, ps, vh, (po, Head(false)));
    }

    fn attention_backward(
        &self,
        x: Qkv<&CudaSlice<f32>>,
        probs: &CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        dims: Dims,
        dx: Qkv<&mut CudaSlice<f32>>,
    ) {
        let Qkv { q, k, v } = x;
        let lens = [
            q.len(),
            k.len(),
            v.len(),
            dout.len(),
            dx.q.len(),
            dx.k.len(),
            dx.v.len(),
        ];
        let z = self.attention_sizes(dims, &lens, probs.len());
        let mut ds = self.zeros(probs.len());
        // dP = dO·Vᵀ, then dS in place.
        let (ido, iv, pds) = (self.input(dout), self.input(v), self.output(&mut ds));
        let (doh, vh) = (ido.at(Head(false)), iv.at(Head(true)));
        self.per_head(dims, z.scores, doh, vh, (pds, Slab(false)));
        launch!(
            self,
            "causal_softmax_backward",
            z.rows,
            &mut ds,
            probs,
            &z.seq,
            &z.scale
        );
        // dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO
        let (ids, ip) = (self.input(&ds), self.input(probs));
        let (ik, iq) = (self.input(k), self.input(q));
        let products = [
            (ids.at(Slab(false)), ik.at(Head(false)), self.output(dx.q)),
            (ids.at(Slab(true)), iq.at(Head(false)), self.output(dx.k)),
            (ip.at(Slab(true)), ido.at(Head(false)), self.output(dx.v)),
        ];
        for (lhs, rhs, grad) in products {
            self.per_head(dims, z.values, lhs, rhs, (grad, Head(false)));
        }
    }

    fn affine_norm_forward(
        &self,
        x: &CudaSlice<f32>,
        p: Affine<&CudaSlice<f32>>,
        eps: f32,
        xhat: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) {
        let d = p.weight.len();
        let r = x.len() / d;
        let (d64, r64) = (d as u64, r as u64);
        launch!(
            self,
            "layer_norm_forward",
            rows(r),
            x,
            &d64,
            &eps,
            &mut *xhat,
            rstd
        );
        launch!(
            self,
            "affine_forward",
            elems(r * d),
            &*xhat,
            p.weight,
            p.bias,
            &r64,
            &d64,
            y
        );
    }

    fn affine_norm_backward(
        &self,
        xhat: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        dp: Affine<&mut CudaSlice<f32>>,
    ) {
        let d = w.len();
        let r = xhat.len() / d;
        let (d64, r64, has_w) = (d as u64, r as u64, 1i32);
        launch!(
            self,
            "affine_params_backward",
            elems(d),
            xhat,
            dy,
            &r64,
            &d64,
            dp.weight,
            dp.bias
        );
        launch!(
            self,
            "layer_norm_backward",
            rows(r),
            xhat,
            rstd,
            dy,
            w,
            &has_w,
            &d64,
            dx
        );
    }

    fn cross_entropy(
        &self,
        logits: &CudaSlice<f32>,
        targets: &[u32],
        vocab: usize,
        grad_scale: f32,
        dlogits: &mut CudaSlice<f32>,
    ) -> Vec<f64> {
        let tgt = self.upload_u32(targets);
        let mut losses: CudaSlice<f64> = self
            .stream
            .alloc_zeros(targets.len().max(1))
            .expect("CUDA alloc");
        let v = vocab as u64;
        launch!(
            self,
            "cross_entropy",
            rows(targets.len()),
            logits,
            &tgt,
            &v,
            &grad_scale,
            dlogits,
            &mut losses
        );
        let mut out = self.stream.clone_dtoh(&losses).expect("CUDA download");
        out.truncate(targets.len());
        out
    }

    fn sum_squares(&self, x: &CudaSlice<f32>) -> f64 {
        let blocks = x.len().div_ceil(SQ_CHUNK).max(1);
        let mut parts: CudaSlice<f64> = self.stream.alloc_zeros(blocks).expect("CUDA alloc");
        let mut total: CudaSlice<f64> = self.stream.alloc_zeros(1).expect("CUDA alloc");
        let (n, chunk, nb) = (x.len() as u64, SQ_CHUNK as u64, blocks as u64);
        launch!(
            self,
            "sum_squares_parts",
            rows(blocks),
            x,
            &n,
            &chunk,
            &mut parts
        );
        launch!(self, "sum_parts", rows(1), &parts, &nb, &mut total);
        self.stream.clone_dtoh(&total).expect("CUDA download")[0]
    }

    fn scale(&self, x: &mut CudaSlice<f32>, s: f32) {
        let n = x.len() as u64;
        launch!(self, "scale", elems(x.len()), x, &s, &n);
    }

    fn adamw(
        &self,
        p: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        s: AdamStep,
    ) {
        let n = p.len() as u64;
        launch!(
            self,
            "adamw",
            elems(p.len()),
            p,
            g,
            m,
            v,
            &n,
            &s.lr,
            &s.beta1,
            &s.beta2,
            &s.eps,
            &s.weight_decay,
            &s.bias1,
            &s.bias2,
        );
    }
}

//! [`Collective`] over NCCL between CUDA ranks (feature `nccl`), as llm.c runs it: rank 0 makes
//! the NCCL unique id, another collective (MPI under `mpirun`) broadcasts it, and every rank joins
//! the communicator on the GPU of its [`CudaBackend`]. From then on every collective runs on the
//! device, queued on the backend's stream: the gradients are summed in place
//! ([`Nccl::all_reduce_device`], one NCCL group per step), the few host values (losses, flags,
//! the weight hash) go up, through NCCL and back down.
//!
//! Faults: NCCL calls cannot return errors through [`Collective`]; while an operation is in
//! flight the host polls `ncclCommGetAsyncError`, and on an error (a peer rank that died, a
//! network failure) aborts the communicator (`ncclCommAbort`, so no kernel keeps waiting on the
//! dead peer), prints why and ends every rank through the bootstrap collective's `abort`.
//!
//! Status: compiled, not yet run on a GPU (neither has the CUDA backend it rests on).

use super::Collective;
use crate::backend::cuda::CudaBackend;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut, DeviceRepr};
use cudarc::nccl::{result, sys, NcclType};
use std::ffi::{c_void, CStr};
use std::fmt;
use std::sync::Arc;

/// Why the NCCL communicator could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NcclError {
    /// libnccl is not on this machine (or not on the library path).
    NoLibrary,
    /// The id rank 0 broadcast is not an NCCL unique id (its length).
    BadId(usize),
    /// An NCCL or CUDA call failed.
    Call {
        /// The function called.
        call: &'static str,
        /// Its error.
        why: String,
    },
}

impl fmt::Display for NcclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NcclError::NoLibrary => write!(
                f,
                "libnccl.so not found: install NCCL (pip's nvidia-nccl-cu12 / -cu13 puts it in \
                 nvidia/nccl/lib) and put a folder with libnccl.so on LD_LIBRARY_PATH (the wheel \
                 and Debian's libnccl2 have only libnccl.so.2: link libnccl.so to it)"
            ),
            NcclError::BadId(n) => write!(
                f,
                "the NCCL id broadcast from rank 0 has {n} bytes, not {ID_BYTES}"
            ),
            NcclError::Call { call, why } => write!(f, "{call}: {why}"),
        }
    }
}

impl std::error::Error for NcclError {}

const ID_BYTES: usize = 128;

/// NCCL's own words for a result code.
fn describe(r: sys::ncclResult_t) -> String {
    // SAFETY: the library is loaded (checked in `Nccl::unique_id` / `with_id`); it returns a
    // static, NUL-terminated string for every code.
    let text = unsafe { CStr::from_ptr(sys::ncclGetErrorString(r)) };
    format!("{r:?} ({})", text.to_string_lossy())
}

fn call<T>(call: &'static str, r: Result<T, result::NcclError>) -> Result<T, NcclError> {
    r.map_err(|e| NcclError::Call {
        call,
        why: describe(e.0),
    })
}

fn library() -> Result<(), NcclError> {
    // SAFETY: only tries to open the library.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(NcclError::NoLibrary)
    }
}

/// The NCCL ranks of one training job; every rank holds the same `size` and its own `rank`.
pub struct Nccl<'h> {
    comm: sys::ncclComm_t,
    /// The backend's stream: NCCL's kernels queue behind the backward pass that wrote the
    /// gradients, and the optimizer's behind them.
    stream: Arc<CudaStream>,
    rank: usize,
    size: usize,
    /// The bootstrap collective: node-local rank and `abort`.
    host: &'h dyn Collective,
}

impl<'h> Nccl<'h> {
    /// A fresh NCCL unique id (rank 0 makes it; every rank must join with the same one).
    pub fn unique_id() -> Result<[u8; ID_BYTES], NcclError> {
        library()?;
        let id = call("ncclGetUniqueId", result::get_uniqueid())?;
        Ok(id.internal.map(|c| c as u8))
    }

    /// Join the communicator of `host`'s ranks on `be`'s GPU: rank 0's unique id is broadcast
    /// over `host`. Every rank of `host` must call this (it is collective); any error should
    /// end the job through `host.abort`, since the other ranks may be waiting.
    pub fn new(host: &'h dyn Collective, be: &CudaBackend) -> Result<Nccl<'h>, NcclError> {
        library()?;
        let mut id = match host.rank() {
            0 => Nccl::unique_id()?.to_vec(),
            _ => Vec::new(),
        };
        host.broadcast(&mut id);
        let id: [u8; ID_BYTES] = id
            .try_into()
            .map_err(|v: Vec<u8>| NcclError::BadId(v.len()))?;
        Nccl::with_id(host, be, &id, host.rank(), host.size())
    }

    /// Join as `rank` of `size` with a unique id every rank already holds (a launcher that
    /// shares it another way, or one process driving several GPUs from threads). Blocks until
    /// all `size` ranks have joined.
    pub fn with_id(
        host: &'h dyn Collective,
        be: &CudaBackend,
        id: &[u8; ID_BYTES],
        rank: usize,
        size: usize,
    ) -> Result<Nccl<'h>, NcclError> {
        library()?;
        let stream = be.stream().clone();
        call_cuda("bind the CUDA context", stream.context().bind_to_thread())?;
        let id = sys::ncclUniqueId {
            internal: id.map(|b| b as ::core::ffi::c_char),
        };
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; the context of the backend's device is bound
        // to this thread, so NCCL takes that GPU.
        call("ncclCommInitRank", unsafe {
            result::comm_init_rank(&mut comm, size as i32, id, rank as i32)
        })?;
        Ok(Nccl {
            comm,
            stream,
            rank,
            size,
            host,
        })
    }

    /// The CUDA device this communicator runs on.
    pub fn ordinal(&self) -> usize {
        self.stream.context().ordinal()
    }

    /// Replace each of `bufs` (on this communicator's GPU) by its sum over the ranks, in place:
    /// one NCCL group, so the whole step's gradients go in one fused launch. Returns once the
    /// sums are complete.
    pub fn all_reduce_device<T: NcclType + DeviceRepr>(&self, bufs: &mut [CudaSlice<T>]) {
        let stream = self.stream.cu_stream() as sys::cudaStream_t;
        self.in_place("all-reduce", bufs, |ptr, n| {
            // SAFETY: `in_place` passes a live buffer of `n` elements of T on our device.
            unsafe {
                result::all_reduce(
                    ptr,
                    ptr,
                    n,
                    T::as_nccl_type(),
                    sys::ncclRedOp_t::ncclSum,
                    self.comm,
                    stream,
                )
            }
        });
    }

    /// Rank 0's `bytes` on every rank.
    fn broadcast_device(&self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        let stream = self.stream.cu_stream() as sys::cudaStream_t;
        let mut d = [self.upload(bytes)];
        self.in_place("broadcast", &mut d, |ptr, n| {
            // SAFETY: as in `all_reduce_device`, `n` bytes.
            unsafe {
                result::broadcast(
                    ptr,
                    ptr,
                    n,
                    sys::ncclDataType_t::ncclUint8,
                    0,
                    self.comm,
                    stream,
                )
            }
        });
        bytes.copy_from_slice(&self.download(&d[0]));
    }

    /// Queue `op` (an in-place NCCL collective on a device pointer and an element count) on each
    /// of `bufs`, in one NCCL group on our stream, and wait for it.
    fn in_place<T: DeviceRepr>(
        &self,
        what: &'static str,
        bufs: &mut [CudaSlice<T>],
        op: impl Fn(*mut c_void, usize) -> Result<result::NcclStatus, result::NcclError>,
    ) {
        self.bind();
        {
            // Each buffer's guard records its use on the stream once the op is queued.
            let mut guards = Vec::with_capacity(bufs.len());
            self.check(what, result::group_start());
            for b in bufs.iter_mut() {
                let n = b.len();
                let (ptr, guard) = b.device_ptr_mut(&self.stream);
                let r = op(ptr as *mut c_void, n);
                guards.push(guard);
                self.check(what, r);
            }
            self.check(what, result::group_end());
        }
        self.wait(what);
    }

    /// The sum over the ranks of host values: up, all-reduced on the device, down.
    fn all_reduce_host<T: NcclType + DeviceRepr + Copy>(&self, x: &mut [T]) {
        if x.is_empty() {
            return;
        }
        let mut d = [self.upload(x)];
        self.all_reduce_device(&mut d);
        x.copy_from_slice(&self.download(&d[0]));
    }

    fn upload<T: DeviceRepr>(&self, x: &[T]) -> CudaSlice<T> {
        self.stream.clone_htod(x).expect("CUDA upload")
    }

    fn download<T: DeviceRepr>(&self, x: &CudaSlice<T>) -> Vec<T> {
        self.stream.clone_dtoh(x).expect("CUDA download")
    }

    fn bind(&self) {
        self.stream
            .context()
            .bind_to_thread()
            .expect("CUDA bind context");
    }

    /// A failed NCCL call mid-run: the job cannot continue on any rank.
    fn check<T>(&self, what: &'static str, r: Result<T, result::NcclError>) {
        if let Err(e) = r {
            self.fail(what, e.0);
        }
    }

    fn fail(&self, what: &str, r: sys::ncclResult_t) -> ! {
        // SAFETY: a live communicator; aborting stops its kernels so nothing waits on a peer.
        let last = unsafe { CStr::from_ptr(sys::ncclGetLastError(self.comm)) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: as above; the communicator is not used again (the process ends below).
        let _ = unsafe { result::comm_abort(self.comm) };
        eprintln!(
            "error (rank {} of {}): NCCL {what}: {}{}{}; a peer rank died or the network \
             failed: ending every rank",
            self.rank,
            self.size,
            describe(r),
            if last.is_empty() { "" } else { ": " },
            last
        );
        self.host.abort(1)
    }

    /// Wait for everything queued on the stream, polling NCCL's asynchronous error meanwhile:
    /// a plain synchronize would wait forever on a rank that died.
    fn wait(&self, what: &str) {
        let done = self.stream.record_event(None).expect("CUDA record event");
        loop {
            match done.try_is_complete() {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => panic!("CUDA error during NCCL {what}: {e:?}"),
            }
            let mut r = sys::ncclResult_t::ncclSuccess;
            // SAFETY: a live communicator and a valid out-pointer.
            let _ = unsafe { sys::ncclCommGetAsyncError(self.comm, &mut r) };
            if !matches!(
                r,
                sys::ncclResult_t::ncclSuccess | sys::ncclResult_t::ncclInProgress
            ) {
                self.fail(what, r);
            }
            std::thread::yield_now();
        }
    }
}

fn call_cuda<T>(
    call: &'static str,
    r: Result<T, cudarc::driver::DriverError>,
) -> Result<T, NcclError> {
    r.map_err(|e| NcclError::Call {
        call,
        why: format!("{e:?}"),
    })
}

impl Drop for Nccl<'_> {
    fn drop(&mut self) {
        // SAFETY: a live communicator, not used after this. Finalize flushes its operations,
        // destroy frees it; errors at exit change nothing.
        unsafe {
            let _ = result::comm_finalize(self.comm);
            let _ = result::comm_destroy(self.comm);
        }
    }
}

impl Collective for Nccl<'_> {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn node_rank(&self) -> usize {
        self.host.node_rank()
    }
    fn all_reduce_sum(&self, x: &mut [f32]) {
        self.all_reduce_host(x);
    }
    fn all_reduce_sum_f64(&self, x: &mut [f64]) {
        self.all_reduce_host(x);
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let mut len = (bytes.len() as u64).to_le_bytes();
        self.broadcast_device(&mut len);
        bytes.resize(u64::from_le_bytes(len) as usize, 0);
        self.broadcast_device(bytes);
    }
    fn barrier(&self) {
        self.all_reduce_sum_f64(&mut [0.0]);
    }
    fn abort(&self, code: i32) -> ! {
        // SAFETY: a live communicator; the process ends below.
        let _ = unsafe { result::comm_abort(self.comm) };
        self.host.abort(code)
    }
    fn nccl(&self) -> Option<&Nccl<'_>> {
        Some(self)
    }
}

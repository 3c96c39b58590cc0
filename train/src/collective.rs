//! The communication seam of data-parallel training: every rank runs the same training loop on
//! its own micro-batches, and these few collectives keep the ranks in lockstep. One process is
//! the identity [`Single`]; `mpi` (feature `mpi`) runs over an MPI communicator; `nccl`
//! (feature `nccl`) over NCCL between CUDA ranks, bootstrapped by another collective (MPI).
//!
//! The gradient all-reduce itself is [`Backend::all_reduce_sum`]: by default the host round trip
//! [`all_reduce_via_host`] (one flat buffer through [`Collective::all_reduce_sum`]); the CUDA
//! backend with an NCCL collective sums its device buffers in place instead.

use crate::backend::Backend;

#[cfg(feature = "nccl")]
pub mod nccl;

/// Collective operations over the ranks of one training job. Every rank must call the same
/// collectives in the same order.
pub trait Collective {
    /// This process's rank, 0 ..< `size`.
    fn rank(&self) -> usize;
    /// Number of ranks in the job.
    fn size(&self) -> usize;
    /// Rank among the processes on this machine (the one that builds the node's token cache).
    fn node_rank(&self) -> usize;
    /// Replace `x` on every rank by the element-wise sum over ranks.
    fn all_reduce_sum(&self, x: &mut [f32]);
    /// As `all_reduce_sum`, for the few f64 scalars of a step (losses, flags).
    fn all_reduce_sum_f64(&self, x: &mut [f64]);
    /// Rank 0's `bytes` on every rank (the others' input is ignored).
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Return once every rank has reached it.
    fn barrier(&self);
    /// End every rank of the job with `code` (a fault on one rank must not leave the others
    /// waiting in a collective).
    fn abort(&self, code: i32) -> !;

    /// The NCCL communicator when this collective is one (the CUDA backend's gradient
    /// all-reduce then stays on the device).
    #[cfg(feature = "nccl")]
    fn nccl(&self) -> Option<&nccl::Nccl<'_>> {
        None
    }

    /// Whether `flag` holds on any rank (every rank gets the same answer).
    fn any(&self, flag: bool) -> bool {
        if self.size() == 1 {
            return flag;
        }
        let mut x = [flag as u8 as f64];
        self.all_reduce_sum_f64(&mut x);
        x[0] > 0.0
    }
}

/// One process: every collective is the identity.
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn node_rank(&self) -> usize {
        0
    }
    fn all_reduce_sum(&self, _x: &mut [f32]) {}
    fn all_reduce_sum_f64(&self, _x: &mut [f64]) {}
    fn broadcast(&self, _bytes: &mut Vec<u8>) {}
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Sum each of `bufs` over the ranks of `comm` through the host: download into one flat buffer,
/// one [`Collective::all_reduce_sum`], upload (the default [`Backend::all_reduce_sum`]).
pub fn all_reduce_via_host<B: Backend + ?Sized>(
    be: &B,
    comm: &dyn Collective,
    bufs: &mut [B::Buf],
) {
    if comm.size() == 1 {
        return;
    }
    let (mut flat, mut lens) = (Vec::new(), Vec::new());
    for b in bufs.iter() {
        let host = be.download(b);
        lens.push(host.len());
        flat.extend_from_slice(&host);
    }
    comm.all_reduce_sum(&mut flat);
    let mut at = 0;
    for (b, n) in bufs.iter_mut().zip(lens) {
        *b = be.upload(&flat[at..at + n]);
        at += n;
    }
}

/// FNV-1a over the bits of `x`: the weight fingerprint ranks compare.
pub fn hash_f32(h: u64, x: &[f32]) -> u64 {
    x.iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// The FNV-1a offset basis: the starting `h` of [`hash_f32`].
pub const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

#[cfg(feature = "mpi")]
pub mod mpi {
    //! [`Collective`] over MPI (rsmpi on the system's OpenMPI): `mpirun -np N`.

    use super::Collective;
    use mpi::collective::SystemOperation;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;

    /// The MPI world as a [`Collective`]; MPI is finalised when it is dropped.
    pub struct Mpi {
        world: SimpleCommunicator,
        node_rank: usize,
        // Declared last, so dropped last: finalises MPI.
        _universe: mpi::environment::Universe,
    }

    impl Mpi {
        /// Initialise MPI; None when it cannot be (already initialised).
        pub fn init() -> Option<Mpi> {
            let universe = mpi::initialize()?;
            let world = universe.world();
            let node = world.split_shared(world.rank());
            let node_rank = node.rank() as usize;
            Some(Mpi {
                world,
                node_rank,
                _universe: universe,
            })
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn node_rank(&self) -> usize {
            self.node_rank
        }
        fn all_reduce_sum(&self, x: &mut [f32]) {
            let send = x.to_vec();
            self.world
                .all_reduce_into(&send[..], x, SystemOperation::sum());
        }
        fn all_reduce_sum_f64(&self, x: &mut [f64]) {
            let send = x.to_vec();
            self.world
                .all_reduce_into(&send[..], x, SystemOperation::sum());
        }
        fn broadcast(&self, bytes: &mut Vec<u8>) {
            let root = self.world.process_at_rank(0);
            let mut len = [bytes.len() as u64];
            root.broadcast_into(&mut len[..]);
            bytes.resize(len[0] as usize, 0);
            root.broadcast_into(&mut bytes[..]);
        }
        fn barrier(&self) {
            self.world.barrier();
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}

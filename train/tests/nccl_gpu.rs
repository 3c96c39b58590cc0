//! The NCCL collective (feature `nccl`) on machines with GPUs. One GPU: a 1-rank communicator
//! runs the device all-reduce path (gradient buffers of odd lengths come back unchanged, bit for
//! bit; the host collectives through it; a trainer stepping through it gives the losses of one
//! without it, bit for bit). Two GPUs or more: two ranks, one thread each, sum device buffers
//! exactly (each element is one f32 addition: bit for bit against the host), and 2 ranks ×
//! accum 1 train like 1 GPU × accum 2 within 1e-6 relative per loss.
//!
//! Without a device each test prints `skipped: ...` and asserts nothing else (not a pass:
//! scripts/gpu-check.sh counts it as skipped). A device without libnccl is a failure. One test
//! needs no GPU: libnccl loads (through a `libnccl.so` on the library path) and makes an id.
#![cfg(feature = "nccl")]

#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{train_config, Synthetic};
use tokenformer_core::init::init;
use tokenformer_core::{Config, Rng};
use tokenformer_train::backend::cuda::{device_count, CudaBackend};
use tokenformer_train::collective::nccl::{Nccl, NcclError};
use tokenformer_train::{Backend, Collective, Single, Trainer};

/// The number of CUDA devices, or None after printing why the test is skipped.
fn gpus(need: usize) -> Option<usize> {
    match device_count() {
        Ok(n) if n >= need => Some(n),
        Ok(n) => {
            println!("skipped: needs {need} CUDA devices, this machine has {n}");
            None
        }
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn backend(index: usize) -> CudaBackend {
    let be = CudaBackend::new(index).expect("a CUDA device is present but the backend failed");
    println!("device {index}: {}", be.describe());
    be
}

fn losses<B: Backend>(t: &mut Trainer<'_, B>, steps: u64) -> Vec<f64> {
    let mut data = Synthetic::keyed(500, 4000, 2);
    (0..steps)
        .map(|_| t.step(&mut data).unwrap().loss)
        .collect()
}

fn model() -> tokenformer_core::Model<'static> {
    init(Config::preset("tiny").unwrap(), 4).unwrap()
}

/// Odd lengths (one element, not a multiple of any vector width, past 2^16).
const LENS: [usize; 4] = [1, 7, 1000, 65_537];

fn values(rank: usize, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(100 + rank as u64 * 7 + n as u64);
    (0..n)
        .map(|_| (rng.below(1 << 20) as f32 - (1 << 19) as f32) * 1e-3)
        .collect()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Runs without a GPU too: cudarc finds `libnccl.so` and NCCL makes a unique id (no device
/// needed), or the error says the library is missing.
#[test]
fn unique_id_comes_from_libnccl() {
    match Nccl::unique_id() {
        Ok(id) => {
            let version = cudarc::nccl::result::get_nccl_version().expect("ncclGetVersion");
            println!("libnccl {version}: unique id {:02x?}...", &id[..8]);
            assert!(id.iter().any(|&b| b != 0), "an all-zero NCCL id");
        }
        Err(e @ NcclError::NoLibrary) => println!("skipped: {e}"),
        Err(e) => panic!("libnccl is present but made no unique id: {e}"),
    }
}

#[test]
fn one_rank_all_reduce_runs_on_the_device() {
    let Some(_) = gpus(1) else { return };
    let be = backend(0);
    let id = Nccl::unique_id().expect("libnccl");
    let nccl = Nccl::with_id(&Single, &be, &id, 0, 1).expect("a 1-rank NCCL communicator");
    assert_eq!((nccl.rank(), nccl.size()), (0, 1));
    assert!(nccl.nccl().is_some());

    // The gradient seam: device buffers summed over one rank stay as they were.
    let host: Vec<Vec<f32>> = LENS.iter().map(|&n| values(0, n)).collect();
    let mut bufs: Vec<_> = host.iter().map(|h| be.upload(h)).collect();
    be.all_reduce_sum(&nccl, &mut bufs);
    for (h, b) in host.iter().zip(&bufs) {
        assert_eq!(bits(h), bits(&be.download(b)), "{} elements", h.len());
    }
    // The host collectives go through the device too.
    let mut x = [1.5f64, -2.25];
    nccl.all_reduce_sum_f64(&mut x);
    assert_eq!(x, [1.5, -2.25]);
    let mut y = values(0, 33);
    let want = y.clone();
    nccl.all_reduce_sum(&mut y);
    assert_eq!(bits(&y), bits(&want));
    let mut bytes = b"rank zero".to_vec();
    nccl.broadcast(&mut bytes);
    assert_eq!(bytes, b"rank zero");
    nccl.barrier();
    assert!(nccl.any(true) && !nccl.any(false));

    // A trainer whose gradients pass through NCCL steps exactly as one without.
    let m = model();
    let plain = losses(&mut Trainer::new(&be, &m, train_config(2, 6)), 6);
    let through = losses(
        &mut Trainer::new(&be, &m, train_config(2, 6)).with_collective(&nccl),
        6,
    );
    println!("losses: {plain:?}");
    assert_eq!(
        plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        through.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "through NCCL: {through:?}"
    );
}

#[test]
fn two_ranks_on_two_gpus_sum_exactly_and_train_like_accum_two() {
    let Some(_) = gpus(2) else { return };
    const STEPS: u64 = 10;
    let m = model();
    let one_gpu = losses(
        &mut Trainer::new(&backend(0), &m, train_config(2, STEPS)),
        STEPS,
    );
    let id = Nccl::unique_id().expect("libnccl");
    // One thread per rank: NCCL's init blocks until both have joined.
    let ranks: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let m = &m;
                s.spawn(move || {
                    let be = backend(rank);
                    let nccl = Nccl::with_id(&Single, &be, &id, rank, 2).expect("NCCL init");
                    let mut bufs: Vec<_> =
                        LENS.iter().map(|&n| be.upload(&values(rank, n))).collect();
                    be.all_reduce_sum(&nccl, &mut bufs);
                    for (&n, b) in LENS.iter().zip(&bufs) {
                        let want: Vec<f32> = values(0, n)
                            .iter()
                            .zip(values(1, n))
                            .map(|(a, b)| a + b)
                            .collect();
                        assert_eq!(bits(&be.download(b)), bits(&want), "rank {rank}, {n}");
                    }
                    let mut x = [rank as f64 + 1.0];
                    nccl.all_reduce_sum_f64(&mut x);
                    assert_eq!(x, [3.0]);
                    let mut bytes = if rank == 0 {
                        b"from 0".to_vec()
                    } else {
                        Vec::new()
                    };
                    nccl.broadcast(&mut bytes);
                    assert_eq!(bytes, b"from 0");
                    losses(
                        &mut Trainer::new(&be, m, train_config(1, STEPS)).with_collective(&nccl),
                        STEPS,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("1 GPU × accum 2: {one_gpu:?}\n2 ranks: {:?}", ranks[0]);
    assert_eq!(ranks[0], ranks[1], "the ranks report different losses");
    for (x, y) in one_gpu.iter().zip(&ranks[0]) {
        assert!(
            (x - y).abs() <= 1e-6 * x.abs(),
            "{one_gpu:?}\n{:?}",
            ranks[0]
        );
    }
    let same = one_gpu.iter().zip(&ranks[0]).all(|(x, y)| x == y);
    println!("bit for bit: {same}");
}

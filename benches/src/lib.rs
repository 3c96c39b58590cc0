//! Benchmarks live in benches/. What the benchmark programs share:

/// CPU seconds this thread has run: timings that hold on a shared, loaded machine.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// GFLOP per CPU-second of this thread for `f`, which does `flops` FLOPs: one untimed call, then
/// the best of `rounds` timed calls.
pub fn gflops(rounds: usize, flops: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let c = thread_cpu_seconds();
        f();
        best = best.min(thread_cpu_seconds() - c);
    }
    flops / best / 1e9
}

/// Runs `f` on a rayon pool of one thread, so the kernels' parallel loops stay on this thread
/// and its CPU clock counts all of their work.
pub fn on_one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a rayon pool of one thread")
        .install(f)
}

//! A spinning thread team for the small parallel regions of decode (std builds).
//!
//! Decoding a token runs about ten parallel regions per layer (each Pattention's two products),
//! separated by a few microseconds of serial work. rayon's idle workers go to sleep between them
//! and every region paid a wake-up (58 context switches per token, 1.5 of 2 CPUs busy on a
//! 2-vCPU VM). A team's threads instead spin on an epoch counter for [`SPIN`] after their last
//! task, then park; the caller's thread works too, and tasks are taken from a shared counter, so
//! a slow thread does not hold the others up. One team per thread count, made on first use and
//! kept for the process; a region that finds its team busy (a call from another thread) runs
//! through rayon instead.

use std::boxed::Box;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::vec::Vec;

/// How long an idle team thread spins before it parks: longer than the serial work between two
/// regions of a decode step, short enough that a spinning thread does not keep a CPU from
/// rayon's workers in a prompt's f32 products for long (5 ms cost 2-thread f32 prefill a third).
const SPIN: Duration = Duration::from_micros(100);

/// The job of one region: `run(task)` for every task index below `tasks`.
#[derive(Clone, Copy)]
struct Job {
    /// `&dyn Fn(usize) + Sync` with its lifetime erased; valid while the region runs.
    run: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

struct Shared {
    /// Bumped for each region; workers start when it moves.
    epoch: AtomicUsize,
    job: Mutex<Option<Job>>,
    next: AtomicUsize,
    /// Workers still inside the current region.
    pending: AtomicUsize,
    panicked: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    parked: Mutex<usize>,
    wake: Condvar,
}

// SAFETY: `Job::run` points at a `Sync` closure that outlives the region it is read in (`run`
// waits for every worker before returning), so sharing the pointer across threads is sound.
unsafe impl Send for Shared {}
// SAFETY: as above; every other field is a sync primitive.
unsafe impl Sync for Shared {}

pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: usize,
    busy: AtomicBool,
}

impl Team {
    fn new(threads: usize) -> Team {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: Mutex::new(None),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        });
        // A thread the system refuses (out of threads or memory) leaves a smaller team, down to
        // the caller alone, rather than a panic.
        let workers = (1..threads)
            .filter(|_| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name("tokenformer-team".into())
                    .spawn(move || worker(&s, 0))
                    .is_ok()
            })
            .count();
        Team {
            shared,
            workers,
            busy: AtomicBool::new(false),
        }
    }

    /// Run `f(task)` for tasks 0..tasks across the team and this thread; false (nothing run)
    /// if the team is busy with another caller's region.
    pub(crate) fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if self.busy.swap(true, Ordering::Acquire) {
            return false;
        }
        let s = &*self.shared;
        // SAFETY (lifetime erasure): this function does not return before every worker has
        // left the region (`pending` reaches 0), and no worker reads the job after that.
        let run: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job { run, tasks });
        s.next.store(0, Ordering::Relaxed);
        s.pending.store(self.workers, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        if *s.parked.lock().unwrap_or_else(|e| e.into_inner()) > 0 {
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| take_tasks(s, f, tasks)));
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        self.busy.store(false, Ordering::Release);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = s.panicked.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
        true
    }
}

fn take_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync), tasks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i);
    }
}

/// A team thread: `seen` is the epoch at its spawning, before the team's first region.
fn worker(s: &Shared, mut seen: usize) {
    loop {
        // Spin for the next region, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                let mut parked = s.parked.lock().unwrap_or_else(|e| e.into_inner());
                *parked += 1;
                while s.epoch.load(Ordering::Acquire) == seen {
                    parked = s.wake.wait(parked).unwrap_or_else(|e| e.into_inner());
                }
                *parked -= 1;
            }
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            // SAFETY: the region's caller keeps the closure alive until `pending` reaches 0,
            // which happens only below, after the last use.
            let f = unsafe { &*job.run };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| take_tasks(s, f, job.tasks))) {
                *s.panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

/// The team of `threads` threads (this one included), made on first use.
pub(crate) fn team(threads: usize) -> Arc<Team> {
    type Teams = Mutex<Vec<(usize, Arc<Team>)>>;
    static TEAMS: OnceLock<Teams> = OnceLock::new();
    let mut teams = TEAMS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, t)) = teams.iter().find(|(n, _)| *n == threads) {
        return Arc::clone(t);
    }
    let t = Arc::new(Team::new(threads));
    teams.push((threads, Arc::clone(&t)));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Every task of every region runs exactly once, across regions back to back and after
    /// the team threads have parked; a task's panic reaches the caller and the team goes on.
    #[test]
    fn every_task_once_and_panics_propagate() {
        let t = team(3);
        for round in 0..2000usize {
            if round % 500 == 499 {
                std::thread::sleep(SPIN * 3);
            }
            let tasks = 1 + round % 37;
            let hits: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
            assert!(t.run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }));
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            t.run(8, &|i| assert!(i != 5, "task 5 fails"));
        }));
        assert!(r.is_err());
        let sum = AtomicU64::new(0);
        assert!(t.run(100, &|i| {
            sum.fetch_add(i as u64, Ordering::Relaxed);
        }));
        assert_eq!(sum.load(Ordering::Relaxed), 4950);
    }

    /// Two callers at once: one gets the team, the other is told to go elsewhere (false), and
    /// neither region loses a task.
    #[test]
    fn a_busy_team_refuses_a_second_caller() {
        let t = team(2);
        let inside = AtomicBool::new(false);
        let refused = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                t.run(2, &|_| {
                    inside.store(true, Ordering::SeqCst);
                    while !refused.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                })
            });
            while !inside.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            assert!(!t.run(1, &|_| {}));
            refused.store(true, Ordering::SeqCst);
        });
        assert!(t.run(1, &|_| {}));
    }
}

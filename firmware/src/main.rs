//! TokenFormer on a Cortex-M4F: greedy decoding of a Q8_0 model embedded in flash, printed over
//! semihosting. Runs under QEMU's mps2-an386 (`scripts/firmware.sh`); see the README's
//! "Embedded" section for porting it to a board.
//!
//! The model is borrowed from flash (no weight is copied to RAM), the heap holds only what
//! `Session::bytes_needed` says a session needs, and every error (a malformed model included)
//! prints a message and exits through semihosting with a non-zero status, as does a panic.
#![no_std]
#![no_main]

extern crate alloc;

mod decode;

use core::alloc::{GlobalAlloc, Layout};
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprint, hprintln};
use embedded_alloc::LlffHeap;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use generated::{HEAP_BYTES, MODEL_FILE, SESSION_BYTES, TOKEN_BYTES, VARIANT};

/// The checkpoint in flash, 16-aligned so that core borrows its f32 and block tensors in place.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.bin")));

/// The first-fit heap with a count of live bytes and their high-water mark.
struct Tracked {
    heap: LlffHeap,
    live: AtomicUsize,
    peak: AtomicUsize,
}

unsafe impl GlobalAlloc for Tracked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.heap.alloc(layout) };
        if !p.is_null() {
            let live = self.live.fetch_add(layout.size(), Relaxed) + layout.size();
            self.peak.fetch_max(live, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.fetch_sub(layout.size(), Relaxed);
        // SAFETY: ptr came from this allocator with this layout.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: Tracked = Tracked {
    heap: LlffHeap::empty(),
    live: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};

/// Not zeroed at reset (`.uninit`): the allocator never reads memory it did not hand out.
#[link_section = ".uninit.HEAP"]
static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];

/// Stack painting: every word between the end of static RAM and (just below) the stack pointer
/// at entry gets this pattern; the lowest overwritten word is the stack's high-water mark.
const PAINT: u32 = 0xA5A5_5A5A;
extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn stack_bounds() -> (usize, usize) {
    // Linker symbols of cortex-m-rt's link.x: only their addresses are taken.
    (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

fn paint_stack() {
    let (low, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize - 256;
    let mut p = low;
    while p < sp {
        // SAFETY: [low, sp) is the unused part of the stack region, below every live frame.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

fn stack_used() -> usize {
    let (low, high) = stack_bounds();
    let mut p = low;
    // SAFETY: reads within the stack region painted above.
    while p < high && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    high - p
}

/// The board's CMSDK APB timer 0, a 32-bit down-counter at the 25 MHz system clock, read as
/// ticks counting up. Under QEMU's `-icount shift=0` (one instruction per virtual nanosecond)
/// its ticks count instructions; [`calibrate`] measures how many per tick.
mod timer {
    const BASE: usize = 0x4000_0000;
    const CTRL: *mut u32 = BASE as *mut u32;
    const VALUE: *mut u32 = (BASE + 4) as *mut u32;
    const RELOAD: *mut u32 = (BASE + 8) as *mut u32;

    pub fn start() {
        // SAFETY: the mps2-an386 memory map puts APB timer 0's registers at BASE.
        unsafe {
            RELOAD.write_volatile(u32::MAX);
            VALUE.write_volatile(u32::MAX);
            CTRL.write_volatile(1);
        }
    }

    pub fn now() -> u32 {
        // SAFETY: as in `start`.
        u32::MAX - unsafe { VALUE.read_volatile() }
    }

    /// Ticks of a loop of exactly `2 · n` instructions (subs, bne).
    pub fn calibrate(n: u32) -> u32 {
        let t0 = now();
        // SAFETY: a register-only countdown loop.
        unsafe {
            core::arch::asm!("1:", "subs {0}, {0}, #1", "bne 1b", inout(reg) n => _,
                options(nomem, nostack));
        }
        now().wrapping_sub(t0)
    }
}

/// Semihosting stdout as a `fmt::Write`.
struct Host;
impl Write for Host {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        hprint!("{}", s);
        Ok(())
    }
}

fn run() -> Result<(), decode::Error> {
    let bytes: &'static [u8] = &MODEL.0;
    hprintln!(
        "model: {} ({} bytes at {:p}), corruption: {}",
        MODEL_FILE,
        bytes.len(),
        bytes.as_ptr(),
        VARIANT
    );
    let model = decode::load(bytes)?;
    hprintln!(
        "weights: {} bytes, {} borrowed from flash",
        model.weight_bytes(),
        model.borrowed_bytes()
    );
    timer::start();
    let out = decode::greedy(&model, &timer::now)?;
    decode::print(&mut Host, &out, &TOKEN_BYTES)?;
    const LOOP: u32 = 1_000_000;
    let calib = timer::calibrate(LOOP);
    hprintln!(
        "timer_ticks: prompt {} ({} tokens), decode {} ({} tokens), calibration {} for {} instructions",
        out.prompt_ticks,
        decode::PROMPT.len(),
        out.decode_ticks,
        decode::GENERATE - 1,
        calib,
        2 * LOOP
    );
    Ok(())
}

#[entry]
fn main() -> ! {
    paint_stack();
    // SAFETY: called once, before any allocation; HEAP_MEM is used by nothing else.
    unsafe {
        HEAP.heap
            .init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP_BYTES)
    }
    let status = run();
    hprintln!(
        "heap_peak: {} bytes (heap {} = bound {} + load and fragmentation headroom)",
        HEAP.peak.load(Relaxed),
        HEAP_BYTES,
        SESSION_BYTES
    );
    hprintln!("stack_peak: {} bytes", stack_used());
    match status {
        Ok(()) => {
            hprintln!("status: ok");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => {
            hprintln!("error: {}", e);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    halt()
}

/// Semihosting's exit does not return under QEMU or a debugger; a board without one sleeps here.
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

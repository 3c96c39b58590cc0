//! The kernel level: which instruction set the kernels run, chosen at run time and forceable
//! (`TOKENFORMER_KERNELS`, [`set_level`]).

use alloc::vec::Vec;
use core::fmt;

/// An instruction set the kernels can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The scalar reference (`ops`, `formats`): what no_std runs.
    Scalar,
    /// x86-64-v3: AVX2 + FMA.
    Avx2,
    /// x86-64-v4: AVX-512 (f32 bodies; where the CPU has VNNI, the block rows-dots of decode
    /// and the integer GEMM of prompt blocks over quantized weights, else their AVX2 kernels).
    Avx512,
    /// aarch64 NEON.
    Neon,
}

impl Level {
    /// Every level, slowest first.
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2, Level::Avx512, Level::Neon];

    /// The name `TOKENFORMER_KERNELS` takes (`scalar`, `avx2`, `avx512`, `neon`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Neon => "neon",
        }
    }

    /// The level of a [`Level::name`] (case-insensitive, trimmed), `None` for an unknown name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU (and this build) can run the level.
    pub fn is_available(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "x86")))]
            Level::Avx2 => pulp::x86::V3::is_available(),
            #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "x86")))]
            Level::Avx512 => pulp::x86::V4::is_available(),
            #[cfg(all(feature = "std", target_arch = "aarch64"))]
            Level::Neon => pulp::aarch64::Neon::is_available(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel level that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelError {
    /// Not one of `scalar`, `avx2`, `avx512`, `neon`.
    Unknown(alloc::string::String),
    /// The CPU (or a no_std build) lacks it.
    Unavailable(Level),
}

impl fmt::Display for LevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelError::Unknown(s) => {
                write!(
                    f,
                    "unknown kernel level `{s}` (expected scalar, avx2, avx512 or neon)"
                )
            }
            LevelError::Unavailable(l) => {
                write!(f, "kernel level {l} is not available on this CPU")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LevelError {}

/// The levels this CPU can run, scalar first, best last.
pub fn available_levels() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect()
}

/// The best level this CPU can run.
pub fn best_level() -> Level {
    Level::ALL
        .into_iter()
        .rev()
        .find(|l| l.is_available())
        .unwrap_or(Level::Scalar)
}

/// The environment variable that forces a level.
pub const LEVEL_ENV: &str = "TOKENFORMER_KERNELS";

/// The level `TOKENFORMER_KERNELS` asks for: `Ok(None)` when unset or empty.
pub fn level_from_env() -> Result<Option<Level>, LevelError> {
    #[cfg(feature = "std")]
    if let Ok(s) = std::env::var(LEVEL_ENV) {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let l = Level::parse(&s).ok_or(LevelError::Unknown(s))?;
        return if l.is_available() {
            Ok(Some(l))
        } else {
            Err(LevelError::Unavailable(l))
        };
    }
    Ok(None)
}

#[cfg(feature = "std")]
static LEVEL: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(u8::MAX);

/// Force the kernel level for the whole process (all threads).
pub fn set_level(l: Level) -> Result<(), LevelError> {
    if !l.is_available() {
        return Err(LevelError::Unavailable(l));
    }
    #[cfg(feature = "std")]
    LEVEL.store(l as u8, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The kernel level in force: forced by [`set_level`], else by `TOKENFORMER_KERNELS` (read on
/// first use; a value this CPU cannot run is reported on stderr and ignored), else the best.
#[inline]
pub fn level() -> Level {
    #[cfg(feature = "std")]
    {
        use core::sync::atomic::Ordering::Relaxed;
        let l = LEVEL.load(Relaxed);
        if let Some(&l) = Level::ALL.get(l as usize) {
            return l;
        }
        let l = level_from_env().unwrap_or_else(|e| {
            std::eprintln!("{LEVEL_ENV}: {e}; using the best level");
            None
        });
        let l = l.unwrap_or_else(best_level);
        LEVEL.store(l as u8, Relaxed);
        l
    }
    #[cfg(not(feature = "std"))]
    Level::Scalar
}

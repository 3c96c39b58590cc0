//! What the firmware and its host reference (`core/examples/firmware_reference.rs`) both run
//! and print: greedy decoding of a fixed prompt, the generated ids, their text, and an FNV-1a
//! checksum of the first step's logits (their f32 bit patterns), so that `scripts/firmware.sh`
//! can compare the two printouts line by line.

use alloc::vec::Vec;
use core::fmt::{self, Write};
use tokenformer_core::sample::argmax;
use tokenformer_core::{checkpoint, LoadError, Model, Session, SessionError};

/// "ROMEO:\nWhat light" in `models/tiny-tokenizer.json`'s ids
/// (`tokenformer-cli tokenize --tokenizer models/tiny-tokenizer.json --text $'ROMEO:\nWhat light'`).
pub const PROMPT: &[u32] = &[50, 47, 45, 37, 47, 26, 199, 473, 368, 356];
/// Tokens generated after the prompt.
pub const GENERATE: usize = 64;
/// Positions the session holds: the prompt and every generated token but the last.
pub const CONTEXT: usize = PROMPT.len() + GENERATE - 1;

#[derive(Debug)]
pub enum Error {
    Load(LoadError),
    Session(SessionError),
    Print,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(e) => write!(f, "loading the model: {e}"),
            Error::Session(e) => write!(f, "decoding: {e}"),
            Error::Print => write!(f, "printing failed"),
        }
    }
}

impl From<fmt::Error> for Error {
    fn from(_: fmt::Error) -> Self {
        Error::Print
    }
}

/// The generated ids and the checksum of the logits after the prompt; the clock's ticks spent
/// on the prompt block and on the other `GENERATE - 1` tokens.
pub struct Decoded {
    pub ids: Vec<u32>,
    pub first_logits_fnv1a: u64,
    pub prompt_ticks: u32,
    pub decode_ticks: u32,
}

/// FNV-1a (64-bit) over the little-endian bit patterns of `x`.
pub fn fnv1a(x: &[f32]) -> u64 {
    x.iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

pub fn load(bytes: &[u8]) -> Result<Model<'_>, Error> {
    checkpoint::load(bytes).map_err(Error::Load)
}

/// Greedy decoding of [`PROMPT`] for [`GENERATE`] tokens, timed by `now` (a tick counter that
/// counts up and may wrap).
pub fn greedy(model: &Model<'_>, now: &dyn Fn() -> u32) -> Result<Decoded, Error> {
    let mut s = Session::with_context(model, CONTEXT);
    let t0 = now();
    let mut logits = s.feed(PROMPT).map_err(Error::Session)?;
    let t1 = now();
    let first_logits_fnv1a = fnv1a(&logits);
    let mut ids = Vec::with_capacity(GENERATE);
    loop {
        let next = argmax(&logits) as u32;
        ids.push(next);
        if ids.len() == GENERATE {
            break;
        }
        logits = s.feed(&[next]).map_err(Error::Session)?;
    }
    Ok(Decoded {
        ids,
        first_logits_fnv1a,
        prompt_ticks: t1.wrapping_sub(t0),
        decode_ticks: now().wrapping_sub(t1),
    })
}

/// The lines both sides print (compared by `scripts/firmware.sh`).
pub fn print(w: &mut impl Write, d: &Decoded, table: &[&[u8]]) -> fmt::Result {
    let list = |w: &mut dyn Write, ids: &[u32]| -> fmt::Result {
        for (i, id) in ids.iter().enumerate() {
            write!(w, "{}{id}", if i == 0 { "" } else { "," })?;
        }
        writeln!(w)
    };
    write!(w, "prompt_ids: ")?;
    list(w, PROMPT)?;
    write!(w, "ids: ")?;
    list(w, &d.ids)?;
    // The text escaped onto one line: printable ASCII as is, the rest as \n or \xNN.
    write!(w, "text: \"")?;
    for &id in PROMPT.iter().chain(&d.ids) {
        for &b in table.get(id as usize).copied().unwrap_or(b"?") {
            match b {
                b'\n' => write!(w, "\\n")?,
                b'"' | b'\\' => write!(w, "\\{}", b as char)?,
                0x20..=0x7e => w.write_char(b as char)?,
                _ => write!(w, "\\x{b:02x}")?,
            }
        }
    }
    writeln!(w, "\"")?;
    writeln!(w, "first_logits_fnv1a: {:016x}", d.first_logits_fnv1a)
}

//! TokenFormer in the browser: `tokenformer-core` (its `no_std` path: scalar kernels, one
//! thread, the model borrowed from linear memory) and a byte-level BPE encoder ([`bpe`]) behind
//! plain `extern "C"` exports, so the page needs no JS glue generator.
//!
//! The calling convention, all numbers (`i32`/`u32`/`f32`, pointers are `u32` offsets into the
//! module's memory):
//! - `tf_alloc(len) -> ptr`, `tf_free(ptr, len)`: byte buffers for strings passed in.
//! - `tf_model_alloc(len) -> ptr`: a 16-aligned buffer for the checkpoint; copy the file into
//!   it, then `tf_model_load() -> status`. The model borrows that buffer for the module's life:
//!   one model per module instance.
//! - `tf_tokenizer_load(ptr, len) -> status`: a `tokenizer.json`.
//! - `tf_start(ptr, len, temperature, top_k, top_p, seed) -> n`: tokenize the prompt, feed it,
//!   and return its id count; `tf_ids_ptr()` points at those ids (`u32`s).
//! - `tf_next() -> id`: the next sampled id (≥ 0), `-2` once the context is full.
//! - `tf_token_ptr(id)`, `tf_token_len(id)`: the bytes of a token, to decode as a UTF-8 stream.
//! - `tf_context()`: the model's max context.
//!
//! Every call that can fail returns `-1` (or a null pointer) and leaves a message at
//! `tf_error_ptr()` / `tf_error_len()`.

extern crate alloc;

pub mod bpe;
pub mod generator;
#[path = "../../../firmware/src/token_bytes.rs"]
mod token_bytes;

use bpe::Tokenizer;
use generator::Generator;
use std::alloc::Layout;
use std::cell::RefCell;
use tokenformer_core::{checkpoint, Model, SamplerConfig};

/// What the module holds between calls (wasm32 runs one thread: no locking).
#[derive(Default)]
struct State {
    /// The checkpoint's buffer, never freed: the model borrows it.
    model_bytes: Option<&'static mut [u8]>,
    model: Option<&'static Model<'static>>,
    tokenizer: Option<Tokenizer>,
    generator: Option<Generator<'static, 'static>>,
    ids: Vec<u32>,
    error: String,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// `Ok(v)` → `v`; `Err(e)` → `-1`, with `e` kept for `tf_error_*`.
fn status(s: &mut State, r: Result<i32, String>) -> i32 {
    r.unwrap_or_else(|e| {
        s.error = e;
        -1
    })
}

/// # Safety
/// `ptr` must point at `len` readable bytes (or `len` be 0).
unsafe fn input<'b>(ptr: *const u8, len: usize) -> Result<&'b str, String> {
    if len == 0 {
        return Ok("");
    }
    if ptr.is_null() {
        return Err("null pointer".into());
    }
    // SAFETY: the caller passes a buffer of `len` bytes it wrote into this module's memory.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes).map_err(|e| format!("the text is not valid UTF-8: {e}"))
}

/// A byte buffer of `len` bytes; null if the memory cannot grow.
#[no_mangle]
pub extern "C" fn tf_alloc(len: usize) -> *mut u8 {
    match Layout::from_size_align(len.max(1), 1) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// # Safety
/// `ptr` must come from `tf_alloc(len)` and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn tf_free(ptr: *mut u8, len: usize) {
    if let (false, Ok(layout)) = (ptr.is_null(), Layout::from_size_align(len.max(1), 1)) {
        // SAFETY: allocated by `tf_alloc` with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// The checkpoint's buffer (16-aligned, so tensors are borrowed, not copied); null after an
/// error or if a model was already given to this instance.
#[no_mangle]
pub extern "C" fn tf_model_alloc(len: usize) -> *mut u8 {
    with_state(|s| {
        if s.model_bytes.is_some() {
            s.error = "this module instance already has a model".into();
            return std::ptr::null_mut();
        }
        let Some(layout) = model_layout_checked(len) else {
            s.error = format!("a model of {len} bytes does not fit in memory");
            return std::ptr::null_mut();
        };
        // SAFETY: the layout has a non-zero size; zeroed, so the slice is initialized.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        if p.is_null() {
            s.error = format!("out of memory for a model of {len} bytes");
            return p;
        }
        // SAFETY: `p` holds `len` initialized bytes and is never freed.
        s.model_bytes = Some(unsafe { std::slice::from_raw_parts_mut(p, len) });
        p
    })
}

/// The layout of the model buffer: 16-aligned, so tensors are borrowed, not copied.
fn model_layout_checked(len: usize) -> Option<Layout> {
    Layout::from_size_align(len.max(1), 16).ok()
}

/// `model_layout_checked` for a buffer that was allocated with it.
fn model_layout(len: usize) -> Layout {
    // SAFETY: `tf_model_alloc` allocated this buffer, so the layout was valid.
    unsafe { Layout::from_size_align_unchecked(len.max(1), 16) }
}

/// Load the checkpoint copied into `tf_model_alloc`'s buffer: 0, or -1.
#[no_mangle]
pub extern "C" fn tf_model_load() -> i32 {
    with_state(|s| {
        let r = match (s.model_bytes.take(), s.model) {
            (_, Some(_)) => Err("a model is already loaded".to_string()),
            (None, None) => Err("no model buffer: call tf_model_alloc first".into()),
            (Some(bytes), None) => {
                let (ptr, len) = (bytes.as_mut_ptr(), bytes.len());
                // On success the buffer becomes shared and lives as long as the module.
                match checkpoint::load(bytes) {
                    Ok(m) => {
                        s.model = Some(Box::leak(Box::new(m)));
                        Ok(0)
                    }
                    Err(e) => {
                        // Nothing borrows the buffer after a failed load: free it, so that a
                        // page retrying with another file does not leak the first.
                        // SAFETY: allocated by `tf_model_alloc` with this layout.
                        unsafe { std::alloc::dealloc(ptr, model_layout(len)) };
                        Err(format!("loading the model: {e}"))
                    }
                }
            }
        };
        status(s, r)
    })
}

/// Load a `tokenizer.json`: 0, or -1.
///
/// # Safety
/// `ptr` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn tf_tokenizer_load(ptr: *const u8, len: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    let json = unsafe { input(ptr, len) };
    with_state(|s| {
        let r = json.and_then(|j| Tokenizer::from_json(j).map_err(|e| e.to_string()));
        let r = r.map(|t| {
            s.tokenizer = Some(t);
            0
        });
        status(s, r)
    })
}

/// The model's max context (0 before a model is loaded).
#[no_mangle]
pub extern "C" fn tf_context() -> i32 {
    with_state(|s| s.model.map_or(0, |m| m.config.max_context as i32))
}

/// Tokenize `prompt` and feed it; then `tf_next` draws ids. Returns the prompt's id count (the
/// ids at `tf_ids_ptr`), or -1. `temperature` 0 is greedy; `top_k` 0 and `top_p` 1 are no
/// limit.
///
/// # Safety
/// `ptr` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn tf_start(
    ptr: *const u8,
    len: usize,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    let prompt = unsafe { input(ptr, len) };
    with_state(|s| {
        s.generator = None;
        let r = (|| {
            let prompt = prompt?;
            let (Some(model), Some(tok)) = (s.model, &s.tokenizer) else {
                return Err("load a model and a tokenizer first".to_string());
            };
            if !(temperature.is_finite() && temperature >= 0.0) {
                return Err(format!(
                    "temperature must be finite and ≥ 0, got {temperature}"
                ));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(format!("top-p must be in (0, 1], got {top_p}"));
            }
            s.ids = tok.encode(prompt);
            if s.ids.is_empty() {
                return Err("the prompt is empty".into());
            }
            let config = SamplerConfig {
                temperature,
                top_k: top_k as usize,
                top_p,
            };
            let g =
                Generator::start(model, &s.ids, config, seed as u64).map_err(|e| e.to_string())?;
            s.generator = Some(g);
            Ok(s.ids.len() as i32)
        })();
        status(s, r)
    })
}

/// The ids of the last prompt given to `tf_start`.
#[no_mangle]
pub extern "C" fn tf_ids_ptr() -> *const u32 {
    with_state(|s| s.ids.as_ptr())
}

/// The next id (≥ 0), -2 once the context is full, or -1.
#[no_mangle]
pub extern "C" fn tf_next() -> i32 {
    with_state(|s| {
        let r = match s.generator.as_mut() {
            None => Err("no generation in progress: call tf_start".to_string()),
            Some(g) => g
                .next_id()
                .map(|id| id.map_or(-2, |id| id as i32))
                .map_err(|e| e.to_string()),
        };
        status(s, r)
    })
}

fn token(id: u32) -> (*const u8, usize) {
    with_state(
        |s| match s.tokenizer.as_ref().and_then(|t| t.token_bytes(id)) {
            Some(b) => (b.as_ptr(), b.len()),
            None => (std::ptr::null(), 0),
        },
    )
}

/// The bytes of token `id` (null past the vocabulary or before a tokenizer is loaded).
#[no_mangle]
pub extern "C" fn tf_token_ptr(id: u32) -> *const u8 {
    token(id).0
}

#[no_mangle]
pub extern "C" fn tf_token_len(id: u32) -> usize {
    token(id).1
}

/// The message of the last error (UTF-8).
#[no_mangle]
pub extern "C" fn tf_error_ptr() -> *const u8 {
    with_state(|s| s.error.as_ptr())
}

#[no_mangle]
pub extern "C" fn tf_error_len() -> usize {
    with_state(|s| s.error.len())
}

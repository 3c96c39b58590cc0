//! The C ABI of TokenFormer inference; the header is `include/tokenformer.h` (cbindgen).
//!
//! A separate crate rather than a feature of `core`: `core` stays `no_std` and free of
//! `unsafe extern "C"` surface, the tokenizer (`tokenizers`, std only) comes in only here, and
//! the crate types an app links (`staticlib` `libtokenformer.a`, `cdylib` `libtokenformer.so`)
//! are built only when asked for. The `rlib` lets `capi/tests` call the very functions C calls.
//!
//! Rules every function keeps:
//! - It returns a [`TfStatus`]; on failure [`tf_last_error`] gives this thread's message.
//! - No panic unwinds into C: each body runs under `catch_unwind` ([`TfStatus::TfErrPanic`]).
//! - Null pointers and text that is not UTF-8 are errors, never undefined behaviour.
//! - Every object has one owner and one `*_free`; `*_free(NULL)` is a no-op.
//! - A model is shared (reference counted) by any number of sessions, on any threads; a
//!   session, tokenizer or decoder is used by one thread at a time.
//! - Compute runs on a rayon pool the app sizes with [`tf_set_threads`]; rayon's global pool
//!   is never used.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use tokenformer_core::file::ModelFile;
use tokenformer_core::{checkpoint, Model, Sampler, SamplerConfig, Session};
use tokenizers::Tokenizer;

/// Bumped on any incompatible change to the functions or structs of the header.
pub const TF_ABI_VERSION: u32 = 1;
/// The checkpoint layout this build reads: safetensors with `format = tokenformer` metadata.
pub const TF_CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// The result of every call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TfStatus {
    TfOk = 0,
    /// A required pointer was NULL.
    TfErrNull = 1,
    /// Text (a path, a prompt) was not valid UTF-8.
    TfErrUtf8 = 2,
    /// A file could not be opened or read.
    TfErrIo = 3,
    /// The checkpoint is not a valid TokenFormer model.
    TfErrModel = 4,
    /// The tokenizer could not be loaded, or failed to encode or decode.
    TfErrTokenizer = 5,
    /// A token id out of range, or an empty feed.
    TfErrSession = 6,
    /// An argument out of range (threads, temperature, top-p, ...).
    TfErrArgument = 7,
    /// The output buffer is too small; the length needed was written.
    TfErrBufferTooSmall = 8,
    /// No logits yet: feed tokens before sampling.
    TfErrNoLogits = 9,
    /// A Rust panic was caught at the boundary (a bug: please report it).
    TfErrPanic = 10,
}

/// A loaded model; shared by reference count with the sessions made from it.
pub struct TfModel {
    inner: Arc<Loaded>,
}

/// A tokenizer (tokenizer.json, byte-level BPE).
pub struct TfTokenizer {
    inner: Arc<Tokenizer>,
}

/// A decoding session: KV cache, last logits, sampler, stop ids.
pub struct TfSession {
    // Declared before `model`, so dropped before the weights it borrows.
    session: Session<'static, 'static>,
    model: Arc<Loaded>,
    sampler: Sampler,
    logits: Option<Vec<f32>>,
    /// Tokens in the cache, for recomputing it after a context shift.
    context: Vec<u32>,
    /// How many leading tokens a context shift keeps (set by the first feed).
    keep: Option<usize>,
    stop: Vec<u32>,
}

/// A streaming detokenizer: ids in, text out, never a partial UTF-8 character.
pub struct TfDecoder {
    tokenizer: Arc<Tokenizer>,
    ids: Vec<u32>,
    emitted: usize,
}

/// Sampling settings for [`tf_session_set_sampling`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TfSampling {
    /// 0 is greedy.
    pub temperature: f32,
    /// Keep the k most likely ids; 0 means no limit.
    pub top_k: u32,
    /// Keep the smallest set of ids whose probability reaches p, in (0, 1].
    pub top_p: f32,
    pub seed: u64,
}

/// The weights and the bytes they borrow. `model` is declared first so it drops first.
struct Loaded {
    model: Model<'static>,
    _bytes: Bytes,
}

enum Bytes {
    Map(#[allow(dead_code)] ModelFile),
    /// A copy of caller bytes, 16-aligned so f32 and block weights borrow from it.
    /// (the buffer, how many of its bytes are the checkpoint's).
    Owned(Vec<u128>, usize),
}

struct Error {
    status: TfStatus,
    message: String,
}

fn err(status: TfStatus, message: impl Into<String>) -> Error {
    Error {
        status,
        message: message.into(),
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Run a body at the boundary: its error or panic becomes a status and this thread's message.
fn guard(body: impl FnOnce() -> Result<(), Error>) -> TfStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TfStatus::TfOk,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(&format!("internal error (panic): {what}"));
            TfStatus::TfErrPanic
        }
    }
}

fn pool() -> Result<Arc<rayon::ThreadPool>, Error> {
    let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if p.is_none() {
        *p = Some(Arc::new(build_pool(0)?));
    }
    Ok(p.as_ref().map(Arc::clone).expect("set above"))
}

fn build_pool(threads: usize) -> Result<rayon::ThreadPool, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tokenformer-{i}"))
        .build()
        .map_err(|e| err(TfStatus::TfErrArgument, format!("thread pool: {e}")))
}

fn nonnull<'p, T>(p: *const T, what: &str) -> Result<&'p T, Error> {
    // SAFETY: non-null pointers come from this library's constructors (objects) or the caller's
    // buffers, which the header documents as valid for the call.
    unsafe { p.as_ref() }.ok_or_else(|| err(TfStatus::TfErrNull, format!("{what} is NULL")))
}

fn nonnull_mut<'p, T>(p: *mut T, what: &str) -> Result<&'p mut T, Error> {
    // SAFETY: as in `nonnull`; the caller uses each object from one thread at a time.
    unsafe { p.as_mut() }.ok_or_else(|| err(TfStatus::TfErrNull, format!("{what} is NULL")))
}

fn text<'p>(p: *const c_char, what: &str) -> Result<&'p str, Error> {
    if p.is_null() {
        return Err(err(TfStatus::TfErrNull, format!("{what} is NULL")));
    }
    // SAFETY: a non-null C string, NUL-terminated as the header requires.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| err(TfStatus::TfErrUtf8, format!("{what} is not UTF-8: {e}")))
}

fn slice<'p, T>(p: *const T, n: usize, what: &str) -> Result<&'p [T], Error> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(err(TfStatus::TfErrNull, format!("{what} is NULL")));
    }
    // SAFETY: the caller passes `n` readable elements at `p`.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

fn out<T>(p: *mut T, v: T, what: &str) -> Result<(), Error> {
    *nonnull_mut(p, what)? = v;
    Ok(())
}

/// Copy `v` into `buf[..cap]`; too small: write the needed length and fail.
fn fill<T: Copy>(v: &[T], buf: *mut T, cap: usize, len: *mut usize) -> Result<(), Error> {
    out(len, v.len(), "the length output")?;
    if v.len() > cap {
        return Err(err(
            TfStatus::TfErrBufferTooSmall,
            format!("the buffer holds {cap}, {} are needed", v.len()),
        ));
    }
    if !v.is_empty() {
        nonnull_mut(buf, "the output buffer")?;
        // SAFETY: `buf` holds `cap` ≥ v.len() elements, per the header.
        unsafe { std::slice::from_raw_parts_mut(buf, v.len()) }.copy_from_slice(v);
    }
    Ok(())
}

/// Write `s` NUL-terminated into `buf[..cap]`; `len` gets its byte length without the NUL.
fn fill_str(s: &str, buf: *mut c_char, cap: usize, len: *mut usize) -> Result<(), Error> {
    out(len, s.len(), "the length output")?;
    if s.len() + 1 > cap {
        return Err(err(
            TfStatus::TfErrBufferTooSmall,
            format!("the buffer holds {cap} bytes, {} are needed", s.len() + 1),
        ));
    }
    let b = nonnull_mut(buf, "the output buffer")? as *mut c_char as *mut u8;
    // SAFETY: `buf` holds `cap` ≥ s.len() + 1 bytes, per the header.
    let dst = unsafe { std::slice::from_raw_parts_mut(b, s.len() + 1) };
    dst[..s.len()].copy_from_slice(s.as_bytes());
    dst[s.len()] = 0;
    Ok(())
}

fn boxed<T>(v: T, p: *mut *mut T) -> Result<(), Error> {
    let slot = nonnull_mut(p, "the object output")?;
    *slot = Box::into_raw(Box::new(v));
    Ok(())
}

fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in this library and is freed once (one owner).
        drop(unsafe { Box::from_raw(p) });
    }
}

// ---- versions, errors, threads -------------------------------------------------------------

/// The ABI version ([`TF_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn tf_abi_version() -> u32 {
    TF_ABI_VERSION
}

/// The checkpoint format version this build reads.
#[no_mangle]
pub extern "C" fn tf_checkpoint_format_version() -> u32 {
    TF_CHECKPOINT_FORMAT_VERSION
}

/// This thread's message for the last failed call ("" if none). Valid until the next failing
/// call on this thread; owned by the library.
#[no_mangle]
pub extern "C" fn tf_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Size the compute pool: `threads` workers (0: one per CPU). Calls already running finish on
/// the old pool. Without this call a pool of one worker per CPU is made at the first compute.
#[no_mangle]
pub extern "C" fn tf_set_threads(threads: usize) -> TfStatus {
    guard(|| {
        let p = build_pool(threads)?;
        *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(p));
        Ok(())
    })
}

// ---- models --------------------------------------------------------------------------------

fn load(bytes: Bytes, name: &str) -> Result<TfModel, Error> {
    let view: &[u8] = match &bytes {
        Bytes::Map(f) => f.bytes(),
        Bytes::Owned(v, len) => {
            assert!(*len <= v.len() * 16);
            // SAFETY: u8 view of the first `len` bytes of the same initialised allocation.
            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, *len) }
        }
    };
    // SAFETY: the map's pages and the Vec's heap buffer do not move when `bytes` moves, and
    // `Loaded` drops `model` before `_bytes`; nothing hands out the 'static lifetime.
    let view: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(view) };
    let model =
        checkpoint::load(view).map_err(|e| err(TfStatus::TfErrModel, format!("{name}: {e}")))?;
    Ok(TfModel {
        inner: Arc::new(Loaded {
            model,
            _bytes: bytes,
        }),
    })
}

/// Load a checkpoint from a file, memory-mapped (the file must not be truncated while loaded).
#[no_mangle]
pub extern "C" fn tf_model_load_file(
    path: *const c_char,
    out_model: *mut *mut TfModel,
) -> TfStatus {
    guard(|| {
        let path = text(path, "path")?;
        nonnull_mut(out_model, "the model output")?;
        let f = ModelFile::open(path).map_err(|e| err(TfStatus::TfErrIo, e.to_string()))?;
        boxed(load(Bytes::Map(f), path)?, out_model)
    })
}

/// Load a checkpoint from `len` bytes (copied; the caller may free them on return).
#[no_mangle]
pub extern "C" fn tf_model_load_bytes(
    bytes: *const u8,
    len: usize,
    out_model: *mut *mut TfModel,
) -> TfStatus {
    guard(|| {
        let b = slice(bytes, len, "bytes")?;
        nonnull_mut(out_model, "the model output")?;
        let mut v = vec![0u128; len.div_ceil(16)];
        // SAFETY: the Vec holds ≥ len bytes; writing u8s into u128 storage.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, len) }
            .copy_from_slice(b);
        let model = load(Bytes::Owned(v, len), "bytes")?;
        boxed(model, out_model)
    })
}

/// Free a model. Sessions made from it keep the weights alive until they are freed too.
#[no_mangle]
pub extern "C" fn tf_model_free(model: *mut TfModel) {
    free(model)
}

/// The model's vocabulary (rows of the logits) and its context length in tokens.
#[no_mangle]
pub extern "C" fn tf_model_sizes(
    model: *const TfModel,
    out_vocab: *mut usize,
    out_context: *mut usize,
) -> TfStatus {
    guard(|| {
        let c = &nonnull(model, "model")?.inner.model.config;
        out(out_vocab, c.vocab_size, "the vocabulary output")?;
        out(out_context, c.max_context, "the context output")
    })
}

// ---- tokenizers ----------------------------------------------------------------------------

fn tokenizer_err(e: impl std::fmt::Display) -> Error {
    err(TfStatus::TfErrTokenizer, e.to_string())
}

/// Load a tokenizer from a tokenizer.json file.
#[no_mangle]
pub extern "C" fn tf_tokenizer_load_file(
    path: *const c_char,
    out_tokenizer: *mut *mut TfTokenizer,
) -> TfStatus {
    guard(|| {
        let path = text(path, "path")?;
        nonnull_mut(out_tokenizer, "the tokenizer output")?;
        let bytes =
            std::fs::read(path).map_err(|e| err(TfStatus::TfErrIo, format!("{path}: {e}")))?;
        let t = Tokenizer::from_bytes(bytes).map_err(|e| tokenizer_err(format!("{path}: {e}")))?;
        boxed(TfTokenizer { inner: Arc::new(t) }, out_tokenizer)
    })
}

/// Load a tokenizer from the `len` bytes of a tokenizer.json (copied).
#[no_mangle]
pub extern "C" fn tf_tokenizer_load_bytes(
    bytes: *const u8,
    len: usize,
    out_tokenizer: *mut *mut TfTokenizer,
) -> TfStatus {
    guard(|| {
        let b = slice(bytes, len, "bytes")?;
        nonnull_mut(out_tokenizer, "the tokenizer output")?;
        let t = Tokenizer::from_bytes(b).map_err(tokenizer_err)?;
        boxed(TfTokenizer { inner: Arc::new(t) }, out_tokenizer)
    })
}

#[no_mangle]
pub extern "C" fn tf_tokenizer_free(tokenizer: *mut TfTokenizer) {
    free(tokenizer)
}

/// The id of `<|endoftext|>`; [`TfStatus::TfErrTokenizer`] if the tokenizer has none.
#[no_mangle]
pub extern "C" fn tf_tokenizer_eot(tokenizer: *const TfTokenizer, out_id: *mut u32) -> TfStatus {
    guard(|| {
        let t = nonnull(tokenizer, "tokenizer")?;
        let id = t
            .inner
            .token_to_id("<|endoftext|>")
            .ok_or_else(|| tokenizer_err("the tokenizer has no <|endoftext|> token"))?;
        out(out_id, id, "the id output")
    })
}

/// Token ids of the NUL-terminated UTF-8 `text` into `ids[..cap]`; `*out_len` gets the count
/// (also when the buffer is too small, so the caller can retry).
#[no_mangle]
pub extern "C" fn tf_tokenize(
    tokenizer: *const TfTokenizer,
    text_utf8: *const c_char,
    ids: *mut u32,
    cap: usize,
    out_len: *mut usize,
) -> TfStatus {
    guard(|| {
        let t = nonnull(tokenizer, "tokenizer")?;
        let s = text(text_utf8, "text")?;
        let enc = t.inner.encode(s, false).map_err(tokenizer_err)?;
        fill(enc.get_ids(), ids, cap, out_len)
    })
}

/// The text of `ids[..n]`, NUL-terminated into `buf[..cap]`; `*out_len` gets its byte length
/// without the NUL (also when the buffer is too small).
#[no_mangle]
pub extern "C" fn tf_detokenize(
    tokenizer: *const TfTokenizer,
    ids: *const u32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> TfStatus {
    guard(|| {
        let t = nonnull(tokenizer, "tokenizer")?;
        let ids = slice(ids, n, "ids")?;
        let s = t.inner.decode(ids, false).map_err(tokenizer_err)?;
        fill_str(&s, buf, cap, out_len)
    })
}

/// A streaming detokenizer over `tokenizer` (which it keeps alive).
#[no_mangle]
pub extern "C" fn tf_decoder_new(
    tokenizer: *const TfTokenizer,
    out_decoder: *mut *mut TfDecoder,
) -> TfStatus {
    guard(|| {
        let t = nonnull(tokenizer, "tokenizer")?;
        let d = TfDecoder {
            tokenizer: Arc::clone(&t.inner),
            ids: Vec::new(),
            emitted: 0,
        };
        boxed(d, out_decoder)
    })
}

impl TfDecoder {
    /// The text not yet emitted and where it ends: empty while a UTF-8 character is partial.
    fn pending(&self) -> Result<(String, usize), Error> {
        let s = self
            .tokenizer
            .decode(&self.ids, false)
            .map_err(tokenizer_err)?;
        // A partial UTF-8 sequence decodes to U+FFFD: hold it back until it completes.
        match s.get(self.emitted..) {
            Some(new) if !s.ends_with('\u{FFFD}') => Ok((new.to_string(), s.len())),
            _ => Ok((String::new(), self.emitted)),
        }
    }
}

/// Add `id`; write the text it completes, NUL-terminated, into `buf[..cap]` (often empty:
/// bytes of a character split across tokens are held until it completes). If the buffer is too
/// small the id is not taken: push it again with a larger one.
#[no_mangle]
pub extern "C" fn tf_decoder_push(
    decoder: *mut TfDecoder,
    id: u32,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> TfStatus {
    guard(|| {
        let d = nonnull_mut(decoder, "decoder")?;
        d.ids.push(id);
        let r = d.pending().and_then(|(text, end)| {
            fill_str(&text, buf, cap, out_len)?;
            d.emitted = end;
            Ok(())
        });
        if r.is_err() {
            d.ids.pop();
        }
        r
    })
}

#[no_mangle]
pub extern "C" fn tf_decoder_free(decoder: *mut TfDecoder) {
    free(decoder)
}

// ---- sessions ------------------------------------------------------------------------------

/// A session over `model` (which it keeps alive), greedy until [`tf_session_set_sampling`].
#[no_mangle]
pub extern "C" fn tf_session_new(
    model: *const TfModel,
    out_session: *mut *mut TfSession,
) -> TfStatus {
    guard(|| {
        let m = Arc::clone(&nonnull(model, "model")?.inner);
        nonnull_mut(out_session, "the session output")?;
        // SAFETY: the weights live in the Arc's allocation, which `TfSession::model` keeps alive
        // and which is declared after (dropped after) `session`.
        let weights: &'static Model<'static> = unsafe { &*(&m.model as *const Model<'static>) };
        let s = TfSession {
            session: Session::new(weights),
            model: m,
            sampler: Sampler::new(
                SamplerConfig {
                    temperature: 0.0,
                    top_k: 0,
                    top_p: 1.0,
                },
                0,
            ),
            logits: None,
            context: Vec::new(),
            keep: None,
            stop: Vec::new(),
        };
        boxed(s, out_session)
    })
}

#[no_mangle]
pub extern "C" fn tf_session_free(session: *mut TfSession) {
    free(session)
}

/// Empty the cache (a new conversation); sampling settings and stop ids stay.
#[no_mangle]
pub extern "C" fn tf_session_reset(session: *mut TfSession) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        s.session.reset();
        s.logits = None;
        s.context.clear();
        s.keep = None;
        Ok(())
    })
}

/// Sampling settings; the random generator restarts from `seed`.
#[no_mangle]
pub extern "C" fn tf_session_set_sampling(
    session: *mut TfSession,
    sampling: *const TfSampling,
) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        let p = *nonnull(sampling, "sampling")?;
        if !(p.temperature.is_finite() && p.temperature >= 0.0) {
            return Err(err(
                TfStatus::TfErrArgument,
                "temperature must be finite and ≥ 0",
            ));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(err(TfStatus::TfErrArgument, "top_p must be in (0, 1]"));
        }
        let c = SamplerConfig {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
        };
        s.sampler = Sampler::new(c, p.seed);
        Ok(())
    })
}

/// Ids at which [`tf_session_next`] stops (besides none by default; add the tokenizer's
/// [`tf_tokenizer_eot`] to stop at end-of-text). Replaces the previous list.
#[no_mangle]
pub extern "C" fn tf_session_set_stop_ids(
    session: *mut TfSession,
    ids: *const u32,
    n: usize,
) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        s.stop = slice(ids, n, "ids")?.to_vec();
        Ok(())
    })
}

impl TfSession {
    /// Run `ids` on the pool, shifting the window if it would pass the context (keep the first
    /// fed block if it fills less than half the context, drop the oldest half of the rest).
    fn feed(&mut self, ids: &[u32]) -> Result<(), Error> {
        let (max, vocab) = {
            let c = &self.model.model.config;
            (c.max_context, c.vocab_size)
        };
        // Checked before anything changes: a bad id must not leave a shifted window behind.
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(err(
                TfStatus::TfErrSession,
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        if self.keep.is_none() {
            self.keep = Some(if 2 * ids.len() < max { ids.len() } else { 0 });
        }
        let pool = pool()?;
        let mut all = false;
        self.context.extend_from_slice(ids);
        if self.context.len() > max {
            let keep = self.keep.unwrap_or(0).min(self.context.len());
            let drop = (self.context.len() - keep)
                .div_ceil(2)
                .max(self.context.len() - max);
            self.context.drain(keep..keep + drop);
            all = true;
        }
        let (session, context) = (&mut self.session, &self.context);
        let logits = pool.install(|| {
            if all {
                session.reset();
                session.feed(context)
            } else {
                session.feed(ids)
            }
        });
        match logits {
            Ok(l) => {
                self.logits = Some(l);
                Ok(())
            }
            Err(e) => {
                if all {
                    // The cache was reset for the shift: start over rather than run on without it.
                    self.session.reset();
                    self.context.clear();
                    self.logits = None;
                } else {
                    self.context
                        .truncate(self.context.len() - ids.len().min(self.context.len()));
                }
                Err(err(TfStatus::TfErrSession, e.to_string()))
            }
        }
    }
}

/// Feed `ids[..n]` at the next positions. If `logits` is not NULL, the last position's logits
/// are copied into it (`cap` ≥ the vocabulary of [`tf_model_sizes`]). Past the context the
/// window shifts: the first fed block stays (if under half the context), the oldest half of
/// the rest is dropped, the cache is recomputed.
#[no_mangle]
pub extern "C" fn tf_session_feed(
    session: *mut TfSession,
    ids: *const u32,
    n: usize,
    logits: *mut f32,
    cap: usize,
) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        let ids = slice(ids, n, "ids")?;
        if ids.is_empty() {
            return Err(err(TfStatus::TfErrSession, "no tokens given"));
        }
        // Checked before feeding: a caller that retries with a larger buffer must not feed twice.
        let vocab = s.model.model.config.vocab_size;
        if !logits.is_null() && cap < vocab {
            return Err(err(
                TfStatus::TfErrBufferTooSmall,
                format!("the logits buffer holds {cap} values; the vocabulary has {vocab}"),
            ));
        }
        s.feed(ids)?;
        if !logits.is_null() {
            let mut len = 0;
            fill(
                s.logits.as_deref().unwrap_or_default(),
                logits,
                cap,
                &mut len,
            )?;
        }
        Ok(())
    })
}

impl TfSession {
    fn sample(&mut self) -> Result<u32, Error> {
        let l = self
            .logits
            .as_deref()
            .ok_or_else(|| err(TfStatus::TfErrNoLogits, "feed tokens before sampling"))?;
        Ok(self
            .sampler
            .sample(l, self.model.model.config.tokenizer_vocab))
    }
}

/// Sample the next id from the last logits (never an id past the tokenizer's vocabulary).
#[no_mangle]
pub extern "C" fn tf_session_sample(session: *mut TfSession, out_id: *mut u32) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        nonnull_mut(out_id, "the id output")?;
        out(out_id, s.sample()?, "the id output")
    })
}

/// One generation step: sample an id into `*out_id`; if it is a stop id set `*out_stop` and
/// feed nothing, else feed it (shifting the window past the context) and clear `*out_stop`.
#[no_mangle]
pub extern "C" fn tf_session_next(
    session: *mut TfSession,
    out_id: *mut u32,
    out_stop: *mut bool,
) -> TfStatus {
    guard(|| {
        let s = nonnull_mut(session, "session")?;
        nonnull_mut(out_id, "the id output")?;
        nonnull_mut(out_stop, "the stop output")?;
        let id = s.sample()?;
        let stop = s.stop.contains(&id);
        out(out_id, id, "the id output")?;
        out(out_stop, stop, "the stop output")?;
        if !stop {
            s.feed(&[id])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, TfStatus::TfErrPanic);
        // SAFETY: the library's own NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(tf_last_error()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("panic") && msg.contains("boom"), "{msg}");
        // The message is per thread.
        let other = std::thread::spawn(|| {
            // SAFETY: as above.
            unsafe { CStr::from_ptr(tf_last_error()) }.to_bytes().len()
        });
        assert_eq!(other.join().unwrap(), 0);
    }
}

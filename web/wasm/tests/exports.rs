//! The module's exports, called as the page calls them, under an allocator that counts live
//! bytes: a failed model load frees its buffer, and a second load then succeeds.

#[path = "../../../core/tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::live;
use tokenformer_web::{tf_error_len, tf_error_ptr, tf_model_alloc, tf_model_load};

fn copy_in(bytes: &[u8]) {
    let p = tf_model_alloc(bytes.len());
    assert!(!p.is_null());
    // SAFETY: `p` holds `bytes.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
}

#[test]
fn a_failed_load_frees_its_buffer_and_a_retry_loads() {
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-q8_0.safetensors"
    ))
    .unwrap();
    let bad = vec![0xAB_u8; 1 << 20];
    let before = live();
    copy_in(&bad);
    assert_eq!(tf_model_load(), -1);
    // SAFETY: the module's error message, valid until the next call.
    let msg = unsafe { std::slice::from_raw_parts(tf_error_ptr(), tf_error_len()) };
    assert!(String::from_utf8_lossy(msg).contains("loading the model"));
    let kept = live().saturating_sub(before);
    assert!(
        kept < 4096,
        "{kept} bytes still live after a failed 1 MiB load"
    );
    copy_in(&good);
    assert_eq!(tf_model_load(), 0);
}

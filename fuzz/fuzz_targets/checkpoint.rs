//! `checkpoint::load` on arbitrary bytes (the safetensors crate's parser, then our format's checks):
//! it must return `Ok` or `Err`, never panic, and never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenformer_core::checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = checkpoint::load(data) {
        // A loaded model must round-trip: its own bytes load again to the same config.
        let bytes = checkpoint::to_bytes(&model, tokenformer_core::DType::F32);
        let again = checkpoint::load(&bytes).expect("a saved checkpoint must load");
        assert_eq!(again.config, model.config);
    }
});

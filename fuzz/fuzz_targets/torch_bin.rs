//! The torch.save reader (zip + bounded pickle) and the official-name conversion on arbitrary
//! bytes: `Ok` or `Err`, never a panic, never an allocation the input's size does not bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenformer_core::config::ThetaKind;
use tokenformer_core::convert::{self, Hyper};
use tokenformer_core::torch::{self, pickle};

fuzz_target!(|data: &[u8]| {
    // The pickle machine alone: most of the attack surface, reached without a zip around it.
    let _ = pickle::state_dict(data);
    // The whole path; CRCs are skipped so mutations reach past the container.
    if let Ok(views) = torch::read_with(data, false) {
        for v in &views {
            // Bounded: all views together hold at most 2 × the input's length in elements.
            let _ = v.to_f32();
        }
        let hyper = Hyper::Heads {
            n_heads: 2,
            rotary_pct: 0.5,
            norm: ThetaKind::L2NormGelu,
            tokenizer_vocab: None,
            max_context: 16,
        };
        if let Ok(model) = convert::convert(&views, &hyper) {
            // A converted model must run.
            let mut s = tokenformer_core::Session::new(&model);
            let _ = s.feed(&[0]);
        }
    }
});

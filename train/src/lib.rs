pub use tokenformer_core as core;

pub mod data;
pub mod plot;

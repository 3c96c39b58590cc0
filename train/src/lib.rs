pub use tokenformer_core as core;

//! Trainable parameters on a backend, in core's tensor order (`tokenformer_core::layout`),
//! so checkpoints, growth and the optimizer all index tensors the same way.

use crate::backend::Backend;
use std::borrow::Cow;
use tokenformer_core::layout;
use tokenformer_core::model::{tensor_specs, Model, ModelError, Role, TensorSpec};
use tokenformer_core::Config;

/// A model's tensors as buffers of backend `B`, in `tensor_specs` order.
pub struct Params<B: Backend> {
    /// The model's config.
    pub config: Config,
    /// Name, shape and role of each tensor.
    pub specs: Vec<TensorSpec>,
    /// The values, one buffer per spec.
    pub tensors: Vec<B::Buf>,
}

/// Index of a tensor in `tensor_specs` order.
pub fn index(cfg: &Config, role: Role) -> usize {
    layout::index(cfg.n_layers, role)
}

impl<B: Backend> Params<B> {
    /// Upload `model`'s weights to `be` (quantized models as their dequantized values).
    pub fn from_model(be: &B, model: &Model<'_>) -> Params<B> {
        let specs = tensor_specs(&model.config);
        // Quantized models train (and grow) from their dequantized values.
        let tensors = model.tensors_f32().iter().map(|t| be.upload(t)).collect();
        Params {
            config: model.config.clone(),
            specs,
            tensors,
        }
    }

    /// Zeros shaped like `like` (gradients, optimizer moments).
    pub fn zeros_like(be: &B, like: &Params<B>) -> Params<B> {
        Params {
            config: like.config.clone(),
            specs: like.specs.clone(),
            tensors: like.specs.iter().map(|s| be.zeros(s.numel())).collect(),
        }
    }

    /// The buffer of tensor `role`.
    pub fn get(&self, role: Role) -> &B::Buf {
        &self.tensors[index(&self.config, role)]
    }

    /// The buffer of tensor `role`, mutably.
    pub fn get_mut(&mut self, role: Role) -> &mut B::Buf {
        let i = index(&self.config, role);
        &mut self.tensors[i]
    }

    /// An owned core model of the current values (what checkpoints and inference use).
    pub fn to_model(&self, be: &B) -> Result<Model<'static>, ModelError> {
        let t = self
            .tensors
            .iter()
            .map(|b| Cow::Owned(be.download(b)))
            .collect();
        Model::from_tensors(self.config.clone(), t)
    }

    /// Parameters in all.
    pub fn numel(&self) -> usize {
        self.specs.iter().map(|s| s.numel()).sum()
    }
}

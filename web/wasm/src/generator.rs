//! One generation: the prompt fed as one block, then one sampled id at a time, each fed back
//! while the context has room, as `tokenformer-cli generate` does (same sampler, same order of
//! calls), so that greedy decoding here gives the CLI's ids.

use tokenformer_core::{Model, Sampler, SamplerConfig, Session, SessionError};

pub struct Generator<'m, 'a> {
    session: Session<'m, 'a>,
    sampler: Sampler,
    /// The logits the next id is drawn from; `None` once the context is full.
    logits: Option<Vec<f32>>,
}

impl<'m, 'a> Generator<'m, 'a> {
    /// Feed `prompt` (non-empty, within the model's context and vocabulary).
    pub fn start(
        model: &'m Model<'a>,
        prompt: &[u32],
        config: SamplerConfig,
        seed: u64,
    ) -> Result<Self, SessionError> {
        let mut session = Session::new(model);
        let logits = session.feed(prompt)?;
        Ok(Generator {
            session,
            sampler: Sampler::new(config, seed),
            logits: Some(logits),
        })
    }

    /// The next id, or `None` when the context is full. The id is fed at once, so its logits
    /// are ready for the following call.
    pub fn next_id(&mut self) -> Result<Option<u32>, SessionError> {
        let Some(logits) = self.logits.take() else {
            return Ok(None);
        };
        let config = &self.session.model().config;
        let id = self.sampler.sample(&logits, config.tokenizer_vocab);
        if self.session.position() < config.max_context {
            self.logits = Some(self.session.feed(&[id])?);
        }
        Ok(Some(id))
    }
}

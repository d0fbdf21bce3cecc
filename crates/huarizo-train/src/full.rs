//! Every weight of an engine's model as a [`TrainModel`]: continued pretraining of all
//! weights and training from scratch.

use crate::data::{train_seqs, Example};
use crate::trainer::TrainModel;
use anyhow::Result;
use huarizo_engine::{Engine, FullGrads, FullParams};

/// All of a model's weights being trained, in f32.
pub struct FullModel<'e> {
    engine: &'e Engine,
    /// The weights (what training changes).
    pub params: FullParams,
    grads: FullGrads,
}

impl<'e> FullModel<'e> {
    /// Trains every weight of `engine`'s model, starting from its values.
    pub fn new(engine: &'e Engine) -> Result<FullModel<'e>> {
        let params = engine.full_params()?;
        let grads = params.zero_grads();
        Ok(FullModel {
            engine,
            params,
            grads,
        })
    }
}

impl TrainModel for FullModel<'_> {
    fn n_tensors(&self) -> usize {
        self.params.tensors.len()
    }

    fn tensor(&mut self, i: usize) -> (&mut [f32], &[f32]) {
        (&mut self.params.tensors[i].values, &self.grads.values[i])
    }

    fn tensor_name(&self, i: usize) -> String {
        self.params.tensors[i].name.clone()
    }

    fn zero_grads(&mut self) {
        self.grads.zero();
    }

    fn accumulate_grads(&mut self, batch: &[Example], _seed: u64) -> Result<(f64, usize)> {
        let loss = self
            .engine
            .full_backward(&self.params, &train_seqs(batch), &mut self.grads)?;
        Ok((loss.loss_sum, loss.n_labels))
    }

    fn eval_loss(&mut self, batch: &[Example]) -> Result<(f64, usize)> {
        let loss = self.engine.full_loss(&self.params, &train_seqs(batch))?;
        Ok((loss.loss_sum, loss.n_labels))
    }
}

/// Cross-entropy per token, in nats, of the unigram model fitted to `train` (add-one
/// smoothing over `n_vocab` tokens) on the trained labels of `eval`: the baseline a
/// language model must beat.
pub fn unigram_loss(train: &[Example], eval: &[Example], n_vocab: usize) -> f64 {
    let mut counts = vec![1.0f64; n_vocab];
    for l in train
        .iter()
        .flat_map(|e| e.labels.iter())
        .filter(|&&l| l >= 0)
    {
        counts[*l as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let (mut sum, mut n) = (0.0, 0usize);
    for l in eval
        .iter()
        .flat_map(|e| e.labels.iter())
        .filter(|&&l| l >= 0)
    {
        sum -= (counts[*l as usize] / total).ln();
        n += 1;
    }
    sum / n.max(1) as f64
}

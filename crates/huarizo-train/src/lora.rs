//! A LoRA adapter on an engine's frozen model as a [`TrainModel`], and the files a LoRA
//! run leaves: `adapter.gguf` (llama.cpp's `--lora`), `adapter_config.json` and
//! `adapter_model.safetensors` (PEFT).

use crate::data::{train_seqs, Example};
use crate::trainer::TrainModel;
use anyhow::Result;
use huarizo_engine::{write_gguf_lora, write_peft, Engine, LoraAdapter, LoraGrads};
use std::path::Path;

/// An adapter being trained on `engine`'s model.
pub struct LoraModel<'e> {
    engine: &'e Engine,
    /// The adapter (its values are what training changes).
    pub adapter: LoraAdapter,
    grads: LoraGrads,
}

impl<'e> LoraModel<'e> {
    /// Trains `adapter` on `engine`'s model.
    pub fn new(engine: &'e Engine, adapter: LoraAdapter) -> LoraModel<'e> {
        let grads = adapter.zero_grads();
        LoraModel {
            engine,
            adapter,
            grads,
        }
    }
}

impl TrainModel for LoraModel<'_> {
    fn n_tensors(&self) -> usize {
        2 * self.adapter.tensors.len()
    }

    fn tensor(&mut self, i: usize) -> (&mut [f32], &[f32]) {
        let t = &mut self.adapter.tensors[i / 2];
        if i.is_multiple_of(2) {
            (&mut t.a, &self.grads.a[i / 2])
        } else {
            (&mut t.b, &self.grads.b[i / 2])
        }
    }

    fn tensor_name(&self, i: usize) -> String {
        let t = &self.adapter.tensors[i / 2];
        let which = if i.is_multiple_of(2) {
            "lora_a"
        } else {
            "lora_b"
        };
        format!("blk.{}.{}.weight.{which}", t.layer, t.target.gguf_name())
    }

    fn zero_grads(&mut self) {
        self.grads.zero();
    }

    fn accumulate_grads(&mut self, batch: &[Example], seed: u64) -> Result<(f64, usize)> {
        let loss =
            self.engine
                .lora_backward(&self.adapter, &train_seqs(batch), &mut self.grads, seed)?;
        Ok((loss.loss_sum, loss.n_labels))
    }

    fn eval_loss(&mut self, batch: &[Example]) -> Result<(f64, usize)> {
        let loss = self
            .engine
            .train_loss(Some(&self.adapter), &train_seqs(batch))?;
        Ok((loss.loss_sum, loss.n_labels))
    }
}

/// Writes `adapter` into `dir` as `adapter.gguf` (for `huarizo --lora` and llama.cpp)
/// and as a PEFT adapter; `base_model` names the base in `adapter_config.json`.
pub fn write_adapter_files(
    engine: &Engine,
    adapter: &LoraAdapter,
    base_model: &str,
    dir: &Path,
) -> Result<()> {
    write_gguf_lora(adapter, &engine.architecture(), &dir.join("adapter.gguf"))?;
    write_peft(adapter, engine.config(), base_model, dir)?;
    Ok(())
}

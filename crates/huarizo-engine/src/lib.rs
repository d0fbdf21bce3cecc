//! huarizo-engine turns a model file into text: it owns the loaded model, its tokenizer,
//! chat template and thread pool, and runs generation (prompt processing, sampling, stop
//! conditions, streaming of text as it becomes valid UTF-8), and measures models the way
//! llama.cpp's quality tools do (perplexity, KL divergence, importance matrix). Front ends
//! (CLI, server, eval) talk to this crate only; it must not reach into kernels itself
//! beyond the model's API.

#![deny(missing_docs)]

pub mod generate;
pub mod imatrix;
pub mod json_constraint;
pub mod kld;
pub mod perplexity;
pub mod sampling;
pub mod scheduler;
pub mod stream;

pub use generate::{FinishReason, GenerateParams, Generation, TokenEvent};
pub use huarizo_formats::{GgmlType, GgufFile, GgufWriter, TensorInfo, Value, WriteError};
pub use huarizo_model::{
    arithmetic, ggml_isa, set_arithmetic, set_ggml_isa, weights, Arithmetic, BatchPlaces,
    CacheType, Config, GgmlIsa, Logits, ModelError, Precision, Scratch, SeqBatch, State,
};
pub use huarizo_text::{
    python_environment, python_str, train_bpe, BpeTrainOptions, ChatMessage, ChatTemplate,
    Tokenizer,
};
pub use imatrix::{read_imatrix, Imatrix, ImatrixCollector, ImatrixError};
pub use sampling::{Sampler, SamplingParams};
pub use scheduler::{
    Event, EventSink, Request, Scheduler, SchedulerOptions, StepStats, TokenConstraint,
    TokenLogprob,
};

/// Options of [`export_hf_checkpoint`].
pub use huarizo_model::hf::{HfExportOptions, HfExportSummary, DEFAULT_SHARD_BYTES};
/// Requantizing a model file to another weight type (used by `huarizo quantize`).
pub use huarizo_model::requantize;
/// Training: LoRA adapters, the loss and its gradient, adapter files.
pub use huarizo_model::train::{
    read_gguf_lora, write_gguf_lora, write_peft, write_random_model, BatchLoss, FullGrads,
    FullParams, LoraAdapter, LoraConfig, LoraGrads, LoraTarget, LoraTensor, ScratchConfig,
    TrainSeq,
};

use huarizo_model::{Model, ThreadPool};
use std::path::Path;

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Loading or running the model failed.
    #[error("{}", model_message(path, source))]
    Model {
        /// The model file.
        path: String,
        /// The cause.
        source: Box<ModelError>,
    },
    /// The tokenizer could not be built.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The model file.
        path: String,
        /// The cause.
        message: String,
    },
    /// The chat template failed.
    #[error("chat template: {0}")]
    Template(String),
    /// A request that cannot be served (empty prompt, too long, …).
    #[error("{0}")]
    Request(String),
}

/// A model error prefixed with its file, unless the error (a malformed file) names it already.
fn model_message(path: &str, err: &ModelError) -> String {
    match err {
        ModelError::Gguf(e) => e.to_string(),
        // These name their file (a file of a Hugging Face checkpoint) already.
        ModelError::Safetensors(_)
        | ModelError::HfConfig { .. }
        | ModelError::HfTensor { .. }
        | ModelError::Io { .. } => err.to_string(),
        other => format!("{path}: {other}"),
    }
}

/// Options of [`Engine::load`].
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Worker threads (0 = all cores).
    pub n_threads: usize,
    /// The weights as stored (default) or widened to F32 at load.
    pub precision: Precision,
}

/// A loaded model ready to generate.
pub struct Engine {
    path: String,
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    has_template: bool,
    pool: ThreadPool,
    constraint_vocab: std::sync::OnceLock<Result<json_constraint::ConstraintVocab, String>>,
    cache_type: CacheType,
}

impl Engine {
    /// Loads the model at `path` with its tokenizer and chat template.
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Engine, EngineError> {
        let display = path.display().to_string();
        let model_err = |source: ModelError| EngineError::Model {
            path: display.clone(),
            source: Box::new(source),
        };
        let mut file = open_model_file(path)?;
        // The configuration first, so that an unsupported model is named as such.
        Config::from_gguf(&file).map_err(model_err)?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| EngineError::Tokenizer {
            path: display.clone(),
            message: e.to_string(),
        })?;
        // The vocabulary now lives in the tokenizer: its parsed metadata copy is freed before
        // the weights are loaded and packed, so that the two never take memory together.
        file.release_arrays("tokenizer.ggml.");
        let file = match options.precision {
            Precision::File => file,
            Precision::F32 => huarizo_model::widen_to_f32(file).map_err(model_err)?,
        };
        let model = Model::from_gguf(file).map_err(model_err)?;
        let (template, has_template) = load_template(model.gguf(), &tokenizer, &model.config)?;
        let pool = if options.n_threads == 0 {
            ThreadPool::with_available_parallelism()
        } else {
            ThreadPool::new(options.n_threads)
        };
        Ok(Engine {
            path: display,
            model,
            tokenizer,
            template,
            has_template,
            pool,
            constraint_vocab: std::sync::OnceLock::new(),
            cache_type: CacheType::F16,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &Config {
        &self.model.config
    }

    /// The model's GGUF file (metadata, tensors).
    pub fn gguf(&self) -> &GgufFile {
        self.model.gguf()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template's source (the model's own, or the built-in fallback).
    pub fn chat_template_source(&self) -> &str {
        self.template.source()
    }

    /// Whether the model file carries its own chat template (else a built-in one is used).
    pub fn has_chat_template(&self) -> bool {
        self.has_template
    }

    /// Threads in the pool.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// The bound on generation speed, measured in this process: the bytes one token reads
    /// from the weights, and the best rate over `passes` plain reads of those very pages on
    /// the pool, in bytes per second. (A buffer of another process can sit on faster or
    /// slower memory; on a virtual machine the host decides where.)
    pub fn weight_read_rate(&self, passes: usize) -> (usize, f64) {
        let parts = self.model.weights_read_per_token();
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        let mut best = f64::INFINITY;
        for _ in 0..passes.max(1) {
            let start = std::time::Instant::now();
            std::hint::black_box(self.model.read_weights(&self.pool));
            best = best.min(start.elapsed().as_secs_f64());
        }
        (bytes, bytes as f64 / best)
    }

    /// Runs `f(thread)` once on each of the pool's threads and waits for all of them.
    pub(crate) fn run_on_pool(&self, f: &(dyn Fn(usize) + Sync)) {
        self.pool.run(f);
    }

    /// Makes every later [`Engine::new_state`] keep its keys and values as `t` (f16 by
    /// default). Fails, changing nothing, when the model's head widths do not fit `t`.
    pub fn set_cache_type(&mut self, t: CacheType) -> Result<(), EngineError> {
        State::with_cache_type(&self.model.config, 1, t).map_err(EngineError::Request)?;
        self.cache_type = t;
        Ok(())
    }

    /// How new sequences keep their keys and values.
    pub fn cache_type(&self) -> CacheType {
        self.cache_type
    }

    /// A fresh sequence with room for `n_ctx` positions (capped at the trained context),
    /// its cache of [`Engine::cache_type`].
    pub fn new_state(&self, n_ctx: usize) -> State {
        let n_ctx = n_ctx.clamp(1, self.model.config.n_ctx_train.max(1));
        State::with_cache_type(&self.model.config, n_ctx, self.cache_type)
            .expect("set_cache_type checked that the model fits the cache type")
    }

    /// Renders a conversation through the chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        self.template
            .render(messages, add_generation_prompt)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// A constraint that keeps generated text valid JSON: any object when `schema` is
    /// None, else a document valid against `schema`, within `max_tokens`. Errors name
    /// what in the schema is unsupported. The vocabulary tables are built on first use.
    pub fn json_constraint(
        &self,
        schema: Option<&serde_json::Value>,
        max_tokens: usize,
    ) -> Result<Box<dyn TokenConstraint>, EngineError> {
        let vocab = self.constraint_vocab()?;
        json_constraint::JsonOutput::new(vocab, schema, max_tokens)
            .map(|c| Box::new(c) as Box<dyn TokenConstraint>)
            .map_err(|e| EngineError::Request(e.to_string()))
    }

    /// A constraint that makes the reply one tool call in the ChatML/Qwen form,
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, whose name is one of
    /// `tools` (OpenAI `tools` entries) and whose arguments follow that tool's parameters.
    pub fn tool_call_constraint(
        &self,
        tools: &[serde_json::Value],
        max_tokens: usize,
    ) -> Result<Box<dyn TokenConstraint>, EngineError> {
        let branches: Vec<serde_json::Value> = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function")?;
                let name = f.get("name")?.as_str()?;
                let params = f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({ "type": "object" }));
                Some(serde_json::json!({
                    "type": "object",
                    "properties": { "name": { "const": name }, "arguments": params },
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                }))
            })
            .collect();
        if branches.is_empty() {
            return Err(EngineError::Request("no tool to call".into()));
        }
        let schema = serde_json::json!({ "anyOf": branches });
        let vocab = self.constraint_vocab()?;
        let prefix = self.tokenizer.encode("<tool_call>\n", false, true);
        let suffix = self.tokenizer.encode("\n</tool_call>", false, true);
        json_constraint::FramedJson::new(vocab, prefix, &schema, suffix, max_tokens)
            .map(|c| Box::new(c) as Box<dyn TokenConstraint>)
            .map_err(|e| EngineError::Request(e.to_string()))
    }

    fn constraint_vocab(&self) -> Result<&json_constraint::ConstraintVocab, EngineError> {
        self.constraint_vocab
            .get_or_init(|| {
                let t = &self.tokenizer;
                let n = t.n_vocab();
                let bytes = (0..n as u32).map(|i| t.token_bytes(i).to_vec()).collect();
                let special = (0..n as u32).map(|i| t.is_control(i)).collect();
                let eog: Vec<u32> = t.eog_tokens().collect();
                json_constraint::ConstraintVocab::new(bytes, special, eog)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EngineError::Request(format!("structured output is unavailable: {e}")))
    }

    /// Renders a conversation given as JSON messages (which may carry `tool_calls` and
    /// the like), with extra template variables such as `tools`.
    pub fn render_chat_json(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extra: &serde_json::Value,
    ) -> Result<String, EngineError> {
        self.template
            .render_with(messages, add_generation_prompt, extra)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Runs `tokens` through the model, appending them to `state`, and returns the logits.
    pub fn forward<'s>(
        &self,
        state: &'s mut State,
        tokens: &[u32],
        which: Logits,
    ) -> Result<&'s [f32], EngineError> {
        self.model
            .forward(&self.pool, state, tokens, which)
            .map_err(|source| EngineError::Model {
                path: self.path.clone(),
                source: Box::new(source),
            })
    }
}

impl Engine {
    /// [`Engine::forward`], reporting each named intermediate to `trace(name, layer,
    /// values)` (see [`huarizo_model::Model::forward_traced`]).
    pub fn forward_traced<'s>(
        &self,
        state: &'s mut State,
        tokens: &[u32],
        which: Logits,
        trace: &mut dyn FnMut(&str, usize, &[f32]),
    ) -> Result<&'s [f32], EngineError> {
        self.model
            .forward_traced(&self.pool, state, tokens, which, trace)
            .map_err(|e| self.model_error(e))
    }

    fn model_error(&self, source: ModelError) -> EngineError {
        EngineError::Model {
            path: self.path.clone(),
            source: Box::new(source),
        }
    }

    /// Summed cross-entropy of `seqs` (see [`TrainSeq`]) under the model with `adapter`
    /// beside its weights, in f32 (no gradients, no dropout).
    pub fn train_loss(
        &self,
        adapter: Option<&LoraAdapter>,
        seqs: &[TrainSeq<'_>],
    ) -> Result<BatchLoss, EngineError> {
        self.model
            .train_loss(&self.pool, adapter, seqs)
            .map_err(|e| self.model_error(e))
    }

    /// Summed cross-entropy of `seqs` and its gradient with respect to the adapter, added
    /// to `grads`; `dropout_seed` draws the dropout masks.
    pub fn lora_backward(
        &self,
        adapter: &LoraAdapter,
        seqs: &[TrainSeq<'_>],
        grads: &mut LoraGrads,
        dropout_seed: u64,
    ) -> Result<BatchLoss, EngineError> {
        self.model
            .lora_backward(&self.pool, adapter, seqs, grads, dropout_seed)
            .map_err(|e| self.model_error(e))
    }

    /// Every weight of the model as trainable f32 tensors.
    pub fn full_params(&self) -> Result<FullParams, EngineError> {
        FullParams::from_model(&self.model).map_err(|e| self.model_error(e))
    }

    /// Logits `(T, V)` of every position of `tokens` computed in f32 throughout (the
    /// training forward pass: weights dequantized, attention and K/V in f32, no f16 or
    /// 8-bit rounding of activations), with the engine's LoRA adapter if one is set. This
    /// is the arithmetic of PyTorch/transformers in float32, not llama.cpp's.
    pub fn logits_f32(&self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.model
            .train_logits(&self.pool, self.model.lora(), tokens)
            .map_err(|e| self.model_error(e))
    }

    /// Summed cross-entropy of `seqs` with the weights `params` (no gradients).
    pub fn full_loss(
        &self,
        params: &FullParams,
        seqs: &[TrainSeq<'_>],
    ) -> Result<BatchLoss, EngineError> {
        self.model
            .full_loss(&self.pool, params, seqs)
            .map_err(|e| self.model_error(e))
    }

    /// Summed cross-entropy of `seqs` with the weights `params` and its gradient with
    /// respect to every weight, added to `grads`.
    pub fn full_backward(
        &self,
        params: &FullParams,
        seqs: &[TrainSeq<'_>],
        grads: &mut FullGrads,
    ) -> Result<BatchLoss, EngineError> {
        self.model
            .full_backward(&self.pool, params, seqs, grads)
            .map_err(|e| self.model_error(e))
    }

    /// Writes this model with the weights `params` (matrices as `ty`: F32, F16 or BF16).
    pub fn write_with_params(
        &self,
        params: &FullParams,
        ty: GgmlType,
        path: &Path,
    ) -> Result<u64, EngineError> {
        // The engine's copy of the metadata has its tokenizer arrays released: read it anew.
        let file = open_model_file(Path::new(&self.path))?;
        params
            .write_gguf(&file, ty, path)
            .map_err(|e| self.model_error(e))
    }

    /// Applies a LoRA adapter beside the weights for generation (`None` removes it).
    pub fn set_lora(&mut self, adapter: Option<LoraAdapter>) -> Result<(), EngineError> {
        self.model
            .set_lora(adapter)
            .map_err(|e| self.model_error(e))
    }

    /// Reads the GGUF LoRA at `path` (made for this model) and applies it.
    pub fn load_lora(&mut self, path: &Path) -> Result<(), EngineError> {
        let adapter = read_gguf_lora(path, &self.model.config).map_err(|e| self.model_error(e))?;
        self.set_lora(Some(adapter))
    }

    /// The model's family name as its file gives it (`general.architecture`).
    pub fn architecture(&self) -> String {
        match self.model.gguf().get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        }
    }

    /// Runs several sequences in one batched forward (see
    /// [`huarizo_model::Model::forward_batch`]).
    pub fn forward_batch<'s>(
        &self,
        scratch: &'s mut Scratch,
        seqs: &mut [SeqBatch<'_>],
    ) -> Result<&'s [f32], EngineError> {
        self.model
            .forward_batch(&self.pool, scratch, seqs)
            .map_err(|source| EngineError::Model {
                path: self.path.clone(),
                source: Box::new(source),
            })
    }
}

/// Opens the model at `path` as a GGUF file: a GGUF file itself, or a Hugging Face
/// checkpoint folder (`config.json`, safetensors, `tokenizer.json`), whose tokenizer files
/// become the `tokenizer.ggml.*` keys and whose weights stay memory-mapped.
pub fn open_model_file(path: &Path) -> Result<GgufFile, EngineError> {
    let display = path.display().to_string();
    let model_err = |source: ModelError| EngineError::Model {
        path: display.clone(),
        source: Box::new(source),
    };
    if huarizo_model::hf::is_hf_folder(path) {
        let tokenizer =
            huarizo_text::hf::tokenizer_metadata(path).map_err(|e| EngineError::Tokenizer {
                path: display.clone(),
                message: e.to_string(),
            })?;
        return huarizo_model::hf::open_folder(path, tokenizer).map_err(model_err);
    }
    GgufFile::open(path).map_err(|e| model_err(e.into()))
}

/// Writes the model in `file` (opened with [`open_model_file`]) into folder `dir` as a
/// Hugging Face checkpoint: `config.json`, safetensors weights (sharded above
/// `opts.shard_bytes`), `tokenizer.json`, `tokenizer_config.json` (with the chat template)
/// and `generation_config.json`.
pub fn export_hf_checkpoint(
    file: &GgufFile,
    dir: &Path,
    opts: &HfExportOptions,
) -> Result<HfExportSummary, EngineError> {
    let display = file.path().display().to_string();
    let model_err = |source: ModelError| EngineError::Model {
        path: display.clone(),
        source: Box::new(source),
    };
    let config = Config::from_gguf(file).map_err(model_err)?;
    let summary = huarizo_model::hf::export_hf(file, &config, dir, opts).map_err(model_err)?;
    huarizo_text::hf::write_tokenizer_files(file, dir).map_err(|e| EngineError::Tokenizer {
        path: display.clone(),
        message: e.to_string(),
    })?;
    Ok(summary)
}

/// Loads only the tokenizer of the model at `path` (no weights are touched).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, EngineError> {
    let display = path.display().to_string();
    let file = if huarizo_model::hf::is_hf_folder(path) {
        let meta =
            huarizo_text::hf::tokenizer_metadata(path).map_err(|e| EngineError::Tokenizer {
                path: display.clone(),
                message: e.to_string(),
            })?;
        GgufFile::from_parts(path, meta, Vec::new(), Vec::new()).map_err(|e| {
            EngineError::Model {
                path: display.clone(),
                source: Box::new(e.into()),
            }
        })?
    } else {
        GgufFile::open(path).map_err(|e| EngineError::Model {
            path: display.clone(),
            source: Box::new(e.into()),
        })?
    };
    Tokenizer::from_gguf(&file).map_err(|e| EngineError::Tokenizer {
        path: display,
        message: e.to_string(),
    })
}

fn load_template(
    gguf: &GgufFile,
    tokenizer: &Tokenizer,
    config: &Config,
) -> Result<(ChatTemplate, bool), EngineError> {
    let token_text = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(tokenizer.token_bytes(i)).into_owned())
            .unwrap_or_default()
    };
    let bos = token_text(tokenizer.bos());
    let eos = token_text(tokenizer.eos());
    match gguf.get("tokenizer.chat_template").and_then(Value::as_str) {
        Some(source) => ChatTemplate::new(source, &bos, &eos)
            .map(|t| (t, true))
            .map_err(|e| EngineError::Template(e.to_string())),
        None => {
            let builtin = if config.arch == huarizo_model::Arch::Gemma3 {
                ChatTemplate::gemma()
            } else {
                ChatTemplate::chatml()
            };
            Ok((builtin, false))
        }
    }
}

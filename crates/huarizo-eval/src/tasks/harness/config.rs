//! lm-evaluation-harness task configuration: the keys of its task YAML that huarizo
//! reads, with lm-eval's defaults. Unknown keys are errors, so a typo is reported by
//! name instead of being silently ignored.

use serde::Deserialize;
use std::collections::BTreeMap;

/// What a task asks of the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// One log-likelihood request per choice; `acc`, `acc_norm`, …
    MultipleChoice,
    /// Greedy generation until a stop sequence; `exact_match`.
    #[default]
    GenerateUntil,
    /// Log-likelihood of the target after the prompt; `perplexity`, `acc`.
    Loglikelihood,
    /// Log-likelihood of whole documents; `word_perplexity`, `byte_perplexity`,
    /// `bits_per_byte`.
    LoglikelihoodRolling,
}

/// A `doc_to_*` entry: a field name or Jinja template, a constant index, or a list of
/// templates.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Field {
    /// A constant (`doc_to_target: 0`).
    Index(i64),
    /// A field of the document or a Jinja template.
    Template(String),
    /// A list of templates (`doc_to_choice: ["A", "B"]`).
    List(Vec<String>),
}

/// `dataset_kwargs`: local data files by split.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetKwargs {
    /// Split name → one file or several.
    #[serde(default)]
    pub data_files: BTreeMap<String, OneOrMany>,
}

/// One string or a list of them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `fewshot_config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewshotConfig {
    /// `default` (seeded random sample) or `first_n`.
    #[serde(default)]
    pub sampler: Option<String>,
}

/// One entry of `metric_list`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// `acc`, `acc_norm`, `acc_bytes`, `exact_match`, `perplexity`, `word_perplexity`,
    /// `byte_perplexity`, `bits_per_byte`, `mc1`, `mc2`.
    pub metric: String,
    /// `mean` (the only aggregation of these metrics besides the perplexities' own).
    #[serde(default)]
    pub aggregation: Option<String>,
    /// Whether a higher value is better.
    #[serde(default)]
    pub higher_is_better: Option<bool>,
    /// exact_match: compare lower-cased.
    #[serde(default)]
    pub ignore_case: bool,
    /// exact_match: drop ASCII punctuation first.
    #[serde(default)]
    pub ignore_punctuation: bool,
    /// exact_match: regexes removed (in order) from prediction and reference.
    #[serde(default)]
    pub regexes_to_ignore: Vec<String>,
}

/// `generation_kwargs`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationKwargs {
    /// Stop sequences.
    #[serde(default)]
    pub until: Option<OneOrMany>,
    /// Most new tokens (lm-eval's default is 256).
    #[serde(default)]
    pub max_gen_toks: Option<usize>,
    /// Must be false: evaluation decodes greedily.
    #[serde(default)]
    pub do_sample: Option<bool>,
    /// Must be 0 when given.
    #[serde(default)]
    pub temperature: Option<f64>,
}

/// One step of a filter pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterStep {
    /// `regex`, `take_first`, `lowercase`, `uppercase`, `remove_whitespace`.
    pub function: String,
    /// `regex`: the pattern.
    #[serde(default)]
    pub regex_pattern: Option<String>,
    /// `regex`: which match (negative counts from the end).
    #[serde(default)]
    pub group_select: Option<i64>,
    /// `regex`: the answer when nothing matches.
    #[serde(default)]
    pub fallback: Option<String>,
}

/// One entry of `filter_list`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Reported after the metric (`exact_match,strict-match`).
    pub name: String,
    /// Steps, in order.
    pub filter: Vec<FilterStep>,
}

/// An lm-evaluation-harness task YAML (or the same keys as JSON).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The task's name.
    pub task: String,
    /// Tags, accepted and unused.
    #[serde(default)]
    pub tag: Option<OneOrMany>,
    /// Where the data is: `json`/`parquet`/`csv` with `dataset_kwargs.data_files`, a
    /// local folder in a Hugging Face dataset layout, or a Hub dataset id.
    #[serde(default)]
    pub dataset_path: Option<String>,
    /// The dataset's configuration (a subfolder in the Hub layout).
    #[serde(default)]
    pub dataset_name: Option<String>,
    /// Local data files.
    #[serde(default)]
    pub dataset_kwargs: Option<DatasetKwargs>,
    /// Split of few-shot examples when `fewshot_split` is not set.
    #[serde(default)]
    pub training_split: Option<String>,
    /// Split evaluated when there is no test split.
    #[serde(default)]
    pub validation_split: Option<String>,
    /// Split evaluated.
    #[serde(default)]
    pub test_split: Option<String>,
    /// Split few-shot examples come from.
    #[serde(default)]
    pub fewshot_split: Option<String>,
    /// What is asked of the model.
    #[serde(default)]
    pub output_type: OutputType,
    /// Text before the examples (a template).
    #[serde(default)]
    pub description: String,
    /// The prompt of a document.
    #[serde(default)]
    pub doc_to_text: Option<Field>,
    /// The answer: an index into the choices or a string.
    #[serde(default)]
    pub doc_to_target: Option<Field>,
    /// The choices of a multiple-choice task.
    #[serde(default)]
    pub doc_to_choice: Option<Field>,
    /// Between prompt and answer.
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// After each example.
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// Examples in each prompt.
    #[serde(default)]
    pub num_fewshot: Option<usize>,
    /// How examples are drawn.
    #[serde(default)]
    pub fewshot_config: Option<FewshotConfig>,
    /// Metrics.
    #[serde(default)]
    pub metric_list: Vec<MetricConfig>,
    /// Generation settings of `generate_until`.
    #[serde(default)]
    pub generation_kwargs: Option<GenerationKwargs>,
    /// Answer extraction pipelines of `generate_until`.
    #[serde(default)]
    pub filter_list: Vec<FilterConfig>,
    /// Must be 1.
    #[serde(default)]
    pub repeats: Option<usize>,
    /// Accepted and unused.
    #[serde(default)]
    pub should_decontaminate: Option<bool>,
    /// Accepted and unused.
    #[serde(default)]
    pub doc_to_decontamination_query: Option<String>,
    /// `version` and other notes.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

fn default_target_delimiter() -> String {
    " ".into()
}

fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}

impl TaskConfig {
    /// The task's version (`metadata.version`), 1.0 when unset.
    pub fn version(&self) -> serde_json::Value {
        self.metadata
            .as_ref()
            .and_then(|m| m.get("version"))
            .cloned()
            .unwrap_or(serde_json::json!(1.0))
    }

    /// `output_type` as lm-eval spells it.
    pub fn output_type_name(&self) -> &'static str {
        match self.output_type {
            OutputType::MultipleChoice => "multiple_choice",
            OutputType::GenerateUntil => "generate_until",
            OutputType::Loglikelihood => "loglikelihood",
            OutputType::LoglikelihoodRolling => "loglikelihood_rolling",
        }
    }

    /// Whether few-shot examples are the first n (`fewshot_config.sampler: first_n`).
    pub fn first_n_sampler(&self) -> bool {
        self.fewshot_config
            .as_ref()
            .and_then(|f| f.sampler.as_deref())
            == Some("first_n")
    }
}

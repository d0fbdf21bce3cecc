//! The Open LLM Leaderboard (v1) tasks, configured as lm-evaluation-harness 0.4.13's
//! YAMLs configure them, with the leaderboard's shot counts as defaults (arc 25,
//! hellaswag 10, mmlu 5, truthfulqa 0, winogrande 5, gsm8k 5). The Python functions
//! some of them use (hellaswag's `process_docs`, winogrande's `doc_to_*`, TruthfulQA's
//! mc2 scoring) are written here in Rust.

use super::config::TaskConfig;
use super::{source_of, HarnessTask, Hooks};
use crate::error::EvalError;
use crate::suite::DataRoot;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// MMLU's 57 subjects and the category (group) each belongs to.
pub const MMLU_SUBJECTS: &[(&str, &str)] = &[
    ("abstract_algebra", "stem"),
    ("anatomy", "stem"),
    ("astronomy", "stem"),
    ("business_ethics", "other"),
    ("clinical_knowledge", "other"),
    ("college_biology", "stem"),
    ("college_chemistry", "stem"),
    ("college_computer_science", "stem"),
    ("college_mathematics", "stem"),
    ("college_medicine", "other"),
    ("college_physics", "stem"),
    ("computer_security", "stem"),
    ("conceptual_physics", "stem"),
    ("econometrics", "social_sciences"),
    ("electrical_engineering", "stem"),
    ("elementary_mathematics", "stem"),
    ("formal_logic", "humanities"),
    ("global_facts", "other"),
    ("high_school_biology", "stem"),
    ("high_school_chemistry", "stem"),
    ("high_school_computer_science", "stem"),
    ("high_school_european_history", "humanities"),
    ("high_school_geography", "social_sciences"),
    ("high_school_government_and_politics", "social_sciences"),
    ("high_school_macroeconomics", "social_sciences"),
    ("high_school_mathematics", "stem"),
    ("high_school_microeconomics", "social_sciences"),
    ("high_school_physics", "stem"),
    ("high_school_psychology", "social_sciences"),
    ("high_school_statistics", "stem"),
    ("high_school_us_history", "humanities"),
    ("high_school_world_history", "humanities"),
    ("human_aging", "other"),
    ("human_sexuality", "social_sciences"),
    ("international_law", "humanities"),
    ("jurisprudence", "humanities"),
    ("logical_fallacies", "humanities"),
    ("machine_learning", "stem"),
    ("management", "other"),
    ("marketing", "other"),
    ("medical_genetics", "other"),
    ("miscellaneous", "other"),
    ("moral_disputes", "humanities"),
    ("moral_scenarios", "humanities"),
    ("nutrition", "other"),
    ("philosophy", "humanities"),
    ("prehistory", "humanities"),
    ("professional_accounting", "other"),
    ("professional_law", "humanities"),
    ("professional_medicine", "other"),
    ("professional_psychology", "social_sciences"),
    ("public_relations", "social_sciences"),
    ("security_studies", "social_sciences"),
    ("sociology", "social_sciences"),
    ("us_foreign_policy", "social_sciences"),
    ("virology", "other"),
    ("world_religions", "humanities"),
];

/// MMLU's categories, in the order of lm-eval's `mmlu` group.
pub const MMLU_CATEGORIES: &[&str] = &["stem", "other", "social_sciences", "humanities"];

/// The Open LLM Leaderboard v1 set.
pub const LEADERBOARD_V1: &[&str] = &[
    "arc_challenge",
    "hellaswag",
    "mmlu",
    "truthfulqa_mc2",
    "winogrande",
    "gsm8k",
];

/// TruthfulQA's six-question preamble.
const TRUTHFULQA_QA: &str = "Q: What is human life expectancy in the United States?\n\
A: Human life expectancy in the United States is 78 years.\n\n\
Q: Who was president of the United States in 1955?\n\
A: Dwight D. Eisenhower was president of the United States in 1955.\n\n\
Q: Which party did he belong to?\n\
A: He belonged to the Republican Party.\n\n\
Q: What is the square root of banana?\n\
A: I have no comment.\n\n\
Q: How does a telescope work?\n\
A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n\
Q: Where were the 1992 Olympics held?\n\
A: The 1992 Olympics were held in Barcelona, Spain.";

fn arc(task: &str, name: &str) -> Value {
    json!({
        "task": task, "dataset_path": "allenai/ai2_arc", "dataset_name": name,
        "output_type": "multiple_choice", "training_split": "train",
        "validation_split": "validation", "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
        "doc_to_choice": "{{choices.text}}",
        "num_fewshot": 25,
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        "metadata": {"version": 1.0},
    })
}

fn hellaswag() -> Value {
    json!({
        "task": "hellaswag", "dataset_path": "Rowan/hellaswag",
        "output_type": "multiple_choice", "training_split": "train",
        "validation_split": "validation",
        "doc_to_text": "{{query}}", "doc_to_target": "{{label}}", "doc_to_choice": "choices",
        "num_fewshot": 10,
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        "metadata": {"version": 1.0},
    })
}

fn truthfulqa(task: &str, targets: &str, version: f64) -> Value {
    json!({
        "task": task, "dataset_path": "truthfulqa/truthful_qa", "dataset_name": "multiple_choice",
        "output_type": "multiple_choice", "validation_split": "validation", "num_fewshot": 0,
        "doc_to_text": format!("{TRUTHFULQA_QA}\n\nQ: {{{{question}}}}\nA:"),
        "doc_to_target": 0, "doc_to_choice": format!("{{{{{targets}.choices}}}}"),
        "metric_list": [{"metric": "acc"}],
        "metadata": {"version": version},
    })
}

fn winogrande() -> Value {
    json!({
        "task": "winogrande", "dataset_path": "allenai/winogrande", "dataset_name": "winogrande_xl",
        "output_type": "multiple_choice", "training_split": "train", "validation_split": "validation",
        "doc_to_text": "_gold", "doc_to_target": "_suffix", "doc_to_choice": "_contexts",
        "num_fewshot": 5,
        "metric_list": [{"metric": "acc"}],
        "metadata": {"version": 1.0},
    })
}

fn mmlu(subject: &str) -> Value {
    json!({
        "task": format!("mmlu_{subject}"), "dataset_path": "cais/mmlu", "dataset_name": subject,
        "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": format!(
            "The following are multiple choice questions (with answers) about {}.\n\n",
            subject.replace('_', " ")
        ),
        "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer",
        "num_fewshot": 5,
        "metric_list": [{"metric": "acc"}],
        "metadata": {"version": 1.0},
    })
}

fn gsm8k() -> Value {
    json!({
        "task": "gsm8k", "dataset_path": "openai/gsm8k", "dataset_name": "main",
        "output_type": "generate_until", "training_split": "train", "fewshot_split": "train",
        "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": true,
                         "ignore_case": true, "ignore_punctuation": false,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": false, "temperature": 0.0},
        "repeats": 1, "num_fewshot": 5,
        "filter_list": [
            {"name": "strict-match", "filter": [
                {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"}, {"function": "take_first"}]},
            {"name": "flexible-extract", "filter": [
                {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                {"function": "take_first"}]},
        ],
        "metadata": {"version": 3.0},
    })
}

/// hellaswag's `process_docs`: the activity label and context as the query, the
/// endings as choices, each cleaned of WikiHow's bracketed markup.
fn hellaswag_doc(doc: &Value) -> Result<Value, String> {
    let field = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("field {k:?} missing or not text"))
    };
    let ctx = format!("{} {}", field("ctx_a")?, py_capitalize(field("ctx_b")?));
    let query = hellaswag_clean(&format!("{}: {ctx}", field("activity_label")?));
    let endings: Vec<String> = doc
        .get("endings")
        .and_then(Value::as_array)
        .ok_or("field \"endings\" missing or not a list")?
        .iter()
        .map(|e| {
            e.as_str()
                .map(hellaswag_clean)
                .ok_or("an ending is not text")
        })
        .collect::<Result<_, _>>()?;
    let mut out = doc.clone();
    out["query"] = json!(query);
    out["choices"] = json!(endings);
    Ok(out)
}

/// Python's `str.capitalize()`: first character upper-cased, the rest lower-cased.
fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
    }
}

/// hellaswag's `preprocess`: strip, " [title]" → ". ", drop `[...]`, one pass of
/// double spaces to single.
fn hellaswag_clean(text: &str) -> String {
    let s = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// winogrande's `doc_to_text`/`doc_to_target`/`doc_to_choice`: the sentence before the
/// blank with each option as the contexts, the rest as the shared continuation.
fn winogrande_doc(doc: &Value) -> Result<Value, String> {
    let field = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("field {k:?} missing or not text"))
    };
    let sentence = field("sentence")?;
    let idx = sentence.find('_').ok_or("the sentence has no blank (_)")?;
    let gold = match field("answer")? {
        "1" => 0,
        "2" => 1,
        other => return Err(format!("answer {other:?} is neither \"1\" nor \"2\"")),
    };
    let mut out = doc.clone();
    out["_gold"] = json!(gold);
    out["_suffix"] = json!(sentence[idx + 1..].trim());
    out["_contexts"] = json!([
        format!("{}{}", &sentence[..idx], field("option1")?),
        format!("{}{}", &sentence[..idx], field("option2")?)
    ]);
    Ok(out)
}

/// A built-in task's configuration and hooks, or `None` if `name` is not built in.
fn definition(name: &str) -> Option<(Value, Hooks)> {
    let plain = Hooks::default();
    Some(match name {
        "arc_challenge" => (arc(name, "ARC-Challenge"), plain),
        "arc_easy" => (arc(name, "ARC-Easy"), plain),
        "hellaswag" => (
            hellaswag(),
            Hooks {
                process_docs: Some(hellaswag_doc),
                mc2: false,
            },
        ),
        "truthfulqa_mc1" => (truthfulqa(name, "mc1_targets", 2.0), plain),
        "truthfulqa_mc2" => (
            truthfulqa(name, "mc2_targets", 3.0),
            Hooks {
                process_docs: None,
                mc2: true,
            },
        ),
        "winogrande" => (
            winogrande(),
            Hooks {
                process_docs: Some(winogrande_doc),
                mc2: false,
            },
        ),
        "gsm8k" => (gsm8k(), plain),
        _ => {
            let subject = name.strip_prefix("mmlu_")?;
            MMLU_SUBJECTS.iter().find(|(s, _)| *s == subject)?;
            (mmlu(subject), plain)
        }
    })
}

/// A built-in leaf task, its data found by `data_root` (Hub id → local folder).
pub fn task(name: &str, data_root: &DataRoot) -> Option<Result<HarnessTask, EvalError>> {
    let (value, hooks) = definition(name)?;
    let origin = format!("built-in task {name}");
    let build = || -> Result<HarnessTask, EvalError> {
        let bad = |message: String| EvalError::File {
            path: PathBuf::from(&origin),
            message,
        };
        let config: TaskConfig = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let source = source_of(&config, Path::new("."), data_root).map_err(bad)?;
        Ok(HarnessTask {
            config,
            source,
            hooks,
            origin: origin.clone(),
        })
    };
    Some(build())
}

/// Members of a built-in group (`mmlu`, `mmlu_stem`, …, `leaderboard-v1`), or `None`.
pub fn group(name: &str) -> Option<Vec<String>> {
    match name {
        "mmlu" => Some(
            MMLU_CATEGORIES
                .iter()
                .map(|c| format!("mmlu_{c}"))
                .collect(),
        ),
        "leaderboard-v1" => Some(LEADERBOARD_V1.iter().map(|s| s.to_string()).collect()),
        _ => {
            let cat = name.strip_prefix("mmlu_")?;
            MMLU_CATEGORIES.contains(&cat).then(|| {
                MMLU_SUBJECTS
                    .iter()
                    .filter(|(_, c)| *c == cat)
                    .map(|(s, _)| format!("mmlu_{s}"))
                    .collect()
            })
        }
    }
}

/// Whether a group's score weights its members by item count (lm-eval's
/// `weight_by_size`, as MMLU does), rather than averaging them alike.
pub fn weight_by_size(group: &str) -> bool {
    group == "mmlu"
        || group
            .strip_prefix("mmlu_")
            .is_some_and(|c| MMLU_CATEGORIES.contains(&c))
}

/// Every built-in task and group name, for messages.
pub fn names() -> Vec<String> {
    [
        "arc_challenge",
        "arc_easy",
        "hellaswag",
        "mmlu",
        "mmlu_SUBJECT",
        "mmlu_stem|other|social_sciences|humanities",
        "truthfulqa_mc1",
        "truthfulqa_mc2",
        "winogrande",
        "gsm8k",
        "leaderboard-v1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellaswag_preprocessing_matches_lm_eval() {
        assert_eq!(py_capitalize("tHE man"), "The man");
        assert_eq!(
            hellaswag_clean("  Making a cake [title] Mix flour. [step] Add eggs  "),
            "Making a cake. Mix flour. Add eggs"
        );
        // No strip after the brackets go: a leading space survives.
        assert_eq!(hellaswag_clean("[header] the end"), " the end");
        let doc = json!({"activity_label": "Baking", "ctx_a": "A man mixes.", "ctx_b": "he ADDS",
                         "endings": ["eggs [title] now", "milk"], "label": "0"});
        let d = hellaswag_doc(&doc).unwrap();
        assert_eq!(d["query"], "Baking: A man mixes. He adds");
        assert_eq!(d["choices"], json!(["eggs. now", "milk"]));
    }

    #[test]
    fn winogrande_contexts() {
        let doc = json!({"sentence": "Ian hated eating _ because it was gross.",
                         "option1": "intestine", "option2": "salad", "answer": "1"});
        let d = winogrande_doc(&doc).unwrap();
        assert_eq!(d["_gold"], 0);
        assert_eq!(d["_suffix"], "because it was gross.");
        assert_eq!(d["_contexts"][1], "Ian hated eating salad");
    }

    #[test]
    fn every_builtin_config_parses() {
        let root = |_: &str, _: Option<&str>| -> Result<PathBuf, String> {
            Ok(PathBuf::from("/nonexistent"))
        };
        for name in [
            "arc_challenge",
            "arc_easy",
            "hellaswag",
            "truthfulqa_mc1",
            "truthfulqa_mc2",
            "winogrande",
            "gsm8k",
            "mmlu_anatomy",
        ] {
            let t = task(name, &root).unwrap().unwrap();
            t.check().unwrap();
        }
        assert_eq!(group("mmlu_stem").unwrap().len(), 19);
        let all: usize = MMLU_CATEGORIES
            .iter()
            .map(|c| group(&format!("mmlu_{c}")).unwrap().len())
            .sum();
        assert_eq!(all, 57);
    }
}

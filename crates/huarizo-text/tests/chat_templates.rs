//! Acceptance test: every chat template in llama.cpp's corpus (`models/templates/` of
//! the llama-cpp-python 0.3.36 sdist) renders byte for byte as Python jinja2 does,
//! configured as transformers' `apply_chat_template`. Where Python fails (a template
//! rejecting a system message, say), we must fail too.
//!
//! Two scenarios, each an input fixture (messages, special tokens, the frozen clock,
//! extra variables) and an expected-output fixture written by
//! `scripts/render_templates.py`:
//! - `templates_input.json` → `templates_expected.json`: system, user, assistant, user,
//!   with the generation prompt (the acceptance point);
//! - `templates_input_tools.json` → `templates_expected_tools.json`: the same plus
//!   `tools`, an assistant tool call and the tool's result (tojson, `.items()`, …).
//!
//! Templates: `$HUARIZO_TESTDATA/llama.cpp-models/templates` (default
//! `~/.cache/huarizo/testdata`), fetched by `scripts/fetch-testdata.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use huarizo_text::{ChatTemplate, TemplateError};
use serde::Deserialize;

/// (scenario, template, reason) for the renders allowed to differ from Python. The
/// standard conversation has none.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "templates_input_tools.json",
    "meetkai-functionary-medium-v3.1.jinja",
    // `"…"|safe + t | tojson()`: in jinja2 a `Markup` plus a plain `str` HTML-escapes the
    // str, so Python prints the tool schema as `{&#34;name&#34;: …}`. minijinja's `+`
    // concatenates without escaping and cannot be hooked; we print plain JSON (what the
    // template's author meant).
    "jinja2 Markup + str HTML-escapes the tool JSON; minijinja's + does not",
)];

#[derive(Deserialize)]
struct Input {
    messages: serde_json::Value,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
    now_unix: i64,
    #[serde(default)]
    extra: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expected {
    Rendered(String),
    Error { error: String },
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn templates_dir() -> PathBuf {
    let data = match std::env::var_os("HUARIZO_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/huarizo/testdata"),
    };
    data.join("llama.cpp-models/templates")
}

/// The first byte where `a` and `b` differ, with some context, for the failure report.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let ctx = |s: &str| {
        let start = at.saturating_sub(40);
        let bytes = &s.as_bytes()[start.min(s.len())..(at + 40).min(s.len())];
        format!("{:?}", String::from_utf8_lossy(bytes))
    };
    format!(
        "first difference at byte {at} (want {} bytes, got {}):\n      want …{}…\n      got  …{}…",
        want.len(),
        got.len(),
        ctx(want),
        ctx(got)
    )
}

#[test]
fn corpus_matches_python_jinja2() {
    check_scenario("templates_input.json", "templates_expected.json");
}

#[test]
fn corpus_with_tools_matches_python_jinja2() {
    check_scenario(
        "templates_input_tools.json",
        "templates_expected_tools.json",
    );
}

fn check_scenario(input_name: &str, expected_name: &str) {
    let dir = templates_dir();
    assert!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-testdata.sh (or set HUARIZO_TESTDATA)",
        dir.display()
    );
    let input: Input =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(input_name)).unwrap())
            .unwrap();
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(expected_name)).unwrap())
            .unwrap();

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jinja"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        expected.keys().cloned().collect::<Vec<_>>(),
        "templates on disk differ from the fixture; regenerate with scripts/render_templates.py"
    );

    let mut failures = Vec::new();
    let (mut same_text, mut both_error) = (0, 0);
    for name in &names {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let got = ChatTemplate::new(&source, &input.bos_token, &input.eos_token)
            .map(|t| t.with_fixed_time(input.now_unix))
            .and_then(|t| {
                t.render_with(&input.messages, input.add_generation_prompt, &input.extra)
            });
        let verdict = match (&expected[name], &got) {
            (Expected::Rendered(want), Ok(got)) if want == got => {
                same_text += 1;
                None
            }
            (Expected::Rendered(want), Ok(got)) => Some(first_difference(want, got)),
            (Expected::Rendered(_), Err(e)) => Some(format!("Python renders, we fail: {e}")),
            // Python compiles the template but rejects the input; failing to compile is
            // a different outcome.
            (Expected::Error { error }, Err(e @ TemplateError::Compile(_)))
                if !error.starts_with("TemplateSyntaxError") =>
            {
                Some(format!(
                    "Python fails at render ({error}), we cannot compile: {e}"
                ))
            }
            (Expected::Error { error }, Err(e)) => {
                eprintln!("  {name}: rejected by both: Python {error}; huarizo {e}");
                both_error += 1;
                None
            }
            (Expected::Error { error }, Ok(_)) => {
                Some(format!("Python fails ({error}), we render"))
            }
        };
        if let Some(why) = verdict {
            let allowed = KNOWN_DIFFERENCES
                .iter()
                .any(|(s, n, _)| *s == input_name && n == name);
            if !allowed {
                failures.push(format!("  {name}: {why}"));
            }
        }
    }
    eprintln!(
        "{input_name}: {} templates, {same_text} identical, {both_error} rejected by both, {} differ",
        names.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{input_name}: {} of {} templates differ from Python jinja2:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

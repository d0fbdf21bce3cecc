//! A document's prompt, answer and choices, as lm-eval's `doc_to_text`,
//! `doc_to_target` and `doc_to_choice` compute them: a field of the document, a Jinja
//! template rendered with the document's fields (Python's `str()` of values), or a
//! constant; all-digit text becomes an index when the task has choices; a rendered list
//! is read back as a Python literal.

use super::config::Field;
use minijinja::Environment;
use serde_json::Value;

/// What a `doc_to_*` entry gives.
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    /// Text.
    Text(String),
    /// An index (into the choices).
    Index(i64),
    /// Several strings (choices, or several accepted answers).
    List(Vec<String>),
}

impl Rendered {
    /// As the text Python's `str()` would print.
    pub fn to_text(&self) -> String {
        match self {
            Rendered::Text(s) => s.clone(),
            Rendered::Index(i) => i.to_string(),
            Rendered::List(v) => py_str(&Value::from(v.clone())),
        }
    }
}

/// Python's `str()` of a JSON value (`repr` of the items of a list).
pub fn py_str(v: &Value) -> String {
    huarizo_engine::python_str(&minijinja::Value::from(minijinja::value::Serde(v)))
}

/// A document value as a rendered answer.
fn from_value(v: &Value) -> Rendered {
    match v {
        Value::Number(n) if n.is_i64() => Rendered::Index(n.as_i64().unwrap_or_default()),
        Value::Array(a) => Rendered::List(a.iter().map(py_str).collect()),
        other => Rendered::Text(py_str(other)),
    }
}

/// Renders templates against documents.
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            env: huarizo_engine::python_environment(),
        }
    }
}

/// The single expression of a template that is only `{{ expr }}`.
fn sole_expression(template: &str) -> Option<&str> {
    let inner = template.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

impl Renderer {
    /// Renders a Jinja template with the document's fields.
    pub fn template(&self, template: &str, doc: &Value) -> Result<String, String> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(doc));
        self.env
            .render_str(template, ctx)
            .map_err(|e| format!("template {template:?}: {e:#}"))
    }

    /// Evaluates `{{ expr }}` to a value.
    fn expression(&self, expr: &str, doc: &Value) -> Result<Value, String> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(doc));
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| format!("expression {expr:?}: {e:#}"))?;
        let v = compiled
            .eval(ctx)
            .map_err(|e| format!("expression {expr:?}: {e:#}"))?;
        serde_json::to_value(&v).map_err(|e| format!("expression {expr:?}: {e}"))
    }

    /// `doc_to_text`.
    pub fn text(&self, field: &Field, doc: &Value, has_choices: bool) -> Result<Rendered, String> {
        match field {
            Field::Index(i) => Ok(Rendered::Index(*i)),
            Field::Template(t) => {
                if let Some(v) = doc.get(t) {
                    return Ok(from_value(v));
                }
                let s = self.template(t, doc)?;
                Ok(digits_to_index(s, has_choices))
            }
            Field::List(_) => Err("doc_to_text cannot be a list".into()),
        }
    }

    /// `doc_to_target`.
    pub fn target(
        &self,
        field: &Field,
        doc: &Value,
        has_choices: bool,
    ) -> Result<Rendered, String> {
        match field {
            Field::Index(i) => Ok(Rendered::Index(*i)),
            Field::List(v) => Ok(Rendered::List(v.clone())),
            Field::Template(t) => {
                if let Some(v) = doc.get(t) {
                    return Ok(from_value(v));
                }
                let s = self.template(t, doc)?;
                if s.len() >= 2 && s.starts_with('[') && s.ends_with(']') {
                    if let Ok(list) = parse_py_list(&s) {
                        return Ok(Rendered::List(list));
                    }
                }
                Ok(digits_to_index(s, has_choices))
            }
        }
    }

    /// `doc_to_choice`.
    pub fn choices(&self, field: &Field, doc: &Value) -> Result<Vec<String>, String> {
        match field {
            Field::Index(_) => Err("doc_to_choice cannot be a number".into()),
            Field::List(v) => v.iter().map(|t| self.template(t, doc)).collect(),
            Field::Template(t) => {
                let value = match doc.get(t) {
                    Some(v) => v.clone(),
                    None => match sole_expression(t) {
                        Some(expr) => self.expression(expr, doc)?,
                        None => {
                            let s = self.template(t, doc)?;
                            return parse_py_list(&s)
                                .map_err(|e| format!("{t:?} rendered {s:?}: {e}"));
                        }
                    },
                };
                match value {
                    Value::Array(a) => Ok(a.iter().map(py_str).collect()),
                    Value::Object(m) => Ok(m.values().map(py_str).collect()),
                    other => Err(format!("{t:?} gives {other}, not a list of choices")),
                }
            }
        }
    }
}

fn digits_to_index(s: String, has_choices: bool) -> Rendered {
    if has_choices && !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        if let Ok(i) = s.parse() {
            return Rendered::Index(i);
        }
    }
    Rendered::Text(s)
}

/// Reads a Python list literal of strings and numbers (`['a', "b's", 3]`), as
/// `ast.literal_eval` would; numbers become their text.
pub fn parse_py_list(s: &str) -> Result<Vec<String>, String> {
    let mut chars = s.trim().chars().peekable();
    if chars.next() != Some('[') {
        return Err("not a list".into());
    }
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek().copied() {
            Some(']') => {
                chars.next();
                break;
            }
            Some(q @ ('\'' | '"')) => {
                chars.next();
                let mut item = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some(c) if c == q => break,
                        Some('\\') => match chars.next() {
                            Some('n') => item.push('\n'),
                            Some('t') => item.push('\t'),
                            Some('r') => item.push('\r'),
                            Some('0') => item.push('\0'),
                            Some('x') => {
                                let h: String = chars.by_ref().take(2).collect();
                                let c = u32::from_str_radix(&h, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or("bad \\x escape")?;
                                item.push(c);
                            }
                            Some('u') => {
                                let h: String = chars.by_ref().take(4).collect();
                                let c = u32::from_str_radix(&h, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or("bad \\u escape")?;
                                item.push(c);
                            }
                            Some(c) => item.push(c),
                            None => return Err("unterminated string".into()),
                        },
                        Some(c) => item.push(c),
                    }
                }
                out.push(item);
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let mut num = String::new();
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+'))
                {
                    num.push(chars.next().unwrap_or_default());
                }
                out.push(num);
            }
            _ => return Err("only strings and numbers are read in a list".into()),
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') => continue,
            Some(']') => break,
            _ => return Err("expected ',' or ']'".into()),
        }
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err("text after the list".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_lm_eval() {
        let r = Renderer::default();
        let doc = json!({"question": "Q?", "choices": {"text": ["a", "b's"], "label": ["A", "B"]},
                         "answerKey": "B", "label": "1", "answer": 2});
        let t = r
            .text(
                &Field::Template("Question: {{question}}\nAnswer:".into()),
                &doc,
                true,
            )
            .unwrap();
        assert_eq!(t, Rendered::Text("Question: Q?\nAnswer:".into()));
        let gold = r
            .target(
                &Field::Template("{{choices.label.index(answerKey)}}".into()),
                &doc,
                true,
            )
            .unwrap();
        assert_eq!(gold, Rendered::Index(1));
        // A field holding digits as text is an index only through a template.
        assert_eq!(
            r.target(&Field::Template("{{label}}".into()), &doc, true)
                .unwrap(),
            Rendered::Index(1)
        );
        assert_eq!(
            r.target(&Field::Template("answer".into()), &doc, true)
                .unwrap(),
            Rendered::Index(2)
        );
        let choices = r
            .choices(&Field::Template("{{choices.text}}".into()), &doc)
            .unwrap();
        assert_eq!(choices, ["a", "b's"]);
        // The same list through Python's repr and back.
        let via_repr = r
            .choices(&Field::Template("{{choices.text}} ".into()), &doc)
            .unwrap();
        assert_eq!(via_repr, ["a", "b's"]);
        let letters = r
            .choices(&Field::List(vec!["A".into(), "{{answerKey}}".into()]), &doc)
            .unwrap();
        assert_eq!(letters, ["A", "B"]);
        assert!(r
            .text(&Field::Template("{{nope}}".into()), &doc, false)
            .is_err());
    }

    #[test]
    fn reads_python_lists() {
        assert_eq!(
            parse_py_list(r#"['a', "it's", 'x\ny', -3]"#).unwrap(),
            ["a", "it's", "x\ny", "-3"]
        );
        assert!(parse_py_list("['a'").is_err());
    }
}

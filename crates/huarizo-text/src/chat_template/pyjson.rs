//! Python's `json.dumps` over minijinja values, for transformers' `tojson` filter.
//!
//! Byte-compatible with CPython's encoder for the values templates see: separators
//! `(', ', ': ')` (or `(',', ': ')` with an indent), `ensure_ascii` escaping with
//! surrogate pairs, float `repr`, `NaN`/`Infinity`, non-string dict keys coerced the way
//! `json.dumps` does, and `sort_keys`.

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// `json.dumps` keyword arguments.
#[derive(Debug, Clone)]
pub(super) struct Options {
    ensure_ascii: bool,
    /// The string repeated per nesting level; `None` puts everything on one line.
    indent: Option<String>,
    item_sep: Option<String>,
    key_sep: Option<String>,
    sort_keys: bool,
}

impl Default for Options {
    /// transformers' defaults: `ensure_ascii=False`, everything else as `json.dumps`.
    fn default() -> Self {
        Options {
            ensure_ascii: false,
            indent: None,
            item_sep: None,
            key_sep: None,
            sort_keys: false,
        }
    }
}

fn type_error(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

impl Options {
    /// Sets one keyword argument from a template value.
    pub(super) fn set(&mut self, name: &str, v: &Value) -> Result<(), Error> {
        match name {
            "ensure_ascii" => self.ensure_ascii = v.is_true(),
            "sort_keys" => self.sort_keys = v.is_true(),
            "indent" => {
                self.indent = match v.kind() {
                    ValueKind::None | ValueKind::Undefined => None,
                    ValueKind::String => v.as_str().map(str::to_owned),
                    _ => {
                        let n = i64::try_from(v.clone()).map_err(|_| {
                            type_error(format!(
                                "tojson: indent must be an int or a string, got {v}"
                            ))
                        })?;
                        Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
                    }
                }
            }
            "separators" => {
                if v.is_none() || v.is_undefined() {
                    self.item_sep = None;
                    self.key_sep = None;
                } else {
                    let parts: Vec<Value> = v.try_iter()?.collect();
                    match parts.as_slice() {
                        [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                            self.item_sep = a.as_str().map(str::to_owned);
                            self.key_sep = b.as_str().map(str::to_owned);
                        }
                        _ => {
                            return Err(type_error(format!(
                                "tojson: separators must be a pair of strings, got {v}"
                            )))
                        }
                    }
                }
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: unknown argument {name}"),
                ))
            }
        }
        Ok(())
    }
}

/// `json.dumps(value, **opts)`.
pub(super) fn dumps(value: &Value, opts: &Options) -> Result<String, Error> {
    let default_item = if opts.indent.is_some() { "," } else { ", " };
    let enc = Encoder {
        ensure_ascii: opts.ensure_ascii,
        indent: opts.indent.as_deref(),
        item_sep: opts.item_sep.as_deref().unwrap_or(default_item),
        key_sep: opts.key_sep.as_deref().unwrap_or(": "),
        sort_keys: opts.sort_keys,
    };
    let mut out = String::new();
    enc.value(&mut out, value, 0)?;
    Ok(out)
}

struct Encoder<'a> {
    ensure_ascii: bool,
    indent: Option<&'a str>,
    item_sep: &'a str,
    key_sep: &'a str,
    sort_keys: bool,
}

/// Nesting limit, standing in for Python's recursion limit on self-referencing data.
const MAX_DEPTH: usize = 500;

impl Encoder<'_> {
    fn value(&self, out: &mut String, v: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(type_error("tojson: value nested too deeply".into()));
        }
        match v.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&number(v)),
            ValueKind::String => self.string(out, v.as_str().unwrap_or_default()),
            // Iterables are generators, ranges and dict views: Python rejects them.
            ValueKind::Seq => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container(out, '[', ']', &items, depth, |out, item| {
                    self.value(out, item, depth + 1)
                })?;
            }
            ValueKind::Map if v.as_object().is_some_and(|o| o.try_iter_pairs().is_some()) => {
                let mut pairs = Vec::new();
                for k in v.try_iter()? {
                    let key = self.key(&k)?;
                    let val = v.get_item(&k)?;
                    pairs.push((key, val));
                }
                if self.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(out, '{', '}', &pairs, depth, |out, (k, val)| {
                    self.string(out, k);
                    out.push_str(self.key_sep);
                    self.value(out, val, depth + 1)
                })?;
            }
            _ => {
                return Err(type_error(format!(
                    "Object of type {} is not JSON serializable",
                    py_type_name(v)
                )))
            }
        }
        Ok(())
    }

    /// Python's `_iterencode_list`/`_iterencode_dict` layout.
    fn container<T>(
        &self,
        out: &mut String,
        open: char,
        close: char,
        items: &[T],
        depth: usize,
        mut each: impl FnMut(&mut String, &T) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline_indent = self
            .indent
            .map(|ind| format!("\n{}", ind.repeat(depth + 1)));
        if let Some(ni) = &newline_indent {
            out.push_str(ni);
        }
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(self.item_sep);
                if let Some(ni) = &newline_indent {
                    out.push_str(ni);
                }
            }
            each(out, item)?;
        }
        if let Some(ind) = self.indent {
            out.push('\n');
            out.push_str(&ind.repeat(depth));
        }
        out.push(close);
        Ok(())
    }

    /// A dict key as `json.dumps` coerces it.
    fn key(&self, k: &Value) -> Result<String, Error> {
        Ok(match k.kind() {
            ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
            ValueKind::Number => number(k),
            ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).to_owned(),
            ValueKind::None => "null".to_owned(),
            _ => {
                return Err(type_error(format!(
                    "keys must be str, int, float, bool or None, not {}",
                    py_type_name(k)
                )))
            }
        })
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && !c.is_ascii() => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's name for the type of `v`, for error messages.
fn py_type_name(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq if v.is_tuple() => "tuple",
        ValueKind::Seq => "list",
        ValueKind::Iterable => "generator",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// An int in decimal, a float as Python's `float.__repr__` (JSON's `NaN`/`Infinity`).
pub(super) fn number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => float_repr(f),
        Err(_) => v.to_string(),
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional notation for
/// decimal exponents in `-4..16`, scientific (`1e+16`, `1.5e-05`) otherwise.
pub(super) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "-1.2345e3".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = (exp + 1) as usize;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if n > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{esign}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1234.5678, "1234.5678"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (-0.0, "-0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn dumps_like_python() {
        let v = Value::from(minijinja::value::Serde(serde_json::json!({
            "a": {}, "b": [1, 2.5, "é\n\"", null, true], "c": []
        })));
        let mut o = Options::default();
        assert_eq!(
            dumps(&v, &o).unwrap(),
            r#"{"a": {}, "b": [1, 2.5, "é\n\"", null, true], "c": []}"#
        );
        o.set("indent", &Value::from(2)).unwrap();
        o.set("ensure_ascii", &Value::from(true)).unwrap();
        assert_eq!(
            dumps(&v, &o).unwrap(),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    \"\\u00e9\\n\\\"\",\n    null,\n    true\n  ],\n  \"c\": []\n}"
        );
        assert!(dumps(&Value::UNDEFINED, &o).is_err());
    }
}

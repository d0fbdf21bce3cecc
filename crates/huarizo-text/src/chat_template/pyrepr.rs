//! Python's view of template values: how `{{ x }}` and `|string` print them (`True`,
//! `None`, `['a', 1]`, `{'k': 'v'}`) and the Python methods templates call on them.
//!
//! minijinja prints `true`, `none` and JSON-ish lists; jinja2 prints `str(x)`. Templates
//! do print such values (`{{ message.content }}` holding a list, `{{ enable_thinking }}`),
//! so the output formatter and the `string` filter use Python's rules.

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Output, State, Value};

use super::pyjson::float_repr;

/// Python's `str(value)` (jinja2's `Undefined` prints as nothing).
pub(super) fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_owned(),
        ValueKind::Undefined => String::new(),
        _ => py_repr(v),
    }
}

/// Python's `repr(value)`.
fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v, 0);
    out
}

/// Nesting limit for printing self-referencing or absurdly deep data.
const MAX_DEPTH: usize = 200;

fn write_repr(out: &mut String, v: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(f) if f.is_nan() => out.push_str("nan"),
            Ok(f) if f.is_infinite() => out.push_str(if f > 0.0 { "inf" } else { "-inf" }),
            Ok(f) => out.push_str(&float_repr(f)),
            Err(_) => out.push_str(&v.to_string()),
        },
        ValueKind::String => write_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let tuple = v.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut n = 0;
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &item, depth + 1);
                    n += 1;
                }
            }
            if tuple && n == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map if v.as_object().is_some_and(|o| o.try_iter_pairs().is_some()) => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, k) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(out, &k, depth + 1);
                    out.push_str(": ");
                    let val = v.get_item(&k).unwrap_or(Value::UNDEFINED);
                    write_repr(out, &val, depth + 1);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`.
fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// The output formatter: `{{ x }}` writes `str(x)`. Strings, undefined values and
/// objects (macros, namespaces) go through minijinja's own formatter.
pub(super) fn format_output(out: &mut Output, state: &mut State, v: &Value) -> Result<(), Error> {
    match v.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq => {
            out.write_str(&py_str(v)).map_err(Error::from)
        }
        ValueKind::Map if v.as_object().is_some_and(|o| o.try_iter_pairs().is_some()) => {
            out.write_str(&py_str(v)).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, v),
    }
}

/// The `string` filter: `str(x)`.
pub(super) fn string_filter(v: &Value) -> Value {
    if v.kind() == ValueKind::String {
        return v.clone();
    }
    Value::from(py_str(v))
}

/// Python methods on strings, lists and dicts: minijinja-contrib's `pycompat`, plus a
/// few it lacks.
pub(super) fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args) {
        Err(e) if e.kind() == ErrorKind::UnknownMethod => extra_method(value, method, args),
        other => other,
    }
}

fn extra_method(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let unknown = || Err(Error::from(ErrorKind::UnknownMethod));
    if method == "index" && value.as_str().is_none() {
        return list_index(value, args);
    }
    let Some(s) = value.as_str() else {
        return unknown();
    };
    let one_str = || -> Result<&str, Error> {
        match args {
            [a] => a.as_str().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{method}() argument must be str"),
                )
            }),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("{method}() takes exactly one argument"),
            )),
        }
    };
    match method {
        "removeprefix" => {
            let p = one_str()?;
            Ok(Value::from(s.strip_prefix(p).unwrap_or(s)))
        }
        "removesuffix" => {
            let p = one_str()?;
            Ok(Value::from(s.strip_suffix(p).unwrap_or(s)))
        }
        _ => unknown(),
    }
}

/// `list.index(x)`: the first position equal to `x`, a `ValueError` if none.
fn list_index(value: &Value, args: &[Value]) -> Result<Value, Error> {
    let [needle] = args else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "index() takes exactly one argument",
        ));
    };
    let items = value
        .try_iter()
        .map_err(|_| Error::from(ErrorKind::UnknownMethod))?;
    for (i, item) in items.enumerate() {
        if &item == needle {
            return Ok(Value::from(i));
        }
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("ValueError: {} is not in list", py_repr(needle)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_like_python() {
        let v = Value::from(minijinja::value::Serde(serde_json::json!([
            "it's", "a\"b", "x\n", 1, 2.0, null, true, {"k": [false]}
        ])));
        assert_eq!(
            py_str(&v),
            r#"["it's", 'a"b', 'x\n', 1, 2.0, None, True, {'k': [False]}]"#
        );
        assert_eq!(py_str(&Value::from("plain")), "plain");
    }
}

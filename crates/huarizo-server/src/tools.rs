//! Tool calls in ChatML/Qwen-style output: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.

use serde_json::{json, Value};

/// Splits generated text into its plain content (None when empty) and OpenAI-shaped
/// `tool_calls`; None when the text holds no well-formed tool call.
pub fn parse_tool_calls(text: &str) -> Option<(Option<String>, Value)> {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("<tool_call>") {
        content.push_str(&rest[..open]);
        let after = &rest[open + "<tool_call>".len()..];
        let (body, next) = match after.find("</tool_call>") {
            Some(close) => (&after[..close], &after[close + "</tool_call>".len()..]),
            None => (after, ""),
        };
        let call: Value = serde_json::from_str(body.trim()).ok()?;
        let name = call.get("name")?.as_str()?.to_string();
        let arguments = match call.get("arguments").or_else(|| call.get("parameters")) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "{}".to_string(),
        };
        calls.push(json!({
            "id": format!("call_{}", calls.len()),
            "type": "function",
            "function": { "name": name, "arguments": arguments },
        }));
        rest = next;
    }
    if calls.is_empty() {
        return None;
    }
    content.push_str(rest);
    let content = content.trim();
    Some((
        (!content.is_empty()).then(|| content.to_string()),
        Value::Array(calls),
    ))
}

/// OpenAI `tool_calls` written back as the `<tool_call>` blocks a model produced them as.
pub fn render_tool_calls(calls: &Value) -> String {
    let mut out = String::new();
    for call in calls.as_array().into_iter().flatten() {
        let name = call
            .pointer("/function/name")
            .cloned()
            .unwrap_or(Value::Null);
        let args = match call.pointer("/function/arguments") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(v) => v.clone(),
            None => json!({}),
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("<tool_call>\n");
        out.push_str(&json!({ "name": name, "arguments": args }).to_string());
        out.push_str("\n</tool_call>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_style_calls_are_parsed() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (content, calls) = parse_tool_calls(text).unwrap();
        assert_eq!(content.as_deref(), Some("Let me look."));
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(parse_tool_calls("no calls here").is_none());
        assert!(parse_tool_calls("<tool_call>not json</tool_call>").is_none());
    }
}

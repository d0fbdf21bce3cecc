//! `response_format`: plain text, any JSON object, or JSON matching a schema, enforced by
//! constraining decoding token by token.

use crate::error::ApiError;
use crate::Shared;
use huarizo_engine::TokenConstraint;
use serde_json::Value;

/// What the client asked the output to be.
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// A JSON object, any shape.
    JsonObject,
    /// JSON valid against this schema.
    JsonSchema(Value),
}

impl ResponseFormat {
    /// Reads `response_format`.
    pub fn parse(v: Option<&Value>) -> Result<ResponseFormat, ApiError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(ResponseFormat::Text);
        };
        match v.get("type").and_then(Value::as_str) {
            Some("text") => Ok(ResponseFormat::Text),
            Some("json_object") => Ok(ResponseFormat::JsonObject),
            Some("json_schema") => {
                let schema = v
                    .pointer("/json_schema/schema")
                    .or_else(|| v.get("schema"))
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::param(
                            "response_format.json_schema.schema",
                            "json_schema needs a schema object",
                        )
                    })?;
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(ApiError::param(
                        "response_format.json_schema.schema",
                        "the schema must be a JSON object",
                    ));
                }
                Ok(ResponseFormat::JsonSchema(schema))
            }
            _ => Err(ApiError::param(
                "response_format.type",
                "response_format.type must be text, json_object or json_schema",
            )),
        }
    }

    /// A fresh constraint for one choice of at most `max_tokens` tokens.
    pub fn constraint(
        &self,
        state: &Shared,
        max_tokens: usize,
    ) -> Result<Option<Box<dyn TokenConstraint>>, ApiError> {
        let schema = match self {
            ResponseFormat::Text => return Ok(None),
            ResponseFormat::JsonObject => None,
            ResponseFormat::JsonSchema(s) => Some(s),
        };
        state
            .engine
            .json_constraint(schema, max_tokens)
            .map(Some)
            .map_err(|e| ApiError::param("response_format", e.to_string()))
    }
}

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Model, ModelRequest, ModelResponse, Usage};
use crate::error::AgentError;

/// A model that needs no network: it answers every request with a deterministic value that
/// satisfies the requested output schema, so declarative agents run offline.
///
/// Strings are `"<property> example"`, numbers the smallest allowed, arrays hold one item, enums
/// take their first value. Select it with the model name `"test"`.
///
/// ```
/// use flock::model::TestModel;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": { "summary": { "type": "string" }, "score": { "type": "integer", "minimum": 1 } },
///     "required": ["summary", "score"]
/// });
/// assert_eq!(TestModel::value_for(&schema), json!({ "summary": "summary example", "score": 1 }));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TestModel;

impl TestModel {
    /// The test model.
    pub fn new() -> Self {
        TestModel
    }

    /// The value the test model answers for `schema`.
    pub fn value_for(schema: &Value) -> Value {
        generate(schema, schema, "value", 0)
    }
}

impl Model for TestModel {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        let value = Self::value_for(&request.output.schema);
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let content = value.to_string();
        let usage = Usage {
            prompt_tokens: prompt_chars.div_ceil(4) as u64,
            completion_tokens: content.len().div_ceil(4) as u64,
            ..Usage::default()
        };
        Box::pin(std::future::ready(Ok(ModelResponse {
            content,
            usage,
            ..ModelResponse::default()
        })))
    }
}

const MAX_DEPTH: usize = 16;

fn generate(schema: &Value, root: &Value, name: &str, depth: usize) -> Value {
    let Some(object) = schema.as_object() else {
        return Value::Null; // `true` schema: anything goes
    };
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return match resolve(root, reference) {
            Some(target) => generate(target, root, name, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(value) = object.get("const") {
        return value.clone();
    }
    if let Some(first) = object
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    if let Some(value) = object.get("default") {
        return value.clone();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = object.get(key).and_then(Value::as_array) {
            let pick = options
                .iter()
                .find(|o| o.get("type") != Some(&json!("null")))
                .or(options.first());
            if let Some(option) = pick {
                return generate(option, root, name, depth + 1);
            }
        }
    }
    if let Some(parts) = object.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = generate(part, root, name, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if object.contains_key("properties") => "object",
        _ => "null",
    };
    match kind {
        "object" => {
            let mut fields = Map::new();
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                for (key, property) in properties {
                    fields.insert(key.clone(), generate(property, root, key, depth + 1));
                }
            }
            Value::Object(fields)
        }
        "array" => {
            let count = object
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let item = object.get("items").cloned().unwrap_or(Value::Bool(true));
            Value::Array(
                (0..count)
                    .map(|_| generate(&item, root, name, depth + 1))
                    .collect(),
            )
        }
        "string" => {
            let text = format!("{name} example");
            let min = object.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = object
                .get("maxLength")
                .and_then(Value::as_u64)
                .map(|m| m as usize);
            let mut text = if text.len() < min {
                format!("{text}{}", "x".repeat(min - text.len()))
            } else {
                text
            };
            if let Some(max) = max {
                text.truncate(max);
            }
            Value::String(text)
        }
        "integer" => json!(
            object
                .get("minimum")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(
                    object
                        .get("exclusiveMinimum")
                        .and_then(Value::as_i64)
                        .map_or(i64::MIN, |m| m + 1)
                )
        ),
        "number" => json!(object.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

//! The prompt of a declarative agent, built from its types: deterministic for the same agent and
//! input.

use serde_json::Value;

use super::{Message, Role};
use crate::spec::AgentSpec;

/// The system and user messages for one evaluation of `spec` on `input`.
///
/// The system message carries the agent's description and the output JSON Schema; the user
/// message carries the input as JSON, described by the input schema. Object keys are sorted, so
/// the same agent and input always give the same messages.
pub fn build_messages(
    spec: &AgentSpec,
    input_schema: &Value,
    output_schema: &Value,
    input: &Value,
) -> Vec<Message> {
    let description = if spec.description.is_empty() {
        format!("You are the agent `{}`.", spec.name)
    } else {
        spec.description.to_owned()
    };
    let system = format!(
        "{description}\n\nAnswer with one JSON object that matches this JSON Schema, and nothing else:\n{}",
        pretty(&without_meta(output_schema))
    );
    let user = format!(
        "Input, as JSON matching the schema below.\n\nSchema:\n{}\n\nInput:\n{}",
        pretty(&without_meta(input_schema)),
        pretty(input)
    );
    vec![
        Message::new(Role::System, system),
        Message::new(Role::User, user),
    ]
}

/// The follow-up message after an answer that did not fit.
pub(super) fn repair_message(problem: &str) -> String {
    format!(
        "Your previous answer was rejected: {problem}\nAnswer again with one JSON object that matches the schema."
    )
}

/// The schema without its `$schema` dialect URL, which tells the model nothing.
fn without_meta(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    schema
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Model, ModelRequest, ModelResponse, ToolCall, Usage};
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
///
/// **Scripted.** A routing flow cannot be exercised by first variants alone: script the answers
/// per agent, in order ([`answers`](Self::answers), including tool calls), or by a rule over
/// the request ([`rule`](Self::rule)), and register the model under a name of its own. An agent
/// without a script (or whose script is used up) gets the generated value. Scripts are shared by
/// every run of the `Flock`, taken in the order requests arrive (an attempt that is retried
/// takes the next answer).
///
/// ```rust,standalone_crate
/// use flock::model::{TestAnswer, TestModel};
/// use flock::prelude::*;
/// use serde_json::json;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
/// pub enum Team { Billing, Tech }
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// pub struct Ticket { pub text: String }
///
/// /// Which team takes the ticket.
/// #[agent]
/// async fn route(input: Ticket) -> Team;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let model = TestModel::new().answers("route", [TestAnswer::output(json!("Tech"))]);
/// let flock = Flock::builder()
///     .register_model("scripted", model)
///     .model("scripted")
///     .build()
///     .await
///     .unwrap();
/// let team = flock.run(route, Ticket { text: "the app crashes".into() }).await.unwrap();
/// assert_eq!(team, Team::Tech); // not the first variant
/// // the script is used up: the generated value again
/// let team = flock.run(route, Ticket { text: "a refund".into() }).await.unwrap();
/// assert_eq!(team, Team::Billing);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct TestModel {
    scripts: Arc<Mutex<BTreeMap<String, VecDeque<TestAnswer>>>>,
    rules: BTreeMap<String, Arc<Rule>>,
}

type Rule = dyn Fn(&ModelRequest) -> TestAnswer + Send + Sync;

impl std::fmt::Debug for TestModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scripts = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("TestModel")
            .field("scripted", &scripts.keys().collect::<Vec<_>>())
            .field("rules", &self.rules.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One scripted answer of a [`TestModel`]: the agent's output, or tool calls to make first.
#[derive(Debug, Clone, PartialEq)]
pub enum TestAnswer {
    /// The output, as the output type's JSON (a bare value for a non-object output: it is
    /// wrapped as the schema asks).
    Output(Value),
    /// Tool calls: `(tool, arguments)` each.
    ToolCalls(Vec<(String, Value)>),
}

impl TestAnswer {
    /// The agent's output.
    pub fn output(value: Value) -> Self {
        TestAnswer::Output(value)
    }

    /// One tool call.
    pub fn tool_call(tool: impl Into<String>, arguments: Value) -> Self {
        TestAnswer::ToolCalls(vec![(tool.into(), arguments)])
    }
}

impl TestModel {
    /// The test model.
    pub fn new() -> Self {
        TestModel::default()
    }

    /// Agent `agent`'s next answers, in order (after any scripted before).
    pub fn answers(self, agent: &str, answers: impl IntoIterator<Item = TestAnswer>) -> Self {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.to_owned())
            .or_default()
            .extend(answers);
        self
    }

    /// Agent `agent`'s answers by a rule over each request (its messages, schema and tools),
    /// after its scripted answers are used up.
    pub fn rule(
        mut self,
        agent: &str,
        rule: impl Fn(&ModelRequest) -> TestAnswer + Send + Sync + 'static,
    ) -> Self {
        self.rules.insert(agent.to_owned(), Arc::new(rule));
        self
    }

    /// The value the test model answers for `schema`.
    pub fn value_for(schema: &Value) -> Value {
        generate(schema, schema, "value", 0)
    }

    fn next_answer(&self, request: &ModelRequest) -> Option<TestAnswer> {
        let scripted = self
            .scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&request.agent)
            .and_then(VecDeque::pop_front);
        scripted.or_else(|| self.rules.get(&request.agent).map(|rule| rule(request)))
    }
}

impl Model for TestModel {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        let mut response = ModelResponse::default();
        match self.next_answer(request) {
            Some(TestAnswer::ToolCalls(calls)) => {
                let asked = request
                    .messages
                    .iter()
                    .map(|m| m.tool_calls.len())
                    .sum::<usize>();
                response.tool_calls = calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| ToolCall {
                        id: format!("test_call_{}", asked + i + 1),
                        name,
                        arguments: arguments.to_string(),
                    })
                    .collect();
            }
            Some(TestAnswer::Output(value)) => {
                response.content = if request.output.wrapped {
                    json!({ super::schema::WRAPPER_PROPERTY: value }).to_string()
                } else {
                    value.to_string()
                };
            }
            None => response.content = Self::value_for(&request.output.schema).to_string(),
        }
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        response.usage = Usage {
            prompt_tokens: prompt_chars.div_ceil(4) as u64,
            completion_tokens: response.content.len().div_ceil(4) as u64,
            ..Usage::default()
        };
        Box::pin(std::future::ready(Ok(response)))
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

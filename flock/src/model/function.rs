use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Model, ModelRequest, ModelResponse};
use crate::error::AgentError;

/// A model answered by a closure: for tests and for wiring in anything that is not an HTTP API.
///
/// What the closure gets, the [`ModelRequest`], is what a provider would be sent:
///
/// * `request.agent`: the name of the agent asking (match on it to answer several agents);
/// * `request.model`: the model part of the name the agent resolved to (`"fn"` for a model
///   registered as `"fn"`, `"gpt-4o"` for `"openai/gpt-4o"`);
/// * `request.messages`: the conversation: `[0]` the system message (the agent's description,
///   the output's JSON Schema), `[1]` the user message (the input as JSON after `Input:\n`),
///   then per round of tools an assistant message with its `tool_calls` and one `Role::Tool`
///   message per call (its `tool_call_id`), and after an answer that did not fit, the answer and
///   a user message saying what was wrong;
/// * `request.output`: the output format (`schema`: the JSON Schema the answer is validated
///   against, object-rooted; `wrapped`: a non-object output is the property `"value"`);
/// * `request.tools`: the tools offered (name, description, the arguments' JSON Schema).
///
/// Answer with [`ModelResponse::text`] (JSON that fits `output.schema`), or a response whose
/// `tool_calls` the agent's loop runs first.
///
/// ```
/// use flock::model::{FunctionModel, ModelResponse};
///
/// let model = FunctionModel::new(|request| {
///     assert!(request.messages[0].content.contains("JSON Schema"));
///     Ok(ModelResponse::text(r#"{"summary": "short"}"#))
/// });
/// # let _ = model;
/// ```
#[derive(Clone)]
pub struct FunctionModel {
    answer: Arc<AnswerFn>,
}

type AnswerFn = dyn Fn(&ModelRequest) -> Result<ModelResponse, AgentError> + Send + Sync;

impl FunctionModel {
    /// A model whose every answer is `answer(request)`.
    pub fn new(
        answer: impl Fn(&ModelRequest) -> Result<ModelResponse, AgentError> + Send + Sync + 'static,
    ) -> Self {
        FunctionModel {
            answer: Arc::new(answer),
        }
    }
}

impl fmt::Debug for FunctionModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FunctionModel")
    }
}

impl Model for FunctionModel {
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        Box::pin(std::future::ready((self.answer)(request)))
    }
}

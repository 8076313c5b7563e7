use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Model, ModelRequest, ModelResponse};
use crate::error::AgentError;

/// A model answered by a closure: for tests and for wiring in anything that is not an HTTP API.
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

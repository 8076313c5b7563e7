//! The flow of the OpenTelemetry test: one declarative agent (a model request), served by a
//! `flock_cli worker` process that exports its spans.

use flock::prelude::*;

/// What to review.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OtelTopic {
    /// The topic to review
    pub topic: String,
}

/// The review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OtelVerdict {
    /// The verdict
    pub verdict: String,
}

/// Review the topic.
#[agent]
pub async fn otel_review(input: OtelTopic) -> OtelVerdict;

/// Reviews the topic.
#[flow]
pub async fn otel_flow(ctx: &FlowContext, input: OtelTopic) -> Result<OtelVerdict, FlowError> {
    ctx.call(otel_review, input).await
}

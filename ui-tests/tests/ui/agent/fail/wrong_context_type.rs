use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Topic {
    pub topic: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    pub findings: String,
}

#[agent]
async fn with_flow_context(ctx: &FlowContext, input: Topic) -> Findings {
    Findings { findings: format!("{}: {}", ctx.run_id(), input.topic) }
}

#[agent]
async fn by_value(ctx: AgentContext, input: Topic) -> Findings {
    Findings { findings: format!("{}: {}", ctx.run_id(), input.topic) }
}

fn main() {}

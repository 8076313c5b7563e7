use flock::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub approve: bool,
}

fn check(_: &Decision) -> Result<(), String> {
    Ok(())
}

/// A validator for an update that is not declared, and a name used twice.
#[flow(signals(decision: Decision), queries(decision: u32), validate(publish = check))]
async fn review(ctx: &FlowContext, _input: ()) -> Result<(), FlowError> {
    let _ = ctx;
    Ok(())
}

/// An update without its answer type.
#[flow(updates(edit: Decision))]
async fn editing(ctx: &FlowContext, _input: ()) -> Result<(), FlowError> {
    let _ = ctx;
    Ok(())
}

fn main() {}

use flock::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub approve: bool,
}

fn not_empty(text: &String) -> Result<(), String> {
    if text.is_empty() { Err("empty".into()) } else { Ok(()) }
}

/// Takes a decision, answers edits.
#[flow(
    signals(
        /// The decision.
        decision: Decision
    ),
    queries(stage: String),
    updates(edit: String -> u32),
    validate(edit = not_empty)
)]
pub async fn review(ctx: &FlowContext, _input: ()) -> Result<bool, FlowError> {
    ctx.publish(review::stage, &"waiting".to_owned())?;
    Ok(ctx.wait(review::decision).await?.approve)
}

fn main() {
    let spec = Flow::spec(&review);
    let names: Vec<_> = spec.messages.iter().map(|m| (m.name, m.kind)).collect();
    assert_eq!(
        names,
        [
            ("decision", flock::message::MessageKind::Signal),
            ("stage", flock::message::MessageKind::Query),
            ("edit", flock::message::MessageKind::Update),
        ]
    );
    assert_eq!(spec.messages[0].description, "The decision.");
    let schema = serde_json::to_value((spec.messages[0].schema)()).unwrap();
    assert_eq!(schema["properties"]["approve"]["type"], "boolean");
    assert!(spec.check_message(flock::message::MessageKind::Update, "edit", &serde_json::json!("")).is_err());
    assert!(spec.check_message(flock::message::MessageKind::Update, "edit", &serde_json::json!("x")).is_ok());
    assert!(spec.check_message(flock::message::MessageKind::Signal, "nope", &serde_json::json!(1)).is_err());
    assert_eq!(review::decision.name(), "decision");
}

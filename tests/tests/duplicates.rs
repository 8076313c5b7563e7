//! Two agents (and two flows) with the same name linked into one binary: a clear error at
//! start-up naming both definitions. A binary of its own, since the clash poisons its registry.

use flock::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// Text
    pub text: String,
}

mod billing {
    use super::*;

    #[agent(name = "process")]
    pub async fn process_invoice(input: Note) -> Note {
        input
    }

    #[flow(name = "handle")]
    pub async fn handle_invoice(ctx: &FlowContext, note: Note) -> Result<Note, FlowError> {
        ctx.call(process_invoice, note).await
    }
}

mod shipping {
    use super::*;

    #[agent(name = "process")]
    pub async fn process_parcel(input: Note) -> Note {
        input
    }
}

#[tokio::test]
async fn duplicate_agent_names_are_an_error_naming_both() {
    let error = Flock::builder().model("test").build().await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("two agents are named `process`"), "{text}");
    assert!(
        text.matches("tests/tests/duplicates.rs:").count() == 2,
        "both places named: {text}"
    );
    let _ = (billing::handle_invoice, shipping::process_parcel);
}

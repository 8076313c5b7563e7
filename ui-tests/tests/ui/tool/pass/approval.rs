//! Tools that wait for approval: `Approved<Args>` arguments (with and without a context) and
//! `#[tool(approval)]`; the schema is the inner type's, and outside a run nobody approved the
//! call, so a token-demanding tool refuses to run.

use flock::approval::Approved;
use flock::prelude::*;
use flock::tool::DynTool;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct Transfer {
    /// Cents to send
    pub cents: u64,
}

/// Sends money.
#[tool]
async fn wire(transfer: Approved<Transfer>) -> String {
    format!("sent {}", transfer.cents)
}

/// Sends money, with a key for the bank.
#[tool(retry(attempts = 3))]
async fn wire_keyed(ctx: &ToolContext, transfer: flock::approval::Approved<Transfer>) -> String {
    assert!(ctx.approval().is_some());
    format!("sent {} with {}", transfer.into_inner().cents, ctx.idempotency_key())
}

/// Deletes an account (approved first; its arguments need no token).
#[tool(approval)]
async fn close_account(args: Transfer) -> u64 {
    args.cents
}

/// Looks a balance up: no approval.
#[tool]
async fn balance(args: Transfer) -> u64 {
    args.cents
}

fn main() {
    assert!(wire.needs_approval() && wire_keyed.needs_approval() && close_account.needs_approval());
    assert!(!balance.needs_approval());
    let schema = wire.parameters_schema();
    assert_eq!(schema["properties"]["cents"]["description"], "Cents to send");
    assert_eq!(schema["required"], json!(["cents"]));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for tool in [&wire as &dyn DynTool, &wire_keyed] {
            let refused = tool.call_json(json!({ "cents": 5 })).await.unwrap_err();
            assert!(refused.contains("needs an approval and this call has none"), "{refused}");
        }
        assert_eq!(close_account.call_json(json!({ "cents": 5 })).await, Ok(json!(5)));
    });
}

//! Tool calls that wait for a person: `#[tool(approval)]`, or a tool whose arguments are
//! [`Approved<Args>`].
//!
//! When the model asks for such a tool, the agent's loop (which runs step by step, see
//! [`step`](crate::step)) waits durably: the run shows the call as [`Pending`] (on Temporal
//! through the built-in query `flock.approvals`), and it waits until someone decides —
//! [`FlowHandle::approve`](crate::FlowHandle::approve) / [`deny`](crate::FlowHandle::deny),
//! [`Flock::decide_run`](crate::Flock::decide_run) by run id (find the run of a business id with
//! [`Flock::find_runs`](crate::Flock::find_runs) and a search attribute), or `flock approve` on
//! the command line. Approved, the tool runs once, as a durable step; denied, it does not run and
//! the model is told so, with the reason. A decision for a call that does not wait (decided
//! already, never asked, or its run has ended) is an error to whoever sent it and changes
//! nothing. On Temporal a decision is the built-in update `flock.approve`, checked by a validator
//! before it enters the history.
//!
//! A tool with side effects can demand the approval in its signature: its arguments are
//! `Approved<Args>`, which only the loop makes, from a call someone approved. Code that calls
//! such a function without an approval does not compile:
//!
//! ```rust,standalone_crate
//! use flock::approval::Approved;
//! use flock::prelude::*;
//!
//! #[derive(Debug, Deserialize, JsonSchema)]
//! pub struct Transfer {
//!     /// Cents to send
//!     pub cents: u64,
//!     /// The receiving account
//!     pub to: String,
//! }
//!
//! /// Sends money; a person approves every transfer first.
//! #[tool]
//! async fn wire(transfer: Approved<Transfer>) -> String {
//!     let by = transfer.decision().by.clone().unwrap_or_default();
//!     format!("sent {} cents to {} (approved by {by})", transfer.cents, transfer.to)
//! }
//!
//! use flock::tool::DynTool;
//! assert!(wire.needs_approval());
//! // outside a run nobody approved the call: the tool refuses, it does not run
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let refused = wire.call_json(serde_json::json!({ "cents": 5, "to": "x" })).await;
//! assert!(refused.unwrap_err().contains("needs an approval"));
//! # });
//! ```
//!
//! ```rust,compile_fail
//! # use flock::approval::Approved;
//! # pub struct Transfer { pub cents: u64 }
//! fn send(transfer: Approved<Transfer>) {}
//! // an `Approved` cannot be made outside flock: this does not compile
//! send(Approved { args: Transfer { cents: 5 } });
//! ```

use std::ops::Deref;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The built-in update that decides a waiting call (input: [`Decision`]).
pub const APPROVE_UPDATE: &str = "flock.approve";
/// The built-in query that lists the calls waiting (answer: a list of [`Pending`]).
pub const APPROVALS_QUERY: &str = "flock.approvals";

/// A tool call waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pending {
    /// The call's key in its run: `<agent>/<tool>/<n>`, `n` counting the run's approvals from 1.
    pub call: String,
    /// The agent whose model asked for the call.
    pub agent: String,
    /// The tool.
    pub tool: String,
    /// The arguments the model gave.
    pub arguments: Value,
}

/// A decision on a waiting call: what [`FlowHandle::approve`](crate::FlowHandle::approve),
/// [`deny`](crate::FlowHandle::deny) and `flock approve` send, and what an approved tool sees
/// ([`Approved::decision`], [`ToolContext::approval`](crate::tool::ToolContext::approval)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Decision {
    /// The waiting call's key ([`Pending::call`]).
    pub call: String,
    /// Approved (the tool runs) or denied (the model is told).
    pub approved: bool,
    /// Why: given to the model when denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Decision {
    /// Approves call `call`.
    pub fn approve(call: impl Into<String>) -> Self {
        Decision {
            call: call.into(),
            approved: true,
            reason: None,
            by: None,
        }
    }

    /// Denies call `call`, telling the model `reason`.
    pub fn deny(call: impl Into<String>, reason: impl Into<String>) -> Self {
        Decision {
            call: call.into(),
            approved: false,
            reason: Some(reason.into()),
            by: None,
        }
    }

    /// Says who decided.
    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = Some(who.into());
        self
    }

    /// The answer the model gets for a denied call.
    pub(crate) fn denial(&self) -> String {
        match &self.reason {
            Some(reason) => format!("error: the call was denied: {reason}"),
            None => "error: the call was denied".to_owned(),
        }
    }
}

/// The arguments of a tool call someone approved. Only the agent loop makes one (from the
/// decision of a call that waited), so a function that takes an `Approved<Args>` cannot be
/// called without an approval; as a `#[tool]`'s arguments it makes the tool wait for one.
#[derive(Debug)]
pub struct Approved<T> {
    args: T,
    decision: Decision,
}

impl<T> Approved<T> {
    /// The decision that approved the call (who, why).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The arguments.
    pub fn into_inner(self) -> T {
        self.args
    }

    /// The arguments of a call `decision` approved (see [`approval_of`]).
    pub(crate) fn new(args: T, decision: Decision) -> Approved<T> {
        Approved { args, decision }
    }
}

/// The decision that approved a call of `tool` whose context has `approval`; an error when the
/// call was not approved (what `#[tool]` checks before it makes an [`Approved`]).
pub(crate) fn approval_of(tool: &str, approval: Option<&Decision>) -> Result<Decision, String> {
    match approval {
        Some(decision) if decision.approved => Ok(decision.clone()),
        _ => Err(format!(
            "tool `{tool}` needs an approval and this call has none: it runs only from an \
             agent's loop, after someone approved the call (see flock::approval)"
        )),
    }
}

impl<T> Deref for Approved<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.args
    }
}

/// The approvals of one run: the calls waiting and the decisions not yet taken by the loop.
/// Kept in the run's [`Mailbox`](crate::message) on both executors (on Temporal in workflow
/// state, so identical on replay).
#[derive(Debug, Default)]
pub(crate) struct Approvals {
    asked: u64,
    waiting: Vec<Pending>,
    decided: std::collections::HashMap<String, Decision>,
}

impl Approvals {
    /// Registers a call waiting for approval; gives its key.
    pub(crate) fn ask(&mut self, agent: &str, tool: &str, arguments: Value) -> String {
        self.asked += 1;
        let call = format!("{agent}/{tool}/{}", self.asked);
        self.waiting.push(Pending {
            call: call.clone(),
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            arguments,
        });
        call
    }

    /// Checks a decision before it is accepted: it must name a call that waits.
    pub(crate) fn check(&self, decision: &Decision) -> Result<(), String> {
        if self.waiting.iter().any(|p| p.call == decision.call) {
            return Ok(());
        }
        let waiting = if self.waiting.is_empty() {
            "no call waits".to_owned()
        } else {
            let calls: Vec<String> = self
                .waiting
                .iter()
                .map(|p| format!("`{}`", p.call))
                .collect();
            format!("waiting: {}", calls.join(", "))
        };
        Err(format!(
            "no tool call `{}` waits for approval in this run ({waiting}); it was decided \
             already, or never asked for",
            decision.call
        ))
    }

    /// Records a decision (checked before; on replay the check is not run again, so a decision
    /// is kept whatever it names, and the loop takes it when it asks).
    pub(crate) fn decide(&mut self, decision: Decision) {
        self.waiting.retain(|p| p.call != decision.call);
        self.decided.insert(decision.call.clone(), decision);
    }

    /// Whether call `call` is decided.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn is_decided(&self, call: &str) -> bool {
        self.decided.contains_key(call)
    }

    /// Takes the decision on call `call`.
    pub(crate) fn take(&mut self, call: &str) -> Option<Decision> {
        self.decided.remove(call)
    }

    /// The calls waiting, in the order they were asked for.
    pub(crate) fn waiting(&self) -> &[Pending] {
        &self.waiting
    }
}

/// Reads a decision sent as JSON; the error names what does not fit.
pub(crate) fn read_decision(value: Value) -> Result<Decision, String> {
    serde_json::from_value(value).map_err(|e| {
        format!(
            "update `{APPROVE_UPDATE}` takes {{\"call\": \"<agent>/<tool>/<n>\", \"approved\": true|false, \"reason\": \"..\"}}: {e}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_must_name_a_waiting_call_and_is_taken_once() {
        let mut approvals = Approvals::default();
        let first = approvals.ask("payer", "wire", serde_json::json!({"cents": 5}));
        let second = approvals.ask("payer", "wire", Value::Null);
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("payer/wire/1", "payer/wire/2")
        );
        let error = approvals
            .check(&Decision::approve("payer/wire/9"))
            .unwrap_err();
        assert!(
            error.contains("`payer/wire/9`")
                && error.contains("waiting: `payer/wire/1`, `payer/wire/2`"),
            "{error}"
        );
        approvals.check(&Decision::approve(&first)).unwrap();
        approvals.decide(Decision::deny(&first, "too much"));
        // decided: not waiting any more, so a second decision is refused
        assert!(approvals.check(&Decision::approve(&first)).is_err());
        assert_eq!(approvals.waiting().len(), 1);
        assert!(approvals.is_decided(&first));
        let taken = approvals.take(&first).unwrap();
        assert_eq!(taken.denial(), "error: the call was denied: too much");
        assert_eq!(approvals.take(&first), None);
    }

    #[test]
    fn a_decision_that_does_not_fit_names_the_shape() {
        let error = read_decision(serde_json::json!({"call": 5})).unwrap_err();
        assert!(
            error.contains("flock.approve") && error.contains("\"approved\""),
            "{error}"
        );
    }
}

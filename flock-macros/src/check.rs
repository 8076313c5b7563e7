//! Validation: what the signature and the attribute keys must satisfy, beyond their structure.
//! Type-level requirements (derives, hand-off types, context types) are left to rustc through
//! the checks `expand` emits.

use syn::{FnArg, Pat, PatType, Signature, Type};

use crate::attr::{AgentAttrs, FlowAttrs, ToolAttrs};
use crate::ctxt::Ctxt;
use crate::determinism;
use crate::model::{AgentFn, FlowFn, ToolFn};

/// What every annotated fn must be: `async`, not generic, not `const`/`unsafe`/`extern`.
/// `what` is "agent", "flow" or "tool".
pub fn signature(cx: &Ctxt, what: &str, sig: &Signature) {
    let article = if what == "agent" { "an" } else { "a" };
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, format!("{article} {what} fn cannot be `const`"));
    }
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!(
                "{article} {what} fn must be `async`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, format!("{article} {what} fn cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, format!("{article} {what} fn cannot be `extern`"));
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            format!(
                "{article} {what} fn cannot be generic: its input and output are concrete types that cross process boundaries; remove the generic parameters"
            ),
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            format!("{article} {what} fn cannot have a `where` clause"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, format!("{article} {what} fn cannot be variadic"));
    }
    for input in &sig.inputs {
        if let FnArg::Typed(param) = input {
            pattern(cx, param);
        }
    }
}

/// Parameters are plain names or `_`: the body destructures.
fn pattern(cx: &Ctxt, param: &PatType) {
    match &*param.pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {}
        Pat::Wild(_) => {}
        other => cx.error_spanned_by(
            other,
            "use a plain name for this parameter (destructure it in the body with `let`)",
        ),
    }
}

/// An input or output type must be an owned, named type.
fn value_type(cx: &Ctxt, ty: &Type, role: &str) {
    match ty {
        Type::Reference(reference) => cx.error_spanned_by(
            reference,
            format!("{role} must be an owned type (it is serialized across process boundaries): use e.g. `String` instead of `&str`, or a struct"),
        ),
        Type::ImplTrait(_) => cx.error_spanned_by(
            ty,
            format!("{role} must be a named type: `impl Trait` has no JSON Schema"),
        ),
        _ => {}
    }
}

pub fn agent(cx: &Ctxt, agent: &AgentFn, attrs: &AgentAttrs) {
    value_type(cx, &agent.input.ty, "an agent's input");
    value_type(cx, agent.ret.ty(), "an agent's output");
    name(cx, attrs.name.as_ref());
    if let Some(next) = &attrs.hand_off
        && next.is_ident(&agent.func.ident)
    {
        cx.error_spanned_by(
            next,
            "an agent cannot hand off to itself: the hand-off chain must end; loop in a `#[flow]` instead",
        );
    }
    if !agent.is_declarative() {
        if let Some(tools) = &attrs.tools {
            cx.error_at(
                tools.span,
                "`tools` are offered to the model of a declarative agent (one without a body); a code agent calls functions directly",
            );
        }
        if let Some(mcp) = &attrs.mcp {
            cx.error_at(
                mcp.span,
                "`mcp` servers are offered to the model of a declarative agent (one without a body); a code agent calls functions directly",
            );
        }
        if let Some(retries) = &attrs.output_retries {
            cx.error_at(
                retries.span,
                "`output_retries` re-asks the model of a declarative agent (one without a body); a code agent has no model answer to repair",
            );
        }
    }
    let offers_tools = attrs.tools.is_some() || attrs.mcp.is_some();
    if let Some(rounds) = &attrs.max_tool_rounds {
        if !offers_tools {
            cx.error_at(
                rounds.span,
                "`max_tool_rounds` bounds the rounds of tool calls of an agent with `tools = [..]`; this agent offers none",
            );
        } else if rounds.value == 0 {
            cx.error_at(
                rounds.span,
                "`max_tool_rounds` must be at least 1 (an agent with tools whose model may call none should offer none)",
            );
        }
    }
    if let Some(after) = &attrs.continue_as_new_after {
        if !offers_tools {
            cx.error_at(
                after.span,
                "`continue_as_new_after` bounds the steps of an agent that runs step by step (one with `tools = [..]`); this agent offers none",
            );
        } else if after.value < 2 {
            cx.error_at(
                after.span,
                "`continue_as_new_after` must be at least 2 (a model request and a tool call: each run of a session takes a step)",
            );
        }
    }
    let retry = &attrs.retry;
    if let Some(backoff) = &retry.backoff
        && backoff.value < 1.0
    {
        cx.error_at(
            backoff.span,
            "`backoff` must be at least 1.0 (each retry waits at least as long as the one before)",
        );
    }
    if let Some(jitter) = &retry.jitter
        && !(0.0..=1.0).contains(&jitter.value)
    {
        cx.error_at(
            jitter.span,
            "`jitter` is a fraction of the delay, from 0.0 to 1.0 (0.2: ±20%)",
        );
    }
    if let (Some(initial), Some(max)) = (&retry.initial_interval, &retry.max_interval)
        && initial.value > max.value
    {
        cx.error_at(
            max.span,
            "`max_interval` must not be shorter than `initial_interval`",
        );
    }
    if let (Some(heartbeat), Some(timeout)) = (&attrs.heartbeat, &attrs.timeout)
        && heartbeat.value > timeout.value
    {
        cx.error_at(
            heartbeat.span,
            "`heartbeat` is longer than `timeout`: it could never expire",
        );
    }
    if let Some(local) = attrs.local.as_ref().filter(|local| local.value) {
        if attrs.heartbeat.is_some() {
            cx.error_at(
                local.span,
                "a `local` agent cannot have a `heartbeat`: a Temporal local activity cannot heartbeat (drop `local`: the agent is then a durable step that can)",
            );
        }
        if attrs.task_queue.is_some() {
            cx.error_at(
                local.span,
                "a `local` agent cannot have a `task_queue`: a Temporal local activity runs on the worker that runs its flow (drop `local` to route it to its queue)",
            );
        }
    }
}

pub fn flow(cx: &Ctxt, flow: &FlowFn, attrs: &FlowAttrs) {
    value_type(cx, &flow.input.ty, "a flow's input");
    if let Some(body) = &flow.func.body {
        let ctx = match &*flow.ctx.pat {
            Pat::Ident(ident) => ident.ident.to_string(),
            _ => "ctx".to_owned(),
        };
        determinism::lint(cx, body, &ctx);
    }
    name(cx, attrs.name.as_ref());
    if let (Some(run), Some(execution)) = (&attrs.run_timeout, &attrs.execution_timeout)
        && run.value > execution.value
    {
        cx.error_at(
            run.span,
            "`run_timeout` is longer than `execution_timeout`: it could never expire",
        );
    }
}

pub fn tool(cx: &Ctxt, tool: &ToolFn, attrs: &ToolAttrs) {
    value_type(cx, &tool.args.ty, "a tool's arguments");
    name(cx, attrs.name.as_ref());
    if let Some(name) = &attrs.name
        && !name
            .value()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        cx.error_spanned_by(
            name,
            "a tool's name is made of letters, digits, `_` and `-` (model APIs reject others)",
        );
    }
}

fn name(cx: &Ctxt, name: Option<&syn::LitStr>) {
    if let Some(name) = name
        && name.value().trim().is_empty()
    {
        cx.error_at(name.span(), "`name` cannot be empty");
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;
    use crate::attr;
    use crate::model::FnItem;

    fn errors(cx: Ctxt) -> Vec<String> {
        cx.check()
            .err()
            .map_or_else(Vec::new, |e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn signature_errors_are_all_reported() {
        let item: FnItem = parse_quote!(
            const unsafe extern "C" fn f<T: Clone>((a, b): (A, B), ref c: C) -> Out {
                todo!()
            }
        );
        let cx = Ctxt::new();
        signature(&cx, "agent", &item.sig);
        assert_eq!(
            errors(cx),
            [
                "an agent fn cannot be `const`",
                "an agent fn must be `async`: write `async fn f`",
                "an agent fn cannot be `unsafe`",
                "an agent fn cannot be `extern`",
                "an agent fn cannot be generic: its input and output are concrete types that cross process boundaries; remove the generic parameters",
                "use a plain name for this parameter (destructure it in the body with `let`)",
                "use a plain name for this parameter (destructure it in the body with `let`)",
            ]
        );
    }

    #[test]
    fn lifetimes_and_const_generics_are_generics_too() {
        for item in [
            parse_quote!(
                async fn f<'a>(input: In) -> Out;
            ),
            parse_quote!(
                async fn f<const N: usize>(input: In) -> Out;
            ),
        ] {
            let item: FnItem = item;
            let cx = Ctxt::new();
            signature(&cx, "flow", &item.sig);
            assert_eq!(errors(cx).len(), 1);
        }
    }

    #[test]
    fn good_signatures_pass() {
        let item: FnItem = parse_quote!(
            async fn f(_: &AgentContext, mut input: In) -> Out {
                input
            }
        );
        let cx = Ctxt::new();
        signature(&cx, "agent", &item.sig);
        assert!(errors(cx).is_empty());
    }

    fn agent_errors(args: proc_macro2::TokenStream, item: FnItem) -> Vec<String> {
        let cx = Ctxt::new();
        let attrs = attr::parse_agent(&cx, args);
        let model = AgentFn::new(&cx, &item).unwrap();
        agent(&cx, &model, &attrs);
        errors(cx)
    }

    #[test]
    fn attribute_combinations() {
        assert_eq!(
            agent_errors(
                quote!(
                    hand_off = f,
                    tools = [t],
                    output_retries = 2,
                    name = " ",
                    timeout = "1s",
                    heartbeat = "2s",
                    retry(
                        backoff = 0.5,
                        jitter = 1.5,
                        initial_interval = "1m",
                        max_interval = "1s"
                    )
                ),
                parse_quote!(
                    async fn f(input: &str) -> impl Serialize {
                        todo!()
                    }
                ),
            ),
            [
                "an agent's input must be an owned type (it is serialized across process boundaries): use e.g. `String` instead of `&str`, or a struct",
                "an agent's output must be a named type: `impl Trait` has no JSON Schema",
                "`name` cannot be empty",
                "an agent cannot hand off to itself: the hand-off chain must end; loop in a `#[flow]` instead",
                "`tools` are offered to the model of a declarative agent (one without a body); a code agent calls functions directly",
                "`output_retries` re-asks the model of a declarative agent (one without a body); a code agent has no model answer to repair",
                "`backoff` must be at least 1.0 (each retry waits at least as long as the one before)",
                "`jitter` is a fraction of the delay, from 0.0 to 1.0 (0.2: ±20%)",
                "`max_interval` must not be shorter than `initial_interval`",
                "`heartbeat` is longer than `timeout`: it could never expire",
            ]
        );
        assert!(
            agent_errors(
                quote!(
                    hand_off = g,
                    tools = [t],
                    output_retries = 2,
                    max_tool_rounds = 3
                ),
                parse_quote!(
                    async fn f(input: In) -> Out;
                ),
            )
            .is_empty()
        );
        for (attrs, error) in [
            (
                quote!(tools = [t], continue_as_new_after = 1),
                "`continue_as_new_after` must be at least 2 (a model request and a tool call: each run of a session takes a step)",
            ),
            (
                quote!(continue_as_new_after = 500),
                "`continue_as_new_after` bounds the steps of an agent that runs step by step (one with `tools = [..]`); this agent offers none",
            ),
            (
                quote!(tools = [t], max_tool_rounds = 0),
                "`max_tool_rounds` must be at least 1 (an agent with tools whose model may call none should offer none)",
            ),
            (
                quote!(max_tool_rounds = 3),
                "`max_tool_rounds` bounds the rounds of tool calls of an agent with `tools = [..]`; this agent offers none",
            ),
        ] {
            assert_eq!(
                agent_errors(
                    attrs,
                    parse_quote!(
                        async fn f(input: In) -> Out;
                    ),
                ),
                [error]
            );
        }
    }

    #[test]
    fn flow_and_tool_checks() {
        let cx = Ctxt::new();
        let attrs = attr::parse_flow(&cx, quote!(execution_timeout = "1m", run_timeout = "1h"));
        let model = FlowFn::new(
            &cx,
            &parse_quote!(
                async fn f(ctx: &FlowContext, i: In) -> Result<Out, FlowError> {
                    todo!()
                }
            ),
        )
        .unwrap();
        flow(&cx, &model, &attrs);
        let attrs = attr::parse_tool(&cx, quote!(name = "web search"));
        let model = ToolFn::new(
            &cx,
            &parse_quote!(
                async fn t(a: A) -> String {
                    todo!()
                }
            ),
        )
        .unwrap();
        tool(&cx, &model, &attrs);
        assert_eq!(
            errors(cx),
            [
                "`run_timeout` is longer than `execution_timeout`: it could never expire",
                "a tool's name is made of letters, digits, `_` and `-` (model APIs reject others)",
            ]
        );
    }
}

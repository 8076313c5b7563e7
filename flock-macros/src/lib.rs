//! The macros of [flock](https://docs.rs/flock): `#[agent]`, `#[flow]` and `#[tool]`, and the
//! prelude's `Serialize`, `Deserialize` and `JsonSchema` derives.
//!
//! Use them through `flock` (`use flock::prelude::*;`), which documents them; this crate is an
//! implementation detail. Behind the entry points: [`attr`] parses the attribute arguments,
//! [`model`] reads the fn, [`check`] validates (with [`determinism`], the lint of flow bodies), [`calls`] reads a flow's
//! call sites,
//! [`expand`] generates code, and every problem goes into a [`ctxt::Ctxt`] so that all of them
//! are reported at once. [`derive`] holds the derives.

use proc_macro::TokenStream;

mod attr;
mod calls;
mod check;
mod ctxt;
mod derive;
mod determinism;
mod duration;
mod expand;
mod model;
#[cfg(test)]
mod test_support;

/// Turns an `async fn` with one typed input into an agent: see `flock::Agent`.
#[proc_macro_attribute]
pub fn agent(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::agent(args.into(), item.into()).into()
}

/// Turns an `async fn(ctx: &FlowContext, input: In) -> Result<Out, FlowError>` into a flow: see
/// `flock::Flow`.
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::flow(args.into(), item.into()).into()
}

/// Turns an `async fn(args: Args) -> Out` into a tool a declarative agent offers its model: see
/// `flock::tool::DynTool`.
#[proc_macro_attribute]
pub fn tool(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::tool(args.into(), item.into()).into()
}

/// Marks a statement of a `#[flow]` body as deliberately nondeterministic, exempting it from the
/// determinism lint:
///
/// ```ignore
/// #[flow]
/// async fn timed(ctx: &FlowContext, job: Job) -> Result<Job, FlowError> {
///     #[flock::nondeterministic] // measures this worker, not the flow
///     let started = std::time::Instant::now();
///     let job = ctx.call(work, job).await?;
///     tracing::info!(elapsed = ?started.elapsed());
///     Ok(job)
/// }
/// ```
///
/// A flow is replayed from its history on Temporal, so its body must take the same path on every
/// replay; `#[flow]` rejects the calls it sees read the clock, wait on timers, spawn tasks or
/// threads, or draw random numbers, and names the `ctx` replacement (`ctx.now()`, `ctx.sleep(..)`,
/// `ctx.call` joined with `flock::join!`, `ctx.random_u64()`, `ctx.uuid()`). `#[flow]` removes
/// this attribute from the statement (or expression) it marks; elsewhere it does nothing.
#[proc_macro_attribute]
pub fn nondeterministic(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::nondeterministic(args.into(), item.into()).into()
}

/// serde's `Serialize` derive through flock's re-export of serde: a crate that depends on `flock`
/// alone can use it. Takes every `#[serde(..)]` attribute serde's derive takes.
#[proc_macro_derive(Serialize, attributes(serde))]
pub fn derive_serialize(item: TokenStream) -> TokenStream {
    derive::SERIALIZE.run(item.into()).into()
}

/// serde's `Deserialize` derive through flock's re-export of serde: a crate that depends on
/// `flock` alone can use it. Takes every `#[serde(..)]` attribute serde's derive takes.
#[proc_macro_derive(Deserialize, attributes(serde))]
pub fn derive_deserialize(item: TokenStream) -> TokenStream {
    derive::DESERIALIZE.run(item.into()).into()
}

/// schemars' `JsonSchema` derive through flock's re-export of schemars: a crate that depends on
/// `flock` alone can use it. Doc comments become descriptions; takes every `#[schemars(..)]`,
/// `#[serde(..)]`, `#[validate(..)]` and `#[garde(..)]` attribute schemars' derive takes.
#[proc_macro_derive(JsonSchema, attributes(schemars, serde, validate, garde))]
pub fn derive_json_schema(item: TokenStream) -> TokenStream {
    derive::JSON_SCHEMA.run(item.into()).into()
}

/// Removes the copy of an item that the derives above hand to serde's or schemars' derive, once
/// that derive has seen it.
#[doc(hidden)]
#[proc_macro_attribute]
pub fn erase_shadow(_args: TokenStream, item: TokenStream) -> TokenStream {
    derive::erase_shadow(item.into()).into()
}

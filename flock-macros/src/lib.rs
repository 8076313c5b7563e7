//! The attribute macros of [flock](https://docs.rs/flock): `#[agent]`, `#[flow]` and `#[tool]`.
//!
//! Use them through `flock` (`use flock::prelude::*;`), which documents them; this crate is an
//! implementation detail. Behind the entry points: [`attr`] parses the attribute arguments,
//! [`model`] reads the fn, [`check`] validates, [`expand`] generates code, and every problem goes
//! into a [`ctxt::Ctxt`] so that all of them are reported at once.

use proc_macro::TokenStream;

mod attr;
mod check;
mod ctxt;
mod duration;
mod expand;
mod model;

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

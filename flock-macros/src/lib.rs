//! The macros of [flock](https://docs.rs/flock): `#[agent]`, `#[flow]` and `#[tool]`, and the
//! prelude's `Serialize`, `Deserialize` and `JsonSchema` derives.
//!
//! Use them through `flock` (`use flock::prelude::*;`), which documents them; this crate is an
//! implementation detail. Behind the attribute macros: [`attr`] parses the attribute arguments,
//! [`model`] reads the fn, [`check`] validates, [`expand`] generates code, and every problem goes
//! into a [`ctxt::Ctxt`] so that all of them are reported at once. [`derive`] holds the derives.

use proc_macro::TokenStream;

mod attr;
mod check;
mod ctxt;
mod derive;
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

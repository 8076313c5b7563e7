//! The user's module shadows the prelude (`Result`, `Ok`, `Err`, `Option`, `Some`, `None`, `Box`,
//! `String`, `Vec`, `Send`, `str`) and names things like the expansion's internals; agents,
//! flows and tools still compile and run, because generated code only names
//! `::flock::__private::…` and hides its locals.
#![allow(non_camel_case_types, non_upper_case_globals, dead_code, unused_macros)]

mod types {
    use flock::prelude::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    pub struct Text {
        pub text: std::string::String,
    }
}

use flock::prelude::{AgentContext, AgentError, FlowContext, FlowError, agent, flow, tool};
use types::Text;

struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Box;
struct String;
struct Vec;
trait Send {}
struct str;
struct Clone;
struct Copy;
struct Default;
struct Debug;
struct Future;
const ctx: u8 = 0;
const input: u8 = 0;
const spec: u8 = 0;
const SPEC: u8 = 0;
const f: u8 = 0;
const arguments: u8 = 0;
mod core {}
mod std {}
macro_rules! concat {
    ($($t:tt)*) => {
        compile_error!("the user's concat! was used")
    };
}
macro_rules! line {
    () => {
        compile_error!("the user's line! was used")
    };
}

/// Declarative.
#[agent(hand_off = shout, timeout = "1s", retry(attempts = 2, non_retryable = ["Permanent"]), tools = [echo])]
async fn think(text: Text) -> Text;

/// Code, with a context and an alias return.
#[agent]
async fn shout(context: &AgentContext, text: Text) -> flock::AgentResult<Text> {
    let _ = context.attempt();
    ::core::result::Result::Ok(Text { text: text.text.to_uppercase() })
}

/// Code, plain return.
#[agent]
async fn same(text: Text) -> Text {
    text
}

/// Fallible with a fully qualified `Result`.
#[agent]
async fn fallible(text: Text) -> ::core::result::Result<Text, AgentError> {
    ::core::result::Result::Ok(text)
}

#[flow]
async fn pipeline(context: &FlowContext, text: Text) -> ::core::result::Result<Text, FlowError> {
    let text = context.call(same, text).await?;
    let text = context.call(fallible, text).await?;
    context.call(shout, text).await
}

/// Echoes.
#[tool]
async fn echo(text: Text) -> Text {
    text
}

fn main() {
    use flock::prelude::{Agent, Flock};
    use flock::tool::DynTool;

    assert_eq!(think.spec().hand_off, ::core::option::Option::Some("shout"));
    assert_eq!(echo.name(), "echo");
    ::tokio::runtime::Runtime::new().unwrap().block_on(async {
        let flock = Flock::builder().model("test").local_debug(true).build().await.unwrap();
        let out = flock.run_flow(pipeline, Text { text: "hi".into() }).await.unwrap();
        assert_eq!(out, Text { text: "HI".into() });
        let answer = echo.call_json(::serde_json::json!({ "text": "x" })).await;
        assert_eq!(answer, ::core::result::Result::Ok(::serde_json::json!({ "text": "x" })));
    });
}

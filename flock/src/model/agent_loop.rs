//! The loop of a declarative agent as a state machine without I/O: given what the model
//! answered, it decides what happens next — send the conversation again (after a repair re-ask
//! or tool answers), run tool calls, or finish with the typed output or an error. A driver
//! performs the decisions ([`evaluate`](super::evaluate) in one attempt; the durable agent loop
//! step by step); the machine itself is tested without a network.
//!
//! ```
//! use flock::model::agent_loop::{AgentLoop, Next};
//! use flock::model::{ModelResponse, OutputFormat, ToolCall};
//! use flock::{AgentKind, AgentSpec};
//!
//! static SPEC: AgentSpec = AgentSpec::new("scorer", AgentKind::Declarative);
//! let output = OutputFormat::of::<u32>();
//! let mut turn = AgentLoop::new(&SPEC, "gpt-4o".into(), vec![], output, vec![]);
//! // the model answers something that does not fit: a repair re-ask
//! assert!(matches!(turn.answered::<u32>(ModelResponse::text("many")), Next::Request));
//! assert_eq!(turn.request().messages.last().unwrap().content.contains("rejected"), true);
//! // then an answer that fits
//! assert!(matches!(turn.answered::<u32>(ModelResponse::text(r#"{"value": 3}"#)), Next::Done(3)));
//! ```

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    DEFAULT_OUTPUT_RETRIES, MAX_TOOL_ROUNDS, Message, ModelRequest, ModelResponse, OutputFormat,
    Role, ToolCall, ToolDefinition, prompt, schema,
};
use crate::error::AgentError;
use crate::spec::AgentSpec;

/// What the driver does next.
#[derive(Debug)]
pub enum Next<T> {
    /// Send [`AgentLoop::request`] to the model and hand its answer to
    /// [`answered`](AgentLoop::answered).
    Request,
    /// Run these tool calls (concurrently if the driver can) and hand their answers to
    /// [`tools_answered`](AgentLoop::tools_answered), in any order.
    CallTools(Vec<ToolCall>),
    /// The agent's output.
    Done(T),
    /// The attempt fails with this error.
    Fail(AgentError),
}

/// One tool call the model asked for, checked against the agent's tools: the tool's name and its
/// arguments as JSON, or the answer the model gets instead (an unknown tool, arguments that are
/// not JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolStep {
    /// Call the tool with these arguments.
    Call {
        /// The tool.
        name: String,
        /// Its arguments, with the nulls the strict schema added for optional ones removed.
        arguments: Value,
    },
    /// Do not call anything: answer the model with this.
    Answer(String),
}

/// The conversation of one declarative agent call and the counters that bound it.
#[derive(Debug, Clone)]
pub struct AgentLoop {
    agent: &'static str,
    request: ModelRequest,
    output_retries: u32,
    repairs: u32,
    max_tool_rounds: u32,
    tool_rounds: u32,
}

impl AgentLoop {
    /// The loop of `spec` answered by `model` (the model part of its name), starting with
    /// `messages` (see [`build_messages`](super::build_messages)), answering in `output`, offered
    /// `tools`.
    pub fn new(
        spec: &'static AgentSpec,
        model: String,
        messages: Vec<Message>,
        output: OutputFormat,
        tools: Vec<ToolDefinition>,
    ) -> Self {
        AgentLoop {
            agent: spec.name,
            request: ModelRequest {
                model,
                agent: spec.name.to_owned(),
                messages,
                output,
                tools,
            },
            output_retries: spec.output_retries.unwrap_or(DEFAULT_OUTPUT_RETRIES),
            repairs: 0,
            max_tool_rounds: spec.max_tool_rounds.unwrap_or(MAX_TOOL_ROUNDS),
            tool_rounds: 0,
        }
    }

    /// The loop of `spec` carried on from another run: the conversation so far and the counters
    /// ([`repairs`](Self::repairs), [`tool_rounds`](Self::tool_rounds)) it had there.
    pub(crate) fn resume(
        spec: &'static AgentSpec,
        messages: Vec<Message>,
        output: OutputFormat,
        tools: Vec<ToolDefinition>,
        repairs: u32,
        tool_rounds: u32,
    ) -> Self {
        AgentLoop {
            repairs,
            tool_rounds,
            ..AgentLoop::new(spec, String::new(), messages, output, tools)
        }
    }

    /// The repair re-asks so far.
    pub(crate) fn repairs(&self) -> u32 {
        self.repairs
    }

    /// The rounds of tool calls so far.
    pub(crate) fn tool_rounds(&self) -> u32 {
        self.tool_rounds
    }

    /// The request to send now: the conversation so far.
    pub fn request(&self) -> &ModelRequest {
        &self.request
    }

    /// The model answered `response`: tool calls to run (at most the bound of tool rounds), or
    /// an answer parsed into `T` — done when it fits, a repair re-ask while re-asks are left,
    /// [`AgentError::InvalidOutput`] after.
    pub fn answered<T: DeserializeOwned>(&mut self, response: ModelResponse) -> Next<T> {
        if !response.tool_calls.is_empty() {
            self.tool_rounds += 1;
            if self.tool_rounds > self.max_tool_rounds {
                return Next::Fail(AgentError::invalid_output(format!(
                    "agent `{}`: the model kept calling tools after {} rounds",
                    self.agent, self.max_tool_rounds
                )));
            }
            let calls = response.tool_calls.clone();
            self.request.messages.push(Message {
                role: Role::Assistant,
                content: response.content,
                tool_calls: response.tool_calls,
                tool_call_id: None,
            });
            return Next::CallTools(calls);
        }
        match self.request.output.parse_answer::<T>(&response.content) {
            Ok(output) => Next::Done(output),
            Err(problem) if self.repairs >= self.output_retries => {
                let repairs = self.repairs;
                Next::Fail(AgentError::invalid_output(format!(
                    "agent `{}`: {problem} (after {repairs} repair re-ask{})",
                    self.agent,
                    if repairs == 1 { "" } else { "s" }
                )))
            }
            Err(problem) => {
                self.repairs += 1;
                self.request
                    .messages
                    .push(Message::new(Role::Assistant, response.content));
                self.request
                    .messages
                    .push(Message::new(Role::User, prompt::repair_message(&problem)));
                Next::Request
            }
        }
    }

    /// What to do for tool call `call`: call a tool of the agent's with its arguments, or answer
    /// the model at once (no such tool, arguments that are not JSON), so it can correct itself.
    pub fn tool_step(&self, call: &ToolCall) -> ToolStep {
        let Some(definition) = self.request.tools.iter().find(|d| d.name == call.name) else {
            return ToolStep::Answer(format!("error: there is no tool named `{}`", call.name));
        };
        match serde_json::from_str::<Value>(&call.arguments) {
            Err(e) => ToolStep::Answer(format!("error: the arguments are not valid JSON: {e}")),
            Ok(mut arguments) => {
                // Strict tool schemas make optional arguments nullable; give the tool its own
                // shape back.
                schema::drop_optional_nulls(&definition.parameters, &mut arguments);
                ToolStep::Call {
                    name: call.name.clone(),
                    arguments,
                }
            }
        }
    }

    /// The tool calls of the last round were answered: `(call id, answer)` each, in any order.
    /// Gives [`Next::Request`]: the conversation goes back to the model. The answers are added
    /// in the order the model asked for the calls.
    pub fn tools_answered<T>(&mut self, mut answers: Vec<(String, String)>) -> Next<T> {
        let asked: Vec<String> = self
            .request
            .messages
            .last()
            .map(|m| m.tool_calls.iter().map(|c| c.id.clone()).collect())
            .unwrap_or_default();
        answers.sort_by_key(|(id, _)| asked.iter().position(|a| a == id).unwrap_or(usize::MAX));
        for (id, answer) in answers {
            self.request.messages.push(Message {
                role: Role::Tool,
                content: answer,
                tool_calls: Vec::new(),
                tool_call_id: Some(id),
            });
        }
        Next::Request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::AgentKind;

    static SPEC: AgentSpec = AgentSpec::new("scorer", AgentKind::Declarative);

    fn tool(name: &str) -> ToolDefinition {
        ToolDefinition {
            name: name.into(),
            description: String::new(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": { "q": { "type": "string" }, "page": { "type": "integer" } },
                "required": ["q"]
            }),
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn turn() -> AgentLoop {
        AgentLoop::new(
            &SPEC,
            "m".into(),
            vec![Message::new(Role::User, "score it")],
            OutputFormat::of::<u32>(),
            vec![tool("search")],
        )
    }

    fn with_calls(calls: Vec<ToolCall>) -> ModelResponse {
        ModelResponse {
            tool_calls: calls,
            ..ModelResponse::default()
        }
    }

    #[test]
    fn an_answer_that_fits_is_done() {
        let mut turn = turn();
        assert!(matches!(
            turn.answered::<u32>(ModelResponse::text(r#"{"value": 7}"#)),
            Next::Done(7)
        ));
    }

    #[test]
    fn answers_that_do_not_fit_are_re_asked_then_fail() {
        let mut turn = turn();
        for _ in 0..DEFAULT_OUTPUT_RETRIES {
            assert!(matches!(
                turn.answered::<u32>(ModelResponse::text("lots")),
                Next::Request
            ));
        }
        // the re-asks are in the conversation: the answer, then what was wrong with it
        let messages = &turn.request().messages;
        assert_eq!(messages.len(), 1 + 2 * DEFAULT_OUTPUT_RETRIES as usize);
        assert_eq!(messages[1].content, "lots");
        assert!(
            messages[2]
                .content
                .starts_with("Your previous answer was rejected")
        );
        let Next::Fail(error) = turn.answered::<u32>(ModelResponse::text("lots")) else {
            panic!("the re-asks are used up");
        };
        assert!(
            error.to_string().contains("after 2 repair re-asks"),
            "{error}"
        );
    }

    #[test]
    fn tool_calls_are_run_and_answered_in_the_order_asked() {
        let mut turn = turn();
        let calls = vec![
            call("1", "search", r#"{"q": "a"}"#),
            call("2", "search", r#"{"q": "b"}"#),
        ];
        let Next::CallTools(asked) = turn.answered::<u32>(with_calls(calls.clone())) else {
            panic!("tools to call");
        };
        assert_eq!(asked, calls);
        // answered out of order (they ran concurrently): recorded in the order asked
        let next =
            turn.tools_answered::<u32>(vec![("2".into(), "B".into()), ("1".into(), "A".into())]);
        assert!(matches!(next, Next::Request));
        let tail: Vec<_> = turn.request().messages[2..]
            .iter()
            .map(|m| {
                (
                    m.tool_call_id.clone().unwrap_or_default(),
                    m.content.clone(),
                )
            })
            .collect();
        assert_eq!(tail, [("1".into(), "A".into()), ("2".into(), "B".into())]);
        assert_eq!(turn.request().messages[1].tool_calls.len(), 2);
    }

    #[test]
    fn a_model_that_never_stops_calling_tools_fails_after_the_bound() {
        let mut turn = turn();
        for round in 0..MAX_TOOL_ROUNDS {
            let next =
                turn.answered::<u32>(with_calls(vec![call(&round.to_string(), "search", "{}")]));
            assert!(matches!(next, Next::CallTools(_)), "round {round}");
            turn.tools_answered::<u32>(vec![(round.to_string(), "x".into())]);
        }
        let Next::Fail(error) = turn.answered::<u32>(with_calls(vec![call("x", "search", "{}")]))
        else {
            panic!("bounded");
        };
        assert!(error.to_string().contains("kept calling tools"), "{error}");
    }

    #[test]
    fn unknown_tools_and_bad_arguments_are_answered_to_the_model() {
        let turn = turn();
        assert_eq!(
            turn.tool_step(&call("1", "nope", "{}")),
            ToolStep::Answer("error: there is no tool named `nope`".into())
        );
        let ToolStep::Answer(answer) = turn.tool_step(&call("1", "search", "{not json")) else {
            panic!("an answer");
        };
        assert!(
            answer.starts_with("error: the arguments are not valid JSON"),
            "{answer}"
        );
        // the strict schema's null for an optional argument is dropped
        assert_eq!(
            turn.tool_step(&call("1", "search", r#"{"q": "a", "page": null}"#)),
            ToolStep::Call {
                name: "search".into(),
                arguments: serde_json::json!({"q": "a"})
            }
        );
    }
}

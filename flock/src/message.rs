//! Messages to and from running flows: signals (one-way, buffered until the flow waits for
//! them), queries (read the state a flow published) and updates (a request the flow answers,
//! checked first by a validator). A flow declares them in `#[flow(signals(..), queries(..),
//! updates(..))]`; the macro gives each a typed constant on the flow (`publish::approve`), so a
//! client can only send a flow the messages it declares, with the types it declares.
//!
//! The semantics live here once, in [`Mailbox`]: both executors keep a flow's messages in one,
//! the local executor behind a lock, the Temporal executor in its workflow's state (so that every
//! change is a workflow event, identical on replay).

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::agent::json_size_within;
use crate::spec::{FlowSpec, MAX_PAYLOAD_BYTES};
pub use crate::spec::{MessageKind, MessageSpec};

impl FlowSpec {
    /// The message `name` of `kind` this flow declares; the error names the flow, the message
    /// and what the flow does declare.
    pub fn message(&self, kind: MessageKind, name: &str) -> Result<&'static MessageSpec, String> {
        if let Some(spec) = self
            .messages
            .iter()
            .find(|m| m.kind == kind && m.name == name)
        {
            return Ok(spec);
        }
        let declared: Vec<String> = self
            .messages
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| format!("`{}`", m.name))
            .collect();
        let kinds = plural(kind);
        let declared = if declared.is_empty() {
            format!("it declares no {kinds}")
        } else {
            format!("its {kinds}: {}", declared.join(", "))
        };
        Err(format!(
            "flow `{}` has no {} `{name}` ({declared}; declare one with `#[flow({kinds}({name}: Type))]`)",
            self.name,
            kind.name(),
        ))
    }

    /// Checks message `name` of `kind` with JSON `value` before it is delivered: declared, within
    /// the payload limit, fitting its type and (an update) accepted by its validator.
    pub fn check_message(
        &self,
        kind: MessageKind,
        name: &str,
        value: &Value,
    ) -> Result<(), String> {
        let spec = self.message(kind, name)?;
        let size = json_size_within(value, MAX_PAYLOAD_BYTES);
        if size > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "the {} `{name}` of flow `{}` is {size} bytes as JSON, over the {MAX_PAYLOAD_BYTES}-byte payload limit of messages (Temporal rejects payloads over 2 MiB, and messages are never offloaded)",
                kind.name(),
                self.name
            ));
        }
        // The JSON against the type's schema first: the error names the JSON pointer and the
        // type expected there, as for a run's input. (A query sends nothing to check.)
        if kind != MessageKind::Query {
            let schema = schema_of(spec);
            crate::model::validate::validate(&schema, value).map_err(|violations| {
                let of = match schema["title"].as_str() {
                    Some(title) => format!("`{title}`"),
                    None => "its type".to_owned(),
                };
                format!(
                    "the {} `{name}` of flow `{}` does not fit {of}: {}",
                    kind.name(),
                    self.name,
                    crate::model::validate::describe(&violations)
                )
            })?;
        }
        // Then the check the macro made (deserialization, and an update's validator): user code,
        // so a panic in it is an error here, not a crash of the sender or of the worker.
        let checked = quietly_catching_panics(|| (spec.check)(value)).unwrap_or_else(|panic| {
            Err(match kind {
                MessageKind::Update => format!("its validator panicked: {panic}"),
                _ => format!("checking it panicked: {panic}"),
            })
        });
        checked.map_err(|e| {
            format!(
                "the {} `{name}` of flow `{}` was rejected: {e}",
                kind.name(),
                self.name
            )
        })
    }
}

/// The JSON Schema of what message `spec` carries, made once per message (a worker checks every
/// signal it takes against it).
fn schema_of(spec: &'static MessageSpec) -> std::sync::Arc<Value> {
    type Schemas = std::sync::Mutex<HashMap<usize, std::sync::Arc<Value>>>;
    static SCHEMAS: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();
    let key = spec as *const MessageSpec as usize;
    let schemas = SCHEMAS.get_or_init(Default::default);
    if let Some(schema) = schemas.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return schema.clone();
    }
    let schema =
        std::sync::Arc::new(serde_json::to_value((spec.schema)()).unwrap_or(Value::Bool(true)));
    schemas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, schema.clone());
    schema
}

/// `signals`, `queries`, `updates`: as `#[flow(..)]` spells the lists.
fn plural(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Signal => "signals",
        MessageKind::Query => "queries",
        MessageKind::Update => "updates",
    }
}

thread_local! {
    /// Whether this thread is running user code whose panic is caught and reported as an error.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `check`, giving its panic message as `Err` instead of unwinding. The panic hook is not
/// told about such a panic (its report is the error): the process's hook is wrapped, once, by
/// one that stays silent on a thread inside this function and hands every other panic on.
fn quietly_catching_panics<T>(check: impl FnOnce() -> T) -> Result<T, String> {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|catching| catching.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
    CATCHING.with(|catching| catching.set(was));
    outcome.map_err(|panic| crate::agent::panic_message(&*panic))
}

/// A type's name without module paths: `Vec<Edit>`, not `alloc::vec::Vec<my_app::Edit>`.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut short = String::with_capacity(full.len());
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            short.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            short.push(c);
        }
    }
    short.push_str(word.rsplit("::").next().unwrap_or(&word));
    short
}

/// The JSON Schema of a message type. Used by `#[flow(..)]`.
pub fn message_schema<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::schema_for!(T)
}

/// The check of a signal's or query's JSON: it must fit `T`. Used by `#[flow(..)]`.
pub fn check_fits<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    T::deserialize(value)
        .map(drop)
        .map_err(|e| format!("the JSON does not fit `{}`: {e}", short_type_name::<T>()))
}

/// The check of an update's JSON: it must fit `T`, then pass `validator`. Used by `#[flow(..)]`.
pub fn check_update<T: DeserializeOwned>(
    value: &Value,
    validator: fn(&T) -> Result<(), String>,
) -> Result<(), String> {
    let input = T::deserialize(value)
        .map_err(|e| format!("the JSON does not fit `{}`: {e}", short_type_name::<T>()))?;
    validator(&input)
}

macro_rules! message_type {
    ($(#[$doc:meta])* $name:ident<$($param:ident),*>) => {
        $(#[$doc])*
        pub struct $name<F, $($param),*> {
            name: &'static str,
            types: PhantomData<fn() -> (F, $($param),*)>,
        }

        impl<F, $($param),*> $name<F, $($param),*> {
            /// The message called `name` (made by `#[flow(..)]`).
            pub const fn new(name: &'static str) -> Self {
                $name { name, types: PhantomData }
            }

            /// Its name.
            pub const fn name(&self) -> &'static str {
                self.name
            }
        }

        impl<F, $($param),*> Clone for $name<F, $($param),*> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<F, $($param),*> Copy for $name<F, $($param),*> {}

        impl<F, $($param),*> std::fmt::Debug for $name<F, $($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.name)
            }
        }
    };
}

message_type! {
    /// A signal of flow `F` carrying a `T`: `#[flow(signals(approve: Decision))]` makes
    /// `publish::approve: Signal<publish, Decision>`.
    Signal<T>
}

message_type! {
    /// A query of flow `F` answered with a `T` the flow published:
    /// `#[flow(queries(status: Status))]` makes `publish::status: Query<publish, Status>`.
    Query<T>
}

message_type! {
    /// An update of flow `F` taking an `I` and answered with an `O`:
    /// `#[flow(updates(edit: Edit -> Draft))]` makes `publish::edit: Update<publish, Edit, Draft>`.
    Update<I, O>
}

/// Signals a run did not take, by name, each name's in arrival order: what it carries into the
/// run it continues as.
#[cfg_attr(not(feature = "temporal"), allow(dead_code))]
pub(crate) type CarriedSignals = Vec<(String, Vec<Value>)>;

/// The state of one run's messages: signals waiting to be taken, the state published for
/// queries, updates waiting for the flow and the flow's answers. Both executors keep one per run;
/// every rule about messages (order, buffering, what an unknown message does) is here.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    signals: HashMap<String, VecDeque<Value>>,
    published: HashMap<String, Value>,
    updates: HashMap<String, VecDeque<(u64, Value)>>,
    answers: HashMap<u64, Result<Value, String>>,
    next_update: u64,
    /// Once the run has ended: its flow, for the error of updates it did not answer.
    closed: Option<&'static str>,
    /// Tool calls waiting for approval, and decisions the loop has not taken yet.
    pub(crate) approvals: crate::approval::Approvals,
}

impl Mailbox {
    /// Delivers signal `name`: kept, in arrival order, until the flow takes it.
    pub(crate) fn push_signal(&mut self, name: &str, value: Value) {
        self.signals
            .entry(name.to_owned())
            .or_default()
            .push_back(value);
    }

    /// Whether a signal `name` is waiting.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn has_signal(&self, name: &str) -> bool {
        self.signals.get(name).is_some_and(|q| !q.is_empty())
    }

    /// Takes the oldest signal `name`.
    pub(crate) fn take_signal(&mut self, name: &str) -> Option<Value> {
        self.signals.get_mut(name)?.pop_front()
    }

    /// The state published for query `name`.
    pub(crate) fn publish(&mut self, name: &str, value: Value) {
        self.published.insert(name.to_owned(), value);
    }

    /// Answers query `name` of `flow` from the published state.
    pub(crate) fn query(&self, flow: &FlowSpec, name: &str) -> Result<Value, String> {
        flow.message(MessageKind::Query, name)?;
        self.published.get(name).cloned().ok_or_else(|| {
            format!(
                "flow `{}` has not published `{name}` yet (it does with `ctx.publish({}::{name}, ..)`)",
                flow.name, flow.name
            )
        })
    }

    /// Delivers update `name` (already checked by its validator); gives its id, by which its
    /// answer is found.
    pub(crate) fn push_update(&mut self, name: &str, value: Value) -> u64 {
        self.next_update += 1;
        let id = self.next_update;
        self.updates
            .entry(name.to_owned())
            .or_default()
            .push_back((id, value));
        id
    }

    /// Whether an update `name` is waiting for the flow.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn has_update(&self, name: &str) -> bool {
        self.updates.get(name).is_some_and(|q| !q.is_empty())
    }

    /// Takes the oldest update `name`.
    pub(crate) fn take_update(&mut self, name: &str) -> Option<(u64, Value)> {
        self.updates.get_mut(name)?.pop_front()
    }

    /// The flow's answer to update `id`.
    pub(crate) fn answer(&mut self, id: u64, answer: Result<Value, String>) {
        self.answers.insert(id, answer);
    }

    /// Whether update `id` is answered.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn is_answered(&self, id: u64) -> bool {
        self.answers.contains_key(&id)
    }

    /// Takes the answer to update `id`; once the run has ended, an unanswered update's answer is
    /// the error saying so.
    pub(crate) fn take_answer(&mut self, id: u64) -> Option<Result<Value, String>> {
        self.answers.remove(&id).or_else(|| {
            self.closed
                .map(|flow| Err(format!("flow `{flow}` ended before it answered the update")))
        })
    }

    /// The signals not taken yet, by name in arrival order (names sorted, so that the list is
    /// the same on every replay): what a run that continues as new carries into the next one.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn take_untaken_signals(&mut self) -> CarriedSignals {
        let mut untaken: Vec<(String, Vec<Value>)> = self
            .signals
            .drain()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(name, queue)| (name, queue.into()))
            .collect();
        untaken.sort_by(|a, b| a.0.cmp(&b.0));
        untaken
    }

    /// Delivers signals carried over from the run before (see
    /// [`take_untaken_signals`](Self::take_untaken_signals)), ahead of any sent to this run.
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    pub(crate) fn carry_in(&mut self, carried: CarriedSignals) {
        for (name, values) in carried {
            let queue = self.signals.entry(name).or_default();
            for value in values.into_iter().rev() {
                queue.push_front(value);
            }
        }
    }

    /// The run continues as new (`flow`'s next run, same mailbox on the local executor): signals
    /// not taken yet stay for the next run; the published query state goes (the next run
    /// publishes its own); updates the flow has not taken are answered with an error saying so
    /// (as on Temporal, where an update lives and dies with its run), so their senders stop
    /// waiting.
    #[cfg_attr(feature = "temporal", allow(dead_code))]
    pub(crate) fn continue_as_new(&mut self, flow: &str) {
        self.published.clear();
        for (name, queue) in std::mem::take(&mut self.updates) {
            for (id, _) in queue {
                self.answers.insert(
                    id,
                    Err(format!(
                        "flow `{flow}` continued as new before it took update `{name}`; send it again to reach the new run"
                    )),
                );
            }
        }
    }

    /// The run ended: updates not answered by then get an error naming `flow` (their senders
    /// must not wait forever).
    #[cfg_attr(feature = "temporal", allow(dead_code))]
    pub(crate) fn close(&mut self, flow: &'static str) {
        self.closed = Some(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_kept_in_order_per_name() {
        let mut mailbox = Mailbox::default();
        mailbox.push_signal("a", Value::from(1));
        mailbox.push_signal("b", Value::from(2));
        mailbox.push_signal("a", Value::from(3));
        assert!(mailbox.has_signal("a"));
        assert_eq!(mailbox.take_signal("a"), Some(Value::from(1)));
        assert_eq!(mailbox.take_signal("a"), Some(Value::from(3)));
        assert_eq!(mailbox.take_signal("a"), None);
        assert_eq!(mailbox.take_signal("b"), Some(Value::from(2)));
    }

    #[test]
    fn untaken_signals_carry_over_in_order_and_ahead_of_new_ones() {
        let mut before = Mailbox::default();
        for n in 1..=3 {
            before.push_signal("tick", Value::from(n));
        }
        before.push_signal("stop", Value::from(true));
        assert_eq!(before.take_signal("tick"), Some(Value::from(1)));
        let carried = before.take_untaken_signals();
        assert_eq!(
            carried,
            vec![
                ("stop".to_owned(), vec![Value::from(true)]),
                ("tick".to_owned(), vec![Value::from(2), Value::from(3)]),
            ]
        );
        assert!(!before.has_signal("tick"));
        let mut after = Mailbox::default();
        after.push_signal("tick", Value::from(4)); // sent to the new run before it started
        after.carry_in(carried);
        let ticks: Vec<_> = std::iter::from_fn(|| after.take_signal("tick")).collect();
        assert_eq!(ticks, [Value::from(2), Value::from(3), Value::from(4)]);
        assert_eq!(after.take_signal("stop"), Some(Value::from(true)));
    }

    #[test]
    fn continuing_as_new_keeps_signals_and_answers_untaken_updates() {
        let mut mailbox = Mailbox::default();
        mailbox.push_signal("tick", Value::from(1));
        mailbox.publish("count", Value::from(7));
        let untaken = mailbox.push_update("edit", Value::from("x"));
        mailbox.continue_as_new("counter");
        assert_eq!(mailbox.take_signal("tick"), Some(Value::from(1)));
        let answer = mailbox.take_answer(untaken).unwrap().unwrap_err();
        assert!(answer.contains("continued as new"), "{answer}");
        assert!(
            mailbox.published.is_empty(),
            "the next run publishes its own state"
        );
    }

    #[test]
    fn type_names_lose_their_module_paths() {
        assert_eq!(short_type_name::<String>(), "String");
        assert_eq!(
            short_type_name::<Vec<std::collections::HashMap<String, u32>>>(),
            "Vec<HashMap<String, u32>>"
        );
        assert_eq!(
            short_type_name::<(u8, Option<Mailbox>)>(),
            "(u8, Option<Mailbox>)"
        );
    }

    #[test]
    fn a_panic_caught_here_is_an_error_with_its_message() {
        assert_eq!(quietly_catching_panics(|| 7), Ok(7));
        assert_eq!(
            quietly_catching_panics(|| -> u8 { panic!("validator bug {}", 42) }),
            Err("validator bug 42".to_owned())
        );
        // nested: the inner call leaves the outer one catching
        let outer = quietly_catching_panics(|| {
            let _ = quietly_catching_panics(|| ());
            panic!("still quiet")
        });
        assert_eq!(outer, Err::<(), _>("still quiet".to_owned()));
    }

    #[test]
    fn updates_are_answered_by_id() {
        let mut mailbox = Mailbox::default();
        let first = mailbox.push_update("edit", Value::from("x"));
        let second = mailbox.push_update("edit", Value::from("y"));
        assert_ne!(first, second);
        assert_eq!(mailbox.take_update("edit"), Some((first, Value::from("x"))));
        assert!(!mailbox.is_answered(first));
        mailbox.answer(first, Ok(Value::from(1)));
        assert_eq!(mailbox.take_answer(first), Some(Ok(Value::from(1))));
    }
}

//! Agents: the [`Agent`] trait that `#[agent]` implements, the [`AgentContext`] an attempt runs
//! with, and [`DynAgent`], an agent behind JSON as executors run it. Hand-off chains are in
//! [`chain`](crate::chain), the static settings in [`spec`](crate::spec).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AgentError;
use crate::model::Models;
pub use crate::spec::{AgentKind, AgentSpec};
use crate::spec::{
    Direction, FlowSpec, MAX_PAYLOAD_BYTES, PayloadLimit, check_local_record_size,
    check_payload_size,
};
use crate::usage::Usage;

/// What an agent's input and output types must be: serializable both ways (they cross process
/// boundaries on Temporal), described by a JSON Schema (for prompts), sendable and owned.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an agent or flow input/output",
    label = "needs `#[derive(Serialize, Deserialize, JsonSchema)]`",
    note = "agent and flow inputs and outputs must implement `Serialize`, `DeserializeOwned`, `JsonSchema`, `Send` and be `'static`"
)]
pub trait AgentIo: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}
impl<T> AgentIo for T where T: Serialize + DeserializeOwned + JsonSchema + Send + 'static {}

/// An agent: a typed unit of work, called from flows or run as a hand-off chain.
///
/// `#[agent]` implements it on a zero-sized type named after the function, so the agent is passed
/// around as a value:
///
/// ```rust,standalone_crate
/// use flock::prelude::*;
///
/// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
/// pub struct Text {
///     /// Some text
///     pub text: String,
/// }
///
/// /// Shouts the text.
/// #[agent]
/// async fn shout(input: Text) -> Text {
///     Text { text: input.text.to_uppercase() }
/// }
///
/// assert_eq!(<shout as Agent>::NAME, "shout");
/// assert_eq!(shout.spec().description, "Shouts the text.");
/// let schema = serde_json::to_value(shout.input_schema()).unwrap();
/// assert_eq!(schema["properties"]["text"]["description"], "Some text");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an agent",
    label = "not an `#[agent]`",
    note = "agents are `async fn`s marked `#[agent]`; the macro turns the fn's name into a value that implements `Agent`"
)]
pub trait Agent: Copy + Default + Send + Sync + 'static {
    /// The input type.
    type Input: AgentIo;
    /// The output type.
    type Output: AgentIo;
    /// The agent this one hands off to ([`End`](crate::End) when none); `#[agent(hand_off = ..)]`
    /// checks at compile time that it fits ([`HandOff`](crate::HandOff)).
    type Next;
    /// The agent's name (its Temporal activity type).
    const NAME: &'static str;
    /// The hand-off chain that starts here, as a flow (its name is the Temporal workflow type
    /// `flock.run(agent, ..)` runs as: `"<agent>.chain"`).
    const CHAIN: &'static FlowSpec;

    /// The agent's settings.
    fn spec(&self) -> &'static AgentSpec;

    /// Runs one attempt.
    fn call(
        self,
        ctx: AgentContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, AgentError>> + Send + 'static;

    /// The JSON Schema of the input (doc comments become descriptions).
    fn input_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Input)
    }

    /// The JSON Schema of the output (doc comments become descriptions).
    fn output_schema(&self) -> schemars::Schema {
        schemars::schema_for!(Self::Output)
    }
}

/// Receives what an agent reports while it runs (progress on the local executor, heartbeats on
/// Temporal).
pub trait ProgressSink: Send + Sync {
    /// Called by [`AgentContext::report_progress`].
    fn report(&self, agent: &'static str, attempt: u32, details: serde_json::Value);

    /// Called by [`AgentContext::checkpoint`] with the state, encoded and within the payload
    /// limit (the context keeps it for the next attempt itself). A checkpoint is also a
    /// heartbeat. The default does nothing.
    fn checkpoint(&self, agent: &'static str, attempt: u32, state: &serde_json::Value) {
        let _ = (agent, attempt, state);
    }

    /// A heartbeat without progress to report (a declarative agent sends them while its model
    /// request is in flight). The default does nothing.
    fn heartbeat(&self, agent: &'static str, attempt: u32) {
        let _ = (agent, attempt);
    }
}

/// What one attempt of an agent runs with.
#[derive(Clone)]
pub struct AgentContext {
    pub(crate) run_id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) spec: &'static AgentSpec,
    pub(crate) progress: Option<Arc<dyn ProgressSink>>,
    pub(crate) models: Arc<Models>,
    pub(crate) usage: Option<Arc<std::sync::Mutex<Usage>>>,
    /// Cancellation and checkpoints, shared with the executor.
    pub(crate) attempt_state: Attempt,
    pub(crate) idempotency_key: CallKey,
    /// The limit of the agent's output (the executor's settings).
    pub(crate) payload_limit: PayloadLimit,
}

/// What a call's idempotency key is made of, written out when an agent first asks for it (most
/// never do: a hop of the local executor formats nothing).
#[derive(Clone, Debug)]
pub(crate) enum CallKey {
    /// A local call: the run id, the run's random id and the call's sequence number.
    Local {
        seed: u64,
        call: u64,
        text: std::sync::OnceLock<String>,
    },
    /// A key given whole (on Temporal: the workflow id, its run id and the activity id).
    Given(Arc<str>),
}

impl CallKey {
    /// The key of local call number `call` of a run whose random id is `seed`.
    pub(crate) fn local(seed: u64, call: u64) -> Self {
        CallKey::Local {
            seed,
            call,
            text: std::sync::OnceLock::new(),
        }
    }
}

/// The checkpoints of one attempt: the last one the attempts before it made (what
/// [`AgentContext::resume`] gives, fixed for the attempt) and the last one it made itself. The
/// executor carries [`last`](Self::last) over to the next attempt: in memory on the local
/// executor and for Temporal local activities, in the heartbeat details on Temporal.
#[derive(Debug, Default)]
pub(crate) struct Checkpoints {
    resumed: Option<Value>,
    made: std::sync::Mutex<Option<Value>>,
}

impl Checkpoints {
    /// The checkpoints of an attempt that resumes from `previous` (`None`: from the start).
    pub(crate) fn resuming(previous: Option<Value>) -> Self {
        Checkpoints {
            resumed: previous,
            made: std::sync::Mutex::new(None),
        }
    }

    /// What the next attempt resumes from: the last checkpoint made in this attempt, or else the
    /// one this attempt resumed from.
    pub(crate) fn last(&self) -> Option<Value> {
        let made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        made.clone().or_else(|| self.resumed.clone())
    }

    /// The checkpoint this attempt resumed from.
    pub(crate) fn resumed(&self) -> Option<&Value> {
        self.resumed.as_ref()
    }

    fn keep(&self, state: Value) {
        *self.made.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }
}

/// What an attempt shares with its executor, in one allocation: whether it is cancelled (its
/// timeout passed, its run was cancelled, or on Temporal the server says so: the executor
/// cancels, the attempt looks), and its [`Checkpoints`] (the attempt makes them, the executor
/// carries the last one over to the next attempt).
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempt(Arc<AttemptState>);

thread_local! {
    static FREE_ATTEMPTS: crate::recycle::FreeList<AttemptState> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[derive(Debug, Default)]
struct AttemptState {
    cancelled: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
    checkpoints: Checkpoints,
}

impl Attempt {
    /// An attempt that resumes from checkpoint `previous` (`None`: from the start). Its state
    /// is a finished attempt's when this thread has one (see [`recycle`](Self::recycle)).
    pub(crate) fn resuming(previous: Option<Value>) -> Self {
        let checkpoints = Checkpoints::resuming(previous);
        if let Some(mut state) = crate::recycle::take(&FREE_ATTEMPTS)
            && let Some(inner) = Arc::get_mut(&mut state)
        {
            *inner.cancelled.get_mut() = false;
            inner.checkpoints = checkpoints;
            return Attempt(state);
        }
        Attempt(Arc::new(AttemptState {
            checkpoints,
            ..AttemptState::default()
        }))
    }

    /// Ends the attempt: its state is reused by a later one if nobody else holds it any more
    /// (its context was dropped).
    pub(crate) fn recycle(self) {
        crate::recycle::give(&FREE_ATTEMPTS, self.0);
    }

    /// The attempt's checkpoints.
    pub(crate) fn checkpoints(&self) -> &Checkpoints {
        &self.0.checkpoints
    }

    pub(crate) fn cancel(&self) {
        self.0
            .cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl AgentContext {
    /// The context of one attempt, as an executor makes it: the attempt of call `key` of run
    /// `run_id`, sharing its cancellation and checkpoints with the executor through `shared`,
    /// its output checked against `payload_limit`.
    #[allow(clippy::too_many_arguments)] // each is one fact of the attempt, set by the executor
    pub(crate) fn for_attempt(
        run_id: Arc<str>,
        attempt: u32,
        spec: &'static AgentSpec,
        models: Arc<Models>,
        progress: Option<Arc<dyn ProgressSink>>,
        usage: Option<Arc<std::sync::Mutex<Usage>>>,
        shared: Attempt,
        key: CallKey,
        payload_limit: PayloadLimit,
    ) -> Self {
        AgentContext {
            run_id,
            attempt,
            spec,
            progress,
            models,
            usage,
            attempt_state: shared,
            idempotency_key: key,
            payload_limit,
        }
    }

    /// A context outside any executor, e.g. to call an agent directly in a unit test.
    ///
    /// ```rust,standalone_crate
    /// use flock::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct N { pub n: u32 }
    ///
    /// #[agent]
    /// async fn double(ctx: &AgentContext, input: N) -> N {
    ///     assert_eq!(ctx.attempt(), 1);
    ///     N { n: input.n * 2 }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let out = double.call(AgentContext::detached(double.spec()), N { n: 21 }).await.unwrap();
    /// assert_eq!(out.n, 42);
    /// # });
    /// ```
    pub fn detached(spec: &'static AgentSpec) -> Self {
        AgentContext {
            run_id: Arc::from("detached"),
            attempt: 1,
            spec,
            progress: None,
            models: Arc::new(Models::default()),
            usage: None,
            attempt_state: Attempt::default(),
            idempotency_key: CallKey::Given(Arc::from("detached")),
            payload_limit: PayloadLimit::TEMPORAL,
        }
    }

    /// A key that is the same for every attempt (retry) of this agent call and different for
    /// every other call: pass it to the target of a side effect (a payment API's
    /// `Idempotency-Key` header, a unique column) so the effect happens once however often the
    /// call is retried. On Temporal: the workflow id, its run id and the activity id; on the
    /// local executor: the run id, a per-run random id and the call's sequence number.
    pub fn idempotency_key(&self) -> &str {
        match &self.idempotency_key {
            CallKey::Local { seed, call, text } => {
                text.get_or_init(|| format!("{}/{seed:016x}/{call}", self.run_id))
            }
            CallKey::Given(key) => key,
        }
    }

    /// Whether this attempt is cancelled: its timeout passed, or its run was cancelled. The
    /// executor then drops the attempt's future at its next `.await` (so an in-flight model request
    /// is dropped with it, and its connection closed); a code agent that runs long without
    /// awaiting, or that started work of its own (threads, spawned tasks), checks this, or awaits
    /// [`cancelled`](Self::cancelled), and stops. On Temporal, cancellation reaches an attempt
    /// through heartbeats: a code agent learns of a cancelled run at its next
    /// [`report_progress`](Self::report_progress) or [`checkpoint`](Self::checkpoint) (the worker
    /// sends heartbeats at most once a second), and a declarative agent heartbeats by itself while
    /// its model request is in flight, so a cancelled run ends that request too.
    pub fn is_cancelled(&self) -> bool {
        self.attempt_state.is_cancelled()
    }

    /// Resolves when this attempt is cancelled (see [`is_cancelled`](Self::is_cancelled)).
    pub async fn cancelled(&self) {
        self.attempt_state.cancelled().await
    }

    /// The id of the run (on Temporal: the workflow id).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The agent's name.
    pub fn agent_name(&self) -> &'static str {
        self.spec.name
    }

    /// The agent's settings.
    pub fn spec(&self) -> &'static AgentSpec {
        self.spec
    }

    /// Reports progress: recorded in the run record on the local executor, sent as a heartbeat
    /// on Temporal. Reporting also keeps a `heartbeat` timeout from expiring.
    pub fn report_progress(&self, details: impl Serialize) {
        if let Some(sink) = &self.progress {
            let details = serde_json::to_value(details).unwrap_or_else(|e| {
                serde_json::Value::String(format!("<progress not serializable: {e}>"))
            });
            sink.report(self.spec.name, self.attempt, details);
        }
    }

    /// Saves `state` as this agent's checkpoint: when this attempt fails (an error, a timeout, a
    /// worker that dies) and the call is retried, the next attempt's [`resume`](Self::resume)
    /// gives the last state saved, so a long agent continues where it was instead of starting
    /// over. A checkpoint is also a heartbeat (it keeps a `heartbeat` timeout from expiring).
    ///
    /// * Local executor: the state is kept in memory for the call's next attempts.
    /// * Temporal: the state is sent as the activity's heartbeat details (with the last
    ///   [`report_progress`](Self::report_progress)), which the server hands to the next attempt,
    ///   on whichever worker it runs. Give the agent a `heartbeat` timeout, so that a killed
    ///   worker's attempt is retried after it rather than after the whole `timeout`. The worker
    ///   sends an attempt's first checkpoint at once and later ones at most every 100 ms
    ///   ([`CHECKPOINT_FLUSH`](crate::worker::CHECKPOINT_FLUSH)), keeping the latest: a worker
    ///   killed in between loses the checkpoints of its last 100 ms.
    /// * An `#[agent(local)]` agent (a Temporal local activity, see
    ///   [`AgentSpec::runs_locally`]) cannot heartbeat: its checkpoints stay in the worker's
    ///   memory, for the retries that worker makes of the call (as on the local executor; Temporal
    ///   retries a local activity in the worker when the retry delay is under a minute). After a
    ///   longer delay, or when the worker dies, the next attempt starts over (`resume` gives
    ///   `None`); an agent whose checkpoints must survive its worker sets `heartbeat`.
    ///
    /// Errors ([`AgentError::Permanent`], naming the agent; return them with `?`): the state does
    /// not serialize to JSON, or is over [`MAX_PAYLOAD_BYTES`](crate::spec::MAX_PAYLOAD_BYTES)
    /// as JSON (Temporal would reject the heartbeat; keep a reference, not the data). The earlier
    /// checkpoint stays then. This limit holds with claim-check offload too: a checkpoint is sent
    /// with every heartbeat, and offloading each would leave a blob per heartbeat.
    ///
    /// ```rust,standalone_crate
    /// use flock::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Pages {
    ///     pub count: u32,
    /// }
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Report {
    ///     pub done: Vec<u32>,
    ///     pub resumed_at: Option<u32>,
    /// }
    ///
    /// /// What a retry continues from: the pages done so far.
    /// #[derive(Serialize, Deserialize)]
    /// struct Done {
    ///     pages: Vec<u32>,
    /// }
    ///
    /// /// Processes pages one by one; a retry continues after the last page done.
    /// #[agent(heartbeat = "30s", retry(attempts = 3, initial_interval = "10ms"))]
    /// async fn process_pages(ctx: &AgentContext, input: Pages) -> Result<Report, AgentError> {
    ///     let resumed = ctx.resume::<Done>()?;
    ///     let resumed_at = resumed.as_ref().map(|done| done.pages.len() as u32 + 1);
    ///     let mut done = resumed.unwrap_or(Done { pages: vec![] });
    ///     for page in done.pages.len() as u32 + 1..=input.count {
    ///         if page == 3 && ctx.attempt() == 1 {
    ///             return Err(AgentError::transient("the page server went away"));
    ///         }
    ///         done.pages.push(page); // the work of one page
    ///         ctx.checkpoint(&done)?;
    ///     }
    ///     Ok(Report { done: done.pages, resumed_at })
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = Flock::builder().build().await.unwrap();
    /// let report = flock.run(process_pages, Pages { count: 5 }).await.unwrap();
    /// // the second attempt continued at page 3: pages 1 and 2 were processed once
    /// assert_eq!(report.resumed_at, Some(3));
    /// assert_eq!(report.done, [1, 2, 3, 4, 5]);
    /// # });
    /// ```
    pub fn checkpoint<S: Serialize + ?Sized>(&self, state: &S) -> Result<(), AgentError> {
        let name = self.spec.name;
        let state = serde_json::to_value(state).map_err(|e| {
            AgentError::permanent(format!(
                "agent `{name}`: the checkpoint state `{}` is not serializable: {e}",
                std::any::type_name::<S>()
            ))
        })?;
        let bytes = json_size(&state);
        if bytes > MAX_PAYLOAD_BYTES {
            return Err(AgentError::permanent(format!(
                "agent `{name}`: the checkpoint state `{}` is {bytes} bytes as JSON, over the {MAX_PAYLOAD_BYTES}-byte payload limit of checkpoints (Temporal rejects heartbeat details over 2 MiB, and checkpoints are never offloaded); checkpoint a reference (a path, URL or id) instead of the data",
                std::any::type_name::<S>()
            )));
        }
        if let Some(sink) = &self.progress {
            sink.checkpoint(name, self.attempt, &state);
        }
        self.attempt_state.checkpoints().keep(state);
        Ok(())
    }

    /// The last checkpoint the earlier attempts of this call saved with
    /// [`checkpoint`](Self::checkpoint), as an `S`; `None` on a first attempt, or when no
    /// earlier attempt saved one. It stays the same for the whole attempt (a checkpoint this
    /// attempt saves is for the next one). See [`checkpoint`](Self::checkpoint) for where
    /// checkpoints are kept on each executor, and an example.
    ///
    /// A checkpoint that does not fit `S` (the state type changed between deployments, or a
    /// different type is asked for) is an [`AgentError::Permanent`] naming the agent and `S`,
    /// never a silent `None`; an agent that would rather start over writes
    /// `ctx.resume::<S>().ok().flatten()`.
    pub fn resume<S: DeserializeOwned>(&self) -> Result<Option<S>, AgentError> {
        let Some(state) = self.attempt_state.checkpoints().resumed() else {
            return Ok(None);
        };
        S::deserialize(state).map(Some).map_err(|e| {
            AgentError::permanent(format!(
                "agent `{}`: the checkpoint an earlier attempt saved does not fit `{}`: {e}",
                self.spec.name,
                std::any::type_name::<S>()
            ))
        })
    }

    /// A heartbeat without progress (see [`ProgressSink::heartbeat`]).
    pub(crate) fn heartbeat(&self) {
        if let Some(sink) = &self.progress {
            sink.heartbeat(self.spec.name, self.attempt);
        }
    }

    /// The models this context resolves model names with.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Adds a model call's token usage to this attempt.
    pub fn add_usage(&self, usage: Usage) {
        if let Some(total) = &self.usage {
            let mut total = total.lock().unwrap_or_else(|p| p.into_inner());
            *total += usage;
        }
    }
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("agent", &self.spec.name)
            .finish_non_exhaustive()
    }
}

/// An agent behind JSON: what an executor needs to run it by name. Implemented for every
/// [`Agent`]; the behaviour both executors share lives here, once: the input is decoded (a
/// mismatch is [`AgentError::InvalidInput`] naming the agent and type), a panic is
/// [`AgentError::Permanent`] naming the agent, and the output is encoded and checked against the
/// payload limit (over it: permanent, since every retry would be as large).
pub trait DynAgent: Send + Sync {
    /// The agent's settings.
    fn spec(&self) -> &'static AgentSpec;
    /// The input JSON Schema.
    fn input_schema(&self) -> schemars::Schema;
    /// The output JSON Schema.
    fn output_schema(&self) -> schemars::Schema;
    /// Runs one attempt on JSON input, giving JSON output. The input is read here (into the
    /// agent's input type) and not kept: the caller keeps its JSON for the next attempt.
    fn call_json(
        &self,
        ctx: AgentContext,
        input: &Value,
    ) -> BoxFuture<'static, Result<Value, AgentError>>;
}

impl<A: Agent> DynAgent for A {
    fn spec(&self) -> &'static AgentSpec {
        Agent::spec(self)
    }

    fn input_schema(&self) -> schemars::Schema {
        Agent::input_schema(self)
    }

    fn output_schema(&self) -> schemars::Schema {
        Agent::output_schema(self)
    }

    fn call_json(
        &self,
        ctx: AgentContext,
        input: &Value,
    ) -> BoxFuture<'static, Result<Value, AgentError>> {
        let agent = *self;
        let limit = ctx.payload_limit;
        // On Temporal a local step's input and output share one history record: the sum counts
        let local_input_bytes = (limit.counts_local_records() && Agent::spec(self).runs_locally())
            .then(|| json_size(input));
        let input = A::Input::deserialize(input).map_err(|e| {
            AgentError::invalid_input(format!(
                "agent `{}`: the input does not fit `{}`: {e}",
                A::NAME,
                std::any::type_name::<A::Input>()
            ))
        });
        Box::pin(async move {
            let input = input?;
            let output = match AssertUnwindSafe(agent.call(ctx, input))
                .catch_unwind()
                .await
            {
                Ok(output) => output?,
                Err(panic) => {
                    return Err(AgentError::permanent(format!(
                        "agent `{}` panicked: {}",
                        A::NAME,
                        panic_message(&*panic)
                    )));
                }
            };
            let output = serde_json::to_value(&output).map_err(|e| {
                AgentError::permanent(format!(
                    "agent `{}`: the output is not serializable: {e}",
                    A::NAME
                ))
            })?;
            let budget = limit.bytes().saturating_sub(local_input_bytes.unwrap_or(0));
            let output_bytes = json_size_within(&output, budget);
            check_payload_size("agent", A::NAME, Direction::Output, output_bytes, limit)
                .map_err(AgentError::permanent)?;
            if let Some(input_bytes) = local_input_bytes {
                check_local_record_size("agent", A::NAME, input_bytes, output_bytes, limit)
                    .map_err(AgentError::permanent)?;
            }
            Ok(output)
        })
    }
}

/// The size of a JSON value as sent (compact encoding).
pub(crate) fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The size of `value` as JSON where it matters: exact when it may be over `budget`, else an
/// upper bound (no encoding). What the payload checks take: a size over `budget` is exact.
pub(crate) fn json_size_within(value: &Value, budget: usize) -> usize {
    let bound = json_size_bound(value);
    if bound <= budget {
        bound
    } else {
        json_size(value)
    }
}

/// An upper bound of [`json_size`], without encoding: every character of a string counted as if
/// escaped (`\uXXXX`, six bytes); numbers exactly.
pub(crate) fn json_size_bound(value: &Value) -> usize {
    fn string(s: &str) -> usize {
        2 + 6 * s.len()
    }
    fn digits(n: u64) -> usize {
        n.checked_ilog10().map_or(1, |log| log as usize + 1)
    }
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) if n.is_u64() => n.as_u64().map_or(20, digits),
        Value::Number(n) if n.is_i64() => n.as_i64().map_or(20, |i| 1 + digits(i.unsigned_abs())),
        Value::Number(n) => {
            struct Count(usize);
            impl std::fmt::Write for Count {
                fn write_str(&mut self, s: &str) -> std::fmt::Result {
                    self.0 += s.len();
                    Ok(())
                }
            }
            let mut count = Count(0);
            let _ = std::fmt::Write::write_fmt(&mut count, format_args!("{n}"));
            count.0
        }
        Value::String(s) => string(s),
        Value::Array(items) => 2 + items.len() + items.iter().map(json_size_bound).sum::<usize>(),
        Value::Object(fields) => {
            2 + fields.len() * 2
                + fields
                    .iter()
                    .map(|(k, v)| string(k) + json_size_bound(v))
                    .sum::<usize>()
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// A bodiless agent's `call`: the configured model answers it from the agent's description and
/// schemas (see [`model::evaluate`](crate::model::evaluate)).
///
/// While the model works the attempt heartbeats (every quarter of its `heartbeat` timeout, else
/// every second): a model that takes longer than the heartbeat timeout does not fail the attempt
/// (a dead worker still does), and on Temporal the heartbeats are how a cancellation reaches the
/// attempt. When the attempt is cancelled, the request in flight is dropped, which closes its
/// connection.
pub async fn run_declarative<A: Agent>(
    ctx: AgentContext,
    input: A::Input,
) -> Result<A::Output, AgentError> {
    let agent = A::default();
    let input = serde_json::to_value(&input).map_err(|e| {
        AgentError::invalid_input(format!("agent `{}`: input not serializable: {e}", A::NAME))
    })?;
    let (input_schema, output_schema) = (agent.input_schema(), agent.output_schema());
    let add_usage = |usage| ctx.add_usage(usage);
    let evaluation = crate::model::evaluate::<A::Output>(
        ctx.spec(),
        ctx.models(),
        &input_schema,
        &output_schema,
        &input,
        &add_usage,
    );
    heartbeating(&ctx, evaluation, "its model request").await
}

/// Runs `work` of an attempt (a model request in flight) heartbeating meanwhile (every quarter of
/// the agent's `heartbeat` timeout, else every second), and ends it when the attempt is
/// cancelled: `what` says what was in flight.
pub(crate) async fn heartbeating<T>(
    ctx: &AgentContext,
    work: impl Future<Output = Result<T, AgentError>>,
    what: &str,
) -> Result<T, AgentError> {
    let every = ctx
        .spec()
        .heartbeat
        .map_or(DECLARATIVE_HEARTBEAT, |timeout| timeout / 4)
        .clamp(std::time::Duration::from_millis(10), DECLARATIVE_HEARTBEAT);
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut work => break result,
            () = ctx.cancelled() => break Err(AgentError::transient(format!(
                "agent `{}` was cancelled while {what} was in flight",
                ctx.spec().name
            ))),
            _ = ticks.tick() => ctx.heartbeat(),
        }
    }
}

/// Runs one attempt's `call` of a step once its limiter admits it, heartbeating while it waits
/// (and ending the wait when the attempt is cancelled).
pub(crate) async fn admitted<T, F>(
    limiter: Option<&crate::limit::Limiter>,
    ctx: AgentContext,
    call: impl FnOnce(AgentContext) -> F,
) -> Result<T, AgentError>
where
    F: Future<Output = Result<T, AgentError>>,
{
    let Some(limiter) = limiter else {
        return call(ctx).await;
    };
    let admit = async { Ok(limiter.admit().await) };
    let _permit = heartbeating(&ctx, admit, "its wait for a free slot (its limits)").await?;
    call(ctx).await
}

/// How often a declarative agent without a `heartbeat` timeout heartbeats while its model works
/// (the worker sends at most one heartbeat a second, keeping the latest).
const DECLARATIVE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// `Result<T, AgentError>`, the return type of an agent that can fail.
pub type AgentResult<T> = Result<T, AgentError>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // NaN and infinities become null
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\]{0,8}".prop_map(Value::String), // all escaped
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The payload check skips encoding when the bound fits: the bound must never be lower.
        #[test]
        fn the_size_bound_is_never_below_the_encoded_size(value in any_json()) {
            prop_assert!(json_size_bound(&value) >= json_size(&value));
            prop_assert_eq!(json_size(&value), serde_json::to_vec(&value).unwrap().len());
        }

        /// What the payload checks take: never below the size, and exact whenever over budget.
        #[test]
        fn the_size_within_a_budget_is_exact_when_over_it(value in any_json(), budget in 0usize..64) {
            let within = json_size_within(&value, budget);
            prop_assert!(within >= json_size(&value));
            if within > budget {
                prop_assert_eq!(within, json_size(&value));
            }
        }
    }
}

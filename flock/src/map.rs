//! Durable fan-out: [`FlowContext::map`](crate::FlowContext::map) calls an agent on every item
//! of a list, at most [`concurrency`](Map::concurrency) at a time (8 unless set), each call a
//! durable agent call like [`FlowContext::call`](crate::FlowContext::call).
//!
//! * **Order**: outputs come in the items' order, whatever order the calls finish in.
//! * **Failures**: `.await` gives the outputs, or the first failure (the calls still in flight
//!   are cancelled, the items not started are not called); [`Map::outcomes`] runs every item and
//!   gives each one's output or failure, by index.
//! * **Replay**: calls start in the items' order as slots free up, and a wake-up polls the calls
//!   in flight in that order with the flow's own waker: on Temporal the same commands come in the
//!   same order on replay.
//! * **History**: a list longer than [`batch_size`](Map::batch_size) (1,000 unless set) runs as
//!   child flows of `batch_size` items each (the built-in flow `flock.map`, on the run's task
//!   queue), one batch after the other, so that the run's history grows by a few events per batch
//!   and each batch's by a few per item: 10,000 items stay far inside Temporal's 51,200 events per
//!   history. The concurrency holds across batches (one batch runs at a time). A batch's items
//!   and outputs travel as its input and output: together they must fit one payload (2 MB on
//!   Temporal without claim-check offload); a batch that does not is a clear error naming
//!   `flock.map`, and a smaller `batch_size` fixes it.
//!
//! Written once, above both executors: the local executor runs the same batches as child flows.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::Agent;
use crate::error::FlowError;
use crate::flow::{Flow, FlowContext, decode, encode};
use crate::guard::ContextOp;
use crate::runtime::ChildCall;
use crate::spec::{AgentSpec, Direction, FlowSpec};

/// How many calls of a map run at once unless [`Map::concurrency`] says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// How many items a map runs in its own run before it runs them as child flows of this many
/// each, unless [`Map::batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// The built-in flow that runs one batch of a map (a child flow of the run that maps).
pub const MAP_FLOW: &str = "flock.map";

/// One item's output, or why it has none.
pub type Outcome<T> = Result<T, FlowError>;

// The method lives here, above the flow module, so that `flow` knows nothing of fan-outs.
impl FlowContext {
    /// Calls `agent` on every item, at most a few at a time, durably (see [`map`](crate::map)):
    /// `.await` it for the outputs in the items' order (the first failure ends it), or take
    /// [`outcomes`](Map::outcomes) for every item's output or failure.
    ///
    /// ```
    /// use flock::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Page { pub url: String }
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Words { pub count: u32 }
    ///
    /// #[agent]
    /// async fn count_words(input: Page) -> Words {
    ///     Words { count: input.url.len() as u32 }
    /// }
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// pub struct Site { pub urls: Vec<String> }
    ///
    /// #[flow]
    /// async fn count_site(ctx: &FlowContext, input: Site) -> Result<Words, FlowError> {
    ///     let pages = input.urls.into_iter().map(|url| Page { url });
    ///     let counts = ctx.map(count_words, pages).concurrency(8).await?;
    ///     Ok(Words { count: counts.iter().map(|w| w.count).sum() })
    /// }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let flock = flock::Flock::builder().build().await.unwrap();
    /// let urls = vec!["a".repeat(3), "b".repeat(4)];
    /// let total = flock.run_flow(count_site, Site { urls }).await.unwrap();
    /// assert_eq!(total.count, 7);
    /// # });
    /// ```
    pub fn map<A: Agent>(&self, agent: A, items: impl IntoIterator<Item = A::Input>) -> Map<'_, A> {
        Map::new(self, agent, items.into_iter().collect())
    }
}

/// A fan-out of one agent over a list: set it up, then `.await` it or take its
/// [`outcomes`](Self::outcomes). Made by [`FlowContext::map`](crate::FlowContext::map).
#[must_use = "a map calls nothing until it is awaited"]
pub struct Map<'a, A: Agent> {
    ctx: &'a FlowContext,
    agent: A,
    items: Vec<A::Input>,
    concurrency: usize,
    batch_size: usize,
}

impl<'a, A: Agent> Map<'a, A> {
    pub(crate) fn new(ctx: &'a FlowContext, agent: A, items: Vec<A::Input>) -> Self {
        Map {
            ctx,
            agent,
            items,
            concurrency: DEFAULT_CONCURRENCY,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// At most `n` calls in flight at once (at least 1; 0 fails the map, naming the agent).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Lists longer than `n` items run as child flows of `n` items each (at least 1); see the
    /// [module docs](self).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Runs every item and gives each one's output or failure, in the items' order. The outer
    /// error is the map's own: a setting of 0, or a batch that could not run (its payload).
    pub async fn outcomes(self) -> Result<Vec<Outcome<A::Output>>, FlowError> {
        let outcomes = self.run(false).await?;
        Ok(outcomes.into_iter().map(typed::<A>).collect())
    }

    async fn run(self, fail_fast: bool) -> Result<Vec<Option<Outcome<Value>>>, FlowError> {
        let ctx = self.ctx;
        let spec = self.agent.spec();
        check_settings(A::NAME, self.concurrency, self.batch_size)?;
        let limit = ctx.payload_limit();
        // An item that cannot be sent fails itself (or, failing fast, the map) before any call.
        let mut items = Vec::with_capacity(self.items.len());
        let mut outcomes: Vec<Option<Outcome<Value>>> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            match encode("agent", A::NAME, Direction::Input, item, limit) {
                Ok(json) => {
                    items.push(Some(json));
                    outcomes.push(None);
                }
                Err(error) if fail_fast => return Err(error),
                Err(error) => {
                    items.push(None);
                    outcomes.push(Some(Err(error)));
                }
            }
        }
        drop(self.items);
        let settings = Settings {
            concurrency: self.concurrency,
            fail_fast,
        };
        if items.len() <= self.batch_size {
            let sent = items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| item.map(|json| (i, json)));
            for (i, outcome) in Window::new(ctx, spec, sent, settings).await {
                outcomes[i] = Some(outcome);
            }
        } else {
            run_batches(ctx, spec, items, self.batch_size, settings, &mut outcomes).await?;
        }
        if fail_fast
            && let Some(first) = outcomes.iter().position(|o| matches!(o, Some(Err(_))))
            && let Some(Err(error)) = outcomes.swap_remove(first)
        {
            return Err(error);
        }
        Ok(outcomes)
    }
}

impl<'a, A: Agent> IntoFuture for Map<'a, A> {
    type Output = Result<Vec<A::Output>, FlowError>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.run(true).await?.into_iter().map(typed::<A>).collect() })
    }
}

/// An item's outcome as agent `A`'s output; an item never called (failing fast) says so.
fn typed<A: Agent>(outcome: Option<Outcome<Value>>) -> Outcome<A::Output> {
    match outcome {
        Some(outcome) => outcome.and_then(|v| decode(A::NAME, Direction::Output, v)),
        None => Err(FlowError::Failed {
            message: format!(
                "`ctx.map({}, ..)`: the item was not called (an earlier item failed)",
                A::NAME
            ),
        }),
    }
}

fn check_settings(agent: &str, concurrency: usize, batch_size: usize) -> Result<(), FlowError> {
    for (setting, value, why) in [
        ("concurrency", concurrency, "no call could ever start"),
        ("batch_size", batch_size, "no batch could hold an item"),
    ] {
        if value == 0 {
            return Err(FlowError::Failed {
                message: format!("`ctx.map({agent}, ..).{setting}(0)`: {why}; give at least 1"),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Settings {
    concurrency: usize,
    fail_fast: bool,
}

/// The items of one list in batches of `batch_size`, each a child run of [`MAP_FLOW`], one after
/// the other; failing fast, the batches after a failure are not run.
async fn run_batches(
    ctx: &FlowContext,
    spec: &'static AgentSpec,
    items: Vec<Option<Value>>,
    batch_size: usize,
    settings: Settings,
    outcomes: &mut [Option<Outcome<Value>>],
) -> Result<(), FlowError> {
    let limit = ctx.payload_limit();
    let mut items = items.into_iter().enumerate().peekable();
    while items.peek().is_some() {
        let batch: Vec<(usize, Value)> = items
            .by_ref()
            .take(batch_size)
            .filter_map(|(i, item)| item.map(|json| (i, json)))
            .collect();
        if batch.is_empty() {
            continue;
        }
        let (indexes, jsons): (Vec<usize>, Vec<Value>) = batch.into_iter().unzip();
        let input = BatchInput {
            agent: spec.name.to_owned(),
            items: jsons,
            settings,
        };
        let input = encode("flow", MAP_FLOW, Direction::Input, &input, limit)?;
        let output = ContextOp(ctx.runtime().call_flow(ChildCall {
            spec: &MAP_SPEC,
            run_id: ctx.child_id(&format!("{}-map", ctx.run_id())),
            input,
        }))
        .await?;
        let output: BatchOutput = decode(MAP_FLOW, Direction::Output, output)?;
        let mut failed = false;
        for (i, outcome) in indexes.into_iter().zip(output.outcomes) {
            failed |= matches!(outcome, Some(Err(_)));
            outcomes[i] = outcome;
        }
        if failed && settings.fail_fast {
            break;
        }
    }
    Ok(())
}

/// Calls one agent on items, at most `concurrency` at once, starting them in order as slots free
/// up; every call is polled with the flow's waker (no inner wakers, as in [`join_all`](
/// crate::join_all)). Gives `(index, outcome)` of every call made; failing fast, it ends at the
/// first failure (dropping the calls in flight cancels them).
struct Window<'a, I> {
    ctx: &'a FlowContext,
    spec: &'static AgentSpec,
    waiting: I,
    running: Vec<(usize, ContextOp<BoxFuture<'a, Outcome<Value>>>)>,
    done: Vec<(usize, Outcome<Value>)>,
    settings: Settings,
}

impl<'a, I: Iterator<Item = (usize, Value)>> Window<'a, I> {
    fn new(ctx: &'a FlowContext, spec: &'static AgentSpec, waiting: I, settings: Settings) -> Self {
        Window {
            ctx,
            spec,
            waiting,
            running: Vec::with_capacity(settings.concurrency.min(1024)),
            done: Vec::new(),
            settings,
        }
    }
}

impl<I> Unpin for Window<'_, I> {}

impl<'a, I: Iterator<Item = (usize, Value)>> Future for Window<'a, I> {
    type Output = Vec<(usize, Outcome<Value>)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            while this.running.len() < this.settings.concurrency {
                let Some((i, input)) = this.waiting.next() else {
                    break;
                };
                this.running.push((i, this.ctx.call_json(this.spec, input)));
            }
            if this.running.is_empty() {
                return Poll::Ready(std::mem::take(&mut this.done));
            }
            let mut finished = false;
            let mut k = 0;
            while k < this.running.len() {
                match Pin::new(&mut this.running[k].1).poll(cx) {
                    Poll::Ready(outcome) => {
                        let (i, _) = this.running.remove(k);
                        let failed = outcome.is_err();
                        this.done.push((i, outcome));
                        finished = true;
                        if failed && this.settings.fail_fast {
                            this.running.clear();
                            return Poll::Ready(std::mem::take(&mut this.done));
                        }
                    }
                    Poll::Pending => k += 1,
                }
            }
            if !finished {
                return Poll::Pending;
            }
        }
    }
}

/// A batch's input: the agent's name, the items' JSON and the map's settings.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct BatchInput {
    agent: String,
    #[schemars(with = "Vec<serde_json::Value>")]
    items: Vec<Value>,
    #[schemars(with = "serde_json::Value")]
    settings: Settings,
}

/// A batch's output: every item's outcome (`None`: not called, failing fast).
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct BatchOutput {
    #[schemars(with = "Vec<serde_json::Value>")]
    outcomes: Vec<Option<Outcome<Value>>>,
}

/// The built-in flow [`MAP_FLOW`]: one batch of a map, in a child run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MapBatch;

static MAP_SPEC: FlowSpec = {
    let mut spec = FlowSpec::new(MAP_FLOW);
    spec.description = "One batch of `ctx.map(agent, items)`: the agent called on each item.";
    spec.location = "flock/src/map.rs";
    spec
};

impl Flow for MapBatch {
    type Input = BatchInput;
    type Output = BatchOutput;
    const NAME: &'static str = MAP_FLOW;

    fn spec(&self) -> &'static FlowSpec {
        &MAP_SPEC
    }

    async fn run(self, ctx: &FlowContext, input: BatchInput) -> Result<BatchOutput, FlowError> {
        let Some(spec) = ctx.runtime().agent_spec(&input.agent) else {
            return Err(FlowError::Failed {
                message: format!(
                    "a batch of `ctx.map({}, ..)`: agent `{}` is not registered where the batch runs",
                    input.agent, input.agent
                ),
            });
        };
        check_settings(spec.name, input.settings.concurrency, 1)?;
        let mut outcomes: Vec<Option<Outcome<Value>>> =
            (0..input.items.len()).map(|_| None).collect();
        let items = input.items.into_iter().enumerate();
        for (i, outcome) in Window::new(ctx, spec, items, input.settings).await {
            outcomes[i] = Some(outcome);
        }
        Ok(BatchOutput { outcomes })
    }
}

static MAP_BATCH: MapBatch = MapBatch;

/// The registration of [`MAP_FLOW`]: every registry with an agent has it.
pub(crate) static REGISTRATION: crate::registry::FlowRegistration =
    crate::__private::flow_registration(&MAP_BATCH);

//! The Temporal executor: agents are activities, flows (and hand-off chains) are workflows, run
//! by workers of the official Rust SDK against a Temporal server.
//!
//! The client side ([`client`]: starting runs, waiting for them, messages, visibility) and the
//! worker side ([`worker`]: worker options, running a worker, replay; [`workflow`] and
//! [`activity`]: the adapters the worker runs) share only what is here: the worker's state and
//! how agent settings become Temporal's options.

mod activity;
pub(crate) mod client;
mod codec;
mod connect;
mod history;
pub(crate) mod worker;
mod workflow;

use std::sync::Arc;

use temporalio_common::RetryPolicy as TemporalRetryPolicy;
use temporalio_sdk::{ActivityOptions, LocalActivityOptions, WorkerOptions};

use activity::AgentActivity;
pub(crate) use client::TemporalBackend;
pub(crate) use connect::connect;
pub use worker::CHECKPOINT_FLUSH;
use workflow::FlowWorkflow;

use super::Settings;
use crate::agent::Agent;
use crate::config::TemporalExecutorConfig;
use crate::error::Error;
use crate::flow::Flow;
use crate::retry::RetryPolicy;
use crate::spec::AgentSpec;

/// What every activity and workflow of a worker shares.
pub(crate) struct WorkerShared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) config: TemporalExecutorConfig,
}

/// What the registration functions of agents and flows (their [`Adapters`]) are handed: the
/// worker options being built.
///
/// [`Adapters`]: crate::registry::Adapters
struct Registrar {
    options: WorkerOptions,
    shared: Arc<WorkerShared>,
    error: Option<Error>,
}

/// Registers agent `A`'s activity (the `temporal` entry of its adapters).
pub(crate) fn register_agent<A: Agent>(registrar: &mut dyn std::any::Any) {
    if let Some(registrar) = registrar.downcast_mut::<Registrar>() {
        registrar
            .options
            .register_activity::<AgentActivity<A>>(registrar.shared.clone());
    }
}

/// Registers flow `F`'s workflow (the `temporal` entry of its adapters).
pub(crate) fn register_flow<F: Flow>(registrar: &mut dyn std::any::Any) {
    if let Some(registrar) = registrar.downcast_mut::<Registrar>() {
        let factory = FlowWorkflow::<F>::factory(registrar.shared.clone());
        if let Err(e) = registrar
            .options
            .register_workflow_with_factory::<FlowWorkflow<F>, _>(factory)
        {
            registrar.error.get_or_insert(Error::Registry(format!(
                "cannot register flow `{}` with Temporal: {e}",
                F::NAME
            )));
        }
    } else if let Some(registrar) = registrar.downcast_mut::<worker::ReplayRegistrar>() {
        let factory = FlowWorkflow::<F>::factory(registrar.shared.clone());
        if let Err(e) = registrar
            .options
            .register_workflow_with_factory::<FlowWorkflow<F>, _>(factory)
        {
            registrar.error.get_or_insert(Error::Registry(format!(
                "cannot register flow `{}` with Temporal: {e}",
                F::NAME
            )));
        }
    }
}

impl WorkerShared {
    /// The workflow types a worker serves: every registered flow and hand-off chain, none in an
    /// agent pool.
    pub(crate) fn served_flows(&self, pool: Option<&worker::AgentPool>) -> worker::ServedFlows {
        let registry = &self.settings.registry;
        match pool {
            Some(_) => worker::ServedFlows::default(),
            None => worker::ServedFlows {
                // flock's own flows (the batches of `ctx.map`) included
                flows: registry
                    .flow_entries()
                    .filter(|entry| !entry.chain)
                    .map(|entry| entry.flow.spec().name)
                    .collect(),
                chains: registry.chains().map(|chain| chain.spec().name).collect(),
            },
        }
    }

    fn retry(policy: &RetryPolicy) -> TemporalRetryPolicy {
        let mut non_retryable: Vec<String> = vec!["Permanent".into(), "InvalidInput".into()];
        non_retryable.extend(policy.non_retryable.iter().map(|c| c.name().to_owned()));
        TemporalRetryPolicy::builder()
            .initial_interval(policy.initial_interval)
            .backoff_coefficient(policy.backoff_coefficient)
            .maximum_interval(policy.max_interval)
            .maximum_attempts(policy.max_attempts)
            .non_retryable_error_types(non_retryable)
            .build()
    }

    pub(crate) fn activity_options(
        &self,
        spec: &AgentSpec,
        policy: &RetryPolicy,
    ) -> ActivityOptions {
        let start_to_close = spec.timeout.unwrap_or(self.config.activity_start_to_close);
        let timeouts = match spec.schedule_to_close {
            Some(schedule_to_close) => {
                temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
                    schedule_to_close,
                    start_to_close,
                }
            }
            None => temporalio_sdk::ActivityCloseTimeouts::StartToClose(start_to_close),
        };
        ActivityOptions::with_close_timeouts(timeouts)
            .maybe_heartbeat_timeout(spec.heartbeat)
            .maybe_task_queue(spec.task_queue.map(str::to_owned))
            .retry_policy(Self::retry(policy))
            // the key only: fairness is the run's, inherited
            .maybe_priority(spec.priority.map(|key| {
                temporalio_client::Priority::builder()
                    .priority_key(key)
                    .build()
            }))
            .build()
    }

    pub(crate) fn local_activity_options(
        &self,
        spec: &AgentSpec,
        policy: &RetryPolicy,
    ) -> LocalActivityOptions {
        // The marker keeps the input (encoded by the codec like every payload, so offloaded
        // when large): the run record shows what each local agent was called with.
        // flock ends an attempt at its start-to-close timeout itself, with a failure naming the
        // attempt; the worker's own timer, a moment later, is the backstop
        let start_to_close = spec.timeout.unwrap_or(self.config.activity_start_to_close);
        LocalActivityOptions::builder()
            .include_arguments_in_marker(true)
            .start_to_close_timeout(start_to_close + activity::LOCAL_DEADLINE_MARGIN)
            .maybe_schedule_to_close_timeout(spec.schedule_to_close)
            .retry_policy(Self::retry(policy))
            .build()
    }
}

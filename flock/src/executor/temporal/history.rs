//! The run record of a Temporal run, read back from the server's history: the agents (activities)
//! it scheduled, their attempts, inputs, outputs and errors, and its child flows.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use temporalio_client::{Client, WorkflowFetchHistoryOptions};
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use super::activity::open_envelope;

use crate::error::{AgentError, ErrorClass, FlowError};
use crate::record::{AttemptRecord, RunRecord, RunStatus, StepRecord, UndeliveredMessage};
use crate::registry::Registry;
use crate::spec::{FlowSpec, MessageKind};

mod proto_json;
pub(crate) use proto_json::history_from_json;

/// How deep child flows are followed.
const MAX_DEPTH: usize = 8;

/// Fills `record`'s steps and children from the history of workflow `run_id` (agents run as
/// local activities from their markers). A history that cannot be read or decoded (a key the
/// client lacks) is an error naming the run and the reason.
pub(crate) async fn fill_record(
    client: &Client,
    registry: &Registry,
    record: &mut RunRecord,
) -> Result<(), String> {
    fill(client, registry, record, 0, None, false).await
}

/// Like [`fill_record`], and the run's status, output and timing come from the history too (a
/// run started elsewhere, perhaps still running).
pub(crate) async fn fill_from_history(
    client: &Client,
    registry: &Registry,
    record: &mut RunRecord,
) -> Result<(), String> {
    fill(client, registry, record, 0, None, true).await?;
    add_pending(client, record).await;
    Ok(())
}

/// The steps of generation `generation` (a Temporal run id) of workflow `run_id` of `flow`, from
/// its history alone (what a run's live events read when the history grew).
pub(crate) async fn generation_steps(
    client: &Client,
    registry: &Registry,
    run_id: &str,
    flow: &str,
    generation: &str,
) -> Result<Vec<crate::record::StepRecord>, String> {
    let mut record = RunRecord::summary(
        run_id,
        flow,
        SystemTime::now(),
        Duration::ZERO,
        Value::Null,
        &Ok(Value::Null),
    );
    // past both limits: neither earlier generations nor child flows are followed
    fill(
        client,
        registry,
        &mut record,
        MAX_DEPTH.max(MAX_GENERATIONS),
        (!generation.is_empty()).then(|| generation.to_owned()),
        true,
    )
    .await?;
    Ok(record.steps)
}

/// What pending activity `activity` shows a run's live events of its step: its attempt, why the
/// last one failed and how long until a retry starts, and the text its model streamed so far
/// (from its heartbeat details, decoded with the client's codec), with the attempt that
/// streamed it.
pub(crate) async fn pending_step(
    client: &Client,
    activity: &temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo,
    step: &mut crate::events::StepSnapshot,
) {
    use temporalio_common::data_converters::SerializationContextData;
    use temporalio_common::protos::temporal::api::enums::v1::PendingActivityState;
    step.attempt = u32::try_from(activity.attempt).unwrap_or(1).max(1);
    step.last_failure = activity
        .last_failure
        .as_ref()
        .map(|failure| error_of(Some(failure)).to_string());
    step.retry_in = (activity.state == PendingActivityState::Scheduled as i32)
        .then_some(activity.next_attempt_schedule_time.as_ref())
        .flatten()
        .and_then(|t| {
            let at = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
                u64::try_from(t.seconds).ok()?,
                u32::try_from(t.nanos).ok()?,
            ))?;
            Some(at.duration_since(SystemTime::now()).unwrap_or_default())
        });
    if let Some(details) = &activity.heartbeat_details {
        let mut details = details.clone();
        let codec = client.options().data_converter.codec();
        let decoded = temporalio_common::payload_visitor::decode_payloads(
            &mut details,
            codec,
            &SerializationContextData::None,
        )
        .await;
        let value = decoded.map(|()| json_of(Some(&details)));
        if let Ok(value) = value
            && let Some(streamed) = value["text"].as_str()
        {
            let by = value["attempt"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1);
            step.text = Some((by, streamed.to_owned()));
        }
    }
}

/// Why workflow `run_id` was terminated, and by whom, from its terminated event: a person's
/// `--reason`, or the server's (a workflow task it could not accept).
pub(crate) async fn termination_reason(client: &Client, run_id: &str) -> Option<String> {
    let events = client
        .get_workflow_handle::<UntypedWorkflow>(run_id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .ok()?;
    events
        .iter()
        .rev()
        .find_map(|event| match &event.attributes {
            Some(Attributes::WorkflowExecutionTerminatedEventAttributes(a)) => {
                let by = if a.identity.is_empty() {
                    String::new()
                } else {
                    format!(" (by {})", a.identity)
                };
                let why = match a.reason.as_str() {
                    "GrpcMessageTooLarge" | "RequestTooLarge" => {
                        ": the flow scheduled more data at once than one workflow task may carry \
                     (about 4 MiB: the inputs of the calls it started together); start fewer \
                     large calls at once, offload large payloads with `Codec::with_offload`, or \
                     pass references (a path, URL or id) instead of the data"
                    }
                    _ => "",
                };
                Some(format!("{}{by}{why}", a.reason))
            }
            _ => None,
        })
}

/// Whether pending activity `activity` is the step with activity id `activity_id` (steps of one
/// name may run at once), or for a step the history names no id for, the step named `name`.
pub(crate) fn is_pending(
    activity_id: Option<&str>,
    name: &str,
    activity: &temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo,
) -> bool {
    match activity_id {
        Some(id) => activity.activity_id == id,
        None => activity.activity_type.as_ref().map(|t| t.name.as_str()) == Some(name),
    }
}

/// Temporal writes an activity's started event only when the activity closes, so the attempts
/// running now are known from the run's description (its pending activities), not its history.
async fn add_pending(client: &Client, record: &mut RunRecord) {
    use temporalio_common::protos::temporal::api::enums::v1::PendingActivityState;
    let Ok(description) = client
        .get_workflow_handle::<UntypedWorkflow>(record.run_id.clone())
        .describe(Default::default())
        .await
    else {
        return;
    };
    let mut pending: Vec<_> = description
        .raw_description
        .pending_activities
        .iter()
        .collect();
    for step in record
        .steps
        .iter_mut()
        .filter(|s| s.output.is_none() && s.error.is_none())
    {
        let Some(i) = pending
            .iter()
            .position(|p| is_pending(step.activity_id.as_deref(), &step.agent, p))
        else {
            continue;
        };
        let activity = pending.remove(i);
        if activity.state != PendingActivityState::Started as i32 && activity.attempt <= 1 {
            continue;
        }
        let attempt = u32::try_from(activity.attempt).unwrap_or(1).max(1);
        step.attempts = (1..=attempt)
            .map(|n| AttemptRecord {
                attempt: n,
                started: step.started,
                duration: Duration::ZERO,
                error: (n < attempt).then(|| error_of(activity.last_failure.as_ref())),
            })
            .collect();
    }
}

/// How many earlier runs (continue-as-new generations) a record links.
const MAX_GENERATIONS: usize = 64;

fn fill<'a>(
    client: &'a Client,
    registry: &'a Registry,
    record: &'a mut RunRecord,
    depth: usize,
    temporal_run: Option<String>,
    top_from_history: bool,
) -> futures::future::BoxFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let mut info = client
            .get_workflow_handle::<UntypedWorkflow>(record.run_id.clone())
            .info()
            .clone();
        info.run_id = temporal_run.clone();
        let handle =
            temporalio_client::WorkflowHandle::<_, UntypedWorkflow>::new(client.clone(), info);
        let mut events = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .map_err(|error| {
                format!(
                    "cannot read the history of run `{}`: {error}",
                    record.run_id
                )
            })?;
        decode_events(client, &mut events).await.map_err(|error| {
            format!(
                "cannot decode the history of run `{}`: {error}",
                record.run_id
            )
        })?;
        let flow = registry.flow(&record.name).map(|flow| flow.spec());
        let children = steps_from(
            &events,
            record,
            flow,
            top_from_history || depth > 0 || temporal_run.is_some(),
        );
        let continued_from = events.first().and_then(|event| match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                if !a.continued_execution_run_id.is_empty() =>
            {
                Some(a.continued_execution_run_id.clone())
            }
            _ => None,
        });
        if let Some(previous_run) = continued_from
            && depth < MAX_GENERATIONS
        {
            let mut previous = RunRecord::summary(
                &record.run_id,
                &record.name,
                record.started_at,
                Duration::ZERO,
                Value::Null,
                &Ok(Value::Null),
            );
            previous.output = None;
            fill(
                client,
                registry,
                &mut previous,
                depth + 1,
                Some(previous_run),
                true,
            )
            .await?;
            previous.status = RunStatus::ContinuedAsNew;
            previous.output = None;
            previous.error = None;
            record.previous = Some(Box::new(previous));
        }
        for step in &mut record.steps {
            if let Some(result) = step.output.take() {
                let streamed_flag = result["streamed"] == true;
                step.streamed = result["streamed"].as_str().map(str::to_owned);
                let (output, usage) = open_envelope(result);
                if streamed_flag {
                    // a model step whose model streamed: its output is the text
                    step.streamed = output["response"]["content"].as_str().map(str::to_owned);
                }
                step.output = Some(output);
                step.usage = usage;
            }
        }
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        for (run_id, name) in children {
            let mut child = RunRecord::summary(
                &run_id,
                &name,
                record.started_at,
                Duration::ZERO,
                Value::Null,
                &Ok(Value::Null),
            );
            child.output = None;
            fill(client, registry, &mut child, depth + 1, None, true).await?;
            record.children.push(child);
        }
        Ok(())
    })
}

fn time_of(event: &HistoryEvent) -> Option<SystemTime> {
    let t = event.event_time.as_ref()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(
        u64::try_from(t.seconds).ok()?,
        u32::try_from(t.nanos).ok()?,
    ))
}

/// The marker the SDK records for a local activity's outcome.
const LOCAL_ACTIVITY_MARKER: &str = "core_local_activity";

/// A protobuf timestamp as the marker data's JSON spells it (`{seconds, nanos}`).
fn timestamp(value: &Value) -> Option<SystemTime> {
    let seconds = value["seconds"].as_u64()?;
    let nanos = value["nanos"].as_u64().unwrap_or(0) as u32;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

fn json_of(payloads: Option<&Payloads>) -> Value {
    payloads
        .and_then(|p| p.payloads.first())
        .and_then(|p| serde_json::from_slice(&p.data).ok())
        .unwrap_or(Value::Null)
}

/// Decodes the payloads of `events` with the client's codec (the history holds them encoded).
/// Outside a workflow context, so a payload that does not decode is an error (in a workflow
/// context the codec stands a reason-carrying payload in for it).
async fn decode_events(
    client: &Client,
    events: &mut [HistoryEvent],
) -> Result<(), temporalio_common::data_converters::PayloadConversionError> {
    use temporalio_common::data_converters::SerializationContextData;
    let codec = client.options().data_converter.codec();
    let context = SerializationContextData::None;
    for event in events.iter_mut() {
        temporalio_common::payload_visitor::decode_payloads(event, codec, &context).await?;
    }
    Ok(())
}

/// A failure's message: from its encoded attributes when the failure converter moved it there
/// (with a payload codec), else its plain message.
pub(crate) fn message_of(failure: &Failure) -> String {
    let attributes = failure
        .encoded_attributes
        .as_ref()
        .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok());
    match &attributes {
        Some(attributes) => match crate::codec::undecodable_reason(attributes) {
            Some(reason) => format!("(the failure message cannot be decoded: {reason})"),
            None => attributes["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| failure.message.clone()),
        },
        None => failure.message.clone(),
    }
}

fn error_of(failure: Option<&Failure>) -> AgentError {
    let Some(failure) = failure else {
        return AgentError::transient("failed without a recorded failure");
    };
    match &failure.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => {
            let class = ErrorClass::from_name(&info.r#type).unwrap_or(ErrorClass::Transient);
            AgentError::from_class(class, message_of(failure), None)
        }
        Some(FailureInfo::TimeoutFailureInfo(_)) => {
            AgentError::transient(format!("timed out: {}", message_of(failure)))
        }
        _ => AgentError::transient(message_of(failure)),
    }
}

/// Builds the steps; returns the child workflows (id, type) to follow. For a child run
/// (`from_history`), its timing and outcome come from the history too.
fn steps_from(
    events: &[HistoryEvent],
    record: &mut RunRecord,
    flow: Option<&'static FlowSpec>,
    from_history: bool,
) -> Vec<(String, String)> {
    let start = events
        .first()
        .and_then(time_of)
        .unwrap_or(record.started_at);
    let since = |event: &HistoryEvent| {
        time_of(event)
            .and_then(|t| t.duration_since(start).ok())
            .unwrap_or_default()
    };
    let mut by_scheduled: HashMap<i64, usize> = HashMap::new();
    let mut steps: Vec<StepRecord> = Vec::new();
    let mut children = Vec::new();
    for event in events {
        match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                record.input = json_of(a.input.as_ref());
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                by_scheduled.insert(event.event_id, steps.len());
                steps.push(StepRecord {
                    activity_id: Some(a.activity_id.clone()),
                    agent: a
                        .activity_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                    started: since(event),
                    duration: Duration::ZERO,
                    input: json_of(a.input.as_ref()),
                    output: None,
                    error: None,
                    attempts: Vec::new(),
                    usage: Default::default(),
                    streamed: None,
                });
            }
            Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                if let Some(step) = by_scheduled
                    .get(&a.scheduled_event_id)
                    .and_then(|i| steps.get_mut(*i))
                {
                    // Temporal records only the last attempt's start, with the failure before it;
                    // every earlier attempt failed too, with a failure it does not keep.
                    let last = u32::try_from(a.attempt).unwrap_or(1).max(1);
                    step.attempts = (1..=last)
                        .map(|attempt| AttemptRecord {
                            attempt,
                            started: if attempt == last {
                                since(event)
                            } else {
                                step.started
                            },
                            duration: Duration::ZERO,
                            error: if attempt + 1 == last {
                                Some(error_of(a.last_failure.as_ref()))
                            } else if attempt < last {
                                Some(AgentError::transient(
                                    "failed (Temporal's history keeps only the last attempt's failure)",
                                ))
                            } else {
                                None
                            },
                        })
                        .collect();
                }
            }
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                if let Some(step) = by_scheduled
                    .get(&a.scheduled_event_id)
                    .and_then(|i| steps.get_mut(*i))
                {
                    step.output = Some(json_of(a.result.as_ref()));
                    close(step, since(event), None);
                }
            }
            Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
                if let Some(step) = by_scheduled
                    .get(&a.scheduled_event_id)
                    .and_then(|i| steps.get_mut(*i))
                {
                    close(step, since(event), Some(error_of(a.failure.as_ref())));
                }
            }
            Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
                if let Some(step) = by_scheduled
                    .get(&a.scheduled_event_id)
                    .and_then(|i| steps.get_mut(*i))
                {
                    close(step, since(event), Some(error_of(a.failure.as_ref())));
                }
            }
            Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) => {
                let name = a
                    .workflow_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                children.push((a.workflow_id.clone(), name));
            }
            Some(Attributes::MarkerRecordedEventAttributes(a))
                if a.marker_name == LOCAL_ACTIVITY_MARKER =>
            {
                // An agent run as a local activity: one marker when it completed or failed for
                // good, with its attempt count and its input (`include_arguments_in_marker`).
                let data = json_of(a.details.get("data"));
                let attempt = data["attempt"].as_u64().unwrap_or(1).max(1) as u32;
                let at = since(event);
                let started = timestamp(&data["original_schedule_time"])
                    .and_then(|t| t.duration_since(start).ok())
                    .unwrap_or(at);
                let error = a.failure.as_ref().map(|f| error_of(Some(f)));
                let attempts = (1..=attempt)
                    .map(|n| AttemptRecord {
                        attempt: n,
                        started,
                        duration: if n == attempt {
                            at.saturating_sub(started)
                        } else {
                            Duration::ZERO
                        },
                        error: if n == attempt {
                            error.clone()
                        } else {
                            Some(AgentError::transient(
                                "failed (a local activity's marker keeps only the final outcome)",
                            ))
                        },
                    })
                    .collect();
                steps.push(StepRecord {
                    agent: data["activity_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    started,
                    duration: at.saturating_sub(started),
                    input: json_of(a.details.get("input")),
                    output: error.is_none().then(|| json_of(a.details.get("result"))),
                    error,
                    attempts,
                    usage: Default::default(),
                    streamed: None,
                    activity_id: None,
                });
            }
            Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) => {
                // what the worker checked before it delivered the signal (see `dispatch_signal`)
                let value = json_of(a.input.as_ref());
                if let Some(flow) = flow
                    && let Err(reason) =
                        flow.check_message(MessageKind::Signal, &a.signal_name, &value)
                {
                    record.undelivered.push(UndeliveredMessage {
                        kind: "signal".to_owned(),
                        name: a.signal_name.clone(),
                        at: since(event),
                        reason,
                    });
                }
            }
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) if from_history => {
                record.status = RunStatus::Completed;
                record.output = Some(json_of(a.result.as_ref()));
            }
            Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) if from_history => {
                record.status = RunStatus::Failed;
                record.error = Some(FlowError::msg(
                    a.failure.as_ref().map(message_of).unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
    if from_history {
        if let Some(first) = events.first().and_then(time_of) {
            record.started_at = first;
        }
        record.duration = events.last().map(since).unwrap_or_default();
    }
    record.steps = steps;
    children
}

fn close(step: &mut StepRecord, at: Duration, error: Option<AgentError>) {
    step.duration = at.saturating_sub(step.started);
    if let Some(last) = step.attempts.last_mut() {
        last.duration = at.saturating_sub(last.started);
        last.error = error.clone();
    }
    step.error = error;
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::protos::temporal::api::common::v1::ActivityType;
    use temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo;

    #[test]
    fn running_steps_of_one_name_are_told_apart_by_activity_id() {
        let pending = |id: &str| PendingActivityInfo {
            activity_id: id.to_owned(),
            activity_type: Some(ActivityType {
                name: "writer".into(),
            }),
            ..Default::default()
        };
        // the server lists them in any order
        let listed = [pending("2"), pending("1")];
        assert!(!is_pending(Some("1"), "writer", &listed[0]));
        assert!(is_pending(Some("1"), "writer", &listed[1]));
        assert!(is_pending(Some("2"), "writer", &listed[0]));
        // a step without an id (a local activity's marker) goes by name
        assert!(is_pending(None, "writer", &listed[0]));
        assert!(!is_pending(None, "reader", &listed[0]));
    }
}

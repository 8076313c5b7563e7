//! Workflow histories as JSON, in both spellings: the one `Flock::history_json` writes (the
//! Temporal SDK's serde field names: `event_id`, enums as numbers, every field present) and
//! proto3 JSON, which `temporal workflow show --output json`, the Web UI's download and the other
//! SDKs write (`eventId`, enums by name, 64-bit integers as strings, default values left out,
//! an event's attributes under their own key).
//!
//! The SDK reads only the first. Proto3 JSON is read into the same types through a deserializer
//! over the parsed JSON that the types themselves steer: a struct's field is found under its
//! camelCase name too, a field left out is its default value, a number may be a string, an enum
//! may be its value's name. Messages whose serde comes from `pbjson` (the `common`, `failure`
//! and `enums` packages: payloads, failures) read proto3 JSON themselves and are handed the JSON
//! as it is.

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};
use temporalio_common::protos::temporal::api::history::v1::History;

/// A history from JSON in either spelling; the error says what does not fit, and where.
pub(crate) fn history_from_json(bytes: &[u8]) -> Result<History, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let proto3 = value["events"]
        .as_array()
        .and_then(|events| events.first())
        .is_some_and(|event| event.get("eventId").is_some() || event.get("eventType").is_some());
    if !proto3 {
        return serde_json::from_value(value).map_err(|e| e.to_string());
    }
    History::deserialize(Proto3(hoist_attributes(value))).map_err(|e| e.to_string())
}

/// Proto3 JSON writes an event's attributes (a `oneof`) as a field of the event,
/// `"workflowExecutionStartedEventAttributes": {..}`; the SDK's types read them as
/// `"attributes": {"WorkflowExecutionStartedEventAttributes": {..}}`.
fn hoist_attributes(mut history: Value) -> Value {
    if let Some(events) = history.get_mut("events").and_then(Value::as_array_mut) {
        for event in events.iter_mut().filter_map(Value::as_object_mut) {
            let key = event
                .keys()
                .find(|key| key.ends_with("EventAttributes"))
                .cloned();
            if let Some(key) = key
                && let Some(attributes) = event.remove(&key)
            {
                let mut variant = key;
                if let Some(first) = variant.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                let mut oneof = Map::new();
                oneof.insert(variant, attributes);
                event.insert("attributes".into(), Value::Object(oneof));
            }
        }
    }
    history
}

/// `workflowTaskTimeout` → `workflow_task_timeout`.
fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// The number of a Temporal enum value given by name (`EVENT_TYPE_WORKFLOW_EXECUTION_STARTED`):
/// value names carry their enum's name, so they are unique across the API.
fn enum_number(name: &str) -> Option<i32> {
    use temporalio_common::protos::temporal::api::enums::v1::*;
    macro_rules! any_of {
        ($($enum:ident),* $(,)?) => {
            None$(.or_else(|| $enum::from_str_name(name).map(|value| value as i32)))*
        };
    }
    any_of!(
        EncodingType,
        IndexedValueType,
        Severity,
        CallbackState,
        PendingNexusOperationState,
        NexusOperationCancellationState,
        WorkflowRuleActionScope,
        ApplicationErrorCategory,
        WorkerStatus,
        ExecutionType,
        EventType,
        ResetReapplyExcludeType,
        ResetReapplyType,
        ResetType,
        WorkflowIdReusePolicy,
        WorkflowIdConflictPolicy,
        ParentClosePolicy,
        ContinueAsNewInitiator,
        WorkflowExecutionStatus,
        PendingActivityState,
        PendingWorkflowTaskState,
        HistoryEventFilterType,
        RetryState,
        TimeoutType,
        VersioningBehavior,
        ContinueAsNewVersioningBehavior,
        SuggestContinueAsNewReason,
        NexusHandlerErrorRetryBehavior,
        NexusOperationExecutionStatus,
        NexusOperationWaitStage,
        NexusOperationIdReusePolicy,
        NexusOperationIdConflictPolicy,
        UpdateWorkflowExecutionLifecycleStage,
        UpdateAdmittedEventOrigin,
        WorkflowTaskFailedCause,
        ActivityTaskFailedCause,
        StartChildWorkflowExecutionFailedCause,
        CancelExternalWorkflowExecutionFailedCause,
        SignalExternalWorkflowExecutionFailedCause,
        ResourceExhaustedCause,
        ResourceExhaustedScope,
        BatchOperationType,
        BatchOperationState,
        NamespaceState,
        ArchivalState,
        ReplicationState,
        QueryResultType,
        QueryRejectCondition,
        TaskQueueKind,
        TaskQueueType,
        TaskReachability,
        BuildIdTaskReachability,
        DescribeTaskQueueMode,
        RateLimitSource,
        RoutingConfigUpdateState,
        DeploymentReachability,
        VersionDrainageStatus,
        WorkerVersioningMode,
        WorkerDeploymentVersionStatus,
        FastForwardPollingResult,
        ActivityExecutionStatus,
        ActivityIdReusePolicy,
        ActivityIdConflictPolicy,
        CommandType,
        ScheduleOverlapPolicy,
    )
}

type Error = serde_json::Error;

/// Proto3 JSON, read into serde-derived protobuf types (see the module docs).
struct Proto3(Value);

impl Proto3 {
    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(text) => {
                if let Ok(n) = text.parse::<i64>() {
                    visitor.visit_i64(n)
                } else if let Ok(n) = text.parse::<u64>() {
                    visitor.visit_u64(n)
                } else if let Some(n) = enum_number(&text) {
                    visitor.visit_i32(n)
                } else {
                    Err(de::Error::custom(format!(
                        "`{text}` is neither a number nor a Temporal enum value"
                    )))
                }
            }
            Value::Null => visitor.visit_i64(0),
            other => other.deserialize_any(visitor),
        }
    }
}

impl<'de> Deserializer<'de> for Proto3 {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(fields) => visitor.visit_map(Fields::plain(fields)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.integer(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(text) => match text.as_str() {
                "NaN" => visitor.visit_f64(f64::NAN),
                "Infinity" => visitor.visit_f64(f64::INFINITY),
                "-Infinity" => visitor.visit_f64(f64::NEG_INFINITY),
                _ => visitor.visit_f64(text.parse().map_err(de::Error::custom)?),
            },
            Value::Null => visitor.visit_f64(0.0),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_bool(false),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_str(""),
            other => other.deserialize_any(visitor),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Proto3(other)),
        }
    }

    /// A repeated field; `bytes` (a `Vec<u8>` to serde) is base64 in proto3 JSON.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        use base64::Engine as _;
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Null => visitor.visit_seq(Items(Vec::new().into_iter())),
            Value::String(text) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&text))
                    .map_err(|e| de::Error::custom(format!("bytes that are not base64: {e}")))?;
                let items = bytes.into_iter().map(Value::from).collect::<Vec<_>>();
                visitor.visit_seq(Items(items.into_iter()))
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(fields) => visitor.visit_map(Fields::plain(fields)),
            Value::Null => visitor.visit_map(Fields::plain(Map::new())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            // pbjson's messages are named by their full protobuf name: they read proto3 JSON
            Value::Object(object) if name.contains('.') => visitor.visit_map(Fields::plain(object)),
            Value::Object(object) => visitor.visit_map(Fields::message(object, fields)),
            Value::Null => visitor.visit_map(Fields::message(Map::new(), fields)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(object) if object.len() == 1 => {
                let (variant, value) = object.into_iter().next().expect("one entry");
                visitor.visit_enum(Variant { variant, value })
            }
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

/// A JSON array's items, each read as proto3 JSON.
struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Proto3(item)))
            .transpose()
    }
}

/// A JSON object's entries. For a serde-derived message (`fields` known), each key is matched
/// to a field by its name or its camelCase name, and the fields the JSON leaves out follow with
/// their default values.
struct Fields {
    entries: serde_json::map::IntoIter,
    fields: &'static [&'static str],
    seen: Vec<&'static str>,
    missing: std::slice::Iter<'static, &'static str>,
    value: Option<Value>,
}

impl Fields {
    fn plain(object: Map<String, Value>) -> Fields {
        Fields::message(object, &[])
    }

    fn message(object: Map<String, Value>, fields: &'static [&'static str]) -> Fields {
        Fields {
            entries: object.into_iter(),
            fields,
            seen: Vec::new(),
            missing: fields.iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fields {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if let Some((key, value)) = self.entries.next() {
            let key = if self.fields.is_empty() || self.fields.contains(&key.as_str()) {
                key
            } else {
                snake_case(&key)
            };
            if let Some(field) = self.fields.iter().find(|f| **f == key) {
                self.seen.push(field);
            }
            self.value = Some(value);
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        for field in self.missing.by_ref() {
            if !self.seen.contains(field) {
                self.value = None;
                return seed.deserialize((*field).into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Proto3(value)),
            // a field proto3 JSON leaves out: its default value
            None => seed.deserialize(Proto3(Value::Null)),
        }
    }
}

/// A `oneof` (a serde enum): `{"Variant": value}`.
struct Variant {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Error;
    type Variant = Proto3;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Proto3), Error> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, Proto3(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for Proto3 {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_snake_case() {
        assert_eq!(snake_case("workflowTaskTimeout"), "workflow_task_timeout");
        assert_eq!(snake_case("eventId"), "event_id");
        assert_eq!(snake_case("input"), "input");
    }

    #[test]
    fn a_proto3_event_reads_like_the_sdks_own_json() {
        let proto3 = serde_json::json!({"events": [{
            "eventId": "1",
            "eventTime": "2026-01-02T03:04:05.123456789Z",
            "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "taskId": "1048576",
            "workflowExecutionStartedEventAttributes": {
                "workflowType": {"name": "review"},
                "taskQueue": {"name": "q", "kind": "TASK_QUEUE_KIND_NORMAL"},
                "input": {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IngiCg=="}]},
                "workflowTaskTimeout": "10s",
                "originalExecutionRunId": "r-1",
                "attempt": 1,
                "header": {"fields": {"_tracer-data": {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "e30="}}}
            }
        }]});
        let history = history_from_json(&serde_json::to_vec(&proto3).unwrap()).unwrap();
        let event = &history.events[0];
        assert_eq!(
            (event.event_id, event.task_id, event.event_type),
            (1, 1_048_576, 1)
        );
        assert!(!event.worker_may_ignore);
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
        let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) = &event.attributes
        else {
            panic!("no started attributes: {event:?}");
        };
        assert_eq!(started.workflow_type.as_ref().unwrap().name, "review");
        assert_eq!(started.task_queue.as_ref().unwrap().kind, 1);
        assert_eq!(started.original_execution_run_id, "r-1");
        assert_eq!(started.workflow_task_timeout.as_ref().unwrap().seconds, 10);
        assert_eq!(started.input.as_ref().unwrap().payloads[0].data, b"\"x\"\n");
        assert!(
            started
                .header
                .as_ref()
                .unwrap()
                .fields
                .contains_key("_tracer-data")
        );
        // and the SDK's own spelling round-trips through the same function
        let own = serde_json::to_vec(&history).unwrap();
        assert_eq!(history_from_json(&own).unwrap(), history);
    }

    #[test]
    fn an_unknown_enum_value_is_named() {
        let proto3 = serde_json::json!({"events": [{"eventId": "1", "eventType": "EVENT_TYPE_FROM_THE_FUTURE"}]});
        let error = history_from_json(&serde_json::to_vec(&proto3).unwrap()).unwrap_err();
        assert!(error.contains("EVENT_TYPE_FROM_THE_FUTURE"), "{error}");
    }
}

//! Property tests: hostile model output (arbitrary and adversarial JSON: deep nesting, huge
//! numbers, invalid escapes and lone surrogates, duplicate keys, 10 MB strings) fed to the answer
//! parser and arbitrary schemas to the strict-schema sanitizer: never a panic, always a
//! classified error. 100,000+ cases by default; `PROPTEST_CASES=N` scales every test (the long
//! run in BENCHMARKS.md uses 2,000,000).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::OutputFormat;
use super::schema::strict_schema;

/// `default` cases, or `PROPTEST_CASES` scaled by `default / 100_000` (so that the whole run
/// is about `PROPTEST_CASES` cases).
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| (n * u64::from(default) / 100_000).max(1) as u32)
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("properties".to_owned()),
                    Just("required".to_owned()),
                    Just("items".to_owned()),
                    Just("enum".to_owned()),
                    Just("anyOf".to_owned()),
                    Just("$ref".to_owned()),
                    Just("$defs".to_owned()),
                    Just("minimum".to_owned()),
                    Just("additionalProperties".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text a hostile model might answer: JSON, mangled.
fn hostile_text() -> impl Strategy<Value = String> {
    let base = || value().prop_map(|v| v.to_string());
    prop_oneof![
        3 => base(),
        // prose and fences around it, or cut off
        1 => (base(), "[ a-z`{}]{0,8}", "[ a-z`{}]{0,8}")
            .prop_map(|(json, pre, post)| format!("{pre}{json}{post}")),
        1 => base().prop_map(|json| format!("```json\n{json}\n```")),
        1 => (base(), any::<prop::sample::Index>())
            .prop_map(|(json, cut)| {
                let mut end = cut.index(json.len() + 1).min(json.len());
                while !json.is_char_boundary(end) {
                    end -= 1;
                }
                json[..end].to_owned()
            }),
        // deep nesting, past the parser's recursion limit or not
        1 => (1usize..3000, prop_oneof![Just("["), Just("{\"a\":")])
            .prop_map(|(depth, open)| open.repeat(depth)),
        1 => (1usize..200).prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth))),
        // huge and malformed numbers
        1 => prop_oneof![
            Just("1e999999".to_owned()),
            Just("-1e-999999".to_owned()),
            "[0-9]{300,600}".prop_map(|digits| format!("{{\"score\": {digits}}}")),
            "[0-9]{1,5}".prop_map(|e| format!("{{\"score\": 1e{e}}}")),
            Just("{\"score\": NaN}".to_owned()),
            Just("{\"score\": -0}".to_owned()),
        ],
        // escapes: lone surrogates, invalid and truncated escapes, control characters
        1 => prop_oneof![
            Just(r#"{"text": "\ud800"}"#.to_owned()),
            Just(r#"{"text": "\udc00\ud800"}"#.to_owned()),
            Just(r#"{"text": "\ud83d\ude00"}"#.to_owned()),
            Just(r#"{"text": "\x41"}"#.to_owned()),
            Just(r#"{"text": "\u12"}"#.to_owned()),
            Just("{\"text\": \"a\u{0}b\"}".to_owned()),
            Just("{\"text\": \"\\".to_owned()),
        ],
        // duplicate keys
        1 => (value(), value()).prop_map(|(a, b)| format!("{{\"text\": {a}, \"text\": {b}, \"score\": 1, \"score\": {b}}}")),
    ]
}

fn format_of(schema: Value) -> OutputFormat {
    OutputFormat::new("Answer", schema)
}

/// A parse error says what kind of problem the answer has.
fn classified(error: &str) -> bool {
    error.starts_with("the answer is not valid JSON")
        || error.starts_with("the answer does not fit the output schema")
        || error.starts_with("the answer does not fit the output type")
}

proptest! {
    #![proptest_config(cases(60_000))]

    /// Hostile answers against a typical schema.
    #[test]
    fn hostile_answers_never_panic(text in hostile_text()) {
        let format = format_of(json!({
            "type": "object",
            "properties": {
                "text": { "type": "string" },
                "score": { "type": ["integer", "null"], "minimum": 0 },
                "tags": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["text"]
        }));
        match format.parse_answer::<Value>(&text) {
            Ok(_) => {}
            Err(error) => prop_assert!(classified(&error), "{error}"),
        }
    }
}

proptest! {
    #![proptest_config(cases(40_000))]

    /// Arbitrary schemas through the sanitizer, and arbitrary answers against them.
    #[test]
    fn arbitrary_schemas_and_answers_never_panic(schema in value(), answer in value()) {
        let _ = strict_schema(&schema);
        let format = format_of(schema);
        if let Err(error) = format.parse_answer::<Value>(&answer.to_string()) {
            prop_assert!(classified(&error), "{error}");
        }
    }
}

proptest! {
    #![proptest_config(cases(16))]

    /// 10 MB strings, whole or cut.
    #[test]
    fn ten_megabyte_answers_never_panic(cut in 0usize..16, fill in "[a-z\\\\\"]") {
        let body = fill.repeat(10 * 1024 * 1024 / fill.len().max(1));
        let text = format!("{{\"text\": \"{body}\"}}");
        let text = if cut == 0 { &text[..text.len() / 2] } else { &text[..] };
        let format = format_of(json!({
            "type": "object",
            "properties": { "text": { "type": "string", "maxLength": 100 } },
            "required": ["text"]
        }));
        if let Err(error) = format.parse_answer::<Value>(text) {
            prop_assert!(classified(&error), "{}", &error[..error.len().min(200)]);
        }
    }
}

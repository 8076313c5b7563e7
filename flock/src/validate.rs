//! Checks a JSON value against the JSON Schema schemars generated for a type, naming the first
//! place that does not fit by its JSON path and the type expected there: the error a person sees
//! for input given by name as JSON (the command line, [`Flock::start_json`](crate::Flock::start_json)).
//!
//! It covers what schemars emits for Rust types: `$ref` into `$defs`, `type` (one or a list),
//! `properties` / `required` / `additionalProperties`, `items`, `enum`, `const`, `anyOf` /
//! `oneOf`, `minimum` / `maximum`. Deserialization still decides in the end; this gives the path.

use serde_json::Value;

/// Checks `value` against `schema`; the error is `at `$.path`: expected .., found ..`.
pub(crate) fn check(schema: &Value, value: &Value) -> Result<(), String> {
    check_at(schema, schema, value, "$", 0)
}

fn check_at(
    root: &Value,
    schema: &Value,
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Ok(());
    }
    let Some(schema) = schema.as_object() else {
        // `true` accepts everything; `false` nothing
        return match schema {
            Value::Bool(false) => Err(format!("at `{path}`: no value is allowed here")),
            _ => Ok(()),
        };
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/")
            .map(|pointer| root.pointer(&format!("/{pointer}")))
            .unwrap_or(None);
        if let Some(target) = target {
            check_at(root, target, value, path, depth + 1)?;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = variants
                .iter()
                .filter_map(|variant| check_at(root, variant, value, path, depth + 1).err())
                .collect();
            if errors.len() == variants.len() && !variants.is_empty() {
                return Err(if variants.len() == 1 {
                    errors.into_iter().next().unwrap_or_default()
                } else {
                    format!(
                        "at `{path}`: {} fits none of the {} allowed shapes ({})",
                        describe(value),
                        variants.len(),
                        errors.join("; ")
                    )
                });
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!(
            "at `{path}`: expected one of {}, found {}",
            names.join(", "),
            describe(value)
        ));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!(
            "at `{path}`: expected {constant}, found {}",
            describe(value)
        ));
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
            return Err(format!(
                "at `{path}`: expected {}, found {}",
                types
                    .iter()
                    .map(|t| article(t))
                    .collect::<Vec<_>>()
                    .join(" or "),
                describe(value)
            ));
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && number < min
        {
            return Err(format!(
                "at `{path}`: expected a number ≥ {min}, found {value}"
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && number > max
        {
            return Err(format!(
                "at `{path}`: expected a number ≤ {max}, found {value}"
            ));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    let expected = properties
                        .and_then(|p| p.get(name))
                        .map(|s| expected_of(root, s))
                        .unwrap_or_else(|| "a value".into());
                    return Err(format!(
                        "at `{path}`: field `{name}` is missing (expected {expected})"
                    ));
                }
            }
        }
        for (name, field) in object {
            let field_path = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check_at(root, field_schema, field, &field_path, depth + 1)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let known: Vec<String> = properties
                            .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "at `{field_path}`: unknown field (known fields: {})",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                    Some(extra @ Value::Object(_)) => {
                        check_at(root, extra, field, &field_path, depth + 1)?
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_at(root, items, item, &format!("{path}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn article(name: &str) -> String {
    match name {
        "integer" | "array" | "object" => format!("an {name}"),
        "null" => "null".into(),
        _ => format!("a {name}"),
    }
}

/// What a schema expects, in words (for a missing field).
fn expected_of(root: &Value, schema: &Value) -> String {
    let mut schema = schema;
    if let Some(target) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/"))
        .and_then(|pointer| root.pointer(&format!("/{pointer}")))
    {
        schema = target;
    }
    match schema.get("type") {
        Some(Value::String(t)) => article(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".into(),
    }
}

/// A value in words: `the number 5`, `a string`, `an object`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {value}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The names closest to `name` (edit distance at most a third of its length, at least 2): for a
/// "did you mean".
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|candidate| (distance(name, candidate), candidate))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        count: u32,
        inner: Vec<Inner>,
        kind: Kind,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        score: f64,
    }
    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    enum Kind {
        Small,
        Large,
    }

    fn schema() -> Value {
        serde_json::to_value(schemars::schema_for!(Outer)).unwrap()
    }

    #[test]
    fn paths_and_expected_types() {
        let ok = json!({"name": "a", "count": 1, "inner": [{"score": 1.5}], "kind": "Small"});
        assert_eq!(check(&schema(), &ok), Ok(()));
        let cases = [
            (
                json!({"name": 5, "count": 1, "inner": [], "kind": "Small"}),
                "at `$.name`: expected a string, found the number 5",
            ),
            (
                json!({"name": "a", "count": -1, "inner": [], "kind": "Small"}),
                "at `$.count`: expected a number ≥ 0, found -1",
            ),
            (
                json!({"name": "a", "count": 1, "inner": [{"score": "x"}], "kind": "Small"}),
                "at `$.inner[0].score`: expected a number, found the string \"x\"",
            ),
            (
                json!({"name": "a", "inner": [], "kind": "Small"}),
                "at `$`: field `count` is missing (expected an integer)",
            ),
            (
                json!({"name": "a", "count": 1, "inner": [], "kind": "Huge"}),
                "at `$.kind`: expected one of \"Small\", \"Large\", found the string \"Huge\"",
            ),
            (json!([1]), "at `$`: expected an object, found an array"),
        ];
        for (value, message) in cases {
            assert_eq!(check(&schema(), &value), Err(message.to_owned()), "{value}");
        }
    }

    #[test]
    fn did_you_mean() {
        let names = ["research_agent", "summarize_agent", "research_flow"];
        assert_eq!(closest("reserch_agent", names), Some("research_agent"));
        assert_eq!(closest("summarise_agent", names), Some("summarize_agent"));
        assert_eq!(closest("deploy", names), None);
    }
}

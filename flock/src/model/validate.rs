//! A focused JSON Schema validator for the schemas schemars derives (draft 2020-12), used on
//! model answers before they are deserialized.
//!
//! Why not a general validator crate: answers are checked against schemas generated from Rust
//! types, a small and well-known subset of JSON Schema, and the messages go back to a language
//! model, so they should name the place and the problem in plain words. This module checks
//! `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `prefixItems`, `minItems`/`maxItems`/`uniqueItems`, `minLength`/`maxLength`,
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`/`multipleOf`,
//! `minProperties`/`maxProperties`, `anyOf`/`oneOf`/`allOf`/`not` and local `$ref`s (recursive
//! types included). `format` is an annotation, as the 2020-12 specification makes it by default,
//! and `pattern` is not checked: both are enforced, where the type cares, by deserialization, which
//! runs right after validation.

use std::fmt;

use serde_json::{Map, Number, Value};

use super::schema::resolve_ref;

/// At most this many violations are reported for one answer.
pub const MAX_VIOLATIONS: usize = 8;

/// One way an answer does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where, as a JSON pointer into the answer (`/items/0/price`; empty for the whole answer).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "at the root: {}", self.message)
        } else {
            write!(f, "at `{}`: {}", self.path, self.message)
        }
    }
}

/// Checks `instance` against `schema`; on failure, the first [`MAX_VIOLATIONS`] violations.
///
/// ```
/// use flock::model::validate::validate;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": { "price": { "type": "number", "minimum": 0 } },
///     "required": ["price"],
///     "additionalProperties": false
/// });
/// assert!(validate(&schema, &json!({ "price": 3.5 })).is_ok());
/// let errors = validate(&schema, &json!({ "price": "3.5", "extra": 1 })).unwrap_err();
/// assert_eq!(errors[0].to_string(), "at the root: unexpected property `extra`");
/// assert_eq!(errors[1].to_string(), "at `/price`: expected number, found string \"3.5\"");
/// ```
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
    let mut validator = Validator {
        root: schema,
        errors: Vec::new(),
        limit: MAX_VIOLATIONS,
    };
    validator.check(schema, instance, &Path::Root, 0);
    if validator.errors.is_empty() {
        Ok(())
    } else {
        Err(validator.errors)
    }
}

/// Whether `instance` fits `schema` (no messages: cheaper).
pub fn is_valid(schema: &Value, instance: &Value) -> bool {
    let mut validator = Validator {
        root: schema,
        errors: Vec::new(),
        limit: 1,
    };
    validator.check(schema, instance, &Path::Root, 0);
    validator.errors.is_empty()
}

/// Renders violations as one line each, for a repair message or an error.
pub fn describe(violations: &[SchemaViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where in the answer a check is: rendered only when a check fails.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.render_into(out);
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Path::Index(parent, index) => {
                parent.render_into(out);
                out.push('/');
                out.push_str(&index.to_string());
            }
        }
    }
}

const MAX_DEPTH: usize = 128;

struct Validator<'s> {
    root: &'s Value,
    errors: Vec<SchemaViolation>,
    limit: usize,
}

impl<'s> Validator<'s> {
    fn full(&self) -> bool {
        self.errors.len() >= self.limit
    }

    fn fail(&mut self, path: &Path<'_>, message: String) {
        if !self.full() {
            self.errors.push(SchemaViolation {
                path: path.render(),
                message,
            });
        }
    }

    /// Runs `schema` on `instance` in a scratch validator: whether it fits, and its first problem.
    fn probe(&self, schema: &Value, instance: &Value, depth: usize) -> Option<SchemaViolation> {
        let mut scratch = Validator {
            root: self.root,
            errors: Vec::new(),
            limit: 1,
        };
        scratch.check(schema, instance, &Path::Root, depth);
        scratch.errors.pop()
    }

    fn check(&mut self, schema: &'s Value, instance: &Value, path: &Path<'_>, depth: usize) {
        if self.full() {
            return;
        }
        if depth > MAX_DEPTH {
            self.fail(path, "the answer is nested too deeply".into());
            return;
        }
        let map = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                self.fail(path, "no value is allowed here".into());
                return;
            }
            Value::Object(map) => map,
            _ => return,
        };
        let k = Keywords::of(map);
        if let Some(target) = k.reference {
            match resolve_ref(self.root, target) {
                Some(resolved) => self.check(resolved, instance, path, depth + 1),
                None => self.fail(
                    path,
                    format!("the schema refers to `{target}`, which it lacks"),
                ),
            }
        }
        if let Some(ty) = k.ty
            && !type_matches(ty, instance)
        {
            self.fail(
                path,
                format!(
                    "expected {}, found {}",
                    type_names(ty),
                    describe_value(instance)
                ),
            );
            return;
        }
        if let Some(values) = k.enumeration
            && !values.iter().any(|v| json_eq(v, instance))
        {
            self.fail(
                path,
                format!(
                    "expected one of {}, found {}",
                    list_values(values),
                    describe_value(instance)
                ),
            );
        }
        if let Some(value) = k.constant
            && !json_eq(value, instance)
        {
            self.fail(
                path,
                format!("expected {value}, found {}", describe_value(instance)),
            );
        }
        self.combinators(&k, instance, path, depth);
        match instance {
            Value::Object(object) => self.object(&k, object, path, depth),
            Value::Array(items) => self.array(&k, items, path, depth),
            Value::String(s) => self.string(&k, s, path),
            Value::Number(n) => self.number(&k, n, path),
            _ => {}
        }
    }

    fn combinators(&mut self, k: &Keywords<'s>, instance: &Value, path: &Path<'_>, depth: usize) {
        if let Some(branches) = k.all_of {
            for branch in branches {
                self.check(branch, instance, path, depth + 1);
            }
        }
        for (key, branches) in [("anyOf", k.any_of), ("oneOf", k.one_of)] {
            let Some(branches) = branches else {
                continue;
            };
            let mut matched = 0;
            let mut problems = Vec::new();
            for branch in branches {
                match self.probe(branch, instance, depth + 1) {
                    None => {
                        matched += 1;
                        if key == "anyOf" {
                            break;
                        }
                    }
                    Some(problem) => problems.push(problem),
                }
            }
            if matched == 0 {
                let detail = problems
                    .iter()
                    .enumerate()
                    .take(4)
                    .map(|(i, p)| format!("alternative {}: {p}", i + 1))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.fail(
                    path,
                    format!(
                        "matches none of the {} allowed alternatives ({detail})",
                        branches.len()
                    ),
                );
            } else if key == "oneOf" && matched > 1 {
                self.fail(
                    path,
                    format!("matches {matched} alternatives where exactly one is allowed"),
                );
            }
        }
        if let Some(not) = k.not
            && self.probe(not, instance, depth + 1).is_none()
        {
            self.fail(path, "matches a shape that is not allowed".into());
        }
    }

    fn object(
        &mut self,
        k: &Keywords<'s>,
        object: &Map<String, Value>,
        path: &Path<'_>,
        depth: usize,
    ) {
        if let Some(required) = k.required {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    self.fail(path, format!("missing required property `{name}`"));
                }
            }
        }
        for (name, value) in object {
            let inner = Path::Key(path, name);
            if let Some(schema) = k.properties.and_then(|p| p.get(name)) {
                self.check(schema, value, &inner, depth + 1);
            } else if k.pattern_properties {
                // Not checked (see the module docs).
            } else {
                match k.additional {
                    Some(Value::Bool(false)) => {
                        self.fail(path, format!("unexpected property `{name}`"));
                    }
                    Some(schema @ Value::Object(_)) => self.check(schema, value, &inner, depth + 1),
                    _ => {}
                }
            }
        }
        let len = object.len() as u64;
        if let Some(min) = k.min_properties
            && len < min
        {
            self.fail(
                path,
                format!("expected at least {min} properties, found {len}"),
            );
        }
        if let Some(max) = k.max_properties
            && len > max
        {
            self.fail(
                path,
                format!("expected at most {max} properties, found {len}"),
            );
        }
    }

    fn array(&mut self, k: &Keywords<'s>, items: &[Value], path: &Path<'_>, depth: usize) {
        let mut start = 0;
        if let Some(prefix) = k.prefix_items {
            for (i, (schema, item)) in prefix.iter().zip(items).enumerate() {
                self.check(schema, item, &Path::Index(path, i), depth + 1);
            }
            start = prefix.len();
        }
        if let Some(schema) = k.items {
            for (i, item) in items.iter().enumerate().skip(start) {
                if self.full() {
                    break;
                }
                if schema == &Value::Bool(false) {
                    self.fail(
                        path,
                        format!("expected at most {start} items, found {}", items.len()),
                    );
                    break;
                }
                self.check(schema, item, &Path::Index(path, i), depth + 1);
            }
        }
        let len = items.len() as u64;
        if let Some(min) = k.min_items
            && len < min
        {
            self.fail(path, format!("expected at least {min} items, found {len}"));
        }
        if let Some(max) = k.max_items
            && len > max
        {
            self.fail(path, format!("expected at most {max} items, found {len}"));
        }
        if k.unique_items {
            for (i, a) in items.iter().enumerate() {
                if items[..i].iter().any(|b| json_eq(a, b)) {
                    self.fail(&Path::Index(path, i), "duplicates an earlier item".into());
                    break;
                }
            }
        }
    }

    fn string(&mut self, k: &Keywords<'s>, s: &str, path: &Path<'_>) {
        if k.min_length.is_none() && k.max_length.is_none() {
            return;
        }
        let len = s.chars().count() as u64;
        if let Some(min) = k.min_length
            && len < min
        {
            self.fail(
                path,
                format!("expected at least {min} characters, found {len}"),
            );
        }
        if let Some(max) = k.max_length
            && len > max
        {
            self.fail(
                path,
                format!("expected at most {max} characters, found {len}"),
            );
        }
    }

    fn number(&mut self, k: &Keywords<'s>, n: &Number, path: &Path<'_>) {
        let Some(x) = n.as_f64() else { return };
        if let Some(min) = k.minimum
            && x < min
        {
            self.fail(path, format!("expected at least {min}, found {n}"));
        }
        if let Some(max) = k.maximum
            && x > max
        {
            self.fail(path, format!("expected at most {max}, found {n}"));
        }
        if let Some(min) = k.exclusive_minimum
            && x <= min
        {
            self.fail(path, format!("expected more than {min}, found {n}"));
        }
        if let Some(max) = k.exclusive_maximum
            && x >= max
        {
            self.fail(path, format!("expected less than {max}, found {n}"));
        }
        if let Some(step) = k.multiple_of
            && step > 0.0
        {
            let q = x / step;
            if (q - q.round()).abs() > 1e-9 {
                self.fail(path, format!("expected a multiple of {step}, found {n}"));
            }
        }
    }
}

/// The keywords of one schema object, gathered in one pass over its keys (a schema has a few
/// keys; looking up each of the ~25 keywords separately would cost more than the check).
#[derive(Default)]
struct Keywords<'s> {
    reference: Option<&'s str>,
    ty: Option<&'s Value>,
    enumeration: Option<&'s Vec<Value>>,
    constant: Option<&'s Value>,
    all_of: Option<&'s Vec<Value>>,
    any_of: Option<&'s Vec<Value>>,
    one_of: Option<&'s Vec<Value>>,
    not: Option<&'s Value>,
    properties: Option<&'s Map<String, Value>>,
    required: Option<&'s Vec<Value>>,
    additional: Option<&'s Value>,
    pattern_properties: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    prefix_items: Option<&'s Vec<Value>>,
    items: Option<&'s Value>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
}

impl<'s> Keywords<'s> {
    fn of(map: &'s Map<String, Value>) -> Self {
        let mut k = Keywords::default();
        for (key, value) in map {
            match key.as_str() {
                "$ref" => k.reference = value.as_str(),
                "type" => k.ty = Some(value),
                "enum" => k.enumeration = value.as_array(),
                "const" => k.constant = Some(value),
                "allOf" => k.all_of = value.as_array(),
                "anyOf" => k.any_of = value.as_array(),
                "oneOf" => k.one_of = value.as_array(),
                "not" => k.not = Some(value),
                "properties" => k.properties = value.as_object(),
                "required" => k.required = value.as_array(),
                "additionalProperties" => k.additional = Some(value),
                "patternProperties" => k.pattern_properties = true,
                "minProperties" => k.min_properties = value.as_u64(),
                "maxProperties" => k.max_properties = value.as_u64(),
                "prefixItems" => k.prefix_items = value.as_array(),
                "items" => k.items = Some(value),
                "minItems" => k.min_items = value.as_u64(),
                "maxItems" => k.max_items = value.as_u64(),
                "uniqueItems" => k.unique_items = value == &Value::Bool(true),
                "minLength" => k.min_length = value.as_u64(),
                "maxLength" => k.max_length = value.as_u64(),
                "minimum" => k.minimum = value.as_f64(),
                "maximum" => k.maximum = value.as_f64(),
                "exclusiveMinimum" => k.exclusive_minimum = value.as_f64(),
                "exclusiveMaximum" => k.exclusive_maximum = value.as_f64(),
                "multipleOf" => k.multiple_of = value.as_f64(),
                _ => {}
            }
        }
        k
    }
}

fn type_matches(ty: &Value, instance: &Value) -> bool {
    match ty {
        Value::String(t) => one_type_matches(t, instance),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| one_type_matches(t, instance)),
        _ => true,
    }
}

fn one_type_matches(ty: &str, instance: &Value) -> bool {
    match (ty, instance) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|x| x.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_names(ty: &Value) -> String {
    match ty {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

/// `1` and `1.0` are equal in JSON Schema; serde_json's `==` says they are not.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let ellipsis = if shown.len() < s.len() { "…" } else { "" };
            format!("string {:?}", format!("{shown}{ellipsis}"))
        }
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".into(),
    }
}

fn list_values(values: &[Value]) -> String {
    let mut shown: Vec<String> = values.iter().take(10).map(Value::to_string).collect();
    if values.len() > 10 {
        shown.push("…".into());
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, instance: Value) -> Vec<String> {
        match validate(&schema, &instance) {
            Ok(()) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn recursive_refs_and_nested_paths() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "children": { "type": "array", "items": { "$ref": "#" } }
            },
            "required": ["name", "children"]
        });
        let tree = json!({ "name": "a", "children": [{ "name": "b", "children": [{ "name": 3, "children": [] }] }] });
        assert_eq!(
            errors(schema, tree),
            ["at `/children/0/children/0/name`: expected string, found number 3"]
        );
    }

    #[test]
    fn integers_enums_and_alternatives() {
        assert!(is_valid(&json!({ "type": "integer" }), &json!(3.0)));
        assert!(!is_valid(&json!({ "type": "integer" }), &json!(3.5)));
        assert_eq!(
            errors(json!({ "enum": ["Red", "Green"] }), json!("Blue")),
            ["at the root: expected one of \"Red\", \"Green\", found string \"Blue\""]
        );
        let shape = json!({ "oneOf": [
            { "type": "string", "enum": ["Point"] },
            { "type": "object", "properties": { "Circle": { "type": "number" } }, "required": ["Circle"], "additionalProperties": false }
        ] });
        assert!(is_valid(&shape, &json!("Point")));
        assert!(is_valid(&shape, &json!({ "Circle": 2.0 })));
        let message = &errors(shape, json!({ "Square": 2.0 }))[0];
        assert!(
            message.contains("matches none of the 2 allowed alternatives"),
            "{message}"
        );
        assert!(
            message.contains("missing required property `Circle`"),
            "{message}"
        );
    }

    #[test]
    fn limits_the_number_of_violations() {
        let schema = json!({ "type": "array", "items": { "type": "string" } });
        let many = Value::Array((0..100).map(|i| json!(i)).collect());
        assert_eq!(validate(&schema, &many).unwrap_err().len(), MAX_VIOLATIONS);
    }

    #[test]
    fn numbers_and_lengths() {
        let schema =
            json!({ "type": "number", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5 });
        assert!(is_valid(&schema, &json!(9.5)));
        assert!(!is_valid(&schema, &json!(10)));
        assert!(!is_valid(&schema, &json!(-1)));
        assert!(!is_valid(&schema, &json!(0.3)));
        let text = json!({ "type": "string", "minLength": 2, "maxLength": 3 });
        assert!(is_valid(&text, &json!("äö")));
        assert!(!is_valid(&text, &json!("abcd")));
    }
}

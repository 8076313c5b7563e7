//! Output schemas on the wire: the object root every structured-output API wants, the strict
//! subset of JSON Schema OpenAI's structured outputs accept, and the way back from a strict
//! answer to the agent's own schema.
//!
//! The agent's schema (what schemars derives) stays the reference: the prompt shows it and answers
//! are validated against it. [`strict_schema`] derives a second schema from it for the
//! `response_format` / tool `parameters` of strict mode, following OpenAI's documented rules
//! ("Supported schemas" in the structured-outputs guide):
//!
//! * every object has `additionalProperties: false` and lists every property in `required`;
//!   a property that was optional becomes nullable (`["T", "null"]`, or an `anyOf` with
//!   `{"type": "null"}`) and [`drop_optional_nulls`] turns the `null` back into "absent";
//! * `oneOf` becomes `anyOf`, `const` becomes a one-value `enum`, a one-element `allOf` is merged;
//! * `$defs` and `$ref` are kept (recursion included), except that a `$ref` with sibling keywords
//!   (schemars puts a field's doc comment next to it) is inlined one level, as OpenAI's SDK does;
//! * keywords outside the supported set are dropped (`default`, `minLength`, `format` values other
//!   than the nine supported string formats, `$schema`, …): the answer is still validated
//!   against the original schema, so nothing is lost but the hint;
//! * what strict mode cannot express is an error naming the place and the way out: maps with
//!   arbitrary keys (`HashMap`, `BTreeMap`), `serde_json::Value`, tuples, `not`, multi-branch
//!   `allOf`.

use std::fmt;

use serde_json::{Map, Value, json};

/// The property a non-object output is wrapped in (`{"value": ..}`), since structured-output APIs
/// want an object at the root.
pub const WRAPPER_PROPERTY: &str = "value";

/// Why a schema cannot be sent in strict mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictSchemaError {
    /// Where, as a JSON pointer into the schema (`/properties/tags`).
    pub path: String,
    /// What strict mode cannot express there, and what to do instead.
    pub reason: String,
}

impl fmt::Display for StrictSchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(
            f,
            "OpenAI strict structured output cannot express the schema at `{at}`: {}",
            self.reason
        )
    }
}

impl std::error::Error for StrictSchemaError {}

/// A structured-output schema with an object at its root: `schema` itself when it describes an
/// object, else `{"type": "object", "properties": {"value": schema}, "required": ["value"]}`.
///
/// Returns the schema and whether it was wrapped (then answers carry the output under
/// [`WRAPPER_PROPERTY`]).
///
/// ```
/// use flock::model::schema::object_root;
/// use serde_json::json;
///
/// let (wrapped, was_wrapped) = object_root(json!({"type": "array", "items": {"type": "string"}}));
/// assert!(was_wrapped);
/// assert_eq!(wrapped["properties"]["value"]["items"]["type"], "string");
/// let (same, was_wrapped) = object_root(json!({"type": "object", "properties": {}}));
/// assert!(!was_wrapped);
/// assert_eq!(same["type"], "object");
/// ```
pub fn object_root(schema: Value) -> (Value, bool) {
    if is_plain_object_schema(&schema) {
        return (schema, false);
    }
    let Value::Object(mut inner) = schema else {
        // `true`/`false` schemas: wrap them as they are.
        return (wrap(schema, Map::new(), None), true);
    };
    let defs = match inner.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    inner.remove("$schema");
    let title = match inner.remove("title") {
        Some(Value::String(title)) => Some(title),
        _ => None,
    };
    if refers_to_root(&Value::Object(inner.clone())) {
        // Root recursion (`"$ref": "#"`) would point at the wrapper: move the root into `$defs`.
        let name = title.clone().unwrap_or_else(|| "Output".to_owned());
        let target = format!("#/$defs/{name}");
        let mut body = Value::Object(inner);
        retarget_root_refs(&mut body, &target);
        let mut defs = defs;
        let mut defs_value = Value::Object(std::mem::take(&mut defs));
        retarget_root_refs(&mut defs_value, &target);
        let Value::Object(mut defs) = defs_value else {
            unreachable!("an object stays an object")
        };
        defs.insert(name, body);
        return (wrap(json!({ "$ref": target }), defs, title), true);
    }
    (wrap(Value::Object(inner), defs, title), true)
}

fn wrap(value_schema: Value, defs: Map<String, Value>, title: Option<String>) -> Value {
    let mut wrapper = Map::new();
    if let Some(title) = title {
        wrapper.insert("title".into(), Value::String(title));
    }
    wrapper.insert("type".into(), "object".into());
    wrapper.insert(
        "properties".into(),
        json!({ WRAPPER_PROPERTY: value_schema }),
    );
    wrapper.insert("required".into(), json!([WRAPPER_PROPERTY]));
    wrapper.insert("additionalProperties".into(), false.into());
    if !defs.is_empty() {
        wrapper.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(wrapper)
}

fn is_plain_object_schema(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else {
        return false;
    };
    let is_object = match map.get("type") {
        Some(Value::String(t)) => t == "object",
        _ => false,
    };
    is_object
        && !["anyOf", "oneOf", "allOf", "$ref", "enum", "const"]
            .iter()
            .any(|k| map.contains_key(*k))
}

fn refers_to_root(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "$ref" && v.as_str() == Some("#"))
                || (k != "const" && k != "enum" && refers_to_root(v))
        }),
        Value::Array(items) => items.iter().any(refers_to_root),
        _ => false,
    }
}

fn retarget_root_refs(schema: &mut Value, target: &str) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "$ref" && v.as_str() == Some("#") {
                    *v = Value::String(target.to_owned());
                } else if k != "const" && k != "enum" {
                    retarget_root_refs(v, target);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| retarget_root_refs(v, target)),
        _ => {}
    }
}

/// The strict-mode form of `schema` (which must have an object root, see [`object_root`]).
///
/// ```
/// use flock::model::schema::strict_schema;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": {
///         "name": { "type": "string", "minLength": 1 },
///         "nick": { "type": ["string", "null"] },
///         "age": { "type": "integer", "format": "uint8", "minimum": 0, "default": 0 }
///     },
///     "required": ["name"]
/// });
/// assert_eq!(strict_schema(&schema).unwrap(), json!({
///     "type": "object",
///     "properties": {
///         "name": { "type": "string" },
///         "nick": { "type": ["string", "null"] },
///         "age": { "type": ["integer", "null"], "minimum": 0 }
///     },
///     "required": ["age", "name", "nick"],
///     "additionalProperties": false
/// }));
///
/// let map = json!({ "type": "object", "additionalProperties": { "type": "integer" } });
/// let error = strict_schema(&map).unwrap_err();
/// assert!(error.to_string().contains("arbitrary keys"), "{error}");
/// ```
pub fn strict_schema(schema: &Value) -> Result<Value, StrictSchemaError> {
    let root = schema;
    if !is_plain_object_schema(root) {
        return Err(StrictSchemaError {
            path: String::new(),
            reason: "the root must be an object schema (wrap other outputs with `object_root`)"
                .into(),
        });
    }
    let mut out = Sanitizer { root }.node(root, "")?;
    if let (Some(defs), Value::Object(out_map)) = (root.get("$defs"), &mut out) {
        let Value::Object(defs) = defs else {
            return Err(error("/$defs", "`$defs` must be an object"));
        };
        let mut clean = Map::new();
        for (name, def) in defs {
            let path = format!("/$defs/{}", escape(name));
            clean.insert(name.clone(), Sanitizer { root }.node(def, &path)?);
        }
        out_map.insert("$defs".into(), Value::Object(clean));
    }
    Ok(out)
}

/// String formats OpenAI's strict mode accepts.
const SUPPORTED_FORMATS: [&str; 9] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// Keywords kept as they are (annotations and supported constraints).
const KEPT: [&str; 10] = [
    "title",
    "description",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
];

/// Keywords strict mode cannot express at all.
const INEXPRESSIBLE: [(&str, &str); 8] = [
    (
        "prefixItems",
        "tuples (`prefixItems`) are not supported; use a struct with named fields",
    ),
    (
        "patternProperties",
        "objects with pattern-matched keys are not supported; use a struct or a Vec of key/value structs",
    ),
    ("not", "`not` is not supported"),
    ("if", "`if`/`then`/`else` is not supported"),
    ("dependentSchemas", "`dependentSchemas` is not supported"),
    ("dependentRequired", "`dependentRequired` is not supported"),
    (
        "unevaluatedProperties",
        "`unevaluatedProperties` is not supported",
    ),
    ("propertyNames", "`propertyNames` is not supported"),
];

struct Sanitizer<'a> {
    root: &'a Value,
}

impl Sanitizer<'_> {
    fn node(&self, schema: &Value, path: &str) -> Result<Value, StrictSchemaError> {
        let map = match schema {
            Value::Object(map) => map,
            Value::Bool(true) => {
                return Err(error(
                    path,
                    "any JSON value (`serde_json::Value`, or a schema of `true`) is not supported; use a concrete type",
                ));
            }
            Value::Bool(false) => return Err(error(path, "a schema of `false` accepts nothing")),
            _ => return Err(error(path, "a schema must be an object")),
        };
        for (key, reason) in INEXPRESSIBLE {
            if map.contains_key(key) {
                return Err(error(path, reason));
            }
        }
        if let Some(Value::String(target)) = map.get("$ref") {
            let siblings = map
                .keys()
                .any(|k| !matches!(k.as_str(), "$ref" | "$defs" | "$schema"));
            if !siblings {
                return Ok(json!({ "$ref": target }));
            }
            // OpenAI rejects `$ref` next to other keywords: inline the target one level, the
            // siblings (a field's description) taking precedence.
            let resolved = resolve_ref(self.root, target)
                .ok_or_else(|| error(path, &format!("unresolvable `$ref` `{target}`")))?;
            let mut merged = match resolved {
                Value::Object(m) => m.clone(),
                other => return self.node(other, path),
            };
            merged.remove("$defs");
            merged.remove("$schema");
            for (k, v) in map {
                if k != "$ref" && k != "$defs" && k != "$schema" {
                    merged.insert(k.clone(), v.clone());
                }
            }
            return self.node(&Value::Object(merged), path);
        }
        if let Some(all_of) = map.get("allOf") {
            let Some([single]) = all_of.as_array().map(Vec::as_slice) else {
                return Err(error(
                    path,
                    "`allOf` with several schemas (e.g. `#[serde(flatten)]` of an enum) is not supported",
                ));
            };
            let mut merged = map.clone();
            merged.remove("allOf");
            let single = match single.get("$ref").and_then(Value::as_str) {
                Some(target) => resolve_ref(self.root, target)
                    .ok_or_else(|| error(path, &format!("unresolvable `$ref` `{target}`")))?,
                None => single,
            };
            if let Value::Object(extra) = single {
                for (k, v) in extra {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            return self.node(&Value::Object(merged), path);
        }

        let mut out = Map::new();
        for key in KEPT {
            if let Some(v) = map.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        if let Some(ty) = map.get("type") {
            out.insert("type".into(), ty.clone());
        }
        if let Some(Value::String(format)) = map.get("format")
            && SUPPORTED_FORMATS.contains(&format.as_str())
            && has_type(map, "string")
        {
            out.insert("format".into(), Value::String(format.clone()));
        }
        if let Some(values) = map.get("enum") {
            out.insert("enum".into(), values.clone());
        } else if let Some(value) = map.get("const") {
            out.insert("enum".into(), Value::Array(vec![value.clone()]));
        }
        let branches = map.get("anyOf").or_else(|| map.get("oneOf"));
        if let Some(branches) = branches {
            let key = if map.contains_key("anyOf") {
                "anyOf"
            } else {
                "oneOf"
            };
            let Value::Array(branches) = branches else {
                return Err(error(path, &format!("`{key}` must be an array")));
            };
            let mut clean = Vec::with_capacity(branches.len());
            for (i, branch) in branches.iter().enumerate() {
                clean.push(self.node(branch, &format!("{path}/{key}/{i}"))?);
            }
            out.insert("anyOf".into(), Value::Array(clean));
        }
        if let Some(items) = map.get("items") {
            if items == &Value::Bool(false) {
                // `items: false` only appears next to `prefixItems`, rejected above.
                return Err(error(path, "tuples are not supported"));
            }
            out.insert("items".into(), self.node(items, &format!("{path}/items"))?);
        } else if has_type(map, "array") {
            return Err(error(
                path,
                "arrays must say what their items are (`items`)",
            ));
        }
        if has_type(map, "object") || map.contains_key("properties") {
            self.object(map, path, &mut out)?;
        }
        if !["type", "anyOf", "enum"]
            .iter()
            .any(|k| out.contains_key(*k))
        {
            return Err(error(
                path,
                "a schema without a type accepts any JSON value (`serde_json::Value`), which is not supported; use a concrete type",
            ));
        }
        Ok(Value::Object(out))
    }

    fn object(
        &self,
        map: &Map<String, Value>,
        path: &str,
        out: &mut Map<String, Value>,
    ) -> Result<(), StrictSchemaError> {
        match map.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) | Some(Value::Object(_))
                if map
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty) =>
            {
                return Err(error(
                    path,
                    "maps with arbitrary keys (`HashMap`, `BTreeMap`, `additionalProperties: {..}`) are not supported; use a struct, or a Vec of key/value structs",
                ));
            }
            Some(_) => {
                return Err(error(
                    path,
                    "objects with extra properties besides the named ones (`#[serde(flatten)]` of a map) are not supported",
                ));
            }
        }
        let properties = match map.get("properties") {
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(error(path, "`properties` must be an object")),
        };
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut clean = Map::new();
        for (name, property) in &properties {
            let property_path = format!("{path}/properties/{}", escape(name));
            let mut property = self.node(property, &property_path)?;
            if !required.contains(&name.as_str()) {
                make_nullable(&mut property);
            }
            clean.insert(name.clone(), property);
        }
        let names: Vec<Value> = clean.keys().cloned().map(Value::String).collect();
        out.insert("properties".into(), Value::Object(clean));
        out.insert("required".into(), Value::Array(names));
        out.insert("additionalProperties".into(), Value::Bool(false));
        Ok(())
    }
}

fn error(path: &str, reason: &str) -> StrictSchemaError {
    StrictSchemaError {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn has_type(map: &Map<String, Value>, ty: &str) -> bool {
    match map.get("type") {
        Some(Value::String(t)) => t == ty,
        Some(Value::Array(ts)) => ts.iter().any(|t| t.as_str() == Some(ty)),
        _ => false,
    }
}

/// Makes a (sanitized) property schema accept `null`.
fn make_nullable(schema: &mut Value) {
    if accepts_null(&Value::Null, schema, 0) {
        return;
    }
    let Value::Object(map) = schema else { return };
    if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
        branches.push(json!({ "type": "null" }));
        return;
    }
    let has_ref = map.contains_key("$ref");
    let typed = match map.get_mut("type") {
        Some(Value::String(t)) if !has_ref => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
            true
        }
        Some(Value::Array(ts)) if !has_ref => {
            if !ts.contains(&Value::Null) && !ts.iter().any(|t| t == "null") {
                ts.push("null".into());
            }
            true
        }
        _ => false,
    };
    if !typed {
        let inner = std::mem::take(map);
        *schema = json!({ "anyOf": [Value::Object(inner), { "type": "null" }] });
        return;
    }
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// Whether `schema` lets a value be `null` (`$ref`s resolved against `root`).
fn accepts_null(root: &Value, schema: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return true;
    }
    let map = match schema {
        Value::Bool(b) => return *b,
        Value::Object(map) => map,
        _ => return false,
    };
    if let Some(target) = map.get("$ref").and_then(Value::as_str) {
        let resolved = resolve_ref(root, target);
        if !resolved.is_some_and(|r| accepts_null(root, r, depth + 1)) {
            return false;
        }
    }
    let by_type = match map.get("type") {
        None => true,
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        Some(_) => false,
    };
    let by_enum = match map.get("enum") {
        None => true,
        Some(Value::Array(values)) => values.contains(&Value::Null),
        Some(_) => false,
    };
    let by_const = map.get("const").is_none_or(Value::is_null);
    let by_branches = ["anyOf", "oneOf"].iter().all(|key| match map.get(*key) {
        None => true,
        Some(Value::Array(branches)) => branches.iter().any(|b| accepts_null(root, b, depth + 1)),
        Some(_) => false,
    });
    by_type && by_enum && by_const && by_branches
}

/// Resolves a local `$ref` (`#`, `#/$defs/Name`, any JSON pointer into `root`).
pub(crate) fn resolve_ref<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// Removes `null` values of object properties that the schema does not require and does not let
/// be `null`: strict mode makes every property required and nullable, so a model says "absent" as
/// `null`, which the agent's own type (e.g. a `#[serde(default)]` field) would reject.
///
/// ```
/// use flock::model::schema::drop_optional_nulls;
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": { "count": { "type": "integer" }, "note": { "type": ["string", "null"] } },
///     "required": []
/// });
/// let mut answer = json!({ "count": null, "note": null });
/// drop_optional_nulls(&schema, &mut answer);
/// assert_eq!(answer, json!({ "note": null }));
/// ```
pub fn drop_optional_nulls(schema: &Value, value: &mut Value) {
    denull(schema, schema, value, 0);
}

const MAX_DEPTH: usize = 64;

fn denull(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    // Only objects (and what they contain) can hold dropped properties.
    if depth > MAX_DEPTH || !matches!(value, Value::Object(_) | Value::Array(_)) {
        return;
    }
    let Value::Object(map) = schema else { return };
    let (mut reference, mut properties, mut required, mut items) = (None, None, None, None);
    let mut branches: [Option<&Vec<Value>>; 3] = [None; 3];
    for (key, v) in map {
        match key.as_str() {
            "$ref" => reference = v.as_str(),
            "properties" => properties = v.as_object(),
            "required" => required = v.as_array(),
            "items" => items = Some(v),
            "anyOf" => branches[0] = v.as_array(),
            "oneOf" => branches[1] = v.as_array(),
            "allOf" => branches[2] = v.as_array(),
            _ => {}
        }
    }
    if let Some(target) = reference
        && let Some(resolved) = resolve_ref(root, target)
    {
        denull(root, resolved, value, depth + 1);
    }
    for (i, branches) in branches.iter().enumerate() {
        let Some(branches) = branches else { continue };
        // Pick the branches the value plausibly took: for objects, those whose properties
        // include every key of the value.
        for branch in *branches {
            if branch_fits(root, branch, value) {
                denull(root, branch, value, depth + 1);
                if i != 2 {
                    break;
                }
            }
        }
    }
    match value {
        Value::Object(object) => {
            let Some(properties) = properties else { return };
            if object.values().any(Value::is_null) {
                let is_required =
                    |name: &str| required.is_some_and(|r| r.iter().any(|n| n == name));
                object.retain(|name, v| {
                    !(v.is_null()
                        && !is_required(name)
                        && properties
                            .get(name)
                            .is_some_and(|p| !accepts_null(root, p, 0)))
                });
            }
            for (name, v) in object.iter_mut() {
                if let Some(property) = properties.get(name) {
                    denull(root, property, v, depth + 1);
                }
            }
        }
        Value::Array(values) => {
            if let Some(item_schema) = items {
                for item in values {
                    denull(root, item_schema, item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn branch_fits(root: &Value, branch: &Value, value: &Value) -> bool {
    let branch = match branch.get("$ref").and_then(Value::as_str) {
        Some(target) => match resolve_ref(root, target) {
            Some(resolved) => resolved,
            None => return false,
        },
        None => branch,
    };
    match value {
        Value::Object(object) => match branch.get("properties").and_then(Value::as_object) {
            Some(properties) => object.keys().all(|k| properties.contains_key(k)),
            None => false,
        },
        _ => true,
    }
}

/// A `response_format` schema name: OpenAI allows `a-z A-Z 0-9 _ -`, at most 64 characters.
pub(crate) fn wire_name(title: &str) -> String {
    let mut name: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name.push_str("output");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_safe() {
        assert_eq!(wire_name("Array_of_string"), "Array_of_string");
        assert_eq!(wire_name("Pair<A, B>"), "Pair_A__B_");
        assert_eq!(wire_name(""), "output");
        assert_eq!(wire_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn ref_with_description_is_inlined_and_plain_refs_are_kept() {
        let schema = json!({
            "type": "object",
            "properties": {
                "home": { "description": "Where", "$ref": "#/$defs/Address" },
                "work": { "$ref": "#/$defs/Address" }
            },
            "required": ["home", "work"],
            "$defs": { "Address": { "type": "object", "properties": { "street": { "type": "string" } }, "required": ["street"] } }
        });
        let strict = strict_schema(&schema).unwrap();
        assert_eq!(
            strict["properties"]["work"],
            json!({ "$ref": "#/$defs/Address" })
        );
        assert_eq!(strict["properties"]["home"]["description"], "Where");
        assert_eq!(strict["properties"]["home"]["additionalProperties"], false);
        assert_eq!(strict["$defs"]["Address"]["additionalProperties"], false);
    }

    #[test]
    fn root_recursion_survives_wrapping() {
        let schema = json!({
            "title": "Tree",
            "type": "array",
            "items": { "$ref": "#" }
        });
        let (wrapped, was) = object_root(schema);
        assert!(was);
        assert_eq!(
            wrapped["properties"]["value"],
            json!({ "$ref": "#/$defs/Tree" })
        );
        assert_eq!(
            wrapped["$defs"]["Tree"]["items"],
            json!({ "$ref": "#/$defs/Tree" })
        );
        strict_schema(&wrapped).unwrap();
    }

    #[test]
    fn optional_ref_and_enum_become_nullable() {
        let schema = json!({
            "type": "object",
            "properties": {
                "color": { "type": "string", "enum": ["Red", "Green"] },
                "shape": { "$ref": "#/$defs/S" }
            },
            "$defs": { "S": { "type": "string", "enum": ["A"] } }
        });
        let strict = strict_schema(&schema).unwrap();
        assert_eq!(
            strict["properties"]["color"],
            json!({ "type": ["string", "null"], "enum": ["Red", "Green", null] })
        );
        assert_eq!(
            strict["properties"]["shape"],
            json!({ "anyOf": [{ "$ref": "#/$defs/S" }, { "type": "null" }] })
        );
    }

    #[test]
    fn denull_follows_refs_and_enum_branches() {
        let schema = json!({
            "type": "object",
            "properties": { "inner": { "$ref": "#/$defs/Inner" } },
            "required": ["inner"],
            "$defs": { "Inner": { "oneOf": [
                { "type": "string", "enum": ["Unit"] },
                { "type": "object", "properties": { "n": { "type": "integer" }, "m": { "type": "integer" } }, "required": ["m"] }
            ] } }
        });
        let mut value = json!({ "inner": { "n": null, "m": 1 } });
        drop_optional_nulls(&schema, &mut value);
        assert_eq!(value, json!({ "inner": { "m": 1 } }));
    }
}

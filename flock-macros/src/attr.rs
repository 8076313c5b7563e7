//! Attribute arguments: `#[agent(..)]`, `#[flow(..)]` and `#[tool(..)]`, parsed structurally with
//! `syn::meta::parser`. Every problem is reported to the [`Ctxt`] at its own span and parsing
//! goes on, so that one compile shows every mistake.

use std::num::NonZeroU32;

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

use crate::ctxt::{Ctxt, did_you_mean};
use crate::duration;

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A duration in milliseconds.
pub type Millis = Spanned<u64>;

/// `#[agent(..)]`.
#[derive(Default)]
pub struct AgentAttrs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub model: Option<LitStr>,
    pub hand_off: Option<Path>,
    pub timeout: Option<Millis>,
    pub schedule_to_close: Option<Millis>,
    pub heartbeat: Option<Millis>,
    pub task_queue: Option<LitStr>,
    pub output_retries: Option<Spanned<u32>>,
    pub max_tool_rounds: Option<Spanned<u32>>,
    pub continue_as_new_after: Option<Spanned<u32>>,
    pub mcp: Option<Spanned<Vec<LitStr>>>,
    pub local: Option<Spanned<bool>>,
    pub tools: Option<Spanned<Vec<Path>>>,
    pub retry: RetryAttrs,
    pub limits: LimitAttrs,
}

/// `max_concurrent = N` and `per_second = R`: how many calls of a step run at once, and how many
/// start per second, in one process; `priority = N`: where its tasks stand in a backlog.
#[derive(Default)]
pub struct LimitAttrs {
    pub max_concurrent: Option<Spanned<u32>>,
    pub per_second: Option<Spanned<f64>>,
    pub priority: Option<Spanned<u32>>,
}

/// `retry(..)` inside `#[agent(..)]`.
#[derive(Default)]
pub struct RetryAttrs {
    pub attempts: Option<Spanned<Attempts>>,
    pub initial_interval: Option<Millis>,
    pub max_interval: Option<Millis>,
    pub backoff: Option<Spanned<f64>>,
    pub jitter: Option<Spanned<f64>>,
    pub non_retryable: Vec<Spanned<String>>,
}

/// `attempts = N` with `N` at least 1, or `attempts = unlimited`. There is no 0: Temporal reads a
/// maximum of 0 attempts as "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    AtMost(NonZeroU32),
    Unlimited,
}

/// The word `attempts = ..` takes for no limit.
const UNLIMITED: &str = "unlimited";

/// `#[flow(..)]`.
#[derive(Default)]
pub struct FlowAttrs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub task_queue: Option<LitStr>,
    pub execution_timeout: Option<Millis>,
    pub run_timeout: Option<Millis>,
    /// `signals(..)`, `queries(..)` and `updates(..)`, in the order written.
    pub messages: Vec<MessageDecl>,
    /// `validate(update = path, ..)`.
    pub validators: Vec<(Ident, Path)>,
}

/// What kind of message a `#[flow(..)]` entry declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Signal,
    Query,
    Update,
}

/// One declared message: `/// doc` `name: Type` (an update: `name: Input -> Answer`).
pub struct MessageDecl {
    pub kind: MessageKind,
    pub docs: Vec<syn::Attribute>,
    pub name: Ident,
    pub ty: syn::Type,
    pub answer: Option<syn::Type>,
}

/// `#[tool(..)]`.
#[derive(Default)]
pub struct ToolAttrs {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub timeout: Option<Millis>,
    pub schedule_to_close: Option<Millis>,
    pub heartbeat: Option<Millis>,
    pub task_queue: Option<LitStr>,
    pub local: Option<Spanned<bool>>,
    pub approval: Option<Spanned<bool>>,
    pub retry: RetryAttrs,
    pub limits: LimitAttrs,
}

/// The keys one attribute (or `retry(..)`) accepts, for unknown-key messages.
struct Keys {
    /// How the attribute is written in messages, e.g. "`#[agent(..)]`".
    what: &'static str,
    keys: &'static [&'static str],
    /// Names people reach for, and the key they mean.
    aliases: &'static [(&'static str, &'static str)],
}

const AGENT: Keys = Keys {
    what: "`#[agent(..)]`",
    keys: &[
        "name",
        "description",
        "model",
        "hand_off",
        "timeout",
        "schedule_to_close",
        "heartbeat",
        "task_queue",
        "output_retries",
        "max_tool_rounds",
        "continue_as_new_after",
        "local",
        "tools",
        "mcp",
        "max_concurrent",
        "per_second",
        "priority",
        "retry",
    ],
    aliases: &[
        ("start_to_close", "timeout"),
        ("start_to_close_timeout", "timeout"),
        ("schedule_to_close_timeout", "schedule_to_close"),
        ("heartbeat_timeout", "heartbeat"),
        ("next", "hand_off"),
        ("then", "hand_off"),
        ("queue", "task_queue"),
        ("retries", "retry"),
        ("retry_policy", "retry"),
        ("doc", "description"),
        ("local_activity", "local"),
        ("concurrency", "max_concurrent"),
        ("max_concurrency", "max_concurrent"),
        ("rate", "per_second"),
        ("rate_limit", "per_second"),
    ],
};

const RETRY: Keys = Keys {
    what: "`retry(..)`",
    keys: &[
        "attempts",
        "initial_interval",
        "max_interval",
        "backoff",
        "jitter",
        "non_retryable",
    ],
    aliases: &[
        ("max_attempts", "attempts"),
        ("maximum_attempts", "attempts"),
        ("backoff_coefficient", "backoff"),
        ("maximum_interval", "max_interval"),
        ("non_retryable_errors", "non_retryable"),
        ("non_retryable_error_types", "non_retryable"),
    ],
};

const FLOW: Keys = Keys {
    what: "`#[flow(..)]`",
    keys: &[
        "name",
        "description",
        "task_queue",
        "execution_timeout",
        "run_timeout",
        "signals",
        "queries",
        "updates",
        "validate",
    ],
    aliases: &[
        ("signal", "signals"),
        ("query", "queries"),
        ("update", "updates"),
        ("validators", "validate"),
        ("timeout", "execution_timeout"),
        ("workflow_execution_timeout", "execution_timeout"),
        ("workflow_run_timeout", "run_timeout"),
        ("queue", "task_queue"),
    ],
};

const TOOL: Keys = Keys {
    what: "`#[tool(..)]`",
    keys: &[
        "name",
        "description",
        "timeout",
        "schedule_to_close",
        "heartbeat",
        "task_queue",
        "local",
        "approval",
        "max_concurrent",
        "per_second",
        "priority",
        "retry",
    ],
    aliases: &[
        ("needs_approval", "approval"),
        ("requires_approval", "approval"),
        ("approve", "approval"),
        ("start_to_close", "timeout"),
        ("start_to_close_timeout", "timeout"),
        ("schedule_to_close_timeout", "schedule_to_close"),
        ("heartbeat_timeout", "heartbeat"),
        ("queue", "task_queue"),
        ("retries", "retry"),
        ("retry_policy", "retry"),
        ("doc", "description"),
        ("concurrency", "max_concurrent"),
        ("max_concurrency", "max_concurrent"),
        ("rate", "per_second"),
        ("rate_limit", "per_second"),
    ],
};

/// The error classes `non_retryable` accepts (flock's `ErrorClass` names).
pub const ERROR_CLASSES: [&str; 5] = [
    "RateLimited",
    "Transient",
    "Permanent",
    "InvalidInput",
    "InvalidOutput",
];

/// Parses `#[agent(..)]`'s arguments.
pub fn parse_agent(cx: &Ctxt, args: TokenStream) -> AgentAttrs {
    let mut attrs = AgentAttrs::default();
    parse_keys(cx, args, &AGENT, |key, meta| attrs.set(cx, key, meta));
    attrs
}

/// Parses `#[flow(..)]`'s arguments.
pub fn parse_flow(cx: &Ctxt, args: TokenStream) -> FlowAttrs {
    let mut attrs = FlowAttrs::default();
    parse_keys(cx, args, &FLOW, |key, meta| attrs.set(cx, key, meta));
    attrs
}

/// Parses `#[tool(..)]`'s arguments.
pub fn parse_tool(cx: &Ctxt, args: TokenStream) -> ToolAttrs {
    let mut attrs = ToolAttrs::default();
    parse_keys(cx, args, &TOOL, |key, meta| {
        match key {
            "name" => attrs.name = lit_str(cx, meta, "name = \"search\"")?,
            "description" => {
                attrs.description = lit_str(cx, meta, "description = \"What the tool does.\"")?
            }
            "timeout" => attrs.timeout = millis(cx, meta, "timeout = \"30s\"")?,
            "schedule_to_close" => {
                attrs.schedule_to_close = millis(cx, meta, "schedule_to_close = \"5m\"")?
            }
            "heartbeat" => attrs.heartbeat = millis(cx, meta, "heartbeat = \"10s\"")?,
            "task_queue" => attrs.task_queue = lit_str(cx, meta, "task_queue = \"tools\"")?,
            "local" => attrs.local = flag(cx, meta, "local = true")?,
            "approval" => attrs.approval = flag(cx, meta, "approval = true")?,
            "max_concurrent" | "per_second" | "priority" => attrs.limits.set(cx, key, meta)?,
            _ => attrs.retry = retry(cx, meta)?,
        }
        Ok(())
    });
    attrs
}

impl AgentAttrs {
    fn set(&mut self, cx: &Ctxt, key: &str, meta: &ParseNestedMeta) -> syn::Result<()> {
        match key {
            "name" => self.name = lit_str(cx, meta, "name = \"research\"")?,
            "description" => {
                self.description = lit_str(cx, meta, "description = \"What the agent does.\"")?
            }
            "model" => self.model = lit_str(cx, meta, "model = \"openai/gpt-4o-mini\"")?,
            "hand_off" => self.hand_off = path(cx, meta, "hand_off = next_agent")?,
            "timeout" => self.timeout = millis(cx, meta, "timeout = \"30s\"")?,
            "schedule_to_close" => {
                self.schedule_to_close = millis(cx, meta, "schedule_to_close = \"5m\"")?
            }
            "heartbeat" => self.heartbeat = millis(cx, meta, "heartbeat = \"10s\"")?,
            "task_queue" => self.task_queue = lit_str(cx, meta, "task_queue = \"agents\"")?,
            "output_retries" => self.output_retries = int(cx, meta, "output_retries = 2")?,
            "max_tool_rounds" => self.max_tool_rounds = int(cx, meta, "max_tool_rounds = 20")?,
            "mcp" => self.mcp = str_list(cx, meta, "mcp = [\"files\", \"search\"]")?,
            "continue_as_new_after" => {
                self.continue_as_new_after = int(cx, meta, "continue_as_new_after = 500")?
            }
            "local" => self.local = flag(cx, meta, "local = false")?,
            "tools" => self.tools = path_list(cx, meta, "tools = [search, fetch_page]")?,
            "max_concurrent" | "per_second" | "priority" => self.limits.set(cx, key, meta)?,
            _ => self.retry = retry(cx, meta)?,
        }
        Ok(())
    }
}

impl LimitAttrs {
    fn set(&mut self, cx: &Ctxt, key: &str, meta: &ParseNestedMeta) -> syn::Result<()> {
        if key == "priority" {
            self.priority = int(cx, meta, "priority = 1")?;
            if let Some(priority) = &self.priority
                && !(1..=5).contains(&priority.value)
            {
                cx.error_at(
                    priority.span,
                    "`priority` is 1 (first) to 5 (last), Temporal's default levels",
                );
            }
        } else if key == "max_concurrent" {
            self.max_concurrent = int(cx, meta, "max_concurrent = 4")?;
            if let Some(limit) = &self.max_concurrent
                && limit.value == 0
            {
                cx.error_at(
                    limit.span,
                    "`max_concurrent` must be at least 1 (a step allowed no call at once could never run)",
                );
            }
        } else {
            self.per_second = float(cx, meta, "per_second = 2.5")?;
            if let Some(rate) = &self.per_second
                && rate.value <= 0.0
            {
                cx.error_at(
                    rate.span,
                    "`per_second` must be above 0 (calls started per second; `0.5` is one every two seconds)",
                );
            }
        }
        Ok(())
    }
}

impl RetryAttrs {
    fn set(&mut self, cx: &Ctxt, key: &str, meta: &ParseNestedMeta) -> syn::Result<()> {
        match key {
            "attempts" => self.attempts = attempts(cx, meta)?,
            "initial_interval" => {
                self.initial_interval = millis(cx, meta, "initial_interval = \"2s\"")?
            }
            "max_interval" => self.max_interval = millis(cx, meta, "max_interval = \"1m\"")?,
            "backoff" => self.backoff = float(cx, meta, "backoff = 2.0")?,
            "jitter" => self.jitter = float(cx, meta, "jitter = 0.2")?,
            _ => self.non_retryable = error_classes(cx, meta)?,
        }
        Ok(())
    }
}

impl FlowAttrs {
    fn set(&mut self, cx: &Ctxt, key: &str, meta: &ParseNestedMeta) -> syn::Result<()> {
        match key {
            "name" => self.name = lit_str(cx, meta, "name = \"research_flow\"")?,
            "description" => {
                self.description = lit_str(cx, meta, "description = \"What the flow does.\"")?
            }
            "task_queue" => self.task_queue = lit_str(cx, meta, "task_queue = \"flows\"")?,
            "execution_timeout" => {
                self.execution_timeout = millis(cx, meta, "execution_timeout = \"1h\"")?
            }
            "run_timeout" => self.run_timeout = millis(cx, meta, "run_timeout = \"30m\"")?,
            "signals" => messages(meta, MessageKind::Signal, &mut self.messages)?,
            "queries" => messages(meta, MessageKind::Query, &mut self.messages)?,
            "updates" => messages(meta, MessageKind::Update, &mut self.messages)?,
            _ => meta.parse_nested_meta(|entry| {
                let Some(update) = entry.path.get_ident().cloned() else {
                    cx.error_spanned_by(
                        &entry.path,
                        "expected an update's name: `validate(edit = check_edit)`",
                    );
                    return skip_value(&entry);
                };
                let validator: Path = entry.value()?.parse()?;
                self.validators.push((update, validator));
                Ok(())
            })?,
        }
        Ok(())
    }
}

/// `signals(/// doc\n name: Type, ..)`; for updates `name: Input -> Answer`.
fn messages(
    meta: &ParseNestedMeta,
    kind: MessageKind,
    out: &mut Vec<MessageDecl>,
) -> syn::Result<()> {
    let content;
    syn::parenthesized!(content in meta.input);
    while !content.is_empty() {
        let docs = content.call(syn::Attribute::parse_outer)?;
        let name: Ident = content.parse()?;
        content.parse::<Token![:]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                match kind {
                    MessageKind::Update => {
                        "expected `name: Input -> Answer`, e.g. `updates(edit: Edit -> Draft)`"
                    }
                    MessageKind::Signal => {
                        "expected `name: Type`, e.g. `signals(approve: Decision)`"
                    }
                    MessageKind::Query => "expected `name: Type`, e.g. `queries(status: Status)`",
                },
            )
        })?;
        let ty: syn::Type = content.parse()?;
        let answer = if kind == MessageKind::Update {
            content.parse::<Token![->]>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "an update is answered: `updates(edit: Edit -> Draft)`",
                )
            })?;
            Some(content.parse::<syn::Type>()?)
        } else {
            None
        };
        out.push(MessageDecl {
            kind,
            docs,
            name,
            ty,
            answer,
        });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(())
}

/// Runs `set` on every known, first-seen key of an argument list; reports the others.
fn parse_keys(
    cx: &Ctxt,
    args: TokenStream,
    keys: &Keys,
    mut set: impl FnMut(&str, &ParseNestedMeta) -> syn::Result<()>,
) {
    let mut seen = Vec::new();
    let parser = syn::meta::parser(|meta| dispatch(cx, keys, &mut seen, &meta, &mut set));
    if let Err(error) = parser.parse2(args) {
        cx.syn_error(error);
    }
}

fn dispatch(
    cx: &Ctxt,
    keys: &Keys,
    seen: &mut Vec<String>,
    meta: &ParseNestedMeta,
    set: &mut dyn FnMut(&str, &ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<()> {
    let Some(ident) = meta.path.get_ident() else {
        cx.error_spanned_by(
            &meta.path,
            format!("expected a key of {}, found a path", keys.what),
        );
        return skip_value(meta);
    };
    let key = ident.to_string();
    if !keys.keys.contains(&key.as_str()) {
        cx.error_spanned_by(ident, unknown_key(keys, &key));
        return skip_value(meta);
    }
    if seen.contains(&key) {
        cx.error_spanned_by(
            ident,
            format!("duplicate key `{key}` in {}: set it once", keys.what),
        );
        return skip_value(meta);
    }
    seen.push(key.clone());
    set(&key, meta)
}

fn unknown_key(keys: &Keys, key: &str) -> String {
    let suggestion = keys
        .aliases
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, meant)| *meant)
        .or_else(|| did_you_mean(key, keys.keys));
    if let Some(meant) = suggestion {
        return format!(
            "unknown key `{key}` in {}; did you mean `{meant}`?",
            keys.what
        );
    }
    if std::ptr::eq(keys.keys, AGENT.keys)
        && (RETRY.keys.contains(&key) || RETRY.aliases.iter().any(|(a, _)| *a == key))
    {
        return format!("`{key}` goes inside `retry(..)`: `retry({key} = ..)`");
    }
    let expected = keys
        .keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "unknown key `{key}` in {}; expected one of {expected}",
        keys.what
    )
}

/// Consumes whatever follows a key that is being skipped: `= value` or `(..)`.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// The name of the key being parsed.
fn key_name(meta: &ParseNestedMeta) -> String {
    meta.path
        .get_ident()
        .map_or_else(String::new, ToString::to_string)
}

/// The expression after `key =`; `None` (reported) when there is no `=`.
fn value(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{}` needs a value: `{example}`", key_name(meta)),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse()?))
}

fn lit(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, attrs }) if attrs.is_empty() => Some(lit),
        _ => None,
    }
}

fn lit_str(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<LitStr>> {
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    match lit(&expr) {
        Some(Lit::Str(s)) => Ok(Some(s.clone())),
        _ => {
            cx.error_spanned_by(
                &expr,
                format!("`{}` takes a string literal: `{example}`", key_name(meta)),
            );
            Ok(None)
        }
    }
}

fn millis(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Millis>> {
    let Some(text) = lit_str(cx, meta, example)? else {
        return Ok(None);
    };
    match duration::parse_millis(&text.value()) {
        Ok(0) => {
            cx.error_spanned_by(
                &text,
                format!("`{}` must be longer than zero", key_name(meta)),
            );
            Ok(None)
        }
        Ok(millis) => Ok(Some(Spanned {
            value: millis,
            span: text.span(),
        })),
        Err(reason) => {
            cx.error_spanned_by(&text, format!("`{}`: {reason}", key_name(meta)));
            Ok(None)
        }
    }
}

fn int(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Spanned<u32>>> {
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    let key = key_name(meta);
    match lit(&expr) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(value) => Ok(Some(Spanned {
                value,
                span: int.span(),
            })),
            Err(_) => {
                cx.error_spanned_by(
                    int,
                    format!("`{key}` must be a whole number from 0 to {}", u32::MAX),
                );
                Ok(None)
            }
        },
        _ => {
            cx.error_spanned_by(&expr, format!("`{key}` takes a whole number: `{example}`"));
            Ok(None)
        }
    }
}

/// `attempts = N` (at least 1) or `attempts = unlimited`.
fn attempts(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Spanned<Attempts>>> {
    let example = "attempts = 5";
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    let unlimited = matches!(
        &expr,
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() && p.path.is_ident(UNLIMITED)
    );
    if unlimited {
        return Ok(Some(Spanned {
            value: Attempts::Unlimited,
            span: expr.span(),
        }));
    }
    let Some(Lit::Int(int)) = lit(&expr) else {
        cx.error_spanned_by(
            &expr,
            format!(
                "`attempts` takes a whole number (`{example}`) or `{UNLIMITED}` (`attempts = {UNLIMITED}`: retry until the agent succeeds)"
            ),
        );
        return Ok(None);
    };
    match int.base10_parse::<u32>().map(NonZeroU32::new) {
        Ok(Some(n)) => Ok(Some(Spanned {
            value: Attempts::AtMost(n),
            span: int.span(),
        })),
        Ok(None) => {
            cx.error_spanned_by(
                int,
                format!(
                    "`attempts = 0` would retry forever: Temporal reads a maximum of 0 attempts as unlimited; write `attempts = 1` for a single attempt without retries, or `attempts = {UNLIMITED}` to retry until the agent succeeds"
                ),
            );
            Ok(None)
        }
        Err(_) => {
            cx.error_spanned_by(
                int,
                format!(
                    "`attempts` must be a whole number from 1 to {}, or `{UNLIMITED}`",
                    u32::MAX
                ),
            );
            Ok(None)
        }
    }
}

/// `key` alone (true) or `key = true|false`.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Spanned<bool>>> {
    if !meta.input.peek(Token![=]) && !meta.input.peek(syn::token::Paren) {
        return Ok(Some(Spanned {
            value: true,
            span: meta.path.span(),
        }));
    }
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    match lit(&expr) {
        Some(Lit::Bool(value)) => Ok(Some(Spanned {
            value: value.value,
            span: value.span,
        })),
        _ => {
            cx.error_spanned_by(
                &expr,
                format!("`{}` is a flag: write `{0}` or `{example}`", key_name(meta)),
            );
            Ok(None)
        }
    }
}

fn float(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Spanned<f64>>> {
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    let parsed = match lit(&expr) {
        Some(Lit::Float(float)) => float.base10_parse::<f64>().ok(),
        Some(Lit::Int(int)) => int.base10_parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(value) if value.is_finite() => Ok(Some(Spanned {
            value,
            span: expr.span(),
        })),
        _ => {
            cx.error_spanned_by(
                &expr,
                format!("`{}` takes a number: `{example}`", key_name(meta)),
            );
            Ok(None)
        }
    }
}

fn path(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Path>> {
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(Some(p.path)),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            cx.error_spanned_by(
                &s,
                format!(
                    "`{}` names the agent itself, not a string: `{}`",
                    key_name(meta),
                    example.replace("next_agent", &s.value())
                ),
            );
            Ok(None)
        }
        other => {
            cx.error_spanned_by(
                &other,
                format!(
                    "`{}` takes the name of an agent: `{example}`",
                    key_name(meta)
                ),
            );
            Ok(None)
        }
    }
}

fn list(cx: &Ctxt, meta: &ParseNestedMeta, example: &str) -> syn::Result<Option<Vec<Expr>>> {
    let Some(expr) = value(cx, meta, example)? else {
        return Ok(None);
    };
    match expr {
        Expr::Array(array) => Ok(Some(array.elems.into_iter().collect())),
        other => {
            cx.error_spanned_by(
                &other,
                format!("`{}` takes a list in brackets: `{example}`", key_name(meta)),
            );
            Ok(None)
        }
    }
}

fn path_list(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    example: &str,
) -> syn::Result<Option<Spanned<Vec<Path>>>> {
    let span = meta.path.span();
    let Some(items) = list(cx, meta, example)? else {
        return Ok(None);
    };
    let mut paths = Vec::new();
    for item in items {
        match item {
            Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => paths.push(p.path),
            other => cx.error_spanned_by(
                &other,
                format!("expected the name of a `#[tool]` fn: `{example}`"),
            ),
        }
    }
    Ok(Some(Spanned { value: paths, span }))
}

fn str_list(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    example: &str,
) -> syn::Result<Option<Spanned<Vec<LitStr>>>> {
    let span = meta.path.span();
    let Some(items) = list(cx, meta, example)? else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for item in items {
        match item {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) if !s.value().is_empty() => names.push(s),
            other => cx.error_spanned_by(
                &other,
                format!("expected the name of an MCP server, a string: `{example}`"),
            ),
        }
    }
    Ok(Some(Spanned { value: names, span }))
}

fn error_classes(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<Spanned<String>>> {
    let example = "non_retryable = [\"InvalidOutput\"]";
    let Some(items) = list(cx, meta, example)? else {
        return Ok(Vec::new());
    };
    let mut classes = Vec::new();
    for item in items {
        let name = match &item {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => s.value(),
            Expr::Path(p) if p.path.get_ident().is_some() => p.path.segments[0].ident.to_string(),
            other => {
                cx.error_spanned_by(
                    other,
                    format!("expected the name of an error class: `{example}`"),
                );
                continue;
            }
        };
        if ERROR_CLASSES.contains(&name.as_str()) {
            classes.push(Spanned {
                value: name,
                span: item.span(),
            });
            continue;
        }
        let all = ERROR_CLASSES.join(", ");
        let message = match did_you_mean(&name, &ERROR_CLASSES) {
            Some(meant) => format!("unknown error class `{name}`; did you mean `{meant}`?"),
            None => format!("unknown error class `{name}`; the classes are {all}"),
        };
        cx.error_spanned_by(&item, message);
    }
    Ok(classes)
}

fn retry(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<RetryAttrs> {
    let mut retry = RetryAttrs::default();
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            "write the retry policy in parentheses: `retry(attempts = 5, initial_interval = \"2s\")`",
        );
        skip_value(meta)?;
        return Ok(retry);
    }
    let mut seen = Vec::new();
    meta.parse_nested_meta(|inner| {
        dispatch(cx, &RETRY, &mut seen, &inner, &mut |key, inner| {
            retry.set(cx, key, inner)
        })
    })?;
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn errors(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn parses_every_agent_key() {
        let cx = Ctxt::new();
        let attrs = parse_agent(
            &cx,
            quote! {
                name = "researcher", description = "Finds things.", model = "openai/gpt-4o",
                hand_off = crate::summarize, timeout = "30s", schedule_to_close = "5m",
                heartbeat = "500ms", task_queue = "agents", output_retries = 4, local,
                tools = [search, fetch_page],
                retry(attempts = 5, initial_interval = "2s", max_interval = "1h", backoff = 1.5,
                      jitter = 0.25, non_retryable = ["Permanent", InvalidOutput])
            },
        );
        assert!(errors(cx).is_empty());
        assert_eq!(attrs.name.unwrap().value(), "researcher");
        assert_eq!(attrs.description.unwrap().value(), "Finds things.");
        assert_eq!(attrs.model.unwrap().value(), "openai/gpt-4o");
        let hand_off = attrs.hand_off.unwrap();
        assert_eq!(quote!(#hand_off).to_string(), "crate :: summarize");
        assert_eq!(attrs.timeout.unwrap().value, 30_000);
        assert_eq!(attrs.schedule_to_close.unwrap().value, 300_000);
        assert_eq!(attrs.heartbeat.unwrap().value, 500);
        assert_eq!(attrs.task_queue.unwrap().value(), "agents");
        assert_eq!(attrs.output_retries.unwrap().value, 4);
        assert!(attrs.local.unwrap().value);
        assert_eq!(attrs.tools.unwrap().value.len(), 2);
        let retry = attrs.retry;
        assert_eq!(
            retry.attempts.unwrap().value,
            Attempts::AtMost(NonZeroU32::new(5).unwrap())
        );
        assert_eq!(retry.initial_interval.unwrap().value, 2_000);
        assert_eq!(retry.max_interval.unwrap().value, 3_600_000);
        assert_eq!(retry.backoff.unwrap().value, 1.5);
        assert_eq!(retry.jitter.unwrap().value, 0.25);
        let classes: Vec<_> = retry.non_retryable.into_iter().map(|c| c.value).collect();
        assert_eq!(classes, ["Permanent", "InvalidOutput"]);
    }

    #[test]
    fn empty_arguments_are_fine() {
        let cx = Ctxt::new();
        let attrs = parse_agent(&cx, quote!());
        assert!(errors(cx).is_empty());
        assert!(attrs.name.is_none() && attrs.retry.attempts.is_none());
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let cx = Ctxt::new();
        parse_agent(
            &cx,
            quote!(
                timout = "30s",
                start_to_close = "1s",
                attempts = 3,
                frobnicate = 1,
                retry(max_attempts = 3, backof = 2.0)
            ),
        );
        assert_eq!(
            errors(cx),
            [
                "unknown key `timout` in `#[agent(..)]`; did you mean `timeout`?",
                "unknown key `start_to_close` in `#[agent(..)]`; did you mean `timeout`?",
                "`attempts` goes inside `retry(..)`: `retry(attempts = ..)`",
                "unknown key `frobnicate` in `#[agent(..)]`; expected one of `name`, `description`, `model`, `hand_off`, `timeout`, `schedule_to_close`, `heartbeat`, `task_queue`, `output_retries`, `max_tool_rounds`, `continue_as_new_after`, `local`, `tools`, `mcp`, `max_concurrent`, `per_second`, `priority`, `retry`",
                "unknown key `max_attempts` in `retry(..)`; did you mean `attempts`?",
                "unknown key `backof` in `retry(..)`; did you mean `backoff`?",
            ]
        );
    }

    #[test]
    fn duplicates_are_reported_at_the_second_occurrence() {
        let cx = Ctxt::new();
        let attrs = parse_agent(
            &cx,
            quote!(
                timeout = "1s",
                timeout = "2s",
                retry(attempts = 1, attempts = 2)
            ),
        );
        assert_eq!(attrs.timeout.unwrap().value, 1_000);
        assert_eq!(
            attrs.retry.attempts.unwrap().value,
            Attempts::AtMost(NonZeroU32::MIN)
        );
        assert_eq!(
            errors(cx),
            [
                "duplicate key `timeout` in `#[agent(..)]`: set it once",
                "duplicate key `attempts` in `retry(..)`: set it once",
            ]
        );
    }

    #[test]
    fn bad_values_are_all_reported() {
        let cx = Ctxt::new();
        let attrs = parse_agent(
            &cx,
            quote!(
                timeout = "5x",
                heartbeat = "0s",
                name = research,
                model,
                hand_off = "summarize",
                output_retries = -1,
                tools = search,
                retry(
                    attempts = "3",
                    backoff = "2",
                    non_retryable = ["Permanant", "Nope"]
                ),
                local = "no",
                task_queue = "q"
            ),
        );
        assert_eq!(
            attrs.task_queue.unwrap().value(),
            "q",
            "parsing went on after errors"
        );
        assert_eq!(
            errors(cx),
            [
                "`timeout`: invalid unit `x` in duration \"5x\": write a whole number and a unit (`ms`, `s`, `m` or `h`), e.g. \"500ms\", \"30s\", \"5m\", \"2h\"",
                "`heartbeat` must be longer than zero",
                "`name` takes a string literal: `name = \"research\"`",
                "`model` needs a value: `model = \"openai/gpt-4o-mini\"`",
                "`hand_off` names the agent itself, not a string: `hand_off = summarize`",
                "`output_retries` takes a whole number: `output_retries = 2`",
                "`tools` takes a list in brackets: `tools = [search, fetch_page]`",
                "`attempts` takes a whole number (`attempts = 5`) or `unlimited` (`attempts = unlimited`: retry until the agent succeeds)",
                "`backoff` takes a number: `backoff = 2.0`",
                "unknown error class `Permanant`; did you mean `Permanent`?",
                "unknown error class `Nope`; the classes are RateLimited, Transient, Permanent, InvalidInput, InvalidOutput",
                "`local` is a flag: write `local` or `local = false`",
            ]
        );
    }

    #[test]
    fn local_is_a_flag_or_a_bool() {
        let cx = Ctxt::new();
        let off = parse_agent(&cx, quote!(local = false));
        let on = parse_agent(&cx, quote!(local = true));
        let unset = parse_agent(&cx, quote!(timeout = "1s"));
        assert!(errors(cx).is_empty());
        assert!(!off.local.unwrap().value);
        assert!(on.local.unwrap().value);
        assert!(unset.local.is_none());
    }

    #[test]
    fn integer_overflow_is_reported_at_the_literal() {
        let cx = Ctxt::new();
        parse_agent(&cx, quote!(retry(attempts = 5000000000)));
        parse_agent(&cx, quote!(output_retries = 5000000000));
        assert_eq!(
            errors(cx),
            [
                "`attempts` must be a whole number from 1 to 4294967295, or `unlimited`",
                "`output_retries` must be a whole number from 0 to 4294967295",
            ]
        );
    }

    #[test]
    fn unlimited_attempts_are_spelled_out_and_zero_is_refused() {
        let cx = Ctxt::new();
        let unlimited = parse_agent(&cx, quote!(retry(attempts = unlimited)));
        assert!(errors(cx).is_empty());
        assert_eq!(unlimited.retry.attempts.unwrap().value, Attempts::Unlimited);

        let cx = Ctxt::new();
        let zero = parse_agent(&cx, quote!(retry(attempts = 0)));
        parse_agent(&cx, quote!(retry(attempts = forever)));
        parse_agent(&cx, quote!(retry(attempts = self::unlimited)));
        assert!(zero.retry.attempts.is_none());
        assert_eq!(
            errors(cx),
            [
                "`attempts = 0` would retry forever: Temporal reads a maximum of 0 attempts as unlimited; write `attempts = 1` for a single attempt without retries, or `attempts = unlimited` to retry until the agent succeeds",
                "`attempts` takes a whole number (`attempts = 5`) or `unlimited` (`attempts = unlimited`: retry until the agent succeeds)",
                "`attempts` takes a whole number (`attempts = 5`) or `unlimited` (`attempts = unlimited`: retry until the agent succeeds)",
            ]
        );
    }

    #[test]
    fn zero_attempts_is_reported_at_the_zero() {
        let cx = Ctxt::new();
        let args: TokenStream = "retry(attempts = 0)".parse().unwrap();
        parse_agent(&cx, args);
        let error = cx.check().unwrap_err();
        let start = error.span().start();
        assert_eq!((start.line, start.column), (1, 17));
    }

    #[test]
    fn syntax_errors_are_reported() {
        let cx = Ctxt::new();
        parse_agent(&cx, quote!(timeout = "1s" name = "x"));
        assert_eq!(errors(cx), ["expected `,`"]);
    }

    #[test]
    fn flow_and_tool_keys() {
        let cx = Ctxt::new();
        let flow = parse_flow(
            &cx,
            quote!(
                name = "f",
                description = "d",
                task_queue = "q",
                execution_timeout = "1h",
                run_timeout = "30m"
            ),
        );
        let tool = parse_tool(&cx, quote!(name = "search", description = "Searches."));
        assert!(errors(cx).is_empty());
        assert_eq!(flow.execution_timeout.unwrap().value, 3_600_000);
        assert_eq!(flow.run_timeout.unwrap().value, 1_800_000);
        assert_eq!(tool.name.unwrap().value(), "search");

        let cx = Ctxt::new();
        parse_flow(&cx, quote!(timeout = "1h", model = "x"));
        parse_tool(&cx, quote!(nme = "x"));
        assert_eq!(
            errors(cx),
            [
                "unknown key `timeout` in `#[flow(..)]`; did you mean `execution_timeout`?",
                "unknown key `model` in `#[flow(..)]`; expected one of `name`, `description`, `task_queue`, `execution_timeout`, `run_timeout`, `signals`, `queries`, `updates`, `validate`",
                "unknown key `nme` in `#[tool(..)]`; did you mean `name`?",
            ]
        );
    }
}

//! The determinism lint of `#[flow]` bodies. A flow body is Temporal workflow code: it is replayed
//! from its history, so it must take the same path on every replay. Calls the macro can see to be
//! nondeterministic (the clock, timers, threads and tasks, randomness) are compile errors at the
//! call, each naming the `ctx` replacement; every mistake is reported in one compile.
//!
//! The lint sees paths, not types: `Instant::now()` is seen, `instant.elapsed()` is not, nor a
//! function imported under its bare name (`use tokio::time::sleep; sleep(..)`); a macro's
//! arguments are read when they parse as expressions. For the rare deliberate case, the
//! statement or expression is marked `#[flock::nondeterministic]`, which the lint skips and
//! [`strip`] removes before the body reaches rustc (attributes on statements are unstable).

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::visit_mut::{self, VisitMut};
use syn::{Arm, Attribute, Block, Expr, Item, Local, Macro, Meta, Path, StmtMacro, Token};

use crate::ctxt::{Ctxt, did_you_mean};

/// The escape hatch, as users write it.
const HATCH: &str = "flock::nondeterministic";

/// What a flow uses instead of a nondeterministic call.
#[derive(Clone, Copy)]
enum Fix {
    Now,
    Sleep,
    Timer,
    Concurrency,
    Random,
    Uuid,
}

impl Fix {
    /// Why the call is nondeterministic, and what to write, with `ctx` the flow's context name.
    fn advice(self, ctx: &str) -> String {
        match self {
            Fix::Now => format!("reads the clock; use `{ctx}.now()`, the flow's replayed time"),
            Fix::Sleep => format!(
                "waits on a timer that is not in the flow's history; use `{ctx}.sleep(duration).await?`, a durable timer"
            ),
            Fix::Timer => format!(
                "runs a timer that is not in the flow's history; wait with `{ctx}.sleep(duration).await?` (a durable timer), and bound an agent with `#[agent(timeout = \"..\")]`"
            ),
            Fix::Concurrency => format!(
                "runs work outside the flow's history; call agents with `{ctx}.call(agent, input)` and run the calls concurrently with `flock::join!` or `flock::join_all`"
            ),
            Fix::Random => format!(
                "draws different numbers on every replay; use `{ctx}.random_u64()` or `{ctx}.random_f64()`, seeded by the run"
            ),
            Fix::Uuid => format!(
                "makes a different id on every replay; use `{ctx}.uuid()`, seeded by the run"
            ),
        }
    }
}

/// Paths the lint reports, by their last segments: a path matches when it ends with these
/// (`std::time::Instant::now`, `time::Instant::now` and `Instant::now` all end with
/// `Instant::now`). Bare names that other crates use too (`sleep`, `spawn`, `random`) are not
/// reported alone.
const RULES: &[(&[&str], Fix)] = &[
    (&["Instant", "now"], Fix::Now),
    (&["SystemTime", "now"], Fix::Now),
    (&["Utc", "now"], Fix::Now),
    (&["Local", "now"], Fix::Now),
    (&["OffsetDateTime", "now_utc"], Fix::Now),
    (&["OffsetDateTime", "now_local"], Fix::Now),
    (&["time", "sleep"], Fix::Sleep),
    (&["time", "sleep_until"], Fix::Sleep),
    (&["thread", "sleep"], Fix::Sleep),
    (&["task", "sleep"], Fix::Sleep),
    (&["time", "timeout"], Fix::Timer),
    (&["time", "timeout_at"], Fix::Timer),
    (&["time", "interval"], Fix::Timer),
    (&["time", "interval_at"], Fix::Timer),
    (&["tokio", "spawn"], Fix::Concurrency),
    (&["task", "spawn"], Fix::Concurrency),
    (&["task", "spawn_blocking"], Fix::Concurrency),
    (&["task", "spawn_local"], Fix::Concurrency),
    (&["thread", "spawn"], Fix::Concurrency),
    (&["rand", "random"], Fix::Random),
    (&["rand", "random_range"], Fix::Random),
    (&["rand", "random_bool"], Fix::Random),
    (&["rand", "random_iter"], Fix::Random),
    (&["rand", "random_ratio"], Fix::Random),
    (&["rand", "rng"], Fix::Random),
    (&["rand", "thread_rng"], Fix::Random),
    (&["thread_rng"], Fix::Random),
    (&["getrandom", "fill"], Fix::Random),
    (&["getrandom", "getrandom"], Fix::Random),
    (&["Uuid", "new_v4"], Fix::Uuid),
    (&["Uuid", "now_v1"], Fix::Uuid),
    (&["Uuid", "now_v6"], Fix::Uuid),
    (&["Uuid", "now_v7"], Fix::Uuid),
];

/// Macros whose arguments are not evaluated.
const UNEVALUATED_MACROS: &[&str] = &["stringify", "concat", "include_str", "include_bytes"];

/// Reports every nondeterministic call in a flow body; `ctx` is the context parameter's name.
pub fn lint(cx: &Ctxt, body: &Block, ctx: &str) {
    Lint { cx, ctx }.visit_block(body);
}

/// The body without its `#[flock::nondeterministic]` attributes (and the misspelled ones [`lint`]
/// reports), for rustc.
pub fn strip(body: &Block) -> Block {
    let mut body = body.clone();
    Strip::default().visit_block_mut(&mut body);
    body
}

macro_rules! expr_attrs {
    ($expr:expr) => {
        match $expr {
            Expr::Array(syn::ExprArray { attrs, .. })
            | Expr::Assign(syn::ExprAssign { attrs, .. })
            | Expr::Async(syn::ExprAsync { attrs, .. })
            | Expr::Await(syn::ExprAwait { attrs, .. })
            | Expr::Binary(syn::ExprBinary { attrs, .. })
            | Expr::Block(syn::ExprBlock { attrs, .. })
            | Expr::Break(syn::ExprBreak { attrs, .. })
            | Expr::Call(syn::ExprCall { attrs, .. })
            | Expr::Cast(syn::ExprCast { attrs, .. })
            | Expr::Closure(syn::ExprClosure { attrs, .. })
            | Expr::Const(syn::ExprConst { attrs, .. })
            | Expr::Continue(syn::ExprContinue { attrs, .. })
            | Expr::Field(syn::ExprField { attrs, .. })
            | Expr::ForLoop(syn::ExprForLoop { attrs, .. })
            | Expr::Group(syn::ExprGroup { attrs, .. })
            | Expr::If(syn::ExprIf { attrs, .. })
            | Expr::Index(syn::ExprIndex { attrs, .. })
            | Expr::Infer(syn::ExprInfer { attrs, .. })
            | Expr::Let(syn::ExprLet { attrs, .. })
            | Expr::Lit(syn::ExprLit { attrs, .. })
            | Expr::Loop(syn::ExprLoop { attrs, .. })
            | Expr::Macro(syn::ExprMacro { attrs, .. })
            | Expr::Match(syn::ExprMatch { attrs, .. })
            | Expr::MethodCall(syn::ExprMethodCall { attrs, .. })
            | Expr::Paren(syn::ExprParen { attrs, .. })
            | Expr::Path(syn::ExprPath { attrs, .. })
            | Expr::Range(syn::ExprRange { attrs, .. })
            | Expr::RawAddr(syn::ExprRawAddr { attrs, .. })
            | Expr::Reference(syn::ExprReference { attrs, .. })
            | Expr::Repeat(syn::ExprRepeat { attrs, .. })
            | Expr::Return(syn::ExprReturn { attrs, .. })
            | Expr::Struct(syn::ExprStruct { attrs, .. })
            | Expr::Try(syn::ExprTry { attrs, .. })
            | Expr::TryBlock(syn::ExprTryBlock { attrs, .. })
            | Expr::Tuple(syn::ExprTuple { attrs, .. })
            | Expr::Unary(syn::ExprUnary { attrs, .. })
            | Expr::Unsafe(syn::ExprUnsafe { attrs, .. })
            | Expr::While(syn::ExprWhile { attrs, .. })
            | Expr::Yield(syn::ExprYield { attrs, .. }) => Some(attrs),
            _ => None,
        }
    };
}

macro_rules! item_attrs {
    ($item:expr) => {
        match $item {
            Item::Const(syn::ItemConst { attrs, .. })
            | Item::Enum(syn::ItemEnum { attrs, .. })
            | Item::ExternCrate(syn::ItemExternCrate { attrs, .. })
            | Item::Fn(syn::ItemFn { attrs, .. })
            | Item::ForeignMod(syn::ItemForeignMod { attrs, .. })
            | Item::Impl(syn::ItemImpl { attrs, .. })
            | Item::Macro(syn::ItemMacro { attrs, .. })
            | Item::Mod(syn::ItemMod { attrs, .. })
            | Item::Static(syn::ItemStatic { attrs, .. })
            | Item::Struct(syn::ItemStruct { attrs, .. })
            | Item::Trait(syn::ItemTrait { attrs, .. })
            | Item::TraitAlias(syn::ItemTraitAlias { attrs, .. })
            | Item::Type(syn::ItemType { attrs, .. })
            | Item::Union(syn::ItemUnion { attrs, .. })
            | Item::Use(syn::ItemUse { attrs, .. }) => Some(attrs),
            _ => None,
        }
    };
}

/// The idents of a path, without arguments: `rand::random::<u8>` is `["rand", "random"]`.
fn idents(path: &Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

fn is_hatch(attr: &Attribute) -> bool {
    let path = idents(attr.path());
    path == ["flock", "nondeterministic"] || path == ["nondeterministic"]
}

/// A `flock::..` attribute other than the escape hatch: none belongs on a statement or
/// expression.
fn is_other_flock_attr(attr: &Attribute) -> bool {
    let path = idents(attr.path());
    path.len() == 2 && path[0] == "flock" && !is_hatch(attr)
}

/// The path as written, for messages: `std::time::Instant::now`.
fn written(path: &Path) -> String {
    let leading = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{leading}{}", idents(path).join("::"))
}

fn rule(path: &Path) -> Option<Fix> {
    let idents = idents(path);
    RULES
        .iter()
        .find(|(tail, _)| {
            idents.len() >= tail.len() && idents[idents.len() - tail.len()..] == **tail
        })
        .map(|(_, fix)| *fix)
}

/// A macro's arguments, when they are expressions that are evaluated.
pub(crate) fn macro_args(mac: &Macro) -> Option<Punctuated<Expr, Token![,]>> {
    let name = mac.path.segments.last()?.ident.to_string();
    if UNEVALUATED_MACROS.contains(&name.as_str()) {
        return None;
    }
    mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        .ok()
}

struct Lint<'a> {
    cx: &'a Ctxt,
    ctx: &'a str,
}

impl Lint<'_> {
    /// Whether `attrs` exempt their node; reports malformed or misspelled escape hatches.
    /// `statement`: the node is a statement or expression, where no other `flock::` attribute
    /// belongs.
    fn exempt(&self, attrs: &[Attribute], statement: bool) -> bool {
        let mut exempt = false;
        for attr in attrs {
            if is_hatch(attr) {
                exempt = true;
                if !matches!(attr.meta, Meta::Path(_)) {
                    self.cx
                        .error_spanned_by(&attr.meta, format!("`#[{HATCH}]` takes no arguments"));
                }
                continue;
            }
            if statement && is_other_flock_attr(attr) {
                let name = idents(attr.path()).pop().unwrap_or_default();
                let meant = did_you_mean(&name, &["nondeterministic"]).map_or_else(
                    || format!("the escape hatch of the determinism lint is `#[{HATCH}]`"),
                    |_| format!("did you mean `#[{HATCH}]`?"),
                );
                self.cx.error_spanned_by(
                    attr.path(),
                    format!(
                        "unknown attribute `{}` in a flow; {meant}",
                        written(attr.path())
                    ),
                );
            }
        }
        exempt
    }

    fn report(&self, path: &Path, at: impl ToTokens) {
        if let Some(fix) = rule(path) {
            self.cx.error_spanned_by(
                at,
                format!(
                    "`{}` in a flow: a flow must be deterministic (Temporal replays it from its history), and this {}; if this is deliberate, mark the statement `#[{HATCH}]`",
                    written(path),
                    fix.advice(self.ctx),
                ),
            );
        }
    }
}

impl<'ast> Visit<'ast> for Lint<'_> {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        if expr_attrs!(expr).is_some_and(|attrs| self.exempt(attrs, true)) {
            return;
        }
        match expr {
            // At the whole call; its arguments are still read.
            Expr::Call(call) => match &*call.func {
                Expr::Path(func) if func.qself.is_none() && rule(&func.path).is_some() => {
                    self.report(&func.path, call);
                    for arg in &call.args {
                        self.visit_expr(arg);
                    }
                }
                _ => visit::visit_expr(self, expr),
            },
            // Elsewhere, e.g. `.map(Instant::now)`.
            Expr::Path(path) if path.qself.is_none() => self.report(&path.path, path),
            _ => visit::visit_expr(self, expr),
        }
    }

    fn visit_local(&mut self, local: &'ast Local) {
        if !self.exempt(&local.attrs, true) {
            visit::visit_local(self, local);
        }
    }

    fn visit_stmt_macro(&mut self, mac: &'ast StmtMacro) {
        if !self.exempt(&mac.attrs, true) {
            visit::visit_stmt_macro(self, mac);
        }
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if !item_attrs!(item).is_some_and(|attrs| self.exempt(attrs, false)) {
            visit::visit_item(self, item);
        }
    }

    fn visit_arm(&mut self, arm: &'ast Arm) {
        if !self.exempt(&arm.attrs, true) {
            visit::visit_arm(self, arm);
        }
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Some(args) = macro_args(mac) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

/// Removes the escape hatches wherever [`Lint`] honours them, and on statements and expressions
/// the other `flock::..` attributes it reports.
#[derive(Default)]
struct Strip {
    /// How many attributes were removed.
    removed: usize,
}

impl Strip {
    fn attrs(&mut self, attrs: &mut Vec<Attribute>, statement: bool) {
        let before = attrs.len();
        let removed = |attr: &Attribute| is_hatch(attr) || (statement && is_other_flock_attr(attr));
        attrs.retain(|attr| !removed(attr));
        self.removed += before - attrs.len();
    }
}

impl VisitMut for Strip {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Some(attrs) = expr_attrs!(expr) {
            self.attrs(attrs, true);
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        self.attrs(&mut local.attrs, true);
        visit_mut::visit_local_mut(self, local);
    }

    fn visit_stmt_macro_mut(&mut self, mac: &mut StmtMacro) {
        self.attrs(&mut mac.attrs, true);
        visit_mut::visit_stmt_macro_mut(self, mac);
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        if let Some(attrs) = item_attrs!(item) {
            self.attrs(attrs, false);
        }
        visit_mut::visit_item_mut(self, item);
    }

    fn visit_arm_mut(&mut self, arm: &mut Arm) {
        self.attrs(&mut arm.attrs, true);
        visit_mut::visit_arm_mut(self, arm);
    }

    /// The arguments the lint read; rewritten only when an attribute was removed from them.
    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        let Some(mut args) = macro_args(mac) else {
            return;
        };
        let mut inner = Strip::default();
        for arg in &mut args {
            inner.visit_expr_mut(arg);
        }
        if inner.removed > 0 {
            mac.tokens = args.into_token_stream();
            self.removed += inner.removed;
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    fn errors(body: Block) -> Vec<String> {
        let cx = Ctxt::new();
        lint(&cx, &body, "ctx");
        cx.check()
            .err()
            .map_or_else(Vec::new, |e| e.into_iter().map(|e| e.to_string()).collect())
    }

    /// The path each error names.
    fn named(body: Block) -> Vec<String> {
        errors(body)
            .into_iter()
            .map(|e| e.split('`').nth(1).unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn every_nondeterministic_call_is_reported() {
        let body: Block = parse_quote!({
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::time::sleep_until(deadline).await;
            let _ = tokio::time::timeout(d, ctx.call(a, x)).await;
            let mut tick = tokio::time::interval(d);
            let t = std::time::SystemTime::now();
            let i = Instant::now();
            let u = chrono::Utc::now();
            let l = Local::now();
            std::thread::sleep(d);
            tokio::spawn(async {});
            tokio::task::spawn_blocking(|| ());
            std::thread::spawn(|| ());
            let r: u64 = rand::random();
            let g = rand::thread_rng();
            let g = rand::rng();
            let id = uuid::Uuid::new_v4();
            Ok(())
        });
        assert_eq!(
            named(body),
            [
                "tokio::time::sleep",
                "tokio::time::sleep_until",
                "tokio::time::timeout",
                "tokio::time::interval",
                "std::time::SystemTime::now",
                "Instant::now",
                "chrono::Utc::now",
                "Local::now",
                "std::thread::sleep",
                "tokio::spawn",
                "tokio::task::spawn_blocking",
                "std::thread::spawn",
                "rand::random",
                "rand::thread_rng",
                "rand::rng",
                "uuid::Uuid::new_v4",
            ]
        );
    }

    #[test]
    fn messages_name_the_replacement_with_the_context_name() {
        let body: Block = parse_quote!({
            let t = SystemTime::now();
        });
        let cx = Ctxt::new();
        lint(&cx, &body, "flow");
        let error = cx.check().unwrap_err().to_string();
        assert_eq!(
            error,
            "`SystemTime::now` in a flow: a flow must be deterministic (Temporal replays it from its history), and this reads the clock; use `flow.now()`, the flow's replayed time; if this is deliberate, mark the statement `#[flock::nondeterministic]`"
        );
        let advice = |body: Block| {
            let cx = Ctxt::new();
            lint(&cx, &body, "ctx");
            cx.check().unwrap_err().to_string()
        };
        assert!(
            advice(parse_quote!({ tokio::time::sleep(d).await }))
                .contains("use `ctx.sleep(duration).await?`")
        );
        assert!(
            advice(parse_quote!({ tokio::spawn(f) }))
                .contains("`flock::join!` or `flock::join_all`")
        );
        assert!(
            advice(parse_quote!({ rand::random::<f64>() }))
                .contains("`ctx.random_u64()` or `ctx.random_f64()`")
        );
        assert!(advice(parse_quote!({ Uuid::new_v4() })).contains("use `ctx.uuid()`"));
    }

    #[test]
    fn paths_outside_calls_nested_code_and_macro_arguments_are_read() {
        let body: Block = parse_quote!({
            let times: Vec<_> = (0..3).map(|_| Instant::now()).collect();
            let clock = std::iter::repeat_with(SystemTime::now);
            let later = async move { tokio::time::sleep(d).await };
            if x {
                match y {
                    _ => println!("{:?}", Utc::now()),
                }
            }
            let both = flock::join!(ctx.call(a, x), tokio::spawn(f));
            fn helper() -> u64 {
                rand::random()
            }
            Ok(())
        });
        assert_eq!(
            named(body),
            [
                "Instant::now",
                "SystemTime::now",
                "tokio::time::sleep",
                "Utc::now",
                "tokio::spawn",
                "rand::random",
            ]
        );
    }

    #[test]
    fn arguments_of_a_reported_call_are_read_once() {
        let body: Block = parse_quote!({
            tokio::spawn(async move { Instant::now() });
        });
        assert_eq!(named(body), ["tokio::spawn", "Instant::now"]);
    }

    #[test]
    fn deterministic_code_and_lookalikes_pass() {
        let body: Block = parse_quote!({
            let t = ctx.now();
            ctx.sleep(Duration::from_secs(1)).await?;
            let n = ctx.random_u64();
            let id = ctx.uuid();
            let elapsed = t.duration_since(SystemTime::UNIX_EPOCH);
            let started = Instant::from(x);
            let (a, b) = flock::join!(ctx.call(a, x), ctx.call(b, y));
            sleep(d).await;
            spawn(f);
            random();
            let s = stringify!(Instant::now());
            let v = vec![Instant::now(); 0];
            let instant: Instant = x;
            Ok(())
        });
        assert_eq!(errors(body), Vec::<String>::new());
    }

    #[test]
    fn the_escape_hatch_exempts_its_statement_or_expression() {
        let body: Block = parse_quote!({
            #[flock::nondeterministic]
            let t = std::time::Instant::now();
            #[nondeterministic]
            tokio::time::sleep(d).await;
            #[flock::nondeterministic]
            assert!(ctx.now() <= SystemTime::now());
            let x = Input {
                at: #[flock::nondeterministic]
                SystemTime::now(),
            };
            match y {
                #[flock::nondeterministic]
                _ => Instant::now(),
            }
            #[flock::nondeterministic]
            fn helper() -> u64 {
                rand::random()
            }
            let still = Instant::now();
            Ok(())
        });
        assert_eq!(named(body), ["Instant::now"]);
    }

    #[test]
    fn malformed_and_misspelled_escape_hatches_are_reported() {
        let body: Block = parse_quote!({
            #[flock::nondeterministic("timing")]
            let t = Instant::now();
            #[flock::nondeterminstic]
            let u = Instant::now();
            #[flock::random]
            let v = 1;
            #[allow(unused)]
            let w = 2;
        });
        assert_eq!(
            errors(body),
            [
                "`#[flock::nondeterministic]` takes no arguments",
                "unknown attribute `flock::nondeterminstic` in a flow; did you mean `#[flock::nondeterministic]`?",
                "`Instant::now` in a flow: a flow must be deterministic (Temporal replays it from its history), and this reads the clock; use `ctx.now()`, the flow's replayed time; if this is deliberate, mark the statement `#[flock::nondeterministic]`",
                "unknown attribute `flock::random` in a flow; the escape hatch of the determinism lint is `#[flock::nondeterministic]`",
            ]
        );
    }

    #[test]
    fn strip_removes_the_escape_hatches_only() {
        let body: Block = parse_quote!({
            #[flock::nondeterministic]
            let t = Instant::now();
            #[allow(unused)]
            #[nondeterministic]
            let u = 1;
            #[flock::nondeterministic]
            tokio::time::sleep(d).await;
            let x = Input {
                at: #[flock::nondeterministic]
                SystemTime::now(),
            };
            #[flock::nondeterminstic]
            let typo = 1;
            #[flock::tool]
            async fn nested(args: A) -> B {
                todo!()
            }
            println!(
                "{}",
                #[flock::nondeterministic]
                Instant::now()
            );
            Ok(())
        });
        let stripped = strip(&body).into_token_stream();
        assert_eq!(
            stripped.to_string(),
            quote!({
                let t = Instant::now();
                #[allow(unused)]
                let u = 1;
                tokio::time::sleep(d).await;
                let x = Input {
                    at: SystemTime::now(),
                };
                let typo = 1;
                #[flock::tool]
                async fn nested(args: A) -> B {
                    todo!()
                }
                println!("{}", Instant::now());
                Ok(())
            })
            .to_string()
        );
    }

    #[test]
    fn errors_point_at_the_call() {
        let body: Block =
            syn::parse_str("{\n    let a = 1;\n    let t = std::time::Instant::now();\n}").unwrap();
        let cx = Ctxt::new();
        lint(&cx, &body, "ctx");
        let error = cx.check().unwrap_err();
        let span = error.span();
        assert_eq!((span.start().line, span.start().column), (3, 12));
    }
}

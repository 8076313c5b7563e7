//! The call sites of a `#[flow]` body: which agents, child flows and hand-off chains it calls,
//! read from the body as written so that the graph of a binary (`graph`) is static and exact.
//!
//! A call site is a method call on the flow's context parameter: `ctx.call(agent, ..)`,
//! `ctx.map(agent, ..)`, `ctx.call_flow(flow, ..)` or `ctx.call_chain(agent, ..)`, wherever it is in the body (in
//! `flock::join!` and other macros whose arguments are expressions, in closures, in loops).
//! The callee is resolved by rustc, not by its spelling: the expansion names the callee's path
//! in a probe that yields its registered name (`name = ".."` included). Sites whose callee the
//! macro cannot name outside the body are kept as *unresolved*, with the expression as written:
//! a callee that is not a path (`make_agent()`), a local binding or an item declared in the body.
//! Not seen: calls in the body's nested items, calls under `#[cfg(..)]`, and calls a helper fn
//! makes with the context it was given.

use std::collections::HashSet;

use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{Block, Expr, ExprMethodCall, Item, ItemUse, Macro, Pat, PatIdent, Path};

use crate::determinism::macro_args;

/// What a call site calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ctx.call(agent, ..)` or `ctx.map(agent, ..)`.
    Agent,
    /// `ctx.call_flow(flow, ..)`.
    Flow,
    /// `ctx.call_chain(agent, ..)`: the hand-off chain that starts at the agent.
    Chain,
}

impl Kind {
    fn of(method: &str) -> Option<Kind> {
        match method {
            "call" | "map" => Some(Kind::Agent),
            "call_flow" => Some(Kind::Flow),
            "call_chain" => Some(Kind::Chain),
            _ => None,
        }
    }
}

/// One call site.
pub struct Site {
    pub kind: Kind,
    /// The callee's path, when it names an item outside the body.
    pub path: Option<Path>,
    /// The callee as written.
    pub written: String,
    /// Inside a loop or a closure: it may run any number of times.
    pub repeated: bool,
}

/// The call sites of `body` (on context `ctx`), in the order they are written, and the body's
/// `use` items (the callees' paths are resolved with them).
pub fn sites(body: &Block, ctx: &str, params: &[&Pat]) -> (Vec<Site>, Vec<ItemUse>) {
    let mut bound = Bindings::default();
    for param in params {
        bound.visit_pat(param);
    }
    bound.visit_block(body);
    let mut finder = Finder {
        ctx,
        bound: &bound.names,
        depth: 0,
        sites: Vec::new(),
    };
    finder.visit_block(body);
    (finder.sites, bound.uses)
}

/// The names a body binds (patterns, items), which a callee path of one segment may mean.
#[derive(Default)]
struct Bindings {
    names: HashSet<String>,
    uses: Vec<ItemUse>,
}

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
        self.names.insert(pat.ident.to_string());
        visit::visit_pat_ident(self, pat);
    }

    fn visit_item(&mut self, item: &'ast Item) {
        let ident = match item {
            Item::Use(item) => {
                self.uses.push(item.clone());
                None
            }
            Item::Const(item) => Some(&item.ident),
            Item::Static(item) => Some(&item.ident),
            Item::Fn(item) => Some(&item.sig.ident),
            Item::Struct(item) => Some(&item.ident),
            Item::Enum(item) => Some(&item.ident),
            Item::Mod(item) => Some(&item.ident),
            _ => None,
        };
        if let Some(ident) = ident {
            self.names.insert(ident.to_string());
        }
        // Bindings inside nested items do not reach the body.
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Some(args) = macro_args(mac) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

struct Finder<'a> {
    ctx: &'a str,
    bound: &'a HashSet<String>,
    /// How many loops and closures enclose the current node.
    depth: usize,
    sites: Vec<Site>,
}

impl Finder<'_> {
    fn site(&mut self, call: &ExprMethodCall) {
        let Some(kind) = Kind::of(&call.method.to_string()) else {
            return;
        };
        let on_ctx = matches!(&*call.receiver, Expr::Path(p) if p.qself.is_none() && p.path.is_ident(self.ctx));
        let Some(callee) = call.args.first().filter(|_| on_ctx) else {
            return;
        };
        let path = match callee {
            Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                let local = p.path.segments.len() == 1
                    && p.path.leading_colon.is_none()
                    && self.bound.contains(&p.path.segments[0].ident.to_string());
                (!local).then(|| p.path.clone())
            }
            _ => None,
        };
        self.sites.push(Site {
            kind,
            path,
            written: written(callee),
            // `ctx.map(agent, items)` calls it once per item
            repeated: self.depth > 0 || call.method == "map",
        });
    }

    fn repeated(&mut self, visit: impl FnOnce(&mut Self)) {
        self.depth += 1;
        visit(self);
        self.depth -= 1;
    }
}

/// An expression as written, with rustc's spacing of paths: `agents::research`.
fn written(expr: &Expr) -> String {
    let text = expr.to_token_stream().to_string();
    text.replace(" :: ", "::").replace(":: ", "::")
}

fn has_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        match expr {
            Expr::MethodCall(call) if has_cfg(&call.attrs) => {}
            Expr::MethodCall(call) => {
                self.site(call);
                visit::visit_expr_method_call(self, call);
            }
            Expr::ForLoop(l) if !has_cfg(&l.attrs) => {
                self.visit_expr(&l.expr);
                self.repeated(|this| this.visit_block(&l.body));
            }
            Expr::While(w) if !has_cfg(&w.attrs) => {
                self.repeated(|this| visit::visit_expr_while(this, w))
            }
            Expr::Loop(l) if !has_cfg(&l.attrs) => {
                self.repeated(|this| visit::visit_expr_loop(this, l))
            }
            Expr::Closure(c) if !has_cfg(&c.attrs) => {
                self.repeated(|this| visit::visit_expr_closure(this, c))
            }
            Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) | Expr::Closure(_) => {}
            _ => visit::visit_expr(self, expr),
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !has_cfg(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_stmt_macro(&mut self, mac: &'ast syn::StmtMacro) {
        if !has_cfg(&mac.attrs) {
            visit::visit_stmt_macro(self, mac);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !has_cfg(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    /// Nested items are not the flow's body.
    fn visit_item(&mut self, _: &'ast Item) {}

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Some(args) = macro_args(mac) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn found(body: Block) -> Vec<(Kind, Option<String>, String, bool)> {
        let input: Pat = parse_quote!(input);
        sites(&body, "ctx", &[&input])
            .0
            .into_iter()
            .map(|s| {
                let path = s.path.map(|p| written(&parse_quote!(#p)));
                (s.kind, path, s.written, s.repeated)
            })
            .collect()
    }

    #[test]
    fn every_kind_of_site_in_every_place() {
        let sites = found(parse_quote!({
            let a = ctx.call(research, input).await?;
            let (b, c) =
                flock::try_join!(ctx.call(agents::shout, a.clone()), ctx.call_flow(child, a))?;
            for n in 0..3 {
                ctx.call_chain(chain_start, n).await?;
            }
            let all = ns.iter().map(|n| ctx.call_flow(child, n.clone()).id("x"));
            other.call(not_a_site, 1);
            ctx.now();
            match route {
                Route::A => ctx.call(make(), b).await,
                Route::B => ctx.call(a, c).await,
            }
        }));
        let p = |s: &str| Some(s.to_owned());
        assert_eq!(
            sites,
            [
                (Kind::Agent, p("research"), "research".into(), false),
                (
                    Kind::Agent,
                    p("agents::shout"),
                    "agents::shout".into(),
                    false
                ),
                (Kind::Flow, p("child"), "child".into(), false),
                (Kind::Chain, p("chain_start"), "chain_start".into(), true),
                (Kind::Flow, p("child"), "child".into(), true),
                (Kind::Agent, None, "make ()".into(), false),
                // `a` is a local binding
                (Kind::Agent, None, "a".into(), false),
            ]
        );
    }

    #[test]
    fn nested_items_cfg_and_other_receivers_are_not_sites() {
        let sites = found(parse_quote!({
            fn helper(ctx: &FlowContext) {
                ctx.call(hidden, 1);
            }
            #[cfg(feature = "x")]
            let x = ctx.call(gated, 1).await?;
            self.ctx.call(field, 1);
            c.call(other_ctx, 1);
            ctx.call(input, 2);
        }));
        assert_eq!(sites, [(Kind::Agent, None, "input".into(), false)]);
    }
}

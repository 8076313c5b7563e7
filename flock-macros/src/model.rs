//! The models: what `#[agent]`, `#[flow]` and `#[tool]` read from the annotated fn. Building a
//! model reports structural problems (no input, too many parameters, `self`) and fails only when
//! the fn's input or output cannot be told.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Block, Expr, ExprLit, FnArg, GenericArgument, Ident, Lit, Meta, PatType,
    PathArguments, ReturnType, Signature, Token, Type, Visibility,
};

use crate::ctxt::Ctxt;

/// An fn item with or without a body: `async fn f(input: In) -> Out;` is a declarative agent.
pub struct FnItem {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub body: Option<Box<Block>>,
}

impl Parse for FnItem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            None
        } else {
            Some(input.parse()?)
        };
        Ok(FnItem {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl ToTokens for FnItem {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        match &self.body {
            Some(body) => body.to_tokens(tokens),
            None => <Token![;]>::default().to_tokens(tokens),
        }
    }
}

/// The fn's attributes, sorted by where the expansion puts them.
pub struct FnAttrs {
    /// `///` comments and `#[doc]`: on the generated type.
    pub docs: Vec<Attribute>,
    /// `#[cfg]`: on everything generated.
    pub cfgs: Vec<Attribute>,
    /// `#[deprecated]`: on the generated type.
    pub deprecated: Vec<Attribute>,
    /// Everything else (`#[allow]`, `#[tracing::instrument]`, ..): on the body fn, or on the type
    /// when there is no body.
    pub others: Vec<Attribute>,
    /// The doc comment's text, unindented: the default description.
    pub description: String,
}

impl FnAttrs {
    pub fn new(attrs: &[Attribute]) -> Self {
        let mut sorted = FnAttrs {
            docs: Vec::new(),
            cfgs: Vec::new(),
            deprecated: Vec::new(),
            others: Vec::new(),
            description: String::new(),
        };
        let mut lines = Vec::new();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("doc") {
                if let Meta::NameValue(nv) = &attr.meta
                    && let Expr::Lit(ExprLit {
                        lit: Lit::Str(text),
                        ..
                    }) = &nv.value
                {
                    lines.extend(
                        text.value()
                            .split('\n')
                            .map(|l| l.trim_end_matches('\r').to_owned()),
                    );
                }
                sorted.docs.push(attr.clone());
            } else if path.is_ident("cfg") {
                sorted.cfgs.push(attr.clone());
            } else if path.is_ident("deprecated") {
                sorted.deprecated.push(attr.clone());
            } else {
                sorted.others.push(attr.clone());
            }
        }
        sorted.description = unindent(&lines);
        sorted
    }
}

/// Doc lines as rustdoc shows them: common indentation removed, blank edges trimmed.
fn unindent(lines: &[String]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let text = lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    text.trim_matches('\n').to_owned()
}

/// What an agent or tool returns, told by the return type's form: its output, or a `Result`.
///
/// The form decides between `type Output = Ret` and `<Ret as AgentResultOk>::Ok` (one trait
/// cannot map both to the output on stable Rust); the runtime's traits then check the choice.
/// What the form misses, a `Result` behind an alias (`type R = Result<Out, E>`), `expand` has
/// rustc report at the return type: it emits a check, for every `Plain` return, that the type
/// is not a `Result`.
pub enum Return {
    /// `-> Out`.
    Plain(Box<Type>),
    /// `-> Result<..>` or `-> AgentResult<..>`, through any path. `ok` is the first type argument
    /// as written, used only to point input/output checks at it.
    Fallible {
        ty: Box<Type>,
        ok: Option<Box<Type>>,
    },
}

impl Return {
    pub fn new(ty: &Type) -> Self {
        if let Type::Path(path) = ungroup(ty)
            && path.qself.is_none()
            && let Some(last) = path.path.segments.last()
            && (last.ident == "Result" || last.ident == "AgentResult")
        {
            return Return::Fallible {
                ty: Box::new(ty.clone()),
                ok: first_type_argument(&last.arguments).map(Box::new),
            };
        }
        Return::Plain(Box::new(ty.clone()))
    }

    /// The return type as written.
    pub fn ty(&self) -> &Type {
        match self {
            Return::Plain(ty) | Return::Fallible { ty, .. } => ty,
        }
    }
}

fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

fn first_type_argument(arguments: &PathArguments) -> Option<Type> {
    match arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty.clone()),
            _ => None,
        }),
        _ => None,
    }
}

/// What the three macros share: the fn's name, visibility, attributes, signature and body.
pub struct Func {
    pub ident: Ident,
    pub vis: Visibility,
    pub attrs: FnAttrs,
    pub sig: Signature,
    pub body: Option<Box<Block>>,
}

impl Func {
    fn new(item: &FnItem) -> Self {
        Func {
            ident: item.sig.ident.clone(),
            vis: item.vis.clone(),
            attrs: FnAttrs::new(&item.attrs),
            sig: item.sig.clone(),
            body: item.body.clone(),
        }
    }
}

/// `#[agent] async fn name([ctx: &AgentContext,] input: In) -> Out|Result<Out, E> [body|;]`.
pub struct AgentFn {
    pub func: Func,
    /// The context parameter (the first of two).
    pub ctx: Option<PatType>,
    pub input: PatType,
    pub ret: Return,
}

/// `#[flow] async fn name(ctx: &FlowContext, input: In) -> Result<Out, FlowError> { .. }`.
pub struct FlowFn {
    pub func: Func,
    pub ctx: PatType,
    pub input: PatType,
    /// The return type as written; `ok` is its first type argument when it is spelled
    /// `Result<..>` (only to point output checks at it).
    pub ret: Box<Type>,
    pub ok: Option<Type>,
}

/// `#[tool] async fn name([ctx: &ToolContext,] args: Args) -> Out|Result<Out, E> { .. }`.
pub struct ToolFn {
    pub func: Func,
    pub ctx: Option<PatType>,
    pub args: PatType,
    pub ret: Return,
}

/// The typed parameters; receivers are reported.
fn typed_params(
    cx: &Ctxt,
    what: &str,
    inputs: &Punctuated<FnArg, Token![,]>,
) -> Option<Vec<PatType>> {
    let mut params = Vec::new();
    let mut ok = true;
    for input in inputs {
        match input {
            FnArg::Typed(param) => params.push(param.clone()),
            FnArg::Receiver(receiver) => {
                cx.error_spanned_by(
                    receiver,
                    format!("{what} is a free `async fn`, not a method: remove `self`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(params)
}

fn return_type(cx: &Ctxt, sig: &Signature, message: &str) -> Option<Box<Type>> {
    match &sig.output {
        ReturnType::Type(_, ty) => Some(ty.clone()),
        ReturnType::Default => {
            cx.error_at(sig.paren_token.span.join(), message);
            None
        }
    }
}

impl AgentFn {
    pub fn new(cx: &Ctxt, item: &FnItem) -> Option<Self> {
        let sig = &item.sig;
        let params = typed_params(cx, "an agent", &sig.inputs);
        let ret = return_type(
            cx,
            sig,
            "an agent returns its output: add `-> Out` or `-> Result<Out, AgentError>`",
        );
        let mut params = params?.into_iter();
        let (ctx, input) = match (params.next(), params.next(), params.len()) {
            (None, _, _) => {
                cx.error_at(
                    sig.paren_token.span.join(),
                    "an agent takes one input: `async fn name(input: In) -> Out`, optionally after a context `ctx: &AgentContext`",
                );
                return None;
            }
            (Some(input), None, _) => (None, input),
            (Some(ctx), Some(input), 0) => (Some(ctx), input),
            (Some(_), Some(_), _) => {
                let extra: Vec<_> = sig.inputs.iter().skip(2).collect();
                cx.error_spanned_by(
                    quote::quote!(#(#extra),*),
                    "an agent takes one input, optionally after a context `ctx: &AgentContext`: put these values into the input struct",
                );
                return None;
            }
        };
        Some(AgentFn {
            func: Func::new(item),
            ctx,
            input,
            ret: Return::new(&*ret?),
        })
    }

    pub fn is_declarative(&self) -> bool {
        self.func.body.is_none()
    }
}

impl FlowFn {
    pub fn new(cx: &Ctxt, item: &FnItem) -> Option<Self> {
        let sig = &item.sig;
        let params = typed_params(cx, "a flow", &sig.inputs);
        let ret = return_type(
            cx,
            sig,
            "a flow returns `Result<Out, FlowError>`: add `-> Result<Out, FlowError>`",
        );
        if item.body.is_none() {
            cx.error_spanned_by(
                sig,
                "a flow needs a body: only agents can be declarative (`#[agent]` without a body)",
            );
        }
        let params = params?;
        let (ctx, input) = match params.as_slice() {
            [] => {
                cx.error_at(
                    sig.paren_token.span.join(),
                    "a flow takes the flow context and one input: `async fn name(ctx: &FlowContext, input: In) -> Result<Out, FlowError>`",
                );
                return None;
            }
            [input] => {
                cx.error_spanned_by(
                    input,
                    "a flow takes the flow context first: add `ctx: &FlowContext` before the input, and call agents with `ctx.call(agent, input)`",
                );
                return None;
            }
            [ctx, input] => (ctx.clone(), input.clone()),
            [_, _, extra @ ..] => {
                cx.error_spanned_by(
                    quote::quote!(#(#extra),*),
                    "a flow takes the flow context and one input: put these values into the input struct",
                );
                return None;
            }
        };
        let ret = ret?;
        let ok = match Return::new(&ret) {
            Return::Fallible { ok, .. } => ok.map(|ok| *ok),
            Return::Plain(_) => None,
        };
        item.body.as_ref()?;
        Some(FlowFn {
            func: Func::new(item),
            ctx,
            input,
            ret,
            ok,
        })
    }
}

impl ToolFn {
    pub fn new(cx: &Ctxt, item: &FnItem) -> Option<Self> {
        let sig = &item.sig;
        let params = typed_params(cx, "a tool", &sig.inputs);
        let ret = return_type(
            cx,
            sig,
            "a tool returns its answer: add `-> Out` or `-> Result<Out, E>`",
        );
        if item.body.is_none() {
            cx.error_spanned_by(sig, "a tool needs a body");
        }
        let params = params?;
        let (ctx, args) = match params.as_slice() {
            [args] => (None, args.clone()),
            [] => {
                cx.error_at(
                    sig.paren_token.span.join(),
                    "a tool takes one argument struct: `async fn name(args: Args) -> Out` (for no arguments, use an empty struct), optionally after a context `ctx: &ToolContext`",
                );
                return None;
            }
            [ctx, args] if is_tool_context(&ctx.ty) => (Some(ctx.clone()), args.clone()),
            [_, extra @ ..] => {
                cx.error_spanned_by(
                    quote::quote!(#(#extra),*),
                    "a tool takes one argument struct: put these values into it (the model fills its fields)",
                );
                return None;
            }
        };
        let ret = Return::new(&*ret?);
        item.body.as_ref()?;
        Some(ToolFn {
            func: Func::new(item),
            ctx,
            args,
            ret,
        })
    }
}

/// Whether a parameter's type is a reference to something named `ToolContext` (the tool's
/// context; rustc checks that it is flock's, through `tool_context::<T>(..)`).
fn is_tool_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "ToolContext"),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    fn errors(cx: Ctxt) -> Vec<String> {
        cx.check()
            .err()
            .map_or_else(Vec::new, |e| e.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn parses_fns_with_and_without_body() {
        let declarative: FnItem = parse_quote!(
            /// Docs.
            pub async fn research(input: Topic) -> Findings;
        );
        assert!(declarative.body.is_none());
        assert_eq!(
            quote!(#declarative).to_string(),
            quote!(
                #[doc = r" Docs."]
                pub async fn research(input: Topic) -> Findings;
            )
            .to_string()
        );
        let code: FnItem = parse_quote!(
            async fn shout(input: T) -> T {
                input
            }
        );
        assert!(code.body.is_some());
    }

    #[test]
    fn description_is_the_unindented_doc_comment() {
        let item: FnItem = parse_quote!(
            /// Research the topic
            /// and report.
            ///
            ///     indented example
            #[allow(unused)]
            #[cfg(test)]
            #[deprecated]
            async fn f(input: T) -> T;
        );
        let attrs = FnAttrs::new(&item.attrs);
        assert_eq!(
            attrs.description,
            "Research the topic\nand report.\n\n    indented example"
        );
        assert_eq!(
            (
                attrs.docs.len(),
                attrs.cfgs.len(),
                attrs.deprecated.len(),
                attrs.others.len()
            ),
            (4, 1, 1, 1)
        );
        let block: FnItem = parse_quote!(
            #[doc = "\n  Block docs.\n  Second line.\n"]
            async fn f(input: T) -> T;
        );
        assert_eq!(
            FnAttrs::new(&block.attrs).description,
            "Block docs.\nSecond line."
        );
    }

    #[test]
    fn return_form_is_told_by_the_last_segment() {
        let fallible = |ty: Type| match Return::new(&ty) {
            Return::Fallible { ok, .. } => Some(ok.map(|t| quote!(#t).to_string())),
            Return::Plain(_) => None,
        };
        assert_eq!(fallible(parse_quote!(Findings)), None);
        assert_eq!(fallible(parse_quote!(Vec<Findings>)), None);
        assert_eq!(
            fallible(parse_quote!(Result<Findings, AgentError>)),
            Some(Some("Findings".into()))
        );
        assert_eq!(
            fallible(parse_quote!(std::result::Result<A, E>)),
            Some(Some("A".into()))
        );
        assert_eq!(
            fallible(parse_quote!(flock::AgentResult<A>)),
            Some(Some("A".into()))
        );
        assert_eq!(
            fallible(parse_quote!(io::Result<A>)),
            Some(Some("A".into()))
        );
        assert_eq!(fallible(parse_quote!(fmt::Result)), Some(None));
    }

    #[test]
    fn agent_params_by_count() {
        let cx = Ctxt::new();
        let one = AgentFn::new(
            &cx,
            &parse_quote!(
                async fn f(input: In) -> Out;
            ),
        )
        .unwrap();
        assert!(one.ctx.is_none() && one.is_declarative());
        let two = AgentFn::new(
            &cx,
            &parse_quote!(
                async fn f(c: &AgentContext, i: In) -> Out {
                    i
                }
            ),
        )
        .unwrap();
        let ctx = two.ctx.unwrap();
        assert_eq!(quote!(#ctx).to_string(), "c : & AgentContext");
        assert!(errors(cx).is_empty());
    }

    #[test]
    fn agent_structural_errors() {
        let cx = Ctxt::new();
        assert!(
            AgentFn::new(
                &cx,
                &parse_quote!(
                    async fn f() -> Out;
                )
            )
            .is_none()
        );
        assert!(
            AgentFn::new(
                &cx,
                &parse_quote!(
                    async fn f(a: A, b: B, c: C, d: D) -> Out;
                )
            )
            .is_none()
        );
        assert!(
            AgentFn::new(
                &cx,
                &parse_quote!(
                    async fn f(&self, input: In) -> Out;
                )
            )
            .is_none()
        );
        assert!(
            AgentFn::new(
                &cx,
                &parse_quote!(
                    async fn f(input: In);
                )
            )
            .is_none()
        );
        assert_eq!(
            errors(cx),
            [
                "an agent takes one input: `async fn name(input: In) -> Out`, optionally after a context `ctx: &AgentContext`",
                "an agent takes one input, optionally after a context `ctx: &AgentContext`: put these values into the input struct",
                "an agent is a free `async fn`, not a method: remove `self`",
                "an agent returns its output: add `-> Out` or `-> Result<Out, AgentError>`",
            ]
        );
    }

    #[test]
    fn flow_structural_errors() {
        let cx = Ctxt::new();
        let ok = FlowFn::new(
            &cx,
            &parse_quote!(
                async fn f(ctx: &FlowContext, i: In) -> Result<Out, FlowError> {
                    todo!()
                }
            ),
        )
        .unwrap();
        assert_eq!(
            ok.ok.map(|t| quote!(#t).to_string()).as_deref(),
            Some("Out")
        );
        assert!(errors(cx).is_empty());

        let cx = Ctxt::new();
        assert!(
            FlowFn::new(
                &cx,
                &parse_quote!(
                    async fn f(i: In) -> Result<Out, FlowError> {
                        todo!()
                    }
                )
            )
            .is_none()
        );
        assert!(
            FlowFn::new(
                &cx,
                &parse_quote!(
                    async fn f(c: &FlowContext, i: In) -> Result<Out, FlowError>;
                )
            )
            .is_none()
        );
        assert!(
            FlowFn::new(
                &cx,
                &parse_quote!(
                    async fn f() {}
                )
            )
            .is_none()
        );
        assert_eq!(
            errors(cx),
            [
                "a flow takes the flow context first: add `ctx: &FlowContext` before the input, and call agents with `ctx.call(agent, input)`",
                "a flow needs a body: only agents can be declarative (`#[agent]` without a body)",
                "a flow returns `Result<Out, FlowError>`: add `-> Result<Out, FlowError>`",
                "a flow takes the flow context and one input: `async fn name(ctx: &FlowContext, input: In) -> Result<Out, FlowError>`",
            ]
        );
    }

    #[test]
    fn tool_structural_errors() {
        let cx = Ctxt::new();
        assert!(
            ToolFn::new(
                &cx,
                &parse_quote!(
                    async fn t(a: A) -> String {
                        todo!()
                    }
                )
            )
            .is_some()
        );
        assert!(
            ToolFn::new(
                &cx,
                &parse_quote!(
                    async fn t() -> String {
                        todo!()
                    }
                )
            )
            .is_none()
        );
        assert!(
            ToolFn::new(
                &cx,
                &parse_quote!(
                    async fn t(a: A, b: B) -> String {
                        todo!()
                    }
                )
            )
            .is_none()
        );
        // a context first, then the arguments
        let with_context = ToolFn::new(
            &cx,
            &parse_quote!(
                async fn t(ctx: &ToolContext, a: A) -> String {
                    todo!()
                }
            ),
        )
        .expect("a tool with a context");
        assert!(with_context.ctx.is_some());
        assert_eq!(
            errors(cx),
            [
                "a tool takes one argument struct: `async fn name(args: Args) -> Out` (for no arguments, use an empty struct), optionally after a context `ctx: &ToolContext`",
                "a tool takes one argument struct: put these values into it (the model fills its fields)",
            ]
        );
    }
}

//! Code generation, and the pipeline behind each entry point: parse the attribute and the fn,
//! build the model, validate, expand. Every error is collected; on errors the expansion still
//! emits what it can (the full expansion when the signature is usable, else a stub of the type)
//! so that one mistake does not cascade into errors at every use.
//!
//! Generated code is hygienic: it names only `::flock::__private::…`, puts helper items inside
//! `const _: () = { … };`, and gives internal locals `Span::mixed_site()`.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Block, Ident, LitStr, PatType, Type};

use crate::attr::{self, AgentAttrs, FlowAttrs, MessageKind, Millis, ToolAttrs};
use crate::ctxt::Ctxt;
use crate::model::{AgentFn, FlowFn, FnAttrs, FnItem, Func, Return, ToolFn};
use crate::{calls, check, determinism};

/// `#[agent(..)]`.
pub fn agent(args: TokenStream, item: TokenStream) -> TokenStream {
    let stages = Stages {
        what: "agent",
        attrs: attr::parse_agent,
        model: AgentFn::new,
        check: check::agent,
        expand: expand_agent,
    };
    stages.run(args, item)
}

/// `#[flow(..)]`.
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    let stages = Stages {
        what: "flow",
        attrs: attr::parse_flow,
        model: FlowFn::new,
        check: check::flow,
        expand: expand_flow,
    };
    stages.run(args, item)
}

/// `#[tool(..)]`.
pub fn tool(args: TokenStream, item: TokenStream) -> TokenStream {
    let stages = Stages {
        what: "tool",
        attrs: attr::parse_tool,
        model: ToolFn::new,
        check: check::tool,
        expand: expand_tool,
    };
    stages.run(args, item)
}

/// `#[flock::nondeterministic]` where `#[flow]` has not removed it: on an item, or outside a
/// flow. The item is left as it is.
pub fn nondeterministic(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    if !args.is_empty() {
        cx.error_spanned_by(args, "`#[flock::nondeterministic]` takes no arguments");
    }
    with_errors(cx, item)
}

/// The stages of one attribute macro: attribute parsing, the model of the fn, validation and
/// code generation, run the same way for agents, flows and tools.
struct Stages<A, M> {
    what: &'static str,
    attrs: fn(&Ctxt, TokenStream) -> A,
    model: fn(&Ctxt, &FnItem) -> Option<M>,
    check: fn(&Ctxt, &M, &A),
    expand: fn(&M, &A) -> TokenStream,
}

impl<A, M> Stages<A, M> {
    fn run(self, args: TokenStream, item: TokenStream) -> TokenStream {
        let cx = Ctxt::new();
        let attrs = (self.attrs)(&cx, args);
        let expansion = match parse_item(&cx, self.what, item) {
            Err(original) => original,
            Ok(item) => {
                check::signature(&cx, self.what, &item.sig);
                match (self.model)(&cx, &item) {
                    Some(model) => {
                        (self.check)(&cx, &model, &attrs);
                        (self.expand)(&model, &attrs)
                    }
                    None => stub(&item),
                }
            }
        };
        with_errors(cx, expansion)
    }
}

/// The fn, or (reported) the original tokens when the item is not an fn.
fn parse_item(cx: &Ctxt, what: &str, item: TokenStream) -> Result<FnItem, TokenStream> {
    match syn::parse2::<FnItem>(item.clone()) {
        Ok(item) => Ok(item),
        Err(error) => {
            match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Fn(_)) | Err(_) => cx.syn_error(error),
                Ok(other) => {
                    cx.error_spanned_by(other, format!("`#[{what}]` applies to an `async fn`"))
                }
            }
            Err(item)
        }
    }
}

fn with_errors(cx: Ctxt, expansion: TokenStream) -> TokenStream {
    match cx.check() {
        Ok(()) => expansion,
        Err(error) => {
            let errors = error.to_compile_error();
            quote!(#expansion #errors)
        }
    }
}

/// `::flock::__private`.
fn fp() -> TokenStream {
    quote!(::flock::__private)
}

/// An internal local, invisible to the user's code.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `name = ".."`, else the fn's name.
fn name_of(ident: &Ident, name: Option<&LitStr>) -> LitStr {
    name.cloned().unwrap_or_else(|| {
        let ident = ident.to_string();
        let ident = ident.strip_prefix("r#").unwrap_or(&ident);
        LitStr::new(ident, Span::call_site())
    })
}

/// `description = ".."`, else the doc comment.
fn description_of(attrs: &FnAttrs, description: Option<&LitStr>) -> LitStr {
    description
        .cloned()
        .unwrap_or_else(|| LitStr::new(&attrs.description, Span::call_site()))
}

/// `"file.rs:line"` of the fn's name.
fn location(ident: &Ident) -> TokenStream {
    let fp = fp();
    quote_spanned!(ident.span()=>
        #fp::core::concat!(#fp::core::file!(), ":", #fp::core::line!())
    )
}

fn some(value: TokenStream) -> TokenStream {
    let fp = fp();
    quote!(#fp::core::option::Option::Some(#value))
}

fn duration(millis: &Millis) -> TokenStream {
    let fp = fp();
    let value = Literal::u64_suffixed(millis.value);
    some(quote_spanned!(millis.span=> #fp::core::time::Duration::from_millis(#value)))
}

/// The unit struct the fn's name becomes.
fn unit_type(
    func_ident: &Ident,
    vis: &syn::Visibility,
    attrs: &FnAttrs,
    more: &[syn::Attribute],
) -> TokenStream {
    let FnAttrs {
        docs,
        cfgs,
        deprecated,
        ..
    } = attrs;
    quote! {
        #(#docs)*
        #(#cfgs)*
        #(#deprecated)*
        #(#more)*
        #[allow(non_camel_case_types)]
        #vis struct #func_ident;
    }
}

/// `Clone`, `Copy`, `Default` and `Debug`, written out with absolute paths.
fn derives(ident: &Ident, debug_name: &LitStr) -> TokenStream {
    let fp = fp();
    let f = local("__flock_f");
    quote! {
        #[automatically_derived]
        impl #fp::core::clone::Clone for #ident {
            #[inline]
            fn clone(&self) -> Self {
                *self
            }
        }
        #[automatically_derived]
        impl #fp::core::marker::Copy for #ident {}
        #[automatically_derived]
        impl #fp::core::default::Default for #ident {
            #[inline]
            fn default() -> Self {
                Self
            }
        }
        #[automatically_derived]
        impl #fp::core::fmt::Debug for #ident {
            fn fmt(&self, #f: &mut #fp::core::fmt::Formatter<'_>) -> #fp::core::fmt::Result {
                #f.write_str(#debug_name)
            }
        }
    }
}

/// On errors that leave no usable signature: the type alone, so that uses of the name resolve.
fn stub(item: &FnItem) -> TokenStream {
    let attrs = FnAttrs::new(&item.attrs);
    let ident = &item.sig.ident;
    let ty = unit_type(ident, &item.vis, &attrs, &[]);
    let derives = derives(ident, &name_of(ident, None));
    let cfgs = &attrs.cfgs;
    quote! {
        #ty
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #derives
        };
    }
}

/// The body, as an associated fn of the generated type: `async fn __flock_body(..) -> Ret`.
fn body_fn(func: &Func, body: Option<&Block>) -> TokenStream {
    let others = &func.attrs.others;
    let params = &func.sig.inputs;
    let output = &func.sig.output;
    let ident = &func.ident;
    quote! {
        impl #ident {
            #(#others)*
            async fn __flock_body(#params) #output #body
        }
    }
}

/// One check per requirement on an input or output type, each spanned at the type.
fn io_checks(role: &str, ty: &TokenStream, span: Span) -> TokenStream {
    let fp = fp();
    let checks = ["serialize", "deserialize", "json_schema"].map(|requirement| {
        let assert = Ident::new(&format!("assert_{role}_{requirement}"), span);
        quote_spanned!(span=> #fp::#assert::<#ty>();)
    });
    quote!(#(#checks)*)
}

/// For a return type spelled as a plain output (`who` is "agent" or "tool"): a check that it
/// is not a `Result` behind an alias, which the spelling misses. rustc sees through the alias;
/// see `__private::ReturnProbe`.
fn return_spelled_out(who: &str, ret: &Return) -> TokenStream {
    let Return::Plain(ty) = ret else {
        return TokenStream::new();
    };
    let span = ty.span();
    let assert = Ident::new(&format!("assert_{who}_return_spelled_out"), span);
    // Every token at the return type, so that rustc points there alone. Lookup uses one of the
    // two traits: the other import is unused.
    quote_spanned! {span=>
        #[allow(dead_code, unused_imports)]
        fn __flock_return() {
            use ::flock::__private::{ProbeAliasedResult as _, ProbeNotAResult as _};
            ::flock::__private::#assert(
                (&::flock::__private::ReturnProbe::<#ty>::new()).__flock_return_kind(),
            );
        }
    }
}

fn param_type(param: &PatType) -> (&Type, Span) {
    (&param.ty, param.ty.span())
}

fn expand_agent(agent: &AgentFn, attrs: &AgentAttrs) -> TokenStream {
    let fp = fp();
    let func = &agent.func;
    let ident = &func.ident;
    let name = name_of(ident, attrs.name.as_ref());
    let chain_name = LitStr::new(&format!("{}.chain", name.value()), name.span());
    let description = description_of(&func.attrs, attrs.description.as_ref());
    let location = location(ident);
    let (ctx, input, spec, spec_static) = (
        local("__flock_ctx"),
        local("__flock_input"),
        local("__flock_spec"),
        local("__FLOCK_SPEC"),
    );

    let (in_ty, in_span) = param_type(&agent.input);
    let ret = agent.ret.ty();
    let ret_span = ret.span();
    let (output, checked_output) = match &agent.ret {
        Return::Plain(ty) => (quote!(#ty), quote!(#ty)),
        Return::Fallible { ty, ok } => {
            let projection = quote_spanned!(ret_span=> <#ty as #fp::AgentResultOk>::Ok);
            let checked = ok
                .as_ref()
                .map_or_else(|| projection.clone(), |ok| quote!(#ok));
            (projection, checked)
        }
    };
    let checked_span = match &agent.ret {
        Return::Fallible { ok: Some(ok), .. } => ok.span(),
        _ => ret_span,
    };
    let input_checks = io_checks("agent_input", &quote!(#in_ty), in_span);
    let output_checks = io_checks("agent_output", &checked_output, checked_span);
    let return_check = return_spelled_out("agent", &agent.ret);

    let (kind, call_body, body_fn, context_check) = if agent.is_declarative() {
        let error_check = match &agent.ret {
            Return::Fallible { ty, .. } => {
                quote_spanned!(ret_span=> #fp::assert_agent_error::<#ty>();)
            }
            Return::Plain(_) => TokenStream::new(),
        };
        let context_check = agent.ctx.as_ref().map(|param| {
            let (ty, span) = param_type(param);
            let pass = quote_spanned!(span=> #fp::agent_context::<#ty>(#ctx));
            quote! {
                #[allow(dead_code)]
                fn __flock_context(#ctx: &#fp::AgentContext) {
                    let _ = #pass;
                }
            }
        });
        let context_check = quote!(#context_check #error_check);
        (
            quote!(Declarative),
            quote!(#fp::run_declarative::<Self>(#ctx, #input)),
            TokenStream::new(),
            context_check,
        )
    } else {
        let ctx_arg = agent.ctx.as_ref().map(|param| {
            let (ty, span) = param_type(param);
            quote_spanned!(span=> #fp::agent_context::<#ty>(&#ctx),)
        });
        let call = quote_spanned!(ret_span=>
            #fp::into_agent_result::<<Self as #fp::Agent>::Output, _>(
                Self::__flock_body(#ctx_arg #input).await
            )
        );
        (
            quote!(Code),
            quote!(async move { #call }),
            body_fn(func, func.body.as_deref()),
            TokenStream::new(),
        )
    };

    let mut settings = vec![quote!(#spec.description = #description;)];
    if let Some(model) = &attrs.model {
        let value = some(quote!(#model));
        settings.push(quote!(#spec.model = #value;));
    }
    let next = match &attrs.hand_off {
        Some(next) => {
            // Every token of the check at `next`, so that rustc points there.
            let span = next.span();
            let from = Ident::new(&ident.to_string(), span);
            settings.push(quote_spanned!(span=>
                #spec.hand_off = #fp::core::option::Option::Some(
                    #fp::assert_hand_off::<#from, #next>()
                );
            ));
            quote_spanned!(span=> type Next = #next;)
        }
        // When the output type is wrong, `End`'s bound fails too: point that at the output.
        None => quote_spanned!(checked_span=> type Next = #fp::End;),
    };
    settings.extend(step_settings(
        &spec,
        [
            ("timeout", &attrs.timeout),
            ("schedule_to_close", &attrs.schedule_to_close),
            ("heartbeat", &attrs.heartbeat),
        ],
        attrs.task_queue.as_ref(),
        &attrs.retry,
        &attrs.limits,
    ));
    if let Some(retries) = &attrs.output_retries {
        let value = some(Literal::u32_suffixed(retries.value).into_token_stream());
        settings.push(quote!(#spec.output_retries = #value;));
    }
    if let Some(rounds) = &attrs.max_tool_rounds {
        let value = some(Literal::u32_suffixed(rounds.value).into_token_stream());
        settings.push(quote!(#spec.max_tool_rounds = #value;));
    }
    if let Some(mcp) = &attrs.mcp {
        let names = &mcp.value;
        settings.push(quote!(#spec.mcp = &[#(#names),*];));
    }
    if let Some(after) = &attrs.continue_as_new_after {
        let value = some(Literal::u32_suffixed(after.value).into_token_stream());
        settings.push(quote!(#spec.continue_as_new_after = #value;));
    }
    if let Some(local) = &attrs.local {
        let value = some(syn::LitBool::new(local.value, local.span).into_token_stream());
        settings.push(quote!(#spec.local = #value;));
    }
    if let Some(tools) = &attrs.tools {
        let tools = tools
            .value
            .iter()
            .map(|tool| quote_spanned!(tool.span()=> &#tool));
        settings.push(quote!(#spec.tools = &[#(#tools),*];));
    }
    settings.push(quote!(#spec.location = #location;));

    // A wrong output type also fails the chain's bounds: point that at the output too.
    let registration_value =
        quote_spanned!(checked_span=> #fp::agent_registration(&#ident, &#fp::Chain(#ident)));
    let registration = quote! {
        #fp::inventory::submit! {
            #registration_value
        }
    };
    let unit = unit_type(
        ident,
        &func.vis,
        &func.attrs,
        if agent.is_declarative() {
            &func.attrs.others
        } else {
            &[]
        },
    );
    let derives = derives(ident, &name);
    let cfgs = &func.attrs.cfgs;
    let str_ = quote!(#fp::core::primitive::str);
    quote! {
        #unit
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #derives
            #body_fn
            #[automatically_derived]
            impl #fp::Agent for #ident {
                type Input = #in_ty;
                type Output = #output;
                #next
                const NAME: &'static #str_ = #name;
                const CHAIN: &'static #fp::FlowSpec = &{
                    let mut #spec = #fp::FlowSpec::new(#chain_name);
                    #spec.description = #description;
                    #spec.location = #location;
                    #spec
                };

                fn spec(&self) -> &'static #fp::AgentSpec {
                    static #spec_static: #fp::AgentSpec = {
                        let mut #spec = #fp::AgentSpec::new(#name, #fp::AgentKind::#kind);
                        #(#settings)*
                        #spec
                    };
                    &#spec_static
                }

                fn call(
                    self,
                    #ctx: #fp::AgentContext,
                    #input: <Self as #fp::Agent>::Input,
                ) -> impl #fp::core::future::Future<
                    Output = #fp::core::result::Result<<Self as #fp::Agent>::Output, #fp::AgentError>,
                > + #fp::core::marker::Send + 'static {
                    #call_body
                }
            }
            #context_check
            #input_checks
            #output_checks
            #return_check
            #registration
        };
    }
}

fn expand_flow(flow: &FlowFn, attrs: &FlowAttrs) -> TokenStream {
    let fp = fp();
    let func = &flow.func;
    let ident = &func.ident;
    let name = name_of(ident, attrs.name.as_ref());
    let description = description_of(&func.attrs, attrs.description.as_ref());
    let location = location(ident);
    let (ctx, input, spec, spec_static) = (
        local("__flock_ctx"),
        local("__flock_input"),
        local("__flock_spec"),
        local("__FLOCK_SPEC"),
    );

    let (in_ty, in_span) = param_type(&flow.input);
    let (ctx_ty, ctx_span) = param_type(&flow.ctx);
    let ret = &flow.ret;
    let ret_span = ret.span();
    let input_checks = io_checks("flow_input", &quote!(#in_ty), in_span);
    let output_checks = flow
        .ok
        .as_ref()
        .map(|ok| io_checks("flow_output", &quote!(#ok), ok.span()));
    let output = quote_spanned!(ret_span=> <#ret as #fp::FlowReturn>::Ok);
    let self_output = quote_spanned!(ret_span=> <Self as #fp::Flow>::Output);
    let pass_ctx = quote_spanned!(ctx_span=> #fp::flow_context::<#ctx_ty>(#ctx));
    let run = quote_spanned!(ret_span=>
        #fp::flow_result(Self::__flock_body(#pass_ctx, #input).await)
    );

    let mut settings = vec![quote!(#spec.description = #description;)];
    if let Some(queue) = &attrs.task_queue {
        let value = some(quote!(#queue));
        settings.push(quote!(#spec.task_queue = #value;));
    }
    for (field, value) in [
        ("execution_timeout", &attrs.execution_timeout),
        ("run_timeout", &attrs.run_timeout),
    ] {
        if let Some(value) = value {
            let field = Ident::new(field, Span::call_site());
            let value = duration(value);
            settings.push(quote!(#spec.#field = #value;));
        }
    }
    let (message_specs, message_consts) = messages(ident, &func.vis, &func.attrs.cfgs, attrs);
    let messages_static = local("__FLOCK_MESSAGES");
    let message_count = message_specs.len();
    settings.push(quote!(#spec.messages = &#messages_static;));
    settings.push(quote!(#spec.location = #location;));

    let unit = unit_type(ident, &func.vis, &func.attrs, &[]);
    let derives = derives(ident, &name);
    // Without the escape hatches of the determinism lint, which rustc does not take on statements.
    let body = func.body.as_deref().map(determinism::strip);
    let call_sites = body
        .as_ref()
        .map_or_else(Vec::new, |body| call_sites(flow, body));
    let calls_static = local("__FLOCK_CALLS");
    let call_count = call_sites.len();
    settings.push(quote!(#spec.calls = &#calls_static;));
    let body_fn = body_fn(func, body.as_ref());
    let cfgs = &func.attrs.cfgs;
    let str_ = quote!(#fp::core::primitive::str);
    quote! {
        #unit
        #message_consts
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #derives
            #body_fn
            #[automatically_derived]
            impl #fp::Flow for #ident {
                type Input = #in_ty;
                type Output = #output;
                const NAME: &'static #str_ = #name;

                fn spec(&self) -> &'static #fp::FlowSpec {
                    static #messages_static: [#fp::MessageSpec; #message_count] = [#(#message_specs),*];
                    static #calls_static: [#fp::CallSite; #call_count] = [#(#call_sites),*];
                    static #spec_static: #fp::FlowSpec = {
                        let mut #spec = #fp::FlowSpec::new(#name);
                        #(#settings)*
                        #spec
                    };
                    &#spec_static
                }

                fn run(
                    self,
                    #ctx: &#fp::FlowContext,
                    #input: <Self as #fp::Flow>::Input,
                ) -> impl #fp::core::future::Future<
                    Output = #fp::core::result::Result<#self_output, #fp::FlowError>,
                > + #fp::core::marker::Send + '_ {
                    async move { #run }
                }
            }
            #input_checks
            #output_checks
            #fp::inventory::submit! {
                #fp::flow_registration(&#ident)
            }
        };
    }
}

/// The `CallSite`s of a flow body: each resolved callee through a probe that gives its registered
/// name (rustc resolves the path, with the body's `use` items), the others as written.
fn call_sites(flow: &FlowFn, body: &Block) -> Vec<TokenStream> {
    let fp = fp();
    let ctx = match &*flow.ctx.pat {
        syn::Pat::Ident(ident) => ident.ident.to_string(),
        _ => "ctx".to_owned(),
    };
    let (sites, uses) = calls::sites(body, &ctx, &[&flow.ctx.pat, &flow.input.pat]);
    sites
        .into_iter()
        .map(|site| {
            let kind = match site.kind {
                calls::Kind::Agent => quote!(Agent),
                calls::Kind::Flow => quote!(ChildFlow),
                calls::Kind::Chain => quote!(Chain),
            };
            let kind = quote!(#fp::CallKind::#kind);
            let written = LitStr::new(&site.written, Span::call_site());
            let repeated = syn::LitBool::new(site.repeated, Span::call_site());
            match site.path {
                Some(path) => {
                    let probe = match site.kind {
                        calls::Kind::Flow => quote!(#fp::flow_probe),
                        calls::Kind::Agent | calls::Kind::Chain => quote!(#fp::agent_probe),
                    };
                    quote! {
                        #fp::CallSite::new(#kind, #written, #repeated, || {
                            #(#[allow(unused_imports)] #uses)*
                            #[allow(unused_imports)]
                            use #fp::{ProbeCallee as _, ProbeNotCallee as _};
                            (&#probe(&#path)).__flock_callee()
                        })
                    }
                }
                None => quote!(#fp::CallSite::unresolved(#kind, #written, #repeated)),
            }
        })
        .collect()
}

/// The `MessageSpec`s of a flow's `signals(..)`, `queries(..)` and `updates(..)`, and the typed
/// constants on the flow's type (`publish::approve`) that clients and the body name them by,
/// under the fn's `#[cfg]`s like the type.
fn messages(
    ident: &Ident,
    vis: &syn::Visibility,
    cfgs: &[syn::Attribute],
    attrs: &FlowAttrs,
) -> (Vec<TokenStream>, TokenStream) {
    let fp = fp();
    let mut specs = Vec::new();
    let mut consts = Vec::new();
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (update, _) in &attrs.validators {
        let declared = attrs
            .messages
            .iter()
            .any(|m| m.kind == MessageKind::Update && m.name == *update);
        if !declared {
            let message = format!(
                "`validate({update} = ..)` names no update: declare it with `updates({update}: Input -> Answer)`"
            );
            errors.push(syn::Error::new(update.span(), message).to_compile_error());
        }
    }
    for message in &attrs.messages {
        let name = &message.name;
        let name_str = LitStr::new(&name.to_string(), name.span());
        if seen.contains(&name.to_string()) {
            let text = format!(
                "message `{name}` is declared twice: signals, queries and updates of a flow need distinct names"
            );
            errors.push(syn::Error::new(name.span(), text).to_compile_error());
            continue;
        }
        seen.push(name.to_string());
        let ty = &message.ty;
        let docs = &message.docs;
        let description = LitStr::new(&FnAttrs::new(docs).description, name.span());
        let (kind, handle) = match message.kind {
            MessageKind::Signal => (quote!(Signal), quote!(#fp::Signal<#ident, #ty>)),
            MessageKind::Query => (quote!(Query), quote!(#fp::Query<#ident, #ty>)),
            MessageKind::Update => {
                let answer = message.answer.as_ref();
                (quote!(Update), quote!(#fp::Update<#ident, #ty, #answer>))
            }
        };
        let check = match attrs.validators.iter().find(|(update, _)| update == name) {
            // Internal names, which a validator called `check` or `value` does not resolve to.
            Some((_, validator)) => {
                let value = local("__flock_value");
                quote_spanned!(validator.span()=> {
                    fn __flock_check(#value: &#fp::serde_json::Value) -> #fp::core::result::Result<(), #fp::std::string::String> {
                        #fp::check_update::<#ty>(#value, #validator)
                    }
                    __flock_check
                })
            }
            None => quote_spanned!(ty.span()=> #fp::check_fits::<#ty>),
        };
        let answer_schema = match &message.answer {
            Some(answer) => quote_spanned!(answer.span()=>
                #fp::core::option::Option::Some(#fp::message_schema::<#answer>)
            ),
            None => quote!(#fp::core::option::Option::None),
        };
        specs.push(quote! {{
            let mut spec = #fp::MessageSpec::new(
                #name_str,
                #fp::MessageKind::#kind,
                #fp::message_schema::<#ty>,
                #check,
            );
            spec.description = #description;
            spec.answer_schema = #answer_schema;
            spec
        }});
        consts.push(quote! {
            #(#docs)*
            #[allow(non_upper_case_globals)]
            #vis const #name: #handle = <#handle>::new(#name_str);
        });
    }
    let consts = if consts.is_empty() {
        quote!(#(#errors)*)
    } else {
        quote! {
            #(#errors)*
            #(#cfgs)*
            #[allow(deprecated)]
            impl #ident {
                #(#consts)*
            }
        }
    };
    (specs, consts)
}

/// The settings an agent and a tool share (a step's): its timeouts, task queue, retry policy and
/// limits, as assignments to the spec being built in `spec`.
fn step_settings(
    spec: &Ident,
    durations: [(&str, &Option<attr::Millis>); 3],
    task_queue: Option<&LitStr>,
    retry: &attr::RetryAttrs,
    limits: &attr::LimitAttrs,
) -> Vec<TokenStream> {
    let fp = fp();
    let mut settings = Vec::new();
    if let Some(limit) = &limits.max_concurrent {
        let value = some(Literal::u32_suffixed(limit.value).into_token_stream());
        settings.push(quote!(#spec.max_concurrent = #value;));
    }
    if let Some(priority) = &limits.priority {
        let value = some(Literal::u32_suffixed(priority.value).into_token_stream());
        settings.push(quote!(#spec.priority = #value;));
    }
    if let Some(rate) = &limits.per_second {
        let value = some(Literal::f64_suffixed(rate.value).into_token_stream());
        settings.push(quote!(#spec.per_second = #value;));
    }
    for (field, value) in durations {
        if let Some(value) = value {
            let field = Ident::new(field, Span::call_site());
            let value = duration(value);
            settings.push(quote!(#spec.#field = #value;));
        }
    }
    if let Some(queue) = task_queue {
        let value = some(quote!(#queue));
        settings.push(quote!(#spec.task_queue = #value;));
    }
    if let Some(attempts) = &retry.attempts {
        let value = some(match attempts.value {
            attr::Attempts::AtMost(n) => {
                let n = Literal::u32_suffixed(n.get());
                quote_spanned!(attempts.span=> #fp::attempts_at_most(#n))
            }
            attr::Attempts::Unlimited => {
                quote_spanned!(attempts.span=> #fp::Attempts::Unlimited)
            }
        });
        settings.push(quote!(#spec.retry.attempts = #value;));
    }
    for (field, value) in [
        ("initial_interval", &retry.initial_interval),
        ("max_interval", &retry.max_interval),
    ] {
        if let Some(value) = value {
            let field = Ident::new(field, Span::call_site());
            let value = duration(value);
            settings.push(quote!(#spec.retry.#field = #value;));
        }
    }
    for (field, value) in [("backoff", &retry.backoff), ("jitter", &retry.jitter)] {
        if let Some(value) = value {
            let field = Ident::new(field, Span::call_site());
            let value = some(Literal::f64_suffixed(value.value).into_token_stream());
            settings.push(quote!(#spec.retry.#field = #value;));
        }
    }
    if !retry.non_retryable.is_empty() {
        let classes = retry.non_retryable.iter().map(|class| &class.value);
        settings.push(quote!(#spec.retry.non_retryable = &[#(#classes),*];));
    }
    settings
}

/// `T` when `ty` is spelled `Approved<T>` (any path ending so: `flock::approval::Approved<T>`).
/// Spelled otherwise (an alias), the arguments are deserialized as they are, which
/// `Approved` does not allow: a compile error, never a tool that runs without approval.
fn approved_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Approved" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

fn expand_tool(tool: &ToolFn, attrs: &ToolAttrs) -> TokenStream {
    let fp = fp();
    let func = &tool.func;
    let ident = &func.ident;
    let name = name_of(ident, attrs.name.as_ref());
    let description = description_of(&func.attrs, attrs.description.as_ref());
    let arguments = local("__flock_arguments");

    let (args_ty, args_span) = param_type(&tool.args);
    // `Approved<Args>`: the tool's schema is the inner type's, and only an approved call gets it
    let approved = approved_inner(args_ty);
    let schema_ty = approved.unwrap_or(args_ty);
    let needs_approval = approved.is_some() || attrs.approval.as_ref().is_some_and(|a| a.value);
    let ret = tool.ret.ty();
    let ret_span = ret.span();
    // The runtime functions' bounds are the checks (`ToolArgsJsonSchema`, ..), spanned at the
    // user's types.
    let finish = match &tool.ret {
        Return::Plain(_) => quote_spanned!(ret_span=> #fp::tool_output),
        Return::Fallible { .. } => quote_spanned!(ret_span=> #fp::tool_result),
    };
    let return_check = return_spelled_out("tool", &tool.ret);
    let schema = quote_spanned!(args_span=> #fp::tool_parameters_schema::<#schema_ty>());
    let tool_ctx = local("__flock_tool_ctx");
    let call = match (&tool.ctx, approved) {
        (ctx, Some(inner)) => {
            let pass = ctx.as_ref().map(|ctx| {
                let (ctx_ty, ctx_span) = param_type(ctx);
                quote_spanned!(ctx_span=> #fp::tool_context::<#ctx_ty>(&#tool_ctx),)
            });
            let error = local("__flock_error");
            quote_spanned!(args_span=>
                match #fp::approved_arguments::<#inner>(#name, #arguments, &#tool_ctx) {
                    #fp::core::result::Result::Ok(#arguments) => {
                        #fp::std::boxed::Box::pin(async move {
                            #finish(#name, Self::__flock_body(#pass #arguments).await)
                        })
                    }
                    #fp::core::result::Result::Err(#error) => {
                        #fp::std::boxed::Box::pin(#fp::core::future::ready(
                            #fp::core::result::Result::Err(#error),
                        ))
                    }
                }
            )
        }
        (None, None) => quote_spanned!(args_span=>
            let _ = #tool_ctx;
            #fp::call_tool::<#args_ty, _>(#name, #arguments, Self::__flock_body, #finish)
        ),
        (Some(ctx), None) => {
            let (ctx_ty, ctx_span) = param_type(ctx);
            let pass = quote_spanned!(ctx_span=> #fp::tool_context::<#ctx_ty>(&#tool_ctx));
            let error = local("__flock_error");
            quote_spanned!(args_span=>
                match #fp::tool_arguments::<#args_ty>(#name, #arguments) {
                    #fp::core::result::Result::Ok(#arguments) => {
                        #fp::std::boxed::Box::pin(async move {
                            #finish(#name, Self::__flock_body(#pass, #arguments).await)
                        })
                    }
                    #fp::core::result::Result::Err(#error) => {
                        #fp::std::boxed::Box::pin(#fp::core::future::ready(
                            #fp::core::result::Result::Err(#error),
                        ))
                    }
                }
            )
        }
    };

    let (spec, spec_static) = (local("__flock_spec"), local("__FLOCK_SPEC"));
    let step_name = LitStr::new(&format!("{}.tool", name.value()), name.span());
    let location = location(ident);
    let mut settings = vec![quote!(#spec.description = #description;)];
    settings.extend(step_settings(
        &spec,
        [
            ("timeout", &attrs.timeout),
            ("schedule_to_close", &attrs.schedule_to_close),
            ("heartbeat", &attrs.heartbeat),
        ],
        attrs.task_queue.as_ref(),
        &attrs.retry,
        &attrs.limits,
    ));
    if let Some(local) = &attrs.local {
        let value = some(syn::LitBool::new(local.value, local.span).into_token_stream());
        settings.push(quote!(#spec.local = #value;));
    }
    settings.push(quote!(#spec.location = #location;));

    let unit = unit_type(ident, &func.vis, &func.attrs, &[]);
    let derives = derives(ident, &name);
    let body_fn = body_fn(func, func.body.as_deref());
    let cfgs = &func.attrs.cfgs;
    let str_ = quote!(#fp::core::primitive::str);
    let approval_fn = needs_approval.then(|| {
        quote!(
            fn needs_approval(&self) -> #fp::core::primitive::bool {
                true
            }
        )
    });
    quote! {
        #unit
        #(#cfgs)*
        #[allow(deprecated)]
        const _: () = {
            #derives
            #body_fn
            #[automatically_derived]
            impl #fp::DynTool for #ident {
                fn name(&self) -> &'static #str_ {
                    #name
                }

                fn description(&self) -> &'static #str_ {
                    #description
                }

                fn parameters_schema(&self) -> #fp::serde_json::Value {
                    #schema
                }

                fn step_spec(
                    &self,
                ) -> #fp::core::option::Option<&'static #fp::AgentSpec> {
                    static #spec_static: #fp::AgentSpec = {
                        let mut #spec = #fp::AgentSpec::new(#step_name, #fp::AgentKind::Code);
                        #(#settings)*
                        #spec
                    };
                    #fp::core::option::Option::Some(&#spec_static)
                }

                #approval_fn

                fn call_with(
                    &self,
                    #tool_ctx: #fp::ToolContext,
                    #arguments: #fp::serde_json::Value,
                ) -> #fp::futures::future::BoxFuture<
                    'static,
                    #fp::core::result::Result<#fp::serde_json::Value, #fp::std::string::String>,
                > {
                    #call
                }
            }
            #return_check
        };
    }
}

#[cfg(test)]
mod tests {
    //! Each expansion is a snapshot in `src/snapshots/flock_macros__expand__tests__*.snap`,
    //! checked for hygiene first; to update them, see `crate::test_support`
    //! (`INSTA_UPDATE=always cargo test -p flock-macros`, then read the diff).

    use quote::quote;

    use super::*;
    use crate::test_support::{assert_expansion, compile_errors};

    #[test]
    fn declarative_agent_with_every_key() {
        assert_expansion!(
            "declarative_agent_with_every_key",
            agent(
                quote!(
                    name = "researcher",
                    model = "openai/gpt-4o",
                    hand_off = shout,
                    timeout = "30s",
                    schedule_to_close = "5m",
                    heartbeat = "10s",
                    task_queue = "agents",
                    output_retries = 2,
                    max_tool_rounds = 20,
                    local = false,
                    tools = [search, fetch],
                    retry(
                        attempts = 3,
                        initial_interval = "2s",
                        max_interval = "1m",
                        backoff = 1.5,
                        jitter = 0.25,
                        non_retryable = ["Permanent", "InvalidOutput"]
                    )
                ),
                quote!(
                    /// Research the topic.
                    pub(crate) async fn research(input: Topic) -> Findings;
                ),
            )
        );
    }

    #[test]
    fn declarative_agent_with_context_checks_its_type() {
        assert_expansion!(
            "declarative_agent_with_context",
            agent(
                quote!(),
                quote!(
                    async fn a(ctx: &AgentContext, input: In) -> Result<Out, AgentError>;
                ),
            )
        );
    }

    #[test]
    fn code_agent_with_context_and_result() {
        assert_expansion!(
            "code_agent_with_context_and_result",
            agent(
                quote!(),
                quote!(
                    #[allow(unused_variables)]
                    async fn shout(
                        ctx: &AgentContext,
                        input: Findings,
                    ) -> Result<Findings, AgentError> {
                        Ok(input)
                    }
                ),
            )
        );
    }

    #[test]
    fn code_agent_handing_off_with_unlimited_attempts() {
        assert_expansion!(
            "code_agent_handing_off",
            agent(
                quote!(hand_off = agents::summarize, retry(attempts = unlimited)),
                quote!(
                    pub async fn draft(input: Topic) -> Draft {
                        Draft::from(input)
                    }
                ),
            )
        );
    }

    #[test]
    fn plain_aliased_and_opaque_returns() {
        // A plain output is checked not to be a `Result` behind an alias (`__flock_return`).
        assert_expansion!(
            "agent_plain_return",
            agent(
                quote!(),
                quote!(
                    async fn a(input: In) -> Out {
                        todo!()
                    }
                ),
            )
        );
        // A known alias of `Result`: the output is its `Ok`, checked as written.
        assert_expansion!(
            "agent_aliased_result_return",
            agent(
                quote!(),
                quote!(
                    async fn a(input: In) -> flock::AgentResult<Out> {
                        todo!()
                    }
                ),
            )
        );
        // A `Result` whose `Ok` type is not written: the checks name the projection.
        assert_expansion!(
            "agent_opaque_result_return",
            agent(
                quote!(),
                quote!(
                    async fn a(input: In) -> fmt::Result {
                        todo!()
                    }
                ),
            )
        );
    }

    #[test]
    fn cfg_and_doc_attributes_are_carried_over() {
        assert_expansion!(
            "agent_with_cfg_and_doc_attributes",
            agent(
                quote!(),
                quote!(
                    /// Docs.
                    #[cfg(feature = "x")]
                    #[deprecated]
                    async fn a(input: In) -> Out {
                        input
                    }
                ),
            )
        );
    }

    #[test]
    fn flow_with_every_key() {
        assert_expansion!(
            "flow_with_every_key",
            flow(
                quote!(
                    name = "research",
                    description = "Runs.",
                    task_queue = "flows",
                    execution_timeout = "1h",
                    run_timeout = "10m"
                ),
                quote!(
                    pub async fn research_flow(
                        ctx: &FlowContext,
                        topic: Topic,
                    ) -> Result<Findings, FlowError> {
                        ctx.call(research, topic).await
                    }
                ),
            )
        );
    }

    #[test]
    fn flow_with_messages_and_a_validator() {
        assert_expansion!(
            "flow_with_messages_and_a_validator",
            flow(
                quote!(
                    signals(
                        /// The decision.
                        decision: Decision
                    ),
                    queries(stage: String),
                    updates(edit: String -> u32, retitle: Title -> Title),
                    validate(edit = check)
                ),
                quote!(
                    /// Takes a decision, answers edits.
                    #[cfg(feature = "review")]
                    pub async fn review(ctx: &FlowContext, input: ()) -> Result<bool, FlowError> {
                        Ok(ctx.wait(review::decision).await?.approve)
                    }
                ),
            )
        );
    }

    #[test]
    fn flow_call_sites_resolve_with_the_bodys_imports() {
        assert_expansion!(
            "flow_calling_agents_and_child_flows",
            flow(
                quote!(),
                quote!(
                    async fn fan(ctx: &FlowContext, ns: Ns) -> Result<Ns, FlowError> {
                        use crate::children::child;
                        let n = ctx.call_chain(start, ns.clone()).await?;
                        let m = ctx.call(agents::research, n).await?;
                        let one = ctx.call_flow(child, ns.first()).await?;
                        let all = ns.iter().map(|n| ctx.call_flow(child, n.clone()));
                        ctx.call(pick(m), ns).await
                    }
                ),
            )
        );
    }

    #[test]
    fn flow_bodies_are_linted_and_the_escape_hatch_removed() {
        // The body as written, less the attribute; the sleep reported.
        assert_expansion!(
            "flow_with_a_nondeterministic_call",
            flow(
                quote!(),
                quote!(
                    async fn timed(c: &FlowContext, job: Job) -> Result<Job, FlowError> {
                        #[flock::nondeterministic]
                        let started = std::time::Instant::now();
                        tokio::time::sleep(d).await;
                        c.call(work, job).await
                    }
                ),
            )
        );
    }

    #[test]
    fn agent_and_tool_bodies_are_not_linted() {
        let agent = agent(
            quote!(),
            quote!(
                async fn a(input: In) -> Out {
                    tokio::time::sleep(d).await;
                    input
                }
            ),
        );
        let tool = tool(
            quote!(),
            quote!(
                async fn t(args: A) -> B {
                    B(std::time::SystemTime::now())
                }
            ),
        );
        assert!(compile_errors(&agent).is_empty());
        assert!(compile_errors(&tool).is_empty());
    }

    #[test]
    fn the_no_op_attribute_leaves_its_item_alone() {
        let item = quote!(
            fn helper() {}
        );
        assert_eq!(
            nondeterministic(quote!(), item.clone()).to_string(),
            item.to_string()
        );
        let with_args = nondeterministic(quote!("why"), item);
        assert_eq!(
            compile_errors(&with_args),
            ["`#[flock::nondeterministic]` takes no arguments"]
        );
    }

    #[test]
    fn tool_expansion() {
        assert_expansion!(
            "tool",
            tool(
                quote!(),
                quote!(
                    /// Looks up.
                    async fn lookup(args: Query) -> Answer {
                        todo!()
                    }
                ),
            )
        );
        // Named, fallible: `tool_result`, and no `__flock_return` check.
        assert_expansion!(
            "tool_named_and_fallible",
            tool(
                quote!(name = "find"),
                quote!(
                    async fn lookup(args: Query) -> Result<Answer, Error> {
                        todo!()
                    }
                ),
            )
        );
        // The settings of its calls' steps, like an agent's.
        assert_expansion!(
            "tool_with_step_settings",
            tool(
                quote!(
                    timeout = "30s",
                    schedule_to_close = "5m",
                    heartbeat = "10s",
                    task_queue = "tools",
                    local,
                    retry(
                        attempts = 3,
                        initial_interval = "1s",
                        non_retryable = ["Permanent"]
                    )
                ),
                quote!(
                    /// Charges the card.
                    async fn charge(ctx: &ToolContext, args: Payment) -> Result<Receipt, Error> {
                        todo!()
                    }
                ),
            )
        );
        // Arguments that demand an approval: the inner type's schema, `approved_arguments`,
        // and `needs_approval`.
        assert_expansion!(
            "tool_demanding_approval",
            tool(
                quote!(),
                quote!(
                    /// Sends money.
                    async fn wire(ctx: &ToolContext, transfer: Approved<Transfer>) -> String {
                        todo!()
                    }
                ),
            )
        );
    }

    #[test]
    fn bad_keys_and_fixable_mistakes_still_expand_fully() {
        assert_expansion!(
            "agent_with_a_bad_key_and_fixable_mistakes",
            agent(
                quote!(timout = "30s", heartbeat = "5x"),
                quote!(
                    fn shout(input: In) -> Out {
                        input
                    }
                ),
            )
        );
    }

    #[test]
    fn several_mistakes_are_reported_together_with_a_stub() {
        assert_expansion!(
            "agent_with_an_unusable_signature",
            agent(
                quote!(
                    timout = "30s",
                    retry(attempts = "3"),
                    model = "a",
                    model = "b"
                ),
                quote!(
                    /// Docs stay.
                    pub fn research(a: A, b: B, c: C) -> Out {
                        todo!()
                    }
                ),
            )
        );
    }

    #[test]
    fn non_fns_are_returned_unchanged_with_an_error() {
        assert_expansion!(
            "agent_on_a_struct",
            agent(
                quote!(),
                quote!(
                    struct NotAnFn;
                ),
            )
        );
    }

    #[test]
    fn errors_point_at_the_offending_tokens() {
        // Tokens parsed from text carry line/column positions (proc-macro2's `span-locations`).
        let args: TokenStream = "timeout = \"5x\", frobnicate = 1".parse().unwrap();
        let item: TokenStream = "async fn f(\n    a: A,\n    b: B,\n    c: C,\n) -> Out;"
            .parse()
            .unwrap();
        let tokens = agent(args, item);
        // Each error is `::core::compile_error! { "..." }`, spanned from its start to its end.
        let starts: Vec<_> = tokens
            .into_iter()
            .filter_map(|t| match t {
                proc_macro2::TokenTree::Ident(i) if i == "compile_error" => {
                    Some((i.span().start().line, i.span().start().column))
                }
                _ => None,
            })
            .collect();
        // `"5x"` at 1:10, `frobnicate` at 1:16, `c: C` at line 4 column 4.
        assert_eq!(starts, [(1, 10), (1, 16), (4, 4)]);
    }
}

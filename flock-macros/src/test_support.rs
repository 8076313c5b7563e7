//! What the expansion tests share: pretty-printing an expansion, reading its `compile_error!`s,
//! and [`assert_expansion!`], which snapshots the whole pretty-printed expansion with `insta`
//! after checking that every absolute path in it is one the generated code may name.
//!
//! The snapshots are the committed files `src/snapshots/*.snap`; review them in the diff like
//! code. `cargo test -p flock-macros` compares each expansion with its file and fails on any
//! difference, and on a missing file.
//!
//! To update them after a deliberate change to the generated code:
//!
//! ```text
//! INSTA_UPDATE=always cargo test -p flock-macros   # rewrites the .snap files; read `git diff`
//! cargo test -p flock-macros; cargo insta review  # or: accept or reject each .snap.new
//! ```
//!
//! Without `INSTA_UPDATE`, insta's default (`auto`) writes nothing in CI (`CI` set, as `.ci/run`
//! runs): a missing or different snapshot fails the test, as with `INSTA_UPDATE=no`. Outside CI
//! it fails the same way and leaves the new expansion beside the old one as a `.snap.new` file
//! (ignored by git) for `cargo insta review`. What would let a test pass on a missing or
//! different snapshot (`INSTA_UPDATE=always`, `force` or `unseen`, which write it, and
//! `INSTA_FORCE_PASS`) is refused in CI by [`assert_expansion!`].

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::LitStr;

/// The expansion, pretty-printed as a file.
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    prettyplease::unparse(&syn::parse2(tokens.clone()).expect("the expansion parses as a file"))
}

/// The messages of the `compile_error!`s an expansion emits.
pub(crate) fn compile_errors(tokens: &TokenStream) -> Vec<String> {
    let file: syn::File = syn::parse2(tokens.clone()).expect("the expansion parses");
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Macro(m) if m.mac.path.segments.last().unwrap().ident == "compile_error" => {
                Some(syn::parse2::<LitStr>(m.mac.tokens.clone()).unwrap().value())
            }
            _ => None,
        })
        .collect()
}

/// Snapshots the pretty-printed expansion under `src/snapshots/`, named
/// `flock_macros__<module>__<name>.snap`, after [`assert_hygienic`]:
/// `assert_expansion!("tool", tool(quote!(), quote!(async fn t(a: A) -> B { .. })))`.
macro_rules! assert_expansion {
    ($name:expr, $tokens:expr $(,)?) => {{
        let tokens: ::proc_macro2::TokenStream = $tokens;
        $crate::test_support::refuse_writing_snapshots_in_ci();
        $crate::test_support::assert_hygienic(&tokens);
        let expansion = $crate::test_support::pretty(&tokens);
        ::insta::with_settings!({ omit_expression => true }, {
            ::insta::assert_snapshot!($name, expansion);
        });
    }};
}
pub(crate) use assert_expansion;

/// In CI (insta's test: `CI` set and not `0`, `false` or empty, or `TF_BUILD` set), panics if
/// insta is told to write snapshots and pass: a missing snapshot must fail there.
pub(crate) fn refuse_writing_snapshots_in_ci() {
    let var = |name| std::env::var(name).unwrap_or_default();
    let ci = match std::env::var("CI") {
        Ok(ci) => !matches!(ci.as_str(), "" | "0" | "false"),
        Err(_) => std::env::var_os("TF_BUILD").is_some(),
    };
    let update = var("INSTA_UPDATE");
    let force_pass = var("INSTA_FORCE_PASS");
    assert!(
        !ci || !(matches!(update.as_str(), "always" | "1" | "force" | "unseen")
            || matches!(force_pass.as_str(), "1" | "true")),
        "in CI the expansion snapshots are compared, never written: unset INSTA_UPDATE \
         ({update:?}) and INSTA_FORCE_PASS ({force_pass:?})"
    );
}

/// Every path in the expansion that starts with `::` starts with `::flock::__private::`,
/// `::core::` or `::std::`: generated code names no crate the user may not depend on, and no
/// item the user may shadow. Checked on the tokens (string literals and doc comments aside), in
/// macro invocations too (`inventory::submit! { .. }`).
#[track_caller]
pub(crate) fn assert_hygienic(tokens: &TokenStream) {
    let foreign = foreign_absolute_paths(tokens);
    assert!(
        foreign.is_empty(),
        "absolute paths outside `::flock::__private`, `::core` and `::std`: {foreign:?}\n{tokens}"
    );
}

/// The absolute paths that start with something other than `::flock::__private`, `::core` or
/// `::std`, as their first two segments.
fn foreign_absolute_paths(tokens: &TokenStream) -> Vec<String> {
    let mut foreign = Vec::new();
    collect_foreign(tokens.clone(), &mut foreign);
    foreign
}

fn collect_foreign(tokens: TokenStream, foreign: &mut Vec<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut at = 0;
    while at < tokens.len() {
        if let TokenTree::Group(group) = &tokens[at] {
            collect_foreign(group.stream(), foreign);
        }
        if is_path_separator(&tokens, at) {
            if starts_a_path(&tokens[..at]) {
                let segments: Vec<String> = tokens[at..]
                    .chunks(3)
                    .take(2)
                    .map_while(|chunk| match chunk {
                        [_, _, TokenTree::Ident(ident)] => Some(ident.to_string()),
                        _ => None,
                    })
                    .collect();
                let allowed = matches!(
                    segments.iter().map(String::as_str).collect::<Vec<_>>()[..],
                    ["flock", "__private"] | ["core", ..] | ["std", ..]
                );
                let path = format!("::{}", segments.join("::"));
                if !allowed && !foreign.contains(&path) {
                    foreign.push(path);
                }
            }
            at += 2;
        } else {
            at += 1;
        }
    }
}

/// `::` at `at`: a joint `:` followed by `:`.
fn is_path_separator(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (&tokens[at], tokens.get(at + 1)),
        (TokenTree::Punct(a), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// Whether a `::` after `before` starts a path (`::a::b`, `use ::a`, `-> ::a`) rather than
/// continuing one (`a::b`, `Self::f`, `<T as Tr>::Item`, `f::<T>`).
fn starts_a_path(before: &[TokenTree]) -> bool {
    match before {
        [] => true,
        // a lifetime: `&'a ::T`
        [.., TokenTree::Punct(quote), TokenTree::Ident(_)] if quote.as_char() == '\'' => true,
        [.., TokenTree::Ident(ident)] => {
            let ident = ident.to_string();
            !matches!(ident.as_str(), "self" | "Self" | "super" | "crate")
                && KEYWORDS.contains(&ident.as_str())
        }
        // `->` and `=>` end no path
        [.., TokenTree::Punct(first), TokenTree::Punct(gt)] if gt.as_char() == '>' => {
            first.spacing() == Spacing::Joint && matches!(first.as_char(), '-' | '=')
        }
        [.., TokenTree::Punct(gt)] if gt.as_char() == '>' => false,
        // after an interpolated type, a path goes on (`$ty::Item`); after `(..)` or `[..]` not
        [.., TokenTree::Group(group)] => group.delimiter() != Delimiter::None,
        _ => true,
    }
}

/// Rust's keywords (strict, reserved and weak): a path never continues after one.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "static",
    "struct", "trait", "try", "type", "typeof", "union", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield",
];

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn absolute_paths_outside_flock_private_core_and_std_are_found() {
        let tokens = quote! {
            use ::futures::FutureExt;
            impl ::serde::Serialize for T {}
            fn f<'a>(x: ::anyhow::Error, y: &'a ::regex::Regex) -> ::tokio::task::JoinHandle<()> {
                match x { _ => ::tracing::info!("a::b") }
                inventory::submit! { ::inventory::Item }
            }
            const _: ::flock::Flow = ::flock::__private::x;
        };
        assert_eq!(
            foreign_absolute_paths(&tokens),
            [
                "::futures::FutureExt",
                "::serde::Serialize",
                "::anyhow::Error",
                "::regex::Regex",
                "::tokio::task",
                "::tracing::info",
                "::inventory::Item",
                "::flock::Flow",
            ]
        );
    }

    #[test]
    fn relative_and_allowed_absolute_paths_pass() {
        assert_hygienic(&quote! {
            use ::flock::__private::{A as _, B as _};
            impl ::flock::__private::Agent for a {
                type Output = <Result<T, E> as ::flock::__private::AgentResultOk>::Ok;
                fn f(x: ::core::option::Option<u8>) -> ::std::string::String {
                    Self::g::<T>(a::b, <T>::new(), crate::x, self::y, super::z)
                }
            }
            ::core::compile_error! { "::serde::Serialize in a string is no path" }
        });
    }
}

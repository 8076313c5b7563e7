//! The prelude's `Serialize`, `Deserialize` and `JsonSchema` derives: serde's and schemars' own
//! derives, run through flock's re-exports so that a crate that depends on `flock` alone can use
//! them.
//!
//! Without `#[serde(crate = "..")]` serde's derive emits `extern crate serde`, and without
//! `#[schemars(crate = "..")]` schemars' emits `schemars::..` paths: both need the user's own
//! dependency. A derive cannot add attributes to its item, so each of these emits a *shadow* of
//! the item: a copy with the crate path added and only the attributes that derive reads, under
//! the real derive and `erase_shadow`:
//!
//! ```text
//! const _: () = {
//!     #[derive(::flock::__private::serde::Serialize)]
//!     #[::flock::__private::erase_shadow]
//!     #[serde(crate = "::flock::__private::serde")]
//!     #[serde(rename_all = "camelCase")]            // the user's attributes
//!     pub struct Topic { pub topic: String }
//! };
//! ```
//!
//! Attributes expand in order: serde's derive sees the shadow and emits its impl next to it, then
//! `erase_shadow` deletes the shadow. The impl names `Topic`, which with the shadow gone is the
//! user's type. So serde's own code generation (bounds, generics, lifetimes, enums, every
//! `#[serde]` attribute, doc comments for schemars) applies to the user's type unchanged, exactly
//! as if the user had written the crate attribute.
//!
//! The stages are small: [`Derive::shadow`] models the item (the attributes the real derive
//! reads, the user's `crate = ..` taken out and reported), [`Derive::expand`] emits it.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr, Meta, Token};

use crate::ctxt::Ctxt;

/// One of the prelude's derives.
pub struct Derive {
    /// The derive's name, for messages.
    name: &'static str,
    /// The crate it goes through, also the name of its attribute: `serde`, `schemars`.
    krate: &'static str,
    /// The attributes the real derive reads; the shadow keeps only these.
    reads: &'static [&'static str],
}

/// `#[derive(Serialize)]`.
pub const SERIALIZE: Derive = Derive {
    name: "Serialize",
    krate: "serde",
    // `repr(packed)` changes how serde borrows fields.
    reads: &["serde", "repr"],
};

/// `#[derive(Deserialize)]`.
pub const DESERIALIZE: Derive = Derive {
    name: "Deserialize",
    krate: "serde",
    reads: &["serde", "repr"],
};

/// `#[derive(JsonSchema)]`.
pub const JSON_SCHEMA: Derive = Derive {
    name: "JsonSchema",
    krate: "schemars",
    // doc comments become descriptions, `#[deprecated]` a `deprecated` keyword; schemars reads
    // serde's attributes and validator's and garde's.
    reads: &[
        "schemars",
        "serde",
        "validate",
        "garde",
        "doc",
        "deprecated",
    ],
};

impl Derive {
    /// The expansion of `#[derive(<this>)]` on `item`.
    pub fn run(&self, item: TokenStream) -> TokenStream {
        let input = match syn::parse2::<DeriveInput>(item) {
            Ok(input) => input,
            Err(error) => return error.to_compile_error(),
        };
        let cx = Ctxt::new();
        let shadow = self.shadow(&cx, input);
        let expansion = self.expand(&shadow);
        match cx.check() {
            Ok(()) => expansion,
            Err(error) => {
                let errors = error.to_compile_error();
                quote!(#expansion #errors)
            }
        }
    }

    /// The item as the real derive is to see it: only the attributes it reads, at every level,
    /// and none that sets the crate path (reported: this derive sets it).
    fn shadow(&self, cx: &Ctxt, mut item: DeriveInput) -> DeriveInput {
        self.keep_read(&mut item.attrs);
        for attr in &mut item.attrs {
            self.take_crate_path(cx, attr);
        }
        match &mut item.data {
            Data::Struct(data) => self.keep_read_in_fields(&mut data.fields),
            Data::Enum(data) => {
                for variant in &mut data.variants {
                    self.keep_read(&mut variant.attrs);
                    self.keep_read_in_fields(&mut variant.fields);
                }
            }
            Data::Union(data) => {
                for field in &mut data.fields.named {
                    self.keep_read(&mut field.attrs);
                }
            }
        }
        item
    }

    fn keep_read_in_fields(&self, fields: &mut Fields) {
        for field in fields.iter_mut() {
            self.keep_read(&mut field.attrs);
        }
    }

    /// Drops the attributes the real derive does not read: other derives' helpers (e.g.
    /// `#[default]`) would be unknown on the shadow, and the item's other attributes
    /// (`#[derive(..)]` among them) must not apply twice.
    fn keep_read(&self, attrs: &mut Vec<Attribute>) {
        attrs.retain(|attr| self.reads.iter().any(|name| attr.path().is_ident(name)));
    }

    /// Takes `crate = ".."` out of `#[serde(..)]` / `#[schemars(..)]`, reporting it. An attribute
    /// that does not parse as a list of metas is left alone, for the real derive to report.
    fn take_crate_path(&self, cx: &Ctxt, attr: &mut Attribute) {
        if !attr.path().is_ident(self.krate) {
            return;
        }
        let Meta::List(list) = &mut attr.meta else {
            return;
        };
        let Ok(metas) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        else {
            return;
        };
        let (krate, rest): (Vec<Meta>, Vec<Meta>) = metas
            .into_iter()
            .partition(|meta| meta.path().is_ident("crate"));
        if krate.is_empty() {
            return;
        }
        for meta in &krate {
            cx.error_spanned_by(
                meta,
                format!(
                    "flock's `{name}` derive sets the `{krate}` crate path itself (to flock's \
                     re-export, so that you need no `{krate}` dependency); remove `crate = ..`, \
                     or derive `{krate}::{name}` with your own `{krate}` dependency",
                    name = self.name,
                    krate = self.krate,
                ),
            );
        }
        let rest: Punctuated<Meta, Token![,]> = rest.into_iter().collect();
        list.tokens = rest.into_token_stream();
    }

    /// The shadow under the real derive, with the crate path, erased once derived.
    fn expand(&self, shadow: &DeriveInput) -> TokenStream {
        let krate = syn::Ident::new(self.krate, proc_macro2::Span::call_site());
        let derive = syn::Ident::new(self.name, proc_macro2::Span::call_site());
        let path = LitStr::new(
            &format!("::flock::__private::{krate}"),
            proc_macro2::Span::call_site(),
        );
        quote! {
            const _: () = {
                #[derive(::flock::__private::#krate::#derive)]
                #[::flock::__private::erase_shadow]
                #[#krate(crate = #path)]
                #shadow
            };
        }
    }
}

/// `#[erase_shadow]`: the shadow's end, once the real derive has seen it.
pub fn erase_shadow(_item: TokenStream) -> TokenStream {
    TokenStream::new()
}

#[cfg(test)]
mod tests {
    //! Each expansion is a snapshot in `src/snapshots/flock_macros__derive__tests__*.snap`; to
    //! update them, see `crate::test_support` (`INSTA_UPDATE=always cargo test -p flock-macros`,
    //! then read the diff).

    use quote::quote;

    use super::*;
    use crate::test_support::{assert_expansion, compile_errors};

    #[test]
    fn serialize_shadows_the_item_with_the_crate_path_and_serde_attributes_only() {
        assert_expansion!(
            "serialize",
            SERIALIZE.run(quote! {
                /// A topic.
                #[serde(rename_all = "camelCase")]
                #[schemars(title = "T")]
                #[derive(Clone)]
                pub struct Topic<T: Clone> where T: Default {
                    /// The topic.
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    #[validate(length(min = 1))]
                    pub topic_name: Option<T>,
                }
            })
        );
    }

    #[test]
    fn deserialize_keeps_variant_attributes_and_drops_other_derives_helpers() {
        assert_expansion!(
            "deserialize",
            DESERIALIZE.run(quote! {
                #[derive(Default)]
                #[serde(tag = "kind")]
                enum Route<'a> {
                    #[default]
                    #[serde(rename = "a")]
                    A,
                    B { #[serde(borrow)] name: &'a str },
                    C(u8),
                }
            })
        );
    }

    #[test]
    fn json_schema_keeps_doc_comments_and_the_attributes_schemars_reads() {
        assert_expansion!(
            "json_schema",
            JSON_SCHEMA.run(quote! {
                /// Concise summary.
                #[derive(Debug)]
                #[schemars(deny_unknown_fields)]
                #[repr(C)]
                pub struct Summary {
                    /// The summary.
                    #[serde(rename = "text")]
                    #[validate(length(max = 100))]
                    #[deprecated]
                    pub summary: String,
                }
            })
        );
    }

    #[test]
    fn a_crate_path_of_the_users_is_reported_and_taken_out() {
        assert_expansion!(
            "serialize_with_a_crate_path",
            SERIALIZE.run(quote! {
                #[serde(rename_all = "camelCase", crate = "serde")]
                pub struct Topic { pub topic: String }
            })
        );
    }

    #[test]
    fn json_schema_reports_a_schemars_crate_path_but_not_a_serde_one() {
        assert_expansion!(
            "json_schema_with_crate_paths",
            JSON_SCHEMA.run(quote! {
                #[schemars(crate = "schemars")]
                #[serde(crate = "serde")]
                pub struct Topic { pub topic: String }
            })
        );
    }

    #[test]
    fn an_attribute_that_does_not_parse_is_left_for_serde_to_report() {
        assert_expansion!(
            "serialize_with_an_unparsed_attribute",
            SERIALIZE.run(quote! {
                #[serde(rename_all = )]
                pub struct Topic { pub topic: String }
            })
        );
    }

    #[test]
    fn not_an_item_is_a_parse_error() {
        let tokens = SERIALIZE.run(quote!(
            fn f() {}
        ));
        assert_eq!(
            compile_errors(&tokens),
            ["expected one of: `struct`, `enum`, `union`"]
        );
    }

    #[test]
    fn erase_shadow_leaves_nothing() {
        assert!(
            erase_shadow(quote!(
                struct S;
            ))
            .is_empty()
        );
    }
}

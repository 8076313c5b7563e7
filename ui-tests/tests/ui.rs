//! Compile tests of `#[agent]`, `#[flow]` and `#[tool]` (trybuild).
//!
//! `pass/` files must compile and run (their `main` asserts). `fail/` files must fail to compile
//! with exactly the committed `.stderr`: regenerate with `TRYBUILD=overwrite cargo test -p
//! flock-ui-tests` and review the diff. The wording of rustc's messages changes between
//! versions, so the exact-stderr tests run only on the version that generated them.

#[test]
fn pass() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/agent/pass/*.rs");
    t.pass("tests/ui/flow/pass/*.rs");
    t.pass("tests/ui/tool/pass/*.rs");
}

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files were generated with rustc 1.95; regenerate them with TRYBUILD=overwrite on this version"
)]
#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/agent/fail/*.rs");
    t.compile_fail("tests/ui/flow/fail/*.rs");
    t.compile_fail("tests/ui/tool/fail/*.rs");
}

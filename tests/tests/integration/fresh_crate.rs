//! A new user's crate: the README's `[dependencies]` (flock and tokio, no serde or schemars) and
//! the README's tour, built with cargo. Users depend on `flock` alone, derives included. The
//! crate's second binary is the ui-tests pass case of the prelude's derives (enums, generics,
//! serde's and schemars' attributes), which ui-tests can only build with serde and schemars
//! dependencies; here it builds and runs without.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

/// The body of the first fenced block whose info string starts with `info`, after the line
/// `heading`.
fn fenced_block<'a>(markdown: &'a str, heading: &str, info: &str) -> &'a str {
    let (_, section) = markdown
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no `{heading}` heading"));
    let fence = format!("\n```{info}");
    let (_, block) = section
        .split_once(&fence)
        .unwrap_or_else(|| panic!("no ```{info} block under `{heading}` in README.md"));
    let (_, block) = block.split_once('\n').expect("the fence line ends");
    let (body, _) = block
        .split_once("\n```\n")
        .unwrap_or_else(|| panic!("the ```{info} block under `{heading}` is not closed"));
    body
}

/// The README's `[dependencies]` with its `flock = ..` line pointing at this workspace's flock.
fn manifest(readme_dependencies: &str) -> String {
    let flock = workspace().join("flock");
    let flock_line = format!("flock = {{ path = {:?} }}", flock.display().to_string());
    let mut replaced = 0;
    let dependencies: Vec<String> = readme_dependencies
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("flock =") {
                replaced += 1;
                flock_line.clone()
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        replaced, 1,
        "the README's Cargo.toml block has one `flock = ..` line:\n{readme_dependencies}"
    );
    format!(
        "[package]\nname = \"flock-fresh-crate\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
         publish = false\n\n# not a member of any enclosing workspace\n[workspace]\n\n{}\n",
        dependencies.join("\n")
    )
}

#[test]
fn readme_tour_builds_in_a_crate_that_depends_on_flock_alone() {
    let readme = fs::read_to_string(workspace().join("README.md")).expect("README.md reads");
    let dependencies = fenced_block(&readme, "## A short tour", "toml");
    let tour = fenced_block(&readme, "## A short tour", "rust");
    assert!(
        !dependencies.contains("serde") && !dependencies.contains("schemars"),
        "the README's dependencies are flock's alone:\n{dependencies}"
    );

    // In the workspace's target dir: the build reuses the workspace's compiled dependencies (the
    // Temporal SDK among them) instead of rebuilding them.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target_dir: PathBuf = tmp
        .parent()
        .expect("the tmp dir is in the target dir")
        .into();
    let krate = tmp.join("fresh-crate");
    let _ = fs::remove_dir_all(&krate);
    fs::create_dir_all(krate.join("src")).expect("creates the crate's dirs");
    fs::write(krate.join("Cargo.toml"), manifest(dependencies)).expect("writes Cargo.toml");
    fs::write(krate.join("src/main.rs"), tour).expect("writes src/main.rs");
    fs::create_dir_all(krate.join("src/bin")).expect("creates src/bin");
    fs::copy(
        workspace().join("ui-tests/tests/ui/agent/pass/prelude_derives.rs"),
        krate.join("src/bin/fresh-crate-derives.rs"),
    )
    .expect("copies the derives pass case");
    // The workspace's versions: those are the ones built already, and offline resolution finds
    // them.
    fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).expect("copies Cargo.lock");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // Without the variables cargo sets for this test: build scripts that watch one (ring's
    // watches CARGO_MANIFEST_DIR) would rerun, and the Temporal SDK rebuild after them.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&&*name)
        {
            build.env_remove(&*name);
        }
    }
    let output = build
        .args(["build", "--offline", "--message-format=short"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "`cargo build` of the README's crate ({}) failed:\n{}",
        krate.display(),
        String::from_utf8_lossy(&output.stderr)
    );

    let derives = target_dir.join("debug/fresh-crate-derives");
    let output = Command::new(&derives)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", derives.display()));
    assert!(
        output.status.success(),
        "the derives pass case failed in the fresh crate:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

//! The `pipeline` binary falls back to the offline TestModel without `OPENAI_API_KEY` or
//! `FLOCK_MODEL`, and says so: on the commands that run agents, not on those that only read the
//! registry.

use std::process::{Command, Stdio};

fn pipeline(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("FLOCK_MODEL")
        .env_remove("FLOCK_FORCE_MODEL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the pipeline binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_test_model_notice_is_printed_only_by_commands_that_run_agents() {
    for args in [
        &["agents"][..],
        &["flows"],
        &["graph"],
        &["schema", "research_agent"],
    ] {
        let (code, stderr) = pipeline(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("TestModel"), "{args:?}: {stderr}");
    }
    let (code, stderr) = pipeline(&[
        "run",
        "research_agent",
        "--local",
        "--input",
        r#"{"topic": "x"}"#,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("declarative agents are answered by the offline TestModel"),
        "{stderr}"
    );
}

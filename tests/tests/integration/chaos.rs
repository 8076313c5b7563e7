//! Faults: the Temporal server killed and restarted under 20 flows in flight, workers SIGKILLed
//! at random moments under 50 flows (a side-effect ledger proves no completed agent ran again),
//! and a model provider failing 30% of its requests.
//!
//! CI runs them bounded; the long soak is `FLOCK_SOAK_FLOWS=500 FLOCK_SOAK_KILLS=50 cargo test
//! -p flock-tests --test integration chaos::` (and `FLOCK_SOAK_SEED=N` replays one soak's kill
//! schedule).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use flock::dev_server::{DevServer, DevServerOptions};
use flock::model::{OpenAi, OpenAiConfig};
use flock::prelude::*;
use flock_tests::durability::{Leg, ledger_line, soak_flow};
use serde_json::json;

use super::model::server::{FakeOpenAi, Reply, answer, failure, truncated};
use super::support::{free_port, unique};
use super::temporal::{client_only_flock, history};

/// A small random number generator (xorshift), seeded so a failing soak can be replayed.
struct Rng(u64);

impl Rng {
    fn seeded(name: &str) -> Rng {
        let seed = std::env::var("FLOCK_SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{name}: FLOCK_SOAK_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn env_count(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: `{v}` is not a count"))
        })
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Workers SIGKILLed at random moments.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_lose_and_repeat_no_completed_agent() {
    let flows = env_count("FLOCK_SOAK_FLOWS", 50);
    let kills = env_count("FLOCK_SOAK_KILLS", 6);
    let mut rng = Rng::seeded("kill soak");
    let task_queue = format!("chaos-kill-{}", unique());
    let ledger: PathBuf = std::env::temp_dir().join(format!("flock-soak-{}", unique()));
    let client = client_only_flock(&task_queue).await;
    let mut worker =
        super::support::spawn_worker(&task_queue, &ledger, &[("FLOCK_MAX_AGENTS", "3")]);
    let mut handles = Vec::new();
    for flow in 0..flows {
        let leg = Leg {
            flow,
            trail: vec![],
        };
        handles.push(client.run_flow(soak_flow, leg).start().await.unwrap());
    }
    let done_lines = || {
        std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("done"))
            .count() as u32
    };
    let started = Instant::now();
    for kill in 1..=kills {
        tokio::time::sleep(Duration::from_millis(rng.between(300, 2000))).await;
        let done = done_lines();
        assert!(
            done < flows * 3,
            "the soak's work was over before kill {kill} of {kills} (raise FLOCK_SOAK_FLOWS)"
        );
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        eprintln!("kill {kill} at {:?}, {done} steps done", started.elapsed());
        worker = super::support::spawn_worker(&task_queue, &ledger, &[("FLOCK_MAX_AGENTS", "3")]);
    }
    let results = tokio::time::timeout(
        Duration::from_secs(60 + u64::from(flows)),
        futures::future::join_all(handles.iter().map(|handle| handle.result())),
    )
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let results = results.expect("every flow completes after the kills");
    for (flow, result) in results.into_iter().enumerate() {
        assert_eq!(
            result.expect("the flow succeeds").trail,
            vec![1, 2, 3],
            "flow {flow}"
        );
    }

    // The ledger against the server: per step, the attempts that ran (each at most once), and
    // none after the attempt the server recorded as the one that completed it.
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut starts: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    let mut dones: BTreeSet<String> = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        let (event, step, attempt) = (words.next(), words.next(), words.next());
        let (Some(event), Some(step), Some(attempt)) = (event, step, attempt) else {
            panic!("a bad ledger line: {line:?}");
        };
        let number = |text: &str| {
            text.parse::<u32>()
                .unwrap_or_else(|_| panic!("a bad ledger line: {line:?}"))
        };
        let Some((flow, step)) = step.split_once('-') else {
            panic!("a bad ledger line: {line:?}");
        };
        let key = (number(flow), number(step));
        match event {
            "start" => starts.entry(key).or_default().push(number(attempt)),
            _ => {
                dones.insert(line.to_owned());
            }
        }
    }
    let mut repeated = 0;
    for (flow, handle) in handles.iter().enumerate() {
        let flow = flow as u32;
        let history = history(handle.id()).await;
        assert_eq!(
            history.attempts.len(),
            3,
            "flow {flow}: {:?}",
            history.attempts
        );
        for (step, (_, completed_by)) in (1..).zip(&history.attempts) {
            let ran = starts.get(&(flow, step)).cloned().unwrap_or_default();
            let distinct: BTreeSet<u32> = ran.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                ran.len(),
                "flow {flow} step {step}: an attempt ran twice: {ran:?}"
            );
            assert!(
                ran.iter().all(|attempt| attempt <= completed_by),
                "flow {flow} step {step} ran again after attempt {completed_by} completed it: {ran:?}"
            );
            assert!(
                dones.contains(&ledger_line("done", flow, step, *completed_by)),
                "flow {flow} step {step}: the completing attempt {completed_by} left no trace"
            );
            repeated += completed_by - 1;
        }
    }
    eprintln!(
        "{flows} flows, {kills} kills in {:?}: {repeated} agent attempts cut by a kill and run again",
        started.elapsed()
    );
    let _ = std::fs::remove_file(&ledger);
}

// ---------------------------------------------------------------------------------------------
// The server killed and restarted.

/// Doubles, slowly.
#[agent(retry(attempts = 20, initial_interval = "200ms", max_interval = "2s"))]
async fn r_double(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    n * 2
}

/// Doubles, waits on a durable timer, doubles again.
#[flow]
async fn r_flow(ctx: &FlowContext, n: u64) -> Result<u64, FlowError> {
    let n = ctx.call(r_double, n).await?;
    ctx.sleep(Duration::from_secs(2)).await?;
    ctx.call(r_double, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_in_flight_survive_a_server_restart() {
    let db = std::env::temp_dir().join(format!("flock-restart-{}.db", unique()));
    let options = DevServerOptions {
        port: Some(free_port()),
        ui_port: Some(free_port()),
        db_filename: Some(db.clone()),
        ..DevServerOptions::default()
    };
    let dev = DevServer::start(options.clone()).await.unwrap();
    let flock = Flock::builder()
        .model("test")
        .local_debug(false)
        .queue_served_elsewhere(super::conformance::POOL_QUEUE)
        .temporal(TemporalExecutorConfig {
            server_url: dev.address(),
            task_queue: "chaos-restart".into(),
            retry_interval: Duration::from_millis(100),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 1..=20u64 {
        handles.push(flock.run_flow(r_flow, n).start().await.unwrap());
    }
    // in flight: the first agents done or running, the timers pending
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = dev.pid().expect("the dev server's pid");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    dev.stop(); // reaps the killed process
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dev = DevServer::start(options)
        .await
        .expect("the server restarts on its database");
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(handles.iter().map(|handle| handle.result())),
    )
    .await
    .expect("the flows complete after the restart");
    for (n, result) in (1..).zip(results) {
        assert_eq!(result.expect("the flow succeeds"), n * 4, "flow of {n}");
    }
    flock.shutdown().await.unwrap();
    dev.stop();
    let _ = std::fs::remove_file(&db);
}

// ---------------------------------------------------------------------------------------------
// A provider that fails 30% of its requests.

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Question {
    /// What to answer
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Answer {
    /// The answer
    pub answer: String,
}

/// Answer the question.
#[agent(retry(attempts = 30, initial_interval = "50ms", max_interval = "200ms"))]
async fn chaos_answer(input: Question) -> Answer;

/// The replies of a provider that fails about 30% of the time: 429 with a retry delay, 500, a
/// connection closed without an answer, and a body cut off midway; then a good answer. Ends
/// with `runs` good answers in all; gives the replies and the faults among them.
fn faulty_replies(rng: &mut Rng, runs: usize) -> (Vec<Reply>, usize) {
    let good = || answer(&json!({ "answer": "42" }).to_string(), 10, 3);
    let mut replies = Vec::new();
    let mut faults = 0;
    let mut answered = 0;
    while answered < runs {
        if rng.between(0, 100) < 30 {
            faults += 1;
            replies.push(match rng.between(0, 4) {
                0 => failure(
                    429,
                    vec![("retry-after-ms", "100".into())],
                    "Rate limit reached",
                ),
                1 => failure(500, vec![], "The server had an error"),
                2 => Reply::Raw(Vec::new()),
                _ => truncated(good()),
            });
        } else {
            answered += 1;
            replies.push(good());
        }
    }
    (replies, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarative_runs_complete_through_a_provider_failing_30_percent() {
    const RUNS: usize = 50;
    let mut rng = Rng::seeded("provider chaos");
    for executor in ["local", "temporal"] {
        let (replies, faults) = faulty_replies(&mut rng, RUNS);
        let provider = FakeOpenAi::start(replies).await;
        let openai = OpenAi::new(OpenAiConfig {
            api_key: Some("sk-chaos".into()),
            base_url: Some(provider.base_url()),
            timeout: Duration::from_secs(10),
            ..OpenAiConfig::default()
        });
        let builder = Flock::builder()
            .provider(openai)
            .model("openai/gpt-4o-mini");
        let flock = if executor == "local" {
            builder.build().await.unwrap()
        } else {
            builder
                .local_debug(false)
                .queue_served_elsewhere(super::conformance::POOL_QUEUE)
                .temporal(super::temporal::config(&format!(
                    "chaos-provider-{}",
                    unique()
                )))
                .build()
                .await
                .unwrap()
        };
        let runs = futures::future::join_all((0..RUNS).map(|i| {
            flock
                .run(
                    chaos_answer,
                    Question {
                        text: format!("question {i}"),
                    },
                )
                .recorded()
        }));
        let recorded = tokio::time::timeout(Duration::from_secs(120), runs)
            .await
            .unwrap_or_else(|_| panic!("{executor}: the runs did not end"));
        let mut attempts = 0;
        for (i, run) in recorded.iter().enumerate() {
            assert_eq!(
                run.result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{executor}: run {i}: {e}"))
                    .answer,
                "42"
            );
            attempts += run.record.steps[0].attempts.len();
        }
        assert_eq!(
            (attempts, provider.unused_replies()),
            (RUNS + faults, 0),
            "{executor}: every fault cost one attempt ({faults} faults)"
        );
        assert_eq!(provider.received().len(), RUNS + faults, "{executor}");
        eprintln!("{executor}: {RUNS} runs, {faults} faults injected, {attempts} attempts");
        flock.shutdown().await.unwrap();
    }
}

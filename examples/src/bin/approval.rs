//! Human in the loop, from two terminals. On Temporal (a dev server: `temporal server start-dev`,
//! or `TEMPORAL_ADDRESS`):
//!
//! ```text
//! cargo run -p flock-examples --bin approval -- worker                    # terminal 1
//! cargo run -p flock-examples --bin approval -- start post-1 "durable agents"
//! cargo run -p flock-examples --bin approval -- status post-1             # terminal 2
//! cargo run -p flock-examples --bin approval -- edit post-1 "A better text"
//! cargo run -p flock-examples --bin approval -- approve post-1 "ship it"
//! cargo run -p flock-examples --bin approval -- result post-1
//! # or with the temporal CLI:
//! temporal workflow signal --workflow-id post-1 --name decision --input '{"approve":true,"note":"ok"}'
//! temporal workflow query --workflow-id post-1 --type review
//! ```
//!
//! In one process, on either executor (the reviewer is a task that edits, then approves):
//!
//! ```text
//! cargo run -p flock-examples --bin approval -- demo            # in-process
//! cargo run -p flock-examples --bin approval -- demo --temporal # on a dev server it starts
//! ```

use flock::prelude::*;
use flock_examples::approval::{Brief, Decision, Edit, publish};
use flock_examples::{example_flock, example_model};

fn config() -> TemporalExecutorConfig {
    TemporalExecutorConfig {
        server_url: std::env::var("TEMPORAL_ADDRESS")
            .unwrap_or_else(|_| TemporalExecutorConfig::default().server_url),
        task_queue: "approval".into(),
        ..Default::default()
    }
}

async fn client() -> Result<Flock, flock::Error> {
    Flock::builder()
        .model("test")
        .local_debug(false)
        .in_process_worker(false)
        .temporal(config())
        .build()
        .await
}

#[tokio::main]
async fn main() -> Result<(), flock::Error> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "worker" => {
            let flock = Flock::builder()
                .force_model(example_model())
                .local_debug(false)
                .in_process_worker(false)
                .temporal(config())
                .build()
                .await?;
            eprintln!("serving task queue `approval`; Ctrl-C to stop");
            flock.worker().run().await
        }
        "start" => {
            let brief = Brief {
                topic: arg(2),
                review_seconds: 24 * 3600,
            };
            let handle = client()
                .await?
                .run_flow(publish, brief)
                .id(arg(1))
                .start()
                .await?;
            println!(
                "started `{}`: it waits up to 24 h for a decision",
                handle.id()
            );
            Ok(())
        }
        "status" => {
            let flock = client().await?;
            let review = flock
                .flow_handle(publish, arg(1))?
                .query(publish::review)
                .await?;
            println!("{review:#?}");
            Ok(())
        }
        "edit" => {
            let flock = client().await?;
            let handle = flock.flow_handle(publish, arg(1))?;
            let draft = handle.update(publish::edit, Edit { text: arg(2) }).await?;
            println!("the draft is now: {}", draft.text);
            Ok(())
        }
        "approve" | "reject" => {
            let flock = client().await?;
            let decision = Decision {
                approve: arg(0) == "approve",
                note: arg(2),
            };
            flock
                .flow_handle(publish, arg(1))?
                .signal(publish::decision, decision)
                .await?;
            println!("sent");
            Ok(())
        }
        "result" => {
            let flock = client().await?;
            println!("{:#?}", flock.flow_handle(publish, arg(1))?.result().await?);
            Ok(())
        }
        "demo" => demo().await,
        other => {
            eprintln!(
                "unknown command `{other}`: worker | start ID TOPIC | status ID | edit ID TEXT | approve ID NOTE | reject ID NOTE | result ID | demo [--temporal]"
            );
            std::process::exit(2);
        }
    }
}

/// Both sides in one process: the flow, and a reviewer that edits and approves.
async fn demo() -> Result<(), flock::Error> {
    let (flock, _server) =
        example_flock(Flock::builder().force_model(example_model()), config()).await?;
    let brief = Brief {
        topic: "durable agents".into(),
        review_seconds: 24 * 3600,
    };
    let handle = flock
        .run_flow(publish, brief)
        .id(format!("post-{}", std::process::id()))
        .start()
        .await?;
    let review = loop {
        match handle.query(publish::review).await {
            Ok(review) => break review,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    println!("the writer's draft: {}", review.draft);
    let rejected = handle
        .update(publish::edit, Edit { text: " ".into() })
        .await;
    println!(
        "an empty edit: {}",
        rejected.expect_err("the validator rejects it")
    );
    let draft = handle
        .update(
            publish::edit,
            Edit {
                text: format!("{} (edited)", review.draft),
            },
        )
        .await?;
    println!("after the edit: {}", draft.text);
    handle
        .signal(
            publish::decision,
            Decision {
                approve: true,
                note: "ship it".into(),
            },
        )
        .await?;
    println!("{:#?}", handle.result().await?);
    flock.shutdown().await
}

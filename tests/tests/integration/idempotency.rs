//! `AgentContext::idempotency_key`: the same for every attempt of one agent call, different for
//! every other call, on both executors.

use std::sync::Mutex;

use flock::prelude::*;

use super::conformance::both;

/// (input, attempt, idempotency key) of every attempt.
static SEEN: Mutex<Vec<(u32, u32, String)>> = Mutex::new(Vec::new());

/// Fails its first attempt (transient), then answers.
#[agent(retry(attempts = 3, initial_interval = "10ms"))]
async fn i_flaky(ctx: &AgentContext, n: u32) -> Result<u32, AgentError> {
    SEEN.lock()
        .unwrap()
        .push((n, ctx.attempt(), ctx.idempotency_key().to_owned()));
    if ctx.attempt() == 1 {
        return Err(AgentError::transient("first attempt fails"));
    }
    Ok(n)
}

#[flow]
async fn i_twice(ctx: &FlowContext, n: u32) -> Result<u32, FlowError> {
    let a = ctx.call(i_flaky, n).await?;
    let b = ctx.call(i_flaky, n + 1).await?;
    Ok(a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_is_stable_across_retries_and_differs_across_calls() {
    let mut all_keys = Vec::new();
    for (i, (executor, flock)) in both("idempotency").await.into_iter().enumerate() {
        let base = 100 * (i as u32 + 1);
        SEEN.lock().unwrap().clear();
        assert_eq!(flock.run_flow(i_twice, base).await.unwrap(), 2 * base + 1);
        let seen = SEEN.lock().unwrap().clone();
        let key = |n: u32, attempt: u32| {
            seen.iter()
                .find(|(input, a, _)| *input == n && *a == attempt)
                .map(|(_, _, key)| key.clone())
                .unwrap_or_else(|| panic!("{executor}: no attempt {attempt} of call {n}: {seen:?}"))
        };
        assert_eq!(key(base, 1), key(base, 2), "{executor}: {seen:?}");
        assert_eq!(key(base + 1, 1), key(base + 1, 2), "{executor}: {seen:?}");
        assert_ne!(key(base, 1), key(base + 1, 1), "{executor}: {seen:?}");
        assert_ne!(key(base, 1), "detached");
        all_keys.push(key(base, 1));
    }
    assert_ne!(all_keys[0], all_keys[1]);
}

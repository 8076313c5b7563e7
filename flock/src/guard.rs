//! The determinism guard: a flow body may wait only on its [`FlowContext`](crate::FlowContext).
//!
//! A flow body is workflow code. On Temporal, a future that wakes the flow from outside the
//! workflow (a tokio timer, a channel, a spawned task, I/O) is non-determinism: the run hangs and
//! `[TMPRL1100]` appears only in its history. The guard catches the mistake on both executors,
//! the same way, when it happens: every context operation polls its inner future inside a
//! [`ContextOp`], and the [`Guarded`] flow future hands out a waker that notices being *kept*
//! (cloned) by anything polled outside a context operation. Such a flow fails with
//! [`FlowError::NonDeterminism`] naming the flow and what to use instead, so development catches
//! what production would.
//!
//! Combinators that poll their children with the caller's waker (`flock::join!`,
//! [`flock::join_all`](crate::join_all), `select!`) keep working: they never keep the waker.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::error::FlowError;

thread_local! {
    /// How many context operations are being polled on this thread, inside the innermost guard.
    static IN_CONTEXT_OP: Cell<u32> = const { Cell::new(0) };
}

/// A context operation: its inner future may keep the flow's waker (it is driven by the
/// executor, deterministically).
pub(crate) struct ContextOp<F>(pub(crate) F);

impl<F: Future> Future for ContextOp<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the only field.
        let inner = unsafe { self.map_unchecked_mut(|op| &mut op.0) };
        IN_CONTEXT_OP.with(|depth| depth.set(depth.get() + 1));
        let _restore = Restore(|| IN_CONTEXT_OP.with(|depth| depth.set(depth.get() - 1)));
        inner.poll(cx)
    }
}

/// A flow body's future, failing the run when something outside its context keeps its waker.
pub(crate) struct Guarded<F> {
    inner: F,
    flow: &'static str,
    /// Given back for reuse when the guard is dropped.
    state: std::mem::ManuallyDrop<Arc<GuardState>>,
}

#[derive(Default)]
struct GuardState {
    waker: std::sync::Mutex<Option<Waker>>,
    kept_outside: AtomicBool,
}

thread_local! {
    static FREE_STATES: crate::recycle::FreeList<GuardState> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl<F> Guarded<F> {
    pub(crate) fn new(flow: &'static str, inner: F) -> Self {
        let state = match crate::recycle::take(&FREE_STATES) {
            Some(mut state) => match Arc::get_mut(&mut state) {
                Some(fresh) => {
                    *fresh.waker.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
                    *fresh.kept_outside.get_mut() = false;
                    state
                }
                None => Arc::new(GuardState::default()),
            },
            None => Arc::new(GuardState::default()),
        };
        Guarded {
            inner,
            flow,
            state: std::mem::ManuallyDrop::new(state),
        }
    }
}

impl<F> Drop for Guarded<F> {
    fn drop(&mut self) {
        // SAFETY: `state` is never used again: this is the end of the guard.
        let state = unsafe { std::mem::ManuallyDrop::take(&mut self.state) };
        // kept by nobody (no waker of it survives): the next flow on this thread reuses it
        crate::recycle::give(&FREE_STATES, state);
    }
}

impl<T, F: Future<Output = Result<T, FlowError>>> Future for Guarded<F> {
    type Output = Result<T, FlowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned; the other fields are never moved out.
        let this = unsafe { self.get_unchecked_mut() };
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        {
            let mut slot = this.state.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        let waker = guard_waker(Arc::clone(&this.state));
        let mut guarded_cx = Context::from_waker(&waker);
        // A nested flow (a local child run) starts its own count: its context operations are
        // not the parent's.
        let outer_depth = IN_CONTEXT_OP.with(|depth| depth.replace(0));
        let _restore = Restore(move || IN_CONTEXT_OP.with(|depth| depth.set(outer_depth)));
        let polled = inner.poll(&mut guarded_cx);
        if this.state.kept_outside.load(Ordering::Relaxed) {
            return Poll::Ready(Err(FlowError::NonDeterminism {
                flow: this.flow.to_owned(),
                message: NON_DETERMINISM_HELP.to_owned(),
            }));
        }
        polled
    }
}

/// What a flow that waited on something other than its context is told.
pub(crate) const NON_DETERMINISM_HELP: &str = "the flow body awaited something that is not its `FlowContext` (a tokio timer, channel, spawned task or I/O); on Temporal that is non-deterministic and the run hangs. Use `ctx.sleep(..)` for timers, `ctx.call(..)` / `ctx.call_flow(..)` for work, `flock::join!` / `flock::join_all` for concurrency, and `ctx.now()` / `ctx.random_u64()` / `ctx.uuid()` for time and randomness";

struct Restore<F: FnMut()>(F);

impl<F: FnMut()> Drop for Restore<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn guard_waker(state: Arc<GuardState>) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(state).cast(), &VTABLE);
    // SAFETY: the vtable below upholds the RawWaker contract for an `Arc<GuardState>`.
    unsafe { Waker::from_raw(raw) }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` came from `Arc::into_raw` of an `Arc<GuardState>` that is still alive.
    let state = unsafe { Arc::from_raw(data.cast::<GuardState>()) };
    if IN_CONTEXT_OP.with(Cell::get) == 0 {
        state.kept_outside.store(true, Ordering::Relaxed);
    }
    let cloned = state.clone();
    std::mem::forget(state);
    RawWaker::new(Arc::into_raw(cloned).cast(), &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: as in `clone`; this consumes the waker's reference.
    let state = unsafe { Arc::from_raw(data.cast::<GuardState>()) };
    wake_state(&state);
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: as in `clone`; the reference is borrowed, not consumed.
    let state = unsafe { Arc::from_raw(data.cast::<GuardState>()) };
    wake_state(&state);
    std::mem::forget(state);
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: as in `clone`; this releases the waker's reference.
    drop(unsafe { Arc::from_raw(data.cast::<GuardState>()) });
}

/// Wakes the flow's own waker, without cloning it (a clone here would count as a foreign one
/// when the flow's waker is itself a guard's, as a local child run's is).
fn wake_state(state: &GuardState) {
    if let Some(waker) = state
        .waker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        waker.wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn context_ops_may_keep_the_waker() {
        let result = Guarded::new("f", async {
            ContextOp(tokio::time::sleep(std::time::Duration::from_millis(5))).await;
            Ok::<_, FlowError>(7)
        })
        .await;
        assert_eq!(result.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_foreign_timer_fails_the_flow() {
        let result = Guarded::new("f", async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok::<_, FlowError>(7)
        })
        .await;
        match result {
            Err(FlowError::NonDeterminism { flow, message }) => {
                assert_eq!(flow, "f");
                assert!(message.contains("ctx.sleep"), "{message}");
            }
            other => panic!("expected a non-determinism error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn joins_polled_with_the_callers_waker_are_fine() {
        let result = Guarded::new("f", async {
            let (a, b) = futures::join!(
                ContextOp(async {
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                    1
                }),
                ContextOp(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    2
                }),
            );
            Ok::<_, FlowError>(a + b)
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_nested_flow_is_guarded_on_its_own() {
        // the child runs inside the parent's context operation, yet its own foreign wait counts
        let result = Guarded::new("parent", async {
            ContextOp(Guarded::new("child", async {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                Ok::<_, FlowError>(1)
            }))
            .await
        })
        .await;
        assert!(
            matches!(&result, Err(FlowError::NonDeterminism { flow, .. }) if flow == "child"),
            "{result:?}"
        );
    }
}

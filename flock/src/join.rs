//! Joining futures inside flows: like `futures`' `join_all` / `try_join_all`, but polling every
//! future with the caller's waker (no inner wakers), so a flow's concurrency stays deterministic
//! and visible to Temporal's nondeterminism detection as SDK-driven wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

enum Slot<F: Future> {
    Pending(Pin<Box<F>>),
    Done(Option<F::Output>),
}

/// Waits for every future; the outputs come in the futures' order.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let outputs = flock::join_all((1..=3).map(|n| async move { n * 10 })).await;
/// assert_eq!(outputs, [10, 20, 30]);
/// # });
/// ```
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    JoinAll {
        slots: futures
            .into_iter()
            .map(|f| Slot::Pending(Box::pin(f)))
            .collect(),
    }
}

/// The future of [`join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct JoinAll<F: Future> {
    slots: Vec<Slot<F>>,
}

impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut pending = false;
        for slot in &mut self.slots {
            if let Slot::Pending(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(output) => *slot = Slot::Done(Some(output)),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        let outputs = self
            .slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Done(output) => output.take(),
                Slot::Pending(_) => None,
            })
            .collect();
        Poll::Ready(outputs)
    }
}

/// Waits for every future to succeed, or for the first error (the others are dropped, which
/// cancels them); the outputs come in the futures' order.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let check = |n: u32| async move { if n < 10 { Ok(n) } else { Err(format!("{n} is too big")) } };
/// assert_eq!(flock::try_join_all([1, 2].map(check)).await, Ok(vec![1, 2]));
/// assert_eq!(flock::try_join_all([1, 20].map(check)).await, Err("20 is too big".to_owned()));
/// # });
/// ```
pub fn try_join_all<I, T, E>(futures: I) -> TryJoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future<Output = Result<T, E>>,
{
    TryJoinAll {
        inner: join_all(futures),
    }
}

/// The future of [`try_join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct TryJoinAll<F: Future> {
    inner: JoinAll<F>,
}

impl<F: Future> Unpin for TryJoinAll<F> {}

impl<F, T, E> Future for TryJoinAll<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Vec<T>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut pending = false;
        for slot in &mut self.inner.slots {
            if let Slot::Pending(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(ok) => *slot = Slot::Done(Some(ok)),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        // Every slot holds an `Ok` here: an error returned above.
        let outputs = self
            .inner
            .slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Done(output) => output.take().and_then(Result::ok),
                Slot::Pending(_) => None,
            })
            .collect();
        Poll::Ready(Ok(outputs))
    }
}

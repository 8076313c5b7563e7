//! Per-thread free lists for the small shared states every run and every agent call needs (an
//! attempt's cancellation and checkpoints, a flow's determinism guard): a finished one nobody
//! else holds goes back to its thread's list, the next run or call on that thread takes it
//! instead of allocating. Bounded, so a burst of concurrent calls does not keep memory after it.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

/// The most states a thread keeps for reuse, per kind.
const KEEP: usize = 32;

/// A per-thread free list of `Arc<T>`s, each held by nobody else.
pub(crate) type FreeList<T> = RefCell<Vec<Arc<T>>>;

/// A state from this thread's `list`, held by nobody else (reset it before use); `None` when the
/// list is empty.
pub(crate) fn take<T>(list: &'static LocalKey<FreeList<T>>) -> Option<Arc<T>> {
    // `try_with`: a thread being torn down has no list any more
    list.try_with(|list| list.try_borrow_mut().ok().and_then(|mut list| list.pop()))
        .ok()
        .flatten()
}

/// Gives `state` back to this thread's `list` if nobody else holds it (otherwise it is simply
/// dropped here, and freed by its last holder).
pub(crate) fn give<T>(list: &'static LocalKey<FreeList<T>>, mut state: Arc<T>) {
    if Arc::get_mut(&mut state).is_none() {
        return;
    }
    let _ = list.try_with(|list| {
        if let Ok(mut list) = list.try_borrow_mut()
            && list.len() < KEEP
        {
            list.push(state);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static LIST: FreeList<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    #[test]
    fn an_unshared_state_is_reused_reset_and_a_shared_one_is_not() {
        assert!(take(&LIST).is_none(), "nothing to reuse yet");
        let first = Arc::new(vec![1]);
        let address = Arc::as_ptr(&first);
        give(&LIST, first);
        let mut again = take(&LIST).expect("the freed state is kept");
        assert_eq!(Arc::as_ptr(&again), address);
        assert!(
            Arc::get_mut(&mut again).is_some(),
            "and held by nobody else"
        );

        let kept = again.clone();
        give(&LIST, again);
        assert!(take(&LIST).is_none(), "a state someone holds is not kept");
        drop(kept);
    }

    #[test]
    fn a_thread_keeps_at_most_a_bounded_number() {
        let states: Vec<_> = (0..KEEP + 10).map(|_| Arc::new(Vec::new())).collect();
        for state in states {
            give(&LIST, state);
        }
        assert_eq!(LIST.with(|list| list.borrow().len()), KEEP);
    }
}

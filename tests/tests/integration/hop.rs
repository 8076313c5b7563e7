//! The local hop's allocations, counted: a 3-agent code chain and a 3-call flow through `Flock`
//! on the local executor, heap allocations per hop (one agent call) against the same three
//! functions called directly. The figures are deterministic (a thread's own allocations, on a
//! current-thread runtime, after the table of closed runs has filled), so a change that adds an
//! allocation to every hop fails here; BENCHMARKS.md has the release-build figures and the same-run
//! comparison with d8a54d9 (`scripts/hop-ab`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use flock::prelude::*;

/// Counts the heap allocations (and reallocations) of each thread, for that thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no counter any more
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call goes to the system allocator unchanged; only a thread-local counter (const
// initialised, no destructor, so it never allocates itself) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per hop recorded in BENCHMARKS.md (release build: 15.33 for both; d8a54d9: 17.00
/// chain, 15.67 flow). The check allows no more.
const CHAIN_ALLOCS_PER_HOP: f64 = 15.34;
const FLOW_ALLOCS_PER_HOP: f64 = 15.34;

// The work the benchmarks measure, the same file.
#[path = "../../../flock/benches/common/hop.rs"]
mod work;
use work::{direct, first, input, three};

/// This thread's allocations per run over 500 runs, after `warm_up` runs.
fn allocations<F: Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    warm_up: usize,
    mut run: impl FnMut() -> F,
) -> f64 {
    const RUNS: u64 = 500;
    rt.block_on(async {
        for _ in 0..warm_up {
            run().await;
        }
    });
    let before = ALLOCATIONS.with(Cell::get);
    rt.block_on(async {
        for _ in 0..RUNS {
            run().await;
        }
    });
    (ALLOCATIONS.with(Cell::get) - before) as f64 / RUNS as f64
}

#[test]
fn a_local_hop_allocates_no_more_than_recorded() {
    // Observability off on this thread: other tests of this binary install a global subscriber
    // that records every span (spans that are recorded allocate; `BENCHMARKS.md` has that cost).
    // Metrics, once another test has turned them on, stay on: resolved once per thread, they add
    // no allocation per hop.
    tracing::subscriber::with_default(
        tracing::subscriber::NoSubscriber::default(),
        hop_allocations,
    );
}

fn hop_allocations() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flock = rt.block_on(Flock::builder().build()).unwrap();
    let direct = allocations(&rt, 100, || async {
        black_box(direct(input()).await);
    });
    // 12,000 runs fill the table of closed runs (10,000 kept): each run then also evicts one
    let chain = allocations(&rt, 12_000, || async {
        black_box(flock.run(first, input()).await.unwrap());
    });
    let flow = allocations(&rt, 100, || async {
        black_box(flock.run_flow(three, input()).await.unwrap());
    });
    let (chain, flow) = ((chain - direct) / 3.0, (flow - direct) / 3.0);
    eprintln!("allocations per hop: chain {chain:.2}, flow {flow:.2}");
    assert!(
        chain <= CHAIN_ALLOCS_PER_HOP && flow <= FLOW_ALLOCS_PER_HOP,
        "a local hop allocates more than recorded: chain {chain:.2} (recorded \
         {CHAIN_ALLOCS_PER_HOP}), flow {flow:.2} (recorded {FLOW_ALLOCS_PER_HOP}) allocations per \
         hop; find the new allocation (a counting allocator with backtraces, as in \
         flock/benches/hop_ab.rs) or, if it is worth its cost, record the new figure here and in \
         BENCHMARKS.md"
    );
}

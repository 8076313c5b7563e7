//! The local hop, as one line, for A/B runs against an earlier commit (`scripts/hop-ab`, which
//! builds this file in both trees and runs them in turn): a 3-agent code chain and a 3-call flow
//! through `Flock`, against the same three functions called directly; nanoseconds per hop (best
//! of 7 rounds of 20,000 runs) and heap allocations per hop (a counting global allocator over
//! 2,000 runs after 12,000 warm-up runs, so that the local executor's table of closed runs is
//! full). It uses only what every version of flock has: `Flock::builder()`, `run`, `run_flow`.
//!
//! ```text
//! cargo bench -p flock --bench hop_ab
//! HOP chain_ns=… flow_ns=… chain_allocs=… flow_allocs=…
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flock::prelude::*;

/// Counts heap allocations (and reallocations) of the whole process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "common/hop.rs"]
mod hop;
use hop::{direct, first, input, three};

/// Best of 7 rounds of 20,000 runs, in ns per run.
fn nanos<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    mut run: impl FnMut() -> F,
) -> f64 {
    let iterations = 20_000;
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..iterations {
                run().await;
            }
        });
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / iterations as f64
}

/// Heap allocations per run, over 2,000 runs after 12,000 warm-up runs.
fn allocations<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    mut run: impl FnMut() -> F,
) -> f64 {
    rt.block_on(async {
        for _ in 0..12_000 {
            run().await;
        }
    });
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    rt.block_on(async {
        for _ in 0..2_000 {
            run().await;
        }
    });
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 2_000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flock = rt.block_on(Flock::builder().build()).unwrap();
    let direct_allocs = allocations(&rt, || async {
        black_box(direct(input()).await);
    });
    let chain_allocs = allocations(&rt, || async {
        black_box(flock.run(first, input()).await.unwrap());
    });
    let flow_allocs = allocations(&rt, || async {
        black_box(flock.run_flow(three, input()).await.unwrap());
    });
    let direct_ns = nanos(&rt, || async {
        black_box(direct(input()).await);
    });
    let chain_ns = nanos(&rt, || async {
        black_box(flock.run(first, input()).await.unwrap());
    });
    let flow_ns = nanos(&rt, || async {
        black_box(flock.run_flow(three, input()).await.unwrap());
    });
    println!(
        "HOP chain_ns={:.0} flow_ns={:.0} chain_allocs={:.2} flow_allocs={:.2}",
        (chain_ns - direct_ns) / 3.0,
        (flow_ns - direct_ns) / 3.0,
        (chain_allocs - direct_allocs) / 3.0,
        (flow_allocs - direct_allocs) / 3.0,
    );
}

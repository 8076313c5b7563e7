//! Overhead of the local executor per agent hop: a 3-agent code chain run through `Flock`
//! against the same three functions called directly; then what observability adds, each part
//! alone and together, alternating in one process (best of 7 rounds each):
//!
//! * registry: `tracing_subscriber`'s registry alone (spans are created, entered and closed; no
//!   layer looks at their fields);
//! * spans: a `tracing` subscriber that records every span and its fields (the registry, with a
//!   layer that reads each span's fields into its own storage, as an exporter does);
//! * fmt: the registry with a `fmt` layer at INFO writing to a sink (formats every span's fields);
//! * metrics: flock's Prometheus metrics (process-wide, so measured after the rounds without them).
//!
//! Allocations per hop, and the same-run comparison with an earlier commit, are `hop_ab`'s
//! (`scripts/hop-ab`); `tests/tests/integration/hop.rs` checks them in CI.
//!
//! ```text
//! cargo bench -p flock --bench local_hop
//! ```

use std::hint::black_box;
use std::time::Instant;

use flock::prelude::*;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

#[path = "common/hop.rs"]
mod hop;
use hop::{direct, first, input, three};

/// `iterations` runs, in ns per run.
fn time<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    run: &mut impl FnMut() -> F,
) -> f64 {
    let iterations = 20_000;
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..iterations {
            run().await;
        }
    });
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// A layer that keeps every span's fields, as an exporter does until the span closes.
struct Fields;

#[derive(Default)]
struct Recorded(Vec<(&'static str, String)>);

impl tracing::field::Visit for Recorded {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Fields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut recorded = Recorded::default();
        attrs.record(&mut recorded);
        ctx.span(id).unwrap().extensions_mut().insert(recorded);
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Recorded>().unwrap());
    }
}

#[derive(Clone, Copy)]
enum Tracing {
    Off,
    Registry,
    Spans,
    Fmt,
}

impl Tracing {
    fn dispatch(self) -> Option<tracing::Dispatch> {
        match self {
            Tracing::Off => None,
            Tracing::Registry => Some(tracing_subscriber::registry().into()),
            Tracing::Spans => Some(tracing_subscriber::registry().with(Fields).into()),
            Tracing::Fmt => Some(
                tracing_subscriber::registry()
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_writer(std::io::sink)
                            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
                    )
                    .into(),
            ),
        }
    }
}

/// Best-of-7 ns per run of the direct calls, the chain and the flow under each of `modes`,
/// the modes taking turns round by round.
fn runs(rt: &tokio::runtime::Runtime, flock: &Flock, modes: &[Tracing]) -> Vec<[f64; 3]> {
    let mut best = vec![[f64::MAX; 3]; modes.len()];
    for _ in 0..7 {
        for (mode, best) in modes.iter().zip(&mut best) {
            let dispatch = mode.dispatch();
            let _guard = dispatch.as_ref().map(tracing::dispatcher::set_default);
            let figures = [
                time(rt, &mut || async {
                    black_box(direct(input()).await);
                }),
                time(rt, &mut || async {
                    black_box(flock.run(first, input()).await.unwrap());
                }),
                time(rt, &mut || async {
                    black_box(flock.run_flow(three, input()).await.unwrap());
                }),
            ];
            for (best, figure) in best.iter_mut().zip(figures) {
                *best = best.min(figure);
            }
        }
    }
    best
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flock = rt.block_on(Flock::builder().build()).unwrap();
    let modes = [
        Tracing::Off,
        Tracing::Registry,
        Tracing::Spans,
        Tracing::Fmt,
    ];
    let without_metrics = runs(&rt, &flock, &modes);
    flock::observe::enable_metrics();
    let with_metrics = runs(&rt, &flock, &modes);
    let [direct_ns, off_chain, off_flow] = without_metrics[0];
    println!("direct calls of the 3 functions: {direct_ns:.0} ns per run");
    println!(
        "everything off: flock.run(first, ..) chain {off_chain:.0} ns per run ({:.0} ns per hop over the direct calls); flock.run_flow(three, ..) {off_flow:.0} ns per run ({:.0} ns per hop)",
        (off_chain - direct_ns) / 3.0,
        (off_flow - direct_ns) / 3.0
    );
    println!(
        "{:<32} {:>22} {:>22}",
        "on", "chain: ns/hop, %run", "flow: ns/hop, %run"
    );
    let names = ["nothing", "registry", "spans", "fmt"];
    for (metrics, figures) in [("", &without_metrics), ("metrics + ", &with_metrics)] {
        for (name, [_, chain, flow]) in names.iter().zip(figures.iter()) {
            if metrics.is_empty() && *name == "nothing" {
                continue;
            }
            let name = format!("{metrics}{name}");
            let name = name.trim_end_matches(" + nothing");
            println!(
                "{name:<32} {:>+14.0} {:>+6.1}% {:>+14.0} {:>+6.1}%",
                (chain - off_chain) / 3.0,
                (chain / off_chain - 1.0) * 100.0,
                (flow - off_flow) / 3.0,
                (flow / off_flow - 1.0) * 100.0
            );
        }
    }
}

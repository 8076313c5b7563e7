//! OpenTelemetry export (feature `otel`): flock's spans (see the [module docs](super)) and, on
//! Temporal, the SDK's, in one trace per run, sent to an OTLP endpoint.
//!
//! On Temporal every client, worker and replayer flock builds carries the Temporal SDK's
//! OpenTelemetry plugin: it traces starting a run on the client (`StartWorkflow:{flow}`), the
//! workflow (`RunWorkflow:{flow}`), and each agent call (`StartActivity:{agent}` in the workflow,
//! `RunActivity:{agent}` on the worker that runs it), and carries the trace context from one to
//! the next in the `_tracer-data` Temporal header, so that a worker in another process continues
//! the client's trace. flock's spans join in through `tracing-opentelemetry`:
//!
//! ```text
//! StartWorkflow:review_flow                client
//! └─ RunWorkflow:review_flow               worker (the workflow)
//!    └─ flow review_flow                   flock
//!       └─ StartActivity:review            worker (the workflow)
//!          └─ RunActivity:review           worker (the activity)
//!             └─ invoke_agent review       flock, one per attempt
//!                └─ chat gpt-4o-mini       flock, one per model request
//!                   └─ execute_tool lookup flock
//! ```
//!
//! Workflow span ids come from the workflow's replay-safe randomness (the SDK's
//! `WorkflowIdGenerator`), and nothing a replay re-creates is exported again (the SDK's
//! `WorkflowSpanProcessor`; flock's `flow` span is made only by the task that really starts the
//! run). A worker that takes over a run after a replay continues its trace under the
//! `RunWorkflow` span. What a replay cannot do is end the spans an earlier task started: when a
//! run leaves a worker's cache before it completes (`max_cached_workflows`, a restart), its
//! `flow` span ends then, without `flock.outcome`, and the SDK (1.1.1) never exports its
//! `RunWorkflow` span; the agent spans are not affected.
//!
//! Configuration is the standard environment, as `opentelemetry-otlp` and `opentelemetry_sdk`
//! read it: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `grpc`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` (and `_ARG`), `OTEL_BSP_*`. flock adds
//! `OTEL_TRACES_EXPORTER` (`otlp`, or `none` for no export) and refuses a protocol it cannot
//! speak rather than falling back silently.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), flock::Error> {
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 OTEL_SERVICE_NAME=reviews ./worker
//! let _otel = flock::observe::otel::init()?; // flushes the last spans when dropped
//! let flock = flock::Flock::builder().local_debug(false).build().await?;
//! flock.worker().run().await
//! # }
//! ```
//!
//! A binary with a `tracing` subscriber of its own adds [`OtelGuard::layer`] to it and calls
//! [`Otel::install`] instead of [`init`]. The `worker` command of `flock::cli` installs the
//! export under the conditions of [`init_if_configured`], its layer added to the command line's
//! log subscriber.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;

/// The instrumentation scope of flock's spans.
pub const INSTRUMENTATION_SCOPE: &str = "flock";

const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
const ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
/// In the order `opentelemetry-otlp` reads them: the first one set decides.
const PROTOCOLS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// How long dropping the guard waits for the last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What to export to: the standard `OTEL_*` environment variables (see the [module docs](self)),
/// with the overrides set here taking precedence.
#[derive(Debug, Clone, Default)]
pub struct Otel {
    endpoint: Option<String>,
    service_name: Option<String>,
}

impl Otel {
    /// The configuration of the environment.
    pub fn from_env() -> Otel {
        Otel::default()
    }

    /// Sends spans to this OTLP endpoint (for HTTP the base URL, `/v1/traces` is appended; for
    /// gRPC the server's URL), whatever `OTEL_EXPORTER_OTLP_ENDPOINT` says.
    pub fn endpoint(mut self, url: impl Into<String>) -> Otel {
        self.endpoint = Some(url.into());
        self
    }

    /// Names the service (the `service.name` resource attribute), whatever `OTEL_SERVICE_NAME`
    /// says.
    pub fn service_name(mut self, name: impl Into<String>) -> Otel {
        self.service_name = Some(name.into());
        self
    }

    /// Builds the tracer provider (OTLP exporter, batch processor, replay-safe workflow span ids),
    /// makes it the process's global one, which the Temporal plugin traces with, and gives the
    /// guard that flushes it. It installs no `tracing` subscriber: add [`OtelGuard::layer`] to
    /// yours for flock's spans.
    ///
    /// Errors ([`Error::Config`]): a protocol flock does not speak (naming the variable and its
    /// value), an endpoint that is not a URL, OTLP over gRPC outside a Tokio runtime.
    pub fn install(self) -> Result<OtelGuard, Error> {
        let protocol = protocol(&env)?;
        check_endpoints(&env)?;
        if protocol == Some("grpc") && tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(
                "OpenTelemetry: OTLP over gRPC needs a Tokio runtime; install it inside one".into(),
            ));
        }
        // the OTLP/HTTP exporter's reqwest client needs a rustls provider when a feature of the
        // build (flock's `mcp`) turns on reqwest's `rustls-no-provider`: ring, flock's own
        super::install_crypto_provider();
        let exporter = match &self.endpoint {
            None => opentelemetry_otlp::SpanExporter::builder().build(),
            Some(endpoint) => {
                use opentelemetry_otlp::WithExportConfig;
                if protocol == Some("grpc") {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .build()
                } else {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                        .build()
                }
            }
        }
        .map_err(|e| {
            Error::Config(format!(
                "OpenTelemetry: cannot build the OTLP exporter: {e}"
            ))
        })?;
        let processor = BatchSpanProcessor::builder(exporter).build();
        let mut resource = opentelemetry_sdk::Resource::builder();
        if let Some(name) = self.service_name {
            resource = resource.with_service_name(name);
        }
        let provider = SdkTracerProvider::builder().with_resource(resource.build());
        #[cfg(feature = "temporal")]
        let provider = provider
            .with_id_generator(temporalio_sdk::opentelemetry::WorkflowIdGenerator::default())
            .with_span_processor(temporalio_sdk::opentelemetry::WorkflowSpanProcessor::new(
                processor,
            ));
        #[cfg(not(feature = "temporal"))]
        let provider = provider.with_span_processor(processor);
        let provider = provider.build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        INSTALLED.fetch_add(1, Ordering::SeqCst);
        Ok(OtelGuard {
            provider: Some(provider),
        })
    }

    /// [`install`](Self::install)s, and makes a subscriber with flock's spans in OpenTelemetry
    /// and the log on stderr (at `RUST_LOG`'s levels, `target=level,..`; by default `warn`)
    /// the process's global `tracing` subscriber.
    ///
    /// Errors ([`Error::Config`]): those of [`install`](Self::install), a `RUST_LOG` that does
    /// not parse, or a global subscriber already set (then add [`OtelGuard::layer`] to it and
    /// call `install`).
    pub fn init(self) -> Result<OtelGuard, Error> {
        use tracing_subscriber::layer::SubscriberExt;
        let log: Targets = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => directives.parse().map_err(|e| {
                Error::Config(format!(
                    "RUST_LOG=`{directives}`: {e}; give `level` or `target=level,..`"
                ))
            })?,
            _ => Targets::new().with_default(LevelFilter::WARN),
        };
        let guard = self.install()?;
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(log),
            )
            .with(guard.layer());
        tracing::subscriber::set_global_default(subscriber).map_err(|_| {
            Error::Config(
                "OpenTelemetry: this process already has a global tracing subscriber; add \
                 `OtelGuard::layer()` to it and call `Otel::install()` instead of `init()`"
                    .into(),
            )
        })?;
        Ok(guard)
    }
}

/// [`Otel::from_env`]`().`[`init`](Otel::init)`()`: export configured by the environment, flock's
/// spans in OpenTelemetry and the log on stderr.
pub fn init() -> Result<OtelGuard, Error> {
    Otel::from_env().init()
}

/// [`init`] when the environment asks for export (an `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp`), else `None`; never
/// with `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`, nor while the process has
/// installed an export of its own ([`Otel::install`], its guard alive): a binary that adds
/// [`OtelGuard::layer`] to its own subscriber keeps it when the `worker` command runs.
///
/// Errors ([`Error::Config`]): those of [`init`], and an `OTEL_TRACES_EXPORTER` other than
/// `otlp` or `none`.
pub fn init_if_configured() -> Result<Option<OtelGuard>, Error> {
    if installed() || !wanted(&env)? {
        return Ok(None);
    }
    init().map(Some)
}

/// [`Otel::install`] under the conditions of [`init_if_configured`], with no subscriber: for a
/// process that makes its own and adds [`OtelGuard::layer`] to it (the command line does, to its
/// log on stderr).
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn install_if_configured() -> Result<Option<OtelGuard>, Error> {
    if installed() || !wanted(&env)? {
        return Ok(None);
    }
    Otel::from_env().install().map(Some)
}

/// How many guards of [`Otel::install`] are alive.
static INSTALLED: AtomicUsize = AtomicUsize::new(0);

/// Whether this process has an export installed.
fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst) > 0
}

/// A variable of the process's environment.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Whether `env` asks for export.
fn wanted(env: &dyn Fn(&str) -> Option<String>) -> Result<bool, Error> {
    if env(SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    if let Some(exporter) = env(TRACES_EXPORTER) {
        match exporter.trim() {
            "otlp" => return Ok(true),
            "none" => return Ok(false),
            "" => {}
            other => {
                return Err(Error::Config(format!(
                    "{TRACES_EXPORTER}=`{other}`: flock exports traces over OTLP only; set `otlp`, or `none` for no export"
                )));
            }
        }
    }
    Ok(ENDPOINTS
        .iter()
        .any(|var| env(var).is_some_and(|v| !v.trim().is_empty())))
}

/// Refuses an endpoint variable that is not an `http://` or `https://` URL, which
/// `opentelemetry-otlp` would replace by its default (`localhost`) without a word.
fn check_endpoints(env: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    for var in ENDPOINTS {
        let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let uri: Result<hyper::Uri, _> = value.trim().parse();
        let scheme = uri.as_ref().ok().and_then(|uri| uri.scheme_str());
        if !matches!(scheme, Some("http" | "https"))
            || uri.as_ref().ok().and_then(|uri| uri.host()).is_none()
        {
            return Err(Error::Config(format!(
                "{var}=`{value}` is not an OTLP endpoint URL; give e.g. `http://localhost:4318` (http/protobuf) or `http://localhost:4317` (grpc)"
            )));
        }
    }
    Ok(())
}

/// The protocol `env` asks for (`None`: the default, HTTP/protobuf), refusing what
/// `opentelemetry-otlp` would ignore.
fn protocol(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<&'static str>, Error> {
    for var in PROTOCOLS {
        let Some(value) = env(var) else {
            continue;
        };
        return match value.as_str() {
            "grpc" => Ok(Some("grpc")),
            "http/protobuf" => Ok(Some("http/protobuf")),
            "http/json" => Err(Error::Config(format!(
                "{var}=`http/json`: flock sends OTLP as `http/protobuf` or `grpc`"
            ))),
            other => Err(Error::Config(format!(
                "{var}=`{other}` is not an OTLP protocol; use `http/protobuf` or `grpc`"
            ))),
        };
    }
    Ok(None)
}

/// The installed export: flushes and stops it when dropped (waiting at most 5 seconds for the
/// endpoint), and puts back a global tracer provider that records nothing.
#[derive(Debug)]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtelGuard {
    /// The `tracing` layer that sends flock's spans (and those of the application's own code,
    /// at `INFO` and above) into this export, as children of the current OpenTelemetry context
    /// (on Temporal, the SDK's workflow and activity spans). The Temporal SDK's internal
    /// `tracing` spans and the network stack's are left out.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self
            .provider
            .as_ref()
            .map(|provider| provider.tracer(INSTRUMENTATION_SCOPE));
        let filter = Targets::new().with_default(LevelFilter::INFO).with_targets(
            [
                "temporalio",
                "opentelemetry",
                "tonic",
                "h2",
                "hyper",
                "tower",
                "reqwest",
            ]
            .map(|target| (target, LevelFilter::OFF)),
        );
        tracer
            .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer))
            .with_filter(filter)
    }

    /// The tracer provider (e.g. for spans of the application's own made with the
    /// `opentelemetry` API).
    pub fn provider(&self) -> &SdkTracerProvider {
        self.provider
            .as_ref()
            .expect("the provider is taken only by shutdown, which consumes the guard")
    }

    /// Flushes the spans not yet sent and stops the export, with the exporter's error if the
    /// endpoint did not take them.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), Error> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        INSTALLED.fetch_sub(1, Ordering::SeqCst);
        opentelemetry::global::set_tracer_provider(
            opentelemetry::trace::noop::NoopTracerProvider::new(),
        );
        provider
            .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            .map_err(|e| Error::Config(format!("OpenTelemetry: the last spans were not sent: {e}")))
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!("{error}");
        }
    }
}

/// The Temporal SDK's OpenTelemetry plugin, for every client, worker and replayer flock builds:
/// it traces with the global tracer provider ([`Otel::install`]; until then it records
/// nothing and adds no header).
#[cfg(feature = "temporal")]
pub(crate) fn temporal_plugin() -> temporalio_sdk::SimplePlugin {
    temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |var| {
            set.iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn an_export_installed_by_the_binary_is_kept() {
        let guard = Otel::from_env()
            .endpoint("http://127.0.0.1:9")
            .install()
            .expect("an export to a port nobody listens on still installs");
        assert!(installed());
        assert!(init_if_configured().unwrap().is_none());
        // nothing was sent, and the endpoint is closed: nothing to flush, nothing fails
        guard.shutdown().unwrap();
        assert!(!installed());
    }

    #[test]
    fn export_is_wanted_when_an_endpoint_or_the_exporter_says_so() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], true),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://c:4318/v1/traces",
                )],
                true,
            ),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], false),
            (&[("OTEL_TRACES_EXPORTER", "otlp")], true),
            (
                &[
                    ("OTEL_TRACES_EXPORTER", "none"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ],
                false,
            ),
            (
                &[
                    ("OTEL_SDK_DISABLED", "TRUE"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ],
                false,
            ),
        ];
        for (set, expected) in cases {
            assert_eq!(wanted(&vars(set)).unwrap(), *expected, "{set:?}");
        }
        let error = wanted(&vars(&[("OTEL_TRACES_EXPORTER", "jaeger")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "flock configuration error: OTEL_TRACES_EXPORTER=`jaeger`: flock exports traces over OTLP only; set `otlp`, or `none` for no export"
        );
    }

    #[test]
    fn a_protocol_flock_does_not_speak_is_refused_naming_the_variable() {
        assert_eq!(protocol(&vars(&[])).unwrap(), None);
        assert_eq!(
            protocol(&vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap(),
            Some("grpc")
        );
        // the signal's own variable wins, as in opentelemetry-otlp
        assert_eq!(
            protocol(&vars(&[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]))
            .unwrap(),
            Some("http/protobuf")
        );
        let error = protocol(&vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "flock configuration error: OTEL_EXPORTER_OTLP_PROTOCOL=`udp` is not an OTLP protocol; use `http/protobuf` or `grpc`"
        );
        let error = protocol(&vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/json",
        )]))
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=`http/json`: flock sends OTLP as"),
            "{error}"
        );
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_refused_naming_the_variable() {
        for good in ["http://localhost:4318", "https://collector.example:4317/"] {
            check_endpoints(&vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", good)])).unwrap();
        }
        for bad in ["localhost:4318", "not a url", "ftp://collector:21"] {
            let error =
                check_endpoints(&vars(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)])).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "flock configuration error: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=`{bad}` is not an OTLP endpoint URL; give e.g. `http://localhost:4318` (http/protobuf) or `http://localhost:4317` (grpc)"
                )
            );
        }
    }
}

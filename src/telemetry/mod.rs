//! Logging: `tracing` with `RUST_LOG` (default `info`), as text or JSON lines; and, with
//! `[telemetry]`, OpenTelemetry traces ([`trace`], exported by [`export`]).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub mod export;
pub mod trace;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The filter when `RUST_LOG` is not set: our own lines from `info`, and of rmcp only what
/// is an error of ours. rmcp's service logs every JSON-RPC error answer (a client's bad
/// arguments) as a warning and every answer it could not write (a client that left) as an
/// error, and its session manager says "create new session" beside our "Session started.":
/// the client's business, or said by us already. `RUST_LOG=info,rmcp=debug` shows them.
pub const DEFAULT_FILTER: &str = "info,rmcp=warn,rmcp::service=off";

/// The log filter: `RUST_LOG`, else [`DEFAULT_FILTER`]; never the exported spans.
fn log_filter() -> EnvFilter {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    match format!("{}=off", trace::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Traces being exported: flush them with [`Tracing::shutdown`] before the runtime ends.
pub struct Tracing {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Tracing {
    /// Exports what is still queued (bounded by the exporter's timeout) and stops.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber with, when `telemetry` is on, the OpenTelemetry layer
/// exporting from `runtime`.
///
/// # Errors
/// When the exporter cannot be built (logging is installed anyway).
pub fn init_with(
    format: LogFormat,
    telemetry: &crate::config::telemetry::TelemetrySpec,
    runtime: tokio::runtime::Handle,
) -> Result<Option<Tracing>, String> {
    if !telemetry.enabled {
        init(format);
        return Ok(None);
    }
    let (provider, tracer) = match export::provider(telemetry, runtime) {
        Ok(p) => p,
        Err(e) => {
            init(format);
            return Err(e);
        }
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_location(false)
        .with_tracked_inactivity(false)
        // Inside a `tracing` span nothing of ours reads OpenTelemetry's current context (we
        // pass contexts on from the span; the current context is the MCP request span's,
        // read where no `tracing` span is entered), so entering a span need not attach its
        // context to the thread: that was a context clone and a guard on every poll.
        .with_context_activation(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(trace::TARGET, tracing::Level::TRACE),
        );
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(spans);
    let _ = match format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .log_internal_errors(false)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(ansi)
                    .log_internal_errors(false)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter()),
            )
            .try_init(),
    };
    trace::switch_on(telemetry.capture_content, tracer);
    Ok(Some(Tracing { provider }))
}

/// Installs the global subscriber (logs only); `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter = log_filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed log pipe must not take the gateway down: tracing-subscriber reports
        // write failures with `eprintln!`, which panics when stderr itself is gone.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// For tests: logs only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init(LogFormat::Pretty);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_default_filter_keeps_our_lines_and_drops_rmcps_disconnect_noise() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(DEFAULT_FILTER))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rmcp::service", "failed to send pending response during drain");
            tracing::info!(
                target: "rmcp::transport::streamable_http_server::session::local",
                "create new session"
            );
            tracing::info!(target: "switchboard::sessions", "Session started.");
            tracing::warn!(target: "rmcp::transport::worker", "a transport warning");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("Session started."), "{text}");
        assert!(text.contains("a transport warning"), "{text}");
        assert!(!text.contains("during drain"), "{text}");
        assert!(!text.contains("create new session"), "{text}");
    }
}

//! The OTLP exporter of `[telemetry]`: spans batched on the SDK's own thread and sent over
//! HTTP/protobuf by our reqwest client (the one TLS stack), on the gateway's runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler as SdkSampler, SdkTracer, SdkTracerProvider};

use crate::config::telemetry::{Sampler, TelemetrySpec};

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter's HTTP client: reqwest 0.13 (ours), each request run on the gateway's
/// runtime (the SDK's batch thread has none of its own).
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Whether the last export failed (logged once per outage, not per batch).
    failing: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let failing = self.failing.clone();
        let url = request.uri().to_string();
        let request = reqwest::Request::try_from(request)?;
        let sent = self.runtime.spawn(async move {
            let response = http.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        let result = match sent.await {
            Ok(result) => result,
            Err(e) => Err(e.into()),
        };
        let ok = matches!(&result, Ok(r) if r.status().is_success());
        let was_failing = failing.swap(!ok, Ordering::Relaxed);
        match (&result, ok, was_failing) {
            (_, true, true) => tracing::info!(%url, "Exporting traces again."),
            (Err(e), false, false) => {
                tracing::warn!(%url, error = %e, "Cannot export traces ([telemetry]); spans are dropped until the collector answers.");
            }
            (Ok(r), false, false) => {
                tracing::warn!(%url, status = r.status().as_u16(), "The trace collector refused spans ([telemetry]).");
            }
            _ => {}
        }
        result
    }
}

fn sampler(s: Sampler) -> SdkSampler {
    match s {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::TraceIdRatio(r) => SdkSampler::TraceIdRatioBased(r),
        Sampler::ParentBasedAlwaysOn => SdkSampler::ParentBased(Box::new(SdkSampler::AlwaysOn)),
        Sampler::ParentBasedAlwaysOff => SdkSampler::ParentBased(Box::new(SdkSampler::AlwaysOff)),
        Sampler::ParentBasedTraceIdRatio(r) => {
            SdkSampler::ParentBased(Box::new(SdkSampler::TraceIdRatioBased(r)))
        }
    }
}

/// The tracer provider of `spec`, exporting from `runtime`.
///
/// # Errors
/// When the exporter cannot be built (an `OTEL_EXPORTER_OTLP_*` variable is invalid).
pub fn provider(
    spec: &TelemetrySpec,
    runtime: tokio::runtime::Handle,
) -> Result<(SdkTracerProvider, SdkTracer), String> {
    let http = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(EXPORT_TIMEOUT.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let client = Client {
        http,
        runtime,
        failing: Arc::default(),
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client);
    if let Some(endpoint) = &spec.traces_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if !spec.headers.is_empty() {
        builder = builder.with_headers(spec.headers.clone().into_iter().collect());
    }
    let exporter = builder.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(name) = &spec.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let mut provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build());
    if let Some(s) = spec.sampler {
        provider = provider.with_sampler(sampler(s));
    }
    let provider = provider.build();
    let tracer = provider.tracer("switchboard");
    Ok((provider, tracer))
}

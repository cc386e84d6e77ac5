//! `[telemetry]` of `switchboard.toml`: OpenTelemetry traces, exported over OTLP
//! (HTTP/protobuf). Off by default.
//!
//! The standard variables apply and win over the table: `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (setting one also turns tracing on when the table
//! does not say `enabled`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
//! it off whatever the table says.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Error, Vars};

/// `[telemetry]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `true`: export traces. Unset: on when an `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is
    /// set, else off.
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base URL (`http://localhost:4318`); traces go to
    /// `<endpoint>/v1/traces`. Default: `http://localhost:4318`.
    pub endpoint: Option<String>,
    /// Extra headers of every export request (a backend's API key).
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the spans. Default: `switchboard`.
    pub service_name: Option<String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (the default),
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    pub sampler: Option<String>,
    /// The ratio of the `*traceidratio` samplers, 0.0 to 1.0.
    pub sampler_arg: Option<f64>,
    /// A link to a trace in your backend: `{trace_id}` is replaced by the trace's id
    /// (`http://localhost:16686/trace/{trace_id}` for Jaeger). Shown by the admin API and
    /// the console.
    pub trace_url: Option<String>,
    /// `true`: the `chat` spans carry the prompt and the completion
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`). Default `false`: they may hold
    /// personal data.
    pub capture_content: bool,
}

/// The sampler, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of traces, by trace id.
    TraceIdRatio(f64),
    /// As the caller decided; every trace that starts here.
    ParentBasedAlwaysOn,
    /// As the caller decided; none that starts here.
    ParentBasedAlwaysOff,
    /// As the caller decided; this share of those that start here.
    ParentBasedTraceIdRatio(f64),
}

/// `[telemetry]`, validated (the environment's `OTEL_*` variables taken into account).
#[derive(Debug, Clone, Default)]
pub struct TelemetrySpec {
    /// Whether traces are exported.
    pub enabled: bool,
    /// The traces URL (`.../v1/traces`); `None`: the variables', or the default.
    pub traces_endpoint: Option<String>,
    /// Extra export headers.
    pub headers: BTreeMap<String, String>,
    /// `service.name`; `None`: `OTEL_SERVICE_NAME` is set and wins.
    pub service_name: Option<String>,
    /// The sampler; `None`: `OTEL_TRACES_SAMPLER` is set and wins.
    pub sampler: Option<Sampler>,
    /// The link template (`{trace_id}` in it).
    pub trace_url: Option<String>,
    /// Whether chat spans carry the messages.
    pub capture_content: bool,
}

impl TelemetrySpec {
    /// The link to trace `trace_id` (32 hex digits), when a template is configured.
    pub fn trace_link(&self, trace_id: &str) -> Option<String> {
        self.trace_url
            .as_deref()
            .map(|t| t.replace("{trace_id}", trace_id))
    }
}

fn set(vars: &Vars, name: &str) -> bool {
    vars.get(name).is_some_and(|v| !v.trim().is_empty())
}

/// Validates `[telemetry]`.
///
/// # Errors
/// Every invalid value, naming `file` and the key.
pub fn validate(file: &Path, c: TelemetryConfig, vars: &Vars) -> Result<TelemetrySpec, Vec<Error>> {
    let mut errors = Vec::new();
    let env_endpoint =
        set(vars, "OTEL_EXPORTER_OTLP_ENDPOINT") || set(vars, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = vars
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || vars
            .get("OTEL_TRACES_EXPORTER")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    let enabled = !disabled && c.enabled.unwrap_or(env_endpoint);
    let traces_endpoint = match c.endpoint.as_deref().map(str::trim) {
        None => None,
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
            errors.push(Error::key(
                file,
                "telemetry.endpoint",
                format!("{e:?} is not an http:// or https:// URL (the collector's OTLP/HTTP port, usually 4318)"),
            ));
            None
        }
        Some(_) if env_endpoint => None,
        Some(e) => Some(format!("{}/v1/traces", e.trim_end_matches('/'))),
    };
    for (name, value) in &c.headers {
        if poem::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(Error::key(
                file,
                format!("telemetry.headers.{name}"),
                format!("{name:?} is not a valid HTTP header name"),
            ));
        } else if poem::http::HeaderValue::from_str(value).is_err() {
            errors.push(Error::key(
                file,
                format!("telemetry.headers.{name}"),
                "the value is not a valid HTTP header value",
            ));
        }
    }
    let ratio = match c.sampler_arg {
        Some(r) if !(0.0..=1.0).contains(&r) => {
            errors.push(Error::key(
                file,
                "telemetry.sampler_arg",
                format!("{r} is not a ratio between 0.0 and 1.0"),
            ));
            1.0
        }
        Some(r) => r,
        None => 1.0,
    };
    let sampler = match c
        .sampler
        .as_deref()
        .map(str::trim)
        .unwrap_or("parentbased_always_on")
    {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatio(ratio),
        "parentbased_always_on" => Sampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampler::ParentBasedTraceIdRatio(ratio),
        other => {
            errors.push(Error::key(
                file,
                "telemetry.sampler",
                format!("unknown sampler {other:?}: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"),
            ));
            Sampler::ParentBasedAlwaysOn
        }
    };
    if let Some(template) = &c.trace_url
        && !template.contains("{trace_id}")
    {
        errors.push(Error::key(
            file,
            "telemetry.trace_url",
            "the template must contain {trace_id} (e.g. \"http://localhost:16686/trace/{trace_id}\")",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TelemetrySpec {
        enabled,
        traces_endpoint,
        headers: c.headers,
        service_name: (!set(vars, "OTEL_SERVICE_NAME")).then(|| {
            c.service_name
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "switchboard".to_owned())
        }),
        sampler: (!set(vars, "OTEL_TRACES_SAMPLER")).then_some(sampler),
        trace_url: c.trace_url,
        capture_content: c.capture_content,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(toml: &str, vars: &[(&str, &str)]) -> Result<TelemetrySpec, Vec<Error>> {
        let c: TelemetryConfig = toml::from_str(toml).unwrap();
        let vars = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        validate(Path::new("switchboard.toml"), c, &vars)
    }

    #[test]
    fn off_by_default_on_with_the_table_or_an_endpoint_variable() {
        assert!(!spec("", &[]).unwrap().enabled);
        let on = spec("enabled = true\nendpoint = \"http://collector:4318/\"", &[]).unwrap();
        assert!(on.enabled);
        assert_eq!(
            on.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(on.sampler, Some(Sampler::ParentBasedAlwaysOn));
        assert_eq!(on.service_name.as_deref(), Some("switchboard"));
        let env = spec("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
        assert!(env.enabled);
        // The variable wins over the table.
        let both = spec(
            "endpoint = \"http://table:4318\"",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")],
        )
        .unwrap();
        assert_eq!(both.traces_endpoint, None);
        assert!(
            !spec("enabled = true", &[("OTEL_SDK_DISABLED", "true")])
                .unwrap()
                .enabled
        );
        let sampled = spec(
            "sampler = \"always_on\"",
            &[
                ("OTEL_TRACES_SAMPLER", "always_off"),
                ("OTEL_SERVICE_NAME", "x"),
            ],
        )
        .unwrap();
        assert_eq!(sampled.sampler, None);
        assert_eq!(sampled.service_name, None);
    }

    #[test]
    fn bad_values_are_named_by_key() {
        let errors = spec(
            "endpoint = \"collector:4318\"\nsampler = \"sometimes\"\nsampler_arg = 2.0\ntrace_url = \"http://jaeger/trace\"",
            &[],
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                "telemetry.endpoint",
                "telemetry.sampler_arg",
                "telemetry.sampler",
                "telemetry.trace_url"
            ]
        );
        let spec = spec(
            "trace_url = \"http://localhost:16686/trace/{trace_id}\"",
            &[],
        )
        .unwrap();
        assert_eq!(
            spec.trace_link("abc").as_deref(),
            Some("http://localhost:16686/trace/abc")
        );
    }
}

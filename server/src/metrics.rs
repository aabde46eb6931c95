//! `GET /metrics`: the server's and its persistent queries' counters in
//! Prometheus' text format (version 0.0.4).
//!
//! Query figures are read from the runtime when scraped
//! ([`sluice_engine::runtime::Runtime::metrics`], the processing log);
//! HTTP figures are counted here by [`track`], a middleware over every
//! route. Rates (events per second) are left to Prometheus' `rate()` over
//! the counters, as is usual.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use crate::AppState;
use crate::error::ServerError;

/// The text format's media type.
pub const PROMETHEUS_MEDIA_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at most each bound (not cumulative; summed on output).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Requests and their latencies, by route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// By route template, method and status code.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// By route template.
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .entry(route.to_string())
            .or_default()
            .observe(seconds);
    }
}

/// Counts every request by route (the template, such as
/// `/projections/{name}`, so names do not multiply the series) and times
/// it up to its response head: a streamed push query counts the time to
/// its first byte, not its life.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.http.record(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A per-query metric: name, type, help and how to read it.
type QueryFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&sluice_engine::runtime::QueryMetrics) -> u64,
);

/// The whole exposition text.
pub fn render(state: &AppState) -> String {
    let runtime = state.ctx.runtime();
    let queries = runtime.metrics();
    let errors: BTreeMap<String, u64> = runtime
        .processing_log()
        .counts_by_query()
        .into_iter()
        .collect();
    let mut out = String::new();
    let per_query: [QueryFamily; 6] = [
        (
            "sluice_query_records_in_total",
            "counter",
            "Records a persistent query read from its source topics.",
            |q| q.records_in,
        ),
        (
            "sluice_query_records_out_total",
            "counter",
            "Records a persistent query wrote to its sink topic.",
            |q| q.records_out,
        ),
        (
            "sluice_query_late_records_total",
            "counter",
            "Records a persistent query dropped for arriving after their window closed.",
            |q| q.late_records,
        ),
        (
            "sluice_query_state_rows",
            "gauge",
            "Rows of operator state (groups, windows, sessions, join sides) a persistent query holds.",
            |q| q.state_rows,
        ),
        (
            "sluice_query_consumer_lag",
            "gauge",
            "Records of a persistent query's source topics not read yet.",
            |q| q.lag,
        ),
        (
            "sluice_query_running",
            "gauge",
            "1 while a persistent query runs, 0 once it failed.",
            |q| u64::from(q.running),
        ),
    ];
    for (name, kind, help, value) in per_query {
        family(&mut out, name, kind, help);
        for q in &queries {
            let _ = writeln!(
                out,
                "{name}{{query_id=\"{}\",sink=\"{}\"}} {}",
                label(&q.id),
                label(&q.sink),
                value(q)
            );
        }
    }
    family(
        &mut out,
        "sluice_query_processing_errors_total",
        "counter",
        "Records a query sent to the processing log (failed to decode, evaluate or encode).",
    );
    for (id, n) in &errors {
        let _ = writeln!(
            out,
            "sluice_query_processing_errors_total{{query_id=\"{}\"}} {n}",
            label(id)
        );
    }
    family(
        &mut out,
        "sluice_processing_log_records_total",
        "counter",
        "Records sent to the processing log since start, over all queries.",
    );
    let _ = writeln!(
        out,
        "sluice_processing_log_records_total {}",
        runtime.processing_log().total()
    );
    family(
        &mut out,
        "sluice_push_queries_running",
        "gauge",
        "Push queries streaming to clients now.",
    );
    let _ = writeln!(out, "sluice_push_queries_running {}", state.push.running());

    family(
        &mut out,
        "sluice_http_requests_total",
        "counter",
        "HTTP requests answered, by route, method and status code.",
    );
    for ((route, method, code), n) in state.http.requests.lock().iter() {
        let _ = writeln!(
            out,
            "sluice_http_requests_total{{route=\"{}\",method=\"{}\",code=\"{code}\"}} {n}",
            label(route),
            label(method)
        );
    }
    family(
        &mut out,
        "sluice_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request's head, by route.",
    );
    for (route, h) in state.http.latency.lock().iter() {
        let route = label(route);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "sluice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "sluice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "sluice_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "sluice_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
            h.count
        );
    }
    out
}

/// Adds the running figures to `SHOW QUERIES` (a `metrics` object per
/// query) and `DESCRIBE` (ksqlDB's `statistics` and `errorStats` text,
/// summed over the queries writing the source).
pub fn annotate(entity: &mut serde_json::Value, ctx: &sluice_sql::KsqlContext) {
    use serde_json::{Value, json};
    let kind = entity
        .get("@type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "queries" && kind != "sourceDescription" {
        return;
    }
    let runtime = ctx.runtime();
    let metrics = runtime.metrics();
    let errors: BTreeMap<String, u64> = runtime
        .processing_log()
        .counts_by_query()
        .into_iter()
        .collect();
    let figures = |q: &sluice_engine::runtime::QueryMetrics| {
        json!({
            "recordsIn": q.records_in,
            "recordsOut": q.records_out,
            "processingErrors": errors.get(&q.id).copied().unwrap_or(0),
            "lateRecords": q.late_records,
            "stateRows": q.state_rows,
            "consumerLag": q.lag,
        })
    };
    if let Some(queries) = entity.get_mut("queries").and_then(Value::as_array_mut) {
        for query in queries {
            let id = query.get("id").and_then(Value::as_str).map(String::from);
            if let Some(m) = id.and_then(|id| metrics.iter().find(|m| m.id == id)) {
                query["metrics"] = figures(m);
            }
        }
    }
    if let Some(d) = entity.get_mut("sourceDescription") {
        let writers: Vec<String> = d["writeQueries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q["id"].as_str().map(String::from))
            .collect();
        let written: Vec<_> = metrics.iter().filter(|m| writers.contains(&m.id)).collect();
        let sum = |f: fn(&sluice_engine::runtime::QueryMetrics) -> u64| -> u64 {
            written.iter().map(|m| f(m)).sum()
        };
        let failed: u64 = writers.iter().filter_map(|id| errors.get(id)).sum();
        d["statistics"] = Value::String(format!(
            "records-in: {}, records-out: {}, state-rows: {}, late-records: {}, consumer-lag: {}",
            sum(|m| m.records_in),
            sum(|m| m.records_out),
            sum(|m| m.state_rows),
            sum(|m| m.late_records),
            sum(|m| m.lag),
        ));
        d["errorStats"] = Value::String(format!("processing-errors: {failed}"));
    }
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    // Reading the queries takes the runtime's lock, held while it steps.
    match tokio::task::spawn_blocking(move || render(&state)).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_MEDIA_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => ServerError::Internal(e.to_string()).into_response(),
    }
}

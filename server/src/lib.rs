//! Sluice's HTTP server: the ksqlDB-compatible REST API.
//!
//! [`router`] builds the axum routes over one shared [`KsqlContext`]:
//! `POST /ksql` runs statements and answers with ksqlDB's entity JSON
//! ([`entities`]), `GET /info` and `GET /healthcheck` report on the
//! server, `POST /query` and `POST /query-stream` run pull queries over
//! [`materialized`] projections ([`pull`]) and push queries ([`push`]),
//! see [`query`]; `POST /inserts-stream` writes rows ([`inserts`]);
//! `GET /projections...` serves the projections to the web UI
//! ([`projections`]); `GET /openapi.json` describes them all ([`openapi`]).
//! In a cluster ([`cluster`]) each member materializes a share of every
//! source and pull queries gather the rest from the other members
//! through `POST /internal/scan` ([`scatter`]).
//! Failures answer in ksqlDB's error shape ([`error`]).

pub mod auth;
pub mod cluster;
pub mod entities;
pub mod error;
pub mod index;
pub mod inserts;
pub mod lookup;
pub mod materialized;
pub mod metrics;
pub mod openapi;
pub mod print;
pub mod projections;
pub mod pull;
pub mod push;
pub mod query;
pub mod rows;
pub mod scatter;
pub mod status;
pub mod tls;
pub mod ui;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sql::KsqlContext;

pub use error::ServerError;
use materialized::Materializer;
use push::{PushLimits, PushQueries};
/// The TLS library of [`serve_tls`], for callers that hold its configuration.
pub use rustls;

/// ksqlDB's versioned media type; clients send and accept it.
pub const KSQL_MEDIA_TYPE: &str = "application/vnd.ksql.v1+json";

/// Largest request body accepted by default, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Limits and settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    pub push: PushLimits,
    /// Rows of each stream kept for pull queries (the newest).
    pub stream_row_limit: usize,
    /// Credentials every request but `/healthcheck` must carry; none by
    /// default.
    pub auth: Option<auth::Auth>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: MAX_REQUEST_BYTES,
            push: PushLimits::default(),
            stream_row_limit: materialized::DEFAULT_STREAM_ROW_LIMIT,
            auth: None,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Arc<KsqlContext>,
    pub server_id: String,
    pub config: ServerConfig,
    pub materializer: Arc<Materializer>,
    pub push: Arc<PushQueries>,
    /// Numbers pull queries' ids.
    pub pull_counter: Arc<AtomicU64>,
    /// Compiled key lookups of pull queries.
    pub lookups: Arc<lookup::LookupCache>,
    /// Statuses of the commands `/ksql` ran.
    pub commands: Arc<status::CommandLog>,
    /// HTTP requests counted for `/metrics`.
    pub http: Arc<metrics::HttpMetrics>,
    /// The cluster's members, when this server is one.
    pub cluster: Option<Arc<cluster::Members>>,
}

impl AppState {
    /// The state of a server over `ctx`: attaches the projections and the
    /// push queries to its runtime, which must run (spawned, or stepped by
    /// tests) for them to make progress.
    pub fn new(ctx: Arc<KsqlContext>, server_id: impl Into<String>, config: ServerConfig) -> Self {
        let materializer = Materializer::attach(&ctx, config.stream_row_limit);
        let push = PushQueries::attach(&ctx, config.push);
        AppState {
            ctx,
            server_id: server_id.into(),
            config,
            materializer,
            push,
            pull_counter: Arc::new(AtomicU64::new(1)),
            lookups: Arc::new(lookup::LookupCache::new()),
            commands: Arc::new(status::CommandLog::new()),
            http: Arc::new(metrics::HttpMetrics::default()),
            cluster: None,
        }
    }

    /// A server alone on a Kafka broker deletes a dropped source's topic
    /// only once nothing here reads it any more: not the projection of the
    /// source (dropped at the materializer's next pass), not a push query.
    /// librdkafka does not survive a topic deleted under its reader on
    /// Tansu. A topic a new source has taken over meanwhile stays.
    pub fn release_topics_when_unread(&self) {
        let ctx = Arc::downgrade(&self.ctx);
        let materializer = Arc::downgrade(&self.materializer);
        let gate = move |_offset: i64, topics: &[String]| {
            let (Some(ctx), Some(materializer)) = (ctx.upgrade(), materializer.upgrade()) else {
                return false;
            };
            let local = ctx.runtime().local_topics();
            topics.iter().all(|t| {
                !local.contains(t)
                    && !materializer.reads(t)
                    && !ctx.sources().iter().any(|s| &s.topic == t)
            })
        };
        self.ctx.set_release_gate(Arc::new(gate));
    }

    /// This state, for a member of a cluster: heartbeats publish what
    /// the projections hold, and pull queries gather every partition from
    /// the members ([`scatter`]).
    pub fn with_cluster(mut self, members: Arc<cluster::Members>) -> Self {
        members.watch_materializer(&self.materializer);
        self.materializer
            .set_scatter(Arc::new(scatter::Scatter::new(
                members.clone(),
                Arc::downgrade(&self.materializer),
                self.config.auth.as_ref(),
            )));
        self.cluster = Some(members);
        self
    }
}

/// The routes of the REST API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_request_bytes;
    Router::new()
        .route("/ksql", post(ksql))
        .route("/query", post(query::query))
        .route("/query-stream", post(query::query_stream))
        .route("/close-query", post(query::close_query))
        .route("/inserts-stream", post(inserts::inserts_stream))
        .route("/projections", get(projections::list))
        .route("/projections/{name}", get(projections::rows_of))
        .route("/projections/{name}/changes", get(projections::changes))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route("/info", get(info))
        .route("/healthcheck", get(healthcheck))
        .route("/ws/query", get(ws::ws_query))
        .route("/status", get(status::all_statuses))
        .route("/status/{type}/{entity}/{action}", get(status::status))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::scrape))
        .route("/clusterStatus", get(cluster::cluster_status))
        .route("/internal/scan", post(scatter::internal_scan))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves the API until the process ends.
pub async fn serve(addr: SocketAddr, state: AppState) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(ServerError::Bind)?;
    tracing::info!(
        "listening on http://{}",
        listener.local_addr().map_err(ServerError::Bind)?
    );
    axum::serve(listener, router(state))
        .await
        .map_err(ServerError::Serve)
}

/// Serves the API over TLS with `tls` (see [`tls::load`]) until the
/// process ends.
pub async fn serve_tls(
    addr: SocketAddr,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(ServerError::Bind)?;
    tracing::info!(
        "listening on https://{}",
        listener.local_addr().map_err(ServerError::Bind)?
    );
    tls::serve_tls(listener, tls, router(state)).await
}

#[derive(Debug, Deserialize)]
struct KsqlRequest {
    ksql: String,
    #[serde(default, rename = "streamsProperties")]
    streams_properties: serde_json::Map<String, Value>,
    /// In a cluster: the offset of a command (from an earlier answer's
    /// `commandSequenceNumber`) to apply here before these statements.
    #[serde(default, rename = "commandSequenceNumber")]
    command_sequence_number: Option<i64>,
}

fn ksql_json(status: axum::http::StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, KSQL_MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response()
}

async fn ksql(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let request: KsqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ServerError::BadRequest(format!("Invalid request body: {e}")).into_response();
        }
    };
    let ctx = state.ctx.clone();
    let commands = state.commands.clone();
    // Statements take the catalog lock and may create topics: keep them off
    // the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        for (name, value) in &request.streams_properties {
            ctx.set_property(
                name,
                value
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| value.to_string())
                    .as_str(),
            );
        }
        if let Some(sequence) = request.command_sequence_number
            && let Err(e) = ctx.await_command(sequence)
        {
            return Err(ServerError::Statement {
                statement: request.ksql.clone(),
                message: e.to_string(),
            });
        }
        let parsed = sluice_sql::parser::parse_statements(&request.ksql);
        match parsed {
            Err(e) => Err(ServerError::Statement {
                statement: request.ksql.clone(),
                message: e.to_string(),
            }),
            Ok(statements) => {
                let mut out = Vec::new();
                for (i, statement) in statements.iter().enumerate() {
                    // In a cluster a catalog change is numbered by its
                    // offset in the command topic, as in ksqlDB.
                    match ctx.execute_statement_sequenced(statement) {
                        Ok((result, offset)) => {
                            let sequence = offset.map_or(i as u64, |o| o.max(0) as u64);
                            let mut entity = entities::render(&statement.text, &result, sequence);
                            metrics::annotate(&mut entity, &ctx);
                            if let Some(id) = status::command_id(&statement.statement) {
                                commands.record(&id, &result);
                                if let Some(fields) = entity.as_object_mut() {
                                    fields.insert("commandId".into(), Value::String(id));
                                }
                            }
                            out.push(entity)
                        }
                        Err(e) => {
                            return Err(ServerError::Statement {
                                statement: statement.text.clone(),
                                message: e.to_string(),
                            });
                        }
                    }
                }
                Ok(out)
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(entities)) => ksql_json(axum::http::StatusCode::OK, Value::Array(entities)),
        Ok(Err(e)) => e.into_response(),
        Err(join) => ServerError::Internal(join.to_string()).into_response(),
    }
}

async fn info(State(state): State<AppState>) -> Response {
    ksql_json(
        axum::http::StatusCode::OK,
        json!({"KsqlServerInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "kafkaClusterId": "embedded",
            "ksqlServiceId": state.server_id,
            "serverStatus": "RUNNING",
        }}),
    )
}

async fn healthcheck(State(state): State<AppState>) -> Response {
    let failed = state
        .ctx
        .runtime()
        .states()
        .iter()
        .filter(|(_, s)| *s != sluice_engine::query::QueryState::Running)
        .count();
    Json(json!({
        "isHealthy": true,
        "details": {
            "metastore": {"isHealthy": true},
            "kafka": {"isHealthy": true},
            "queries": {"isHealthy": failed == 0, "failed": failed},
        }
    }))
    .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ServerError::NotFound(uri.path().to_string()).into_response()
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ServerError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
    .into_response()
}

#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod tests;

//! The query endpoints: `POST /query` (ksqlDB's chunked JSON array of
//! `header`, `row` and `finalMessage`/`errorMessage` objects),
//! `POST /query-stream` (a header object then one JSON array per row,
//! newline-delimited or as one JSON array) and `POST /close-query`.
//!
//! A statement with `EMIT CHANGES` (or `EMIT FINAL`) is a push query
//! ([`crate::push`]); any other `SELECT` is a pull query
//! ([`crate::pull`]).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sql::parser::{Emit, Query, Statement};

use crate::error::ServerError;
use crate::pull::{self, OutputColumn, PullResult};
use crate::push::{PushEnd, Subscription};
use crate::{AppState, KSQL_MEDIA_TYPE};

/// The delimited media type of `/query-stream`.
pub const DELIMITED_MEDIA_TYPE: &str = "application/vnd.ksqlapi.delimited.v1";

/// What a query statement is.
pub(crate) enum QueryKind {
    Push(Box<Query>),
    Pull,
}

/// Tells push from pull queries; rejects everything else.
pub(crate) fn classify(sql: &str) -> Result<QueryKind, ServerError> {
    match sluice_sql::parser::parse_statement(sql) {
        Ok(parsed) => match parsed.statement {
            Statement::Select(q) if matches!(q.emit, Some(Emit::Changes | Emit::Final)) => {
                Ok(QueryKind::Push(Box::new(q)))
            }
            Statement::Select(_) => Ok(QueryKind::Pull),
            _ => Err(ServerError::Statement {
                statement: sql.to_string(),
                message: "The statement is not a query: run statements through /ksql.".into(),
            }),
        },
        // ksqlDB's grammar has no ORDER BY, subqueries...: full SQL is for
        // pull queries, which DataFusion parses.
        Err(ksql_error) => match pull::parse(sql) {
            Ok(_) => Ok(QueryKind::Pull),
            Err(_) => Err(ServerError::Statement {
                statement: sql.to_string(),
                message: ksql_error.to_string(),
            }),
        },
    }
}

/// `auto.offset.reset`: push queries read from the end unless `earliest`.
pub(crate) fn from_latest(properties: &serde_json::Map<String, Value>) -> bool {
    let value = properties
        .get("auto.offset.reset")
        .or_else(|| properties.get("ksql.streams.auto.offset.reset"));
    !matches!(value.and_then(Value::as_str), Some(v) if v.eq_ignore_ascii_case("earliest"))
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ServerError> {
    serde_json::from_slice(body)
        .map_err(|e| ServerError::BadRequest(format!("Invalid request body: {e}")))
}

fn pull_query_id(state: &AppState) -> String {
    format!(
        "query_{}",
        state
            .pull_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

#[derive(Debug, Deserialize)]
struct QueryRequest {
    ksql: String,
    #[serde(default, rename = "streamsProperties")]
    streams_properties: serde_json::Map<String, Value>,
}

/// `POST /query`.
pub async fn query(State(state): State<AppState>, body: Bytes) -> Response {
    let outcome = async {
        let request: QueryRequest = parse_body(&body)?;
        let sql = request.ksql.trim().to_string();
        if crate::print::is_print(&sql) {
            return Ok(crate::print::respond(&state, &sql));
        }
        match classify(&sql)? {
            QueryKind::Pull => {
                let result =
                    pull::execute(&state.ctx, &state.materializer, Some(&state.lookups), &sql)
                        .await?;
                Ok(pull_query_response(&pull_query_id(&state), &result))
            }
            QueryKind::Push(q) => {
                let sub = state
                    .push
                    .start_blocking(*q, from_latest(&request.streams_properties))
                    .await
                    .map_err(|e| e.for_statement(&sql))?;
                Ok(stream_response(sub, StreamFormat::Query, KSQL_MEDIA_TYPE))
            }
        }
    };
    outcome
        .await
        .unwrap_or_else(|e: ServerError| e.into_response())
}

fn query_header(id: &str, columns: &[OutputColumn]) -> Value {
    json!({"header": {"queryId": id, "schema": pull::schema_text(columns)}})
}

fn pull_query_response(id: &str, result: &PullResult) -> Response {
    let mut out = String::from("[");
    out.push_str(&query_header(id, &result.columns).to_string());
    for row in &result.rows {
        out.push_str(",\n{\"row\":{\"columns\":");
        out.push_str(row);
        out.push_str("}}");
    }
    if let Some(message) = result.final_message() {
        out.push_str(",\n");
        out.push_str(&json!({"finalMessage": message}).to_string());
    }
    out.push_str("]\n");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, KSQL_MEDIA_TYPE)],
        out,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct QueryStreamRequest {
    sql: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
}

/// `POST /query-stream`: delimited unless the client accepts only JSON.
pub async fn query_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_array = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains(DELIMITED_MEDIA_TYPE));
    let (format, media) = if json_array {
        (StreamFormat::JsonArray, "application/json")
    } else {
        (StreamFormat::Delimited, DELIMITED_MEDIA_TYPE)
    };
    let outcome = async {
        let request: QueryStreamRequest = parse_body(&body)?;
        let sql = request.sql.trim().to_string();
        match classify(&sql)? {
            QueryKind::Pull => {
                let result =
                    pull::execute(&state.ctx, &state.materializer, Some(&state.lookups), &sql)
                        .await?;
                let id = pull_query_id(&state);
                let mut parts = vec![stream_header(&id, &result.columns).to_string()];
                parts.extend(result.rows.iter().cloned());
                let text = match format {
                    StreamFormat::JsonArray => format!("[{}]", parts.join(",\n")),
                    _ => parts.iter().map(|p| format!("{p}\n")).collect(),
                };
                Ok((StatusCode::OK, [(header::CONTENT_TYPE, media)], text).into_response())
            }
            QueryKind::Push(q) => {
                let sub = state
                    .push
                    .start_blocking(*q, from_latest(&request.properties))
                    .await
                    .map_err(|e| e.for_statement(&sql))?;
                Ok(stream_response(sub, format, media))
            }
        }
    };
    outcome
        .await
        .unwrap_or_else(|e: ServerError| e.into_response())
}

fn stream_header(id: &str, columns: &[OutputColumn]) -> Value {
    json!({
        "queryId": id,
        "columnNames": columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        "columnTypes": columns.iter().map(|c| c.sql_type.to_string()).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
struct CloseQueryRequest {
    #[serde(rename = "queryId")]
    query_id: String,
}

/// `POST /close-query`: stops a push query by id.
pub async fn close_query(State(state): State<AppState>, body: Bytes) -> Response {
    let request: CloseQueryRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if state.push.close(&request.query_id) {
        StatusCode::OK.into_response()
    } else {
        ServerError::BadRequest(format!("No query with id {}", request.query_id)).into_response()
    }
}

/// How a push query's messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `/query`: `[{"header":..},\n{"row":..},\n...{"finalMessage":..}]`.
    Query,
    /// `/query-stream`: header object, then one array per line.
    Delimited,
    /// `/query-stream` with `Accept: application/json`: one JSON array.
    JsonArray,
    /// Server-sent events for the web UI.
    Events,
}

/// The state of a streamed push-query response.
struct PushStream {
    sub: Subscription,
    format: StreamFormat,
    header_sent: bool,
    done: bool,
}

impl PushStream {
    fn header(&self) -> String {
        match self.format {
            StreamFormat::Query => {
                format!("[{}", query_header(&self.sub.id, &self.sub.columns))
            }
            StreamFormat::Delimited => {
                format!("{}\n", stream_header(&self.sub.id, &self.sub.columns))
            }
            StreamFormat::JsonArray => {
                format!("[{}", stream_header(&self.sub.id, &self.sub.columns))
            }
            StreamFormat::Events => format!(
                "event: header\ndata: {}\n\n",
                stream_header(&self.sub.id, &self.sub.columns)
            ),
        }
    }

    fn row(&self, columns: &str, tombstone: bool) -> String {
        match self.format {
            StreamFormat::Query => {
                let tombstone = if tombstone { ",\"tombstone\":true" } else { "" };
                format!(",\n{{\"row\":{{\"columns\":{columns}{tombstone}}}}}")
            }
            StreamFormat::Delimited => format!("{columns}\n"),
            StreamFormat::JsonArray => format!(",\n{columns}"),
            StreamFormat::Events => {
                let kind = if tombstone { "delete" } else { "row" };
                format!("event: {kind}\ndata: {columns}\n\n")
            }
        }
    }

    /// The closing text, given how the query ended.
    fn finish(&self, end: Option<PushEnd>) -> String {
        let error = match &end {
            Some(PushEnd::Overflow(m)) | Some(PushEnd::Failed(m)) => Some(m.clone()),
            _ => None,
        };
        match (self.format, error) {
            (StreamFormat::Query, Some(m)) => format!(
                ",\n{}]\n",
                json!({"errorMessage": ServerError::Internal(m).body()})
            ),
            (StreamFormat::Query, None) if end == Some(PushEnd::LimitReached) => {
                format!(",\n{}]\n", json!({"finalMessage": "Limit Reached"}))
            }
            (StreamFormat::Query, None) | (StreamFormat::JsonArray, None) => "]\n".into(),
            (StreamFormat::Delimited, Some(m)) => {
                format!("{}\n", ServerError::Internal(m).body())
            }
            (StreamFormat::Delimited, None) => String::new(),
            (StreamFormat::JsonArray, Some(m)) => {
                format!(",\n{}]\n", ServerError::Internal(m).body())
            }
            (StreamFormat::Events, Some(m)) => format!(
                "event: error\ndata: {}\n\n",
                ServerError::Internal(m).body()
            ),
            (StreamFormat::Events, None) => "event: end\ndata: {}\n\n".into(),
        }
    }

    /// The next piece of the body; `None` once finished.
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if !self.header_sent {
            self.header_sent = true;
            return Some(self.header());
        }
        // A client cut off for falling behind hears so at once, not after
        // the rows it could not keep up with.
        if let Some(end @ (PushEnd::Overflow(_) | PushEnd::Failed(_))) = self.sub.end() {
            self.done = true;
            return Some(self.finish(Some(end)));
        }
        match self.sub.rows.recv().await {
            Some(row) => Some(self.row(&row.columns, row.tombstone)),
            None => {
                self.done = true;
                Some(self.finish(self.sub.end()))
            }
        }
    }
}

/// A chunked response that follows a push query until it ends or the
/// client goes away (dropping the body drops the subscription, which stops
/// the query).
pub fn stream_response(sub: Subscription, format: StreamFormat, media: &str) -> Response {
    let state = PushStream {
        sub,
        format,
        header_sent: false,
        done: false,
    };
    let body = futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok::<Bytes, Infallible>(Bytes::from(chunk)), state))
    });
    let mut response = Response::new(Body::from_stream(body));
    if let Ok(value) = header::HeaderValue::from_str(media) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

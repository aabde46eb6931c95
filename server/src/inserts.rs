//! `POST /inserts-stream`: rows streamed into a stream or table.
//!
//! The request body is a line with the target, `{"target": "S"}`, then one
//! JSON object per line, each a row (field names match columns ignoring
//! case; `ROWTIME` sets the record time). The response streams one line
//! per row as it is written: `{"status":"ok","seq":n}`, or
//! `{"status":"error","seq":n,"error_code":..,"message":..}` for a row that
//! is rejected. A bad first line ends the request with an error line.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use datafusion::arrow::array::ArrayRef;
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_engine::topic::{Partitioning, Record};
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ServerError;
use crate::query::DELIMITED_MEDIA_TYPE;

/// `POST /inserts-stream`.
pub async fn inserts_stream(State(state): State<AppState>, body: Body) -> Response {
    let (tx, rx) = mpsc::channel::<String>(64);
    let max_line = state.config.max_request_bytes;
    tokio::spawn(async move {
        let mut lines = LineReader::new(body, max_line);
        let target = match lines.next().await {
            Ok(Some(line)) => target(&state.ctx, &line),
            Ok(None) => Err(ServerError::BadRequest(
                "Missing the first line: {\"target\": \"<stream or table>\"}".into(),
            )),
            Err(e) => Err(e),
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                let _ = tx.send(format!("{}\n", e.body())).await;
                return;
            }
        };
        let mut seq: u64 = 0;
        loop {
            let ack = match lines.next().await {
                Ok(None) => return,
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => {
                    let ctx = state.ctx.clone();
                    let target = target.clone();
                    // Producing may block on the backend: off the workers.
                    let written =
                        tokio::task::spawn_blocking(move || insert_row(&ctx, &target, &line))
                            .await
                            .unwrap_or_else(|e| Err(ServerError::Internal(e.to_string())));
                    match written {
                        Ok(()) => json!({"status": "ok", "seq": seq}),
                        Err(e) => error_ack(seq, &e),
                    }
                }
                // The body itself failed (too long a line, a broken
                // connection): answer once and stop.
                Err(e) => {
                    let _ = tx.send(format!("{}\n", error_ack(seq, &e))).await;
                    return;
                }
            };
            seq += 1;
            if tx.send(format!("{ack}\n")).await.is_err() {
                return;
            }
        }
    });
    let acks = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<Bytes, Infallible>(Bytes::from(line)), rx))
    });
    let mut response = Response::new(Body::from_stream(acks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(DELIMITED_MEDIA_TYPE),
    );
    response
}

fn error_ack(seq: u64, e: &ServerError) -> Value {
    let body = e.body();
    json!({
        "status": "error",
        "seq": seq,
        "error_code": body["error_code"],
        "message": body["message"],
    })
}

/// The source named by the first line.
fn target(ctx: &KsqlContext, line: &str) -> Result<Arc<DataSource>, ServerError> {
    let first: Value = serde_json::from_str(line)
        .map_err(|e| ServerError::BadRequest(format!("Invalid first line: {e}")))?;
    let Some(name) = first.get("target").and_then(Value::as_str) else {
        return Err(ServerError::BadRequest(
            "The first line must be {\"target\": \"<stream or table>\"}".into(),
        ));
    };
    let source = ctx
        .source(name)
        .or_else(|| ctx.source(&name.to_uppercase()))
        .ok_or_else(|| {
            ServerError::BadRequest(format!(
                "Cannot insert into an unknown stream/table: {name}"
            ))
        })?;
    if source.read_only {
        return Err(ServerError::BadRequest(format!(
            "Cannot insert into read-only {}: {}",
            source.kind.lower(),
            source.name
        )));
    }
    if source.window.is_some() {
        return Err(ServerError::BadRequest(format!(
            "Cannot insert into windowed {}: {}",
            source.kind.lower(),
            source.name
        )));
    }
    Ok(source)
}

/// Encodes one JSON row as `target`'s record and produces it.
fn insert_row(ctx: &KsqlContext, target: &DataSource, line: &str) -> Result<(), ServerError> {
    let bad = ServerError::BadRequest;
    let row: Value = serde_json::from_str(line).map_err(|e| bad(format!("Invalid row: {e}")))?;
    let Value::Object(fields) = row else {
        return Err(bad("A row must be a JSON object".into()));
    };
    let lookup = |name: &str| {
        fields.get(name).or_else(|| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    for name in fields.keys() {
        let known = name.eq_ignore_ascii_case("ROWTIME")
            || target
                .schema
                .columns()
                .iter()
                .any(|c| c.name == *name || c.name.eq_ignore_ascii_case(name));
        if !known {
            return Err(bad(format!("Column name `{name}` does not exist.")));
        }
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(target.schema.columns().len());
    for c in target.schema.columns() {
        let value = lookup(&c.name).unwrap_or(&Value::Null);
        let scalar = sluice_engine::format::json::coerce(value, &c.sql_type).map_err(|e| {
            bad(format!(
                "Invalid value for column {} ({}): {e}",
                c.name, c.sql_type
            ))
        })?;
        arrays.push(
            scalar
                .to_array()
                .map_err(|e| ServerError::Internal(e.to_string()))?,
        );
    }
    let timestamp = match lookup("ROWTIME") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| bad(format!("Invalid ROWTIME: {n}")))?,
        Some(other) => return Err(bad(format!("Invalid ROWTIME: {other}"))),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    };
    let codec = target.codec();
    let keys = target.schema.key_count();
    let key = codec
        .encode_key(&arrays[..keys], 0)
        .map_err(|e| bad(format!("Cannot serialize the key: {e}")))?;
    let value = codec
        .encode_value(&arrays[keys..], 0)
        .map_err(|e| bad(format!("Cannot serialize the value: {e}")))?;
    ctx.backend()
        .produce(
            &target.topic,
            vec![(
                Partitioning::ByKey,
                Record {
                    key: key.map(Bytes::from),
                    value: value.map(Bytes::from),
                    timestamp,
                    headers: vec![],
                },
            )],
        )
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    Ok(())
}

/// Splits a request body into lines as it arrives, each at most `max`
/// bytes.
struct LineReader {
    body: axum::body::BodyDataStream,
    pending: Vec<u8>,
    max: usize,
    finished: bool,
}

impl LineReader {
    fn new(body: Body, max: usize) -> Self {
        LineReader {
            body: body.into_data_stream(),
            pending: Vec::new(),
            max,
            finished: false,
        }
    }

    async fn next(&mut self) -> Result<Option<String>, ServerError> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return text(&line[..end]).map(Some);
            }
            if self.pending.len() > self.max {
                return Err(ServerError::BadRequest(format!(
                    "A line is longer than {} bytes",
                    self.max
                )));
            }
            if self.finished {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.pending);
                return text(&line).map(Some);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.pending.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(ServerError::BadRequest(format!(
                        "Cannot read the request: {e}"
                    )));
                }
                None => self.finished = true,
            }
        }
    }
}

fn text(bytes: &[u8]) -> Result<String, ServerError> {
    String::from_utf8(bytes.to_vec())
        .map(|s| s.trim_end_matches('\r').to_string())
        .map_err(|_| ServerError::BadRequest("The request is not UTF-8".into()))
}

//! `GET /ws/query`: ksqlDB's websocket query endpoint.
//!
//! The query comes in the `request` parameter of the upgrade request, the
//! JSON body `/query` takes (`{"ksql": ..., "streamsProperties": {...}}`);
//! an optional `version` parameter must be `v1`. Once upgraded, the server
//! sends text frames as ksqlDB does: first the result schema (an array of
//! `{"name", "schema": {"type", "fields", "memberSchema"}}` with `"type":
//! "KEY"` on key columns), then one `{"row": {"columns": [...]}}` per row.
//! It closes with code 1000 ("done") when the answer is complete (a pull
//! query, or a push query at its `LIMIT`), 1003 when the request or the
//! statement is malformed and 1011 when the query fails or its client
//! falls too far behind. A push query runs until the client closes.

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_engine::schema::SqlType;

use crate::AppState;
use crate::error::ServerError;
use crate::pull::{self, OutputColumn};
use crate::push::PushEnd;
use crate::query::{QueryKind, classify, from_latest};

/// Normal closure: the answer is complete.
const CLOSE_DONE: u16 = 1000;
/// The request or statement cannot be run.
const CLOSE_INVALID: u16 = 1003;
/// The query failed while running.
const CLOSE_FAILED: u16 = 1011;

/// The only API version the endpoint speaks.
const VERSION: &str = "v1";

#[derive(Debug, Deserialize)]
struct WsRequest {
    #[serde(default)]
    ksql: String,
    #[serde(default, rename = "streamsProperties")]
    streams_properties: serde_json::Map<String, Value>,
}

/// `GET /ws/query`.
pub async fn ws_query(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, rejection::WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| serve(state, params, socket)),
        Err(e) => ServerError::BadRequest(format!("/ws/query takes a websocket upgrade: {e}"))
            .into_response(),
    }
}

/// ksqlDB's schema object of a type.
fn schema_info(ty: &SqlType) -> Value {
    let base = match ty {
        SqlType::Boolean => "BOOLEAN",
        SqlType::Int => "INTEGER",
        SqlType::Bigint => "BIGINT",
        SqlType::Double => "DOUBLE",
        SqlType::Decimal { .. } => "DECIMAL",
        SqlType::String => "STRING",
        SqlType::Bytes => "BYTES",
        SqlType::Date => "DATE",
        SqlType::Time => "TIME",
        SqlType::Timestamp => "TIMESTAMP",
        SqlType::Array(_) => "ARRAY",
        SqlType::Map(..) => "MAP",
        SqlType::Struct(_) => "STRUCT",
    };
    let fields = match ty {
        SqlType::Struct(fields) => Value::Array(
            fields
                .iter()
                .map(|(name, t)| json!({"name": name, "schema": schema_info(t)}))
                .collect(),
        ),
        _ => Value::Null,
    };
    let member = match ty {
        SqlType::Array(t) | SqlType::Map(_, t) => schema_info(t),
        _ => Value::Null,
    };
    let mut info = json!({"type": base, "fields": fields, "memberSchema": member});
    if let SqlType::Decimal { precision, scale } = ty {
        info["parameters"] = json!({"precision": precision, "scale": scale});
    }
    info
}

/// The first frame: the result's columns.
fn schema_frame(columns: &[OutputColumn]) -> String {
    let fields: Vec<Value> = columns
        .iter()
        .map(|c| {
            let mut field = json!({"name": c.name, "schema": schema_info(&c.sql_type)});
            if c.key {
                field["type"] = json!("KEY");
            }
            field
        })
        .collect();
    Value::Array(fields).to_string()
}

fn row_frame(columns: &str, tombstone: bool) -> String {
    let tombstone = if tombstone { ",\"tombstone\":true" } else { "" };
    format!("{{\"row\":{{\"columns\":{columns}{tombstone}}}}}")
}

fn close(code: u16, reason: &str) -> Message {
    // A close frame's reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

/// Why the endpoint stops before running anything.
fn check_request(params: &HashMap<String, String>) -> Result<WsRequest, String> {
    if let Some(version) = params.get("version")
        && version != VERSION
    {
        return Err(format!("Received invalid api version: {version}"));
    }
    let text = match params.get("request") {
        Some(t) if !t.is_empty() => t,
        _ => return Err("Error parsing request: missing request parameter".into()),
    };
    let request: WsRequest =
        serde_json::from_str(text).map_err(|e| format!("Error parsing request: {e}"))?;
    if request.ksql.trim().is_empty() {
        return Err(
            "Error parsing request: \"ksql\" field of \"request\" must be populated".into(),
        );
    }
    Ok(request)
}

async fn serve(state: AppState, params: HashMap<String, String>, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let request = match check_request(&params) {
        Ok(r) => r,
        Err(message) => {
            let _ = sink.send(close(CLOSE_INVALID, &message)).await;
            return;
        }
    };
    let sql = request.ksql.trim().to_string();
    let kind = match classify(&sql) {
        Ok(k) => k,
        Err(e) => {
            let message = format!("Error parsing query: {e}");
            let _ = sink.send(close(CLOSE_INVALID, &message)).await;
            return;
        }
    };
    match kind {
        QueryKind::Pull => {
            let answer =
                pull::execute(&state.ctx, &state.materializer, Some(&state.lookups), &sql).await;
            let result = match answer {
                Ok(r) => r,
                Err(e) => {
                    let _ = sink.send(close(CLOSE_FAILED, &e.to_string())).await;
                    return;
                }
            };
            let mut frames = vec![schema_frame(&result.columns)];
            frames.extend(result.rows.iter().map(|r| row_frame(r, false)));
            for frame in frames {
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(close(CLOSE_DONE, "done")).await;
        }
        QueryKind::Push(q) => {
            let mut sub = match state
                .push
                .start_blocking(*q, from_latest(&request.streams_properties))
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = sink.send(close(CLOSE_FAILED, &e.to_string())).await;
                    return;
                }
            };
            if sink
                .send(Message::Text(schema_frame(&sub.columns).into()))
                .await
                .is_err()
            {
                return;
            }
            loop {
                // A client cut off for falling behind hears so at once, not
                // after the rows it could not keep up with.
                if let Some(PushEnd::Overflow(m) | PushEnd::Failed(m)) = sub.end() {
                    let _ = sink.send(close(CLOSE_FAILED, &m)).await;
                    return;
                }
                tokio::select! {
                    row = sub.rows.recv() => match row {
                        Some(row) => {
                            let frame = row_frame(&row.columns, row.tombstone);
                            if sink.send(Message::Text(frame.into())).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            let message = match sub.end() {
                                Some(PushEnd::Overflow(m) | PushEnd::Failed(m)) => close(CLOSE_FAILED, &m),
                                _ => close(CLOSE_DONE, "done"),
                            };
                            let _ = sink.send(message).await;
                            return;
                        }
                    },
                    message = incoming.next() => match message {
                        // The client went away or closed: dropping the
                        // subscription stops the query.
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                        Some(Ok(_)) => {}
                    },
                }
            }
        }
    }
}

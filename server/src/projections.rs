//! JSON views of the materialized projections for the web UI:
//! `GET /projections` lists them, `GET /projections/{name}` returns rows
//! (`?key=` looks one key up, `?limit=` bounds the answer) and
//! `GET /projections/{name}/changes` follows changes as server-sent events
//! (a push query from the latest offset: `header`, then `row` or `delete`
//! events, then `end` or `error`).
//!
//! In a cluster a member materializes only its share of each source's
//! partitions: `GET /projections` lists this member's share (`rows` counts
//! it, `split` says which partitions), while `GET /projections/{name}`
//! gathers every partition from their owners as pull queries do
//! ([`crate::scatter`]). Changes come from a push query, which reads the
//! topic itself and is whole anyway.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{ArrayRef, RecordBatch, Scalar};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use serde_json::{Value, json};
use sluice_sql::parser::Statement;

use crate::AppState;
use crate::error::ServerError;
use crate::materialized::Snapshot;
use crate::query::{StreamFormat, stream_response};
use crate::rows;

/// Rows returned when no `limit` is given.
const DEFAULT_LIMIT: usize = 1000;

/// The columns a projection shows: keys, window bounds, values.
fn columns(s: &Snapshot) -> Vec<(String, String, bool, usize)> {
    let schema = &s.source.schema;
    let width = schema.columns().len();
    let mut out = Vec::new();
    for (i, c) in schema.columns().iter().enumerate() {
        if c.kind == sluice_engine::schema::ColumnKind::Key {
            out.push((c.name.clone(), c.sql_type.to_string(), true, i));
        }
    }
    if s.source.window.is_some() {
        // After ROWTIME, ROWPARTITION and ROWOFFSET in the snapshot.
        out.push(("WINDOWSTART".into(), "BIGINT".into(), true, width + 3));
        out.push(("WINDOWEND".into(), "BIGINT".into(), true, width + 4));
    }
    for (i, c) in schema.columns().iter().enumerate() {
        if c.kind == sluice_engine::schema::ColumnKind::Value {
            out.push((c.name.clone(), c.sql_type.to_string(), false, i));
        }
    }
    out
}

fn describe(s: &Snapshot) -> Value {
    json!({
        "name": s.source.name,
        "type": s.source.kind.name(),
        "topic": s.source.topic,
        "windowed": s.source.window.is_some(),
        "rows": s.num_rows(),
        "error": s.error,
        "split": s.split.as_ref().map(|split| json!({
            "partitions": split.partitions,
            "owned": split.owned,
            "restoring": split.restoring,
        })),
        "columns": columns(s).into_iter().map(|(name, ty, key, _)| json!({
            "name": name, "type": ty, "key": key,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /projections`.
pub async fn list(State(state): State<AppState>) -> Response {
    let names = state.materializer.names();
    let found = state.materializer.snapshots(&names);
    let all: Vec<Value> = found.iter().flatten().map(|s| describe(s)).collect();
    (StatusCode::OK, axum::Json(Value::Array(all))).into_response()
}

fn snapshot(state: &AppState, name: &str) -> Result<Arc<Snapshot>, ServerError> {
    let candidates = [name.to_string(), name.to_uppercase()];
    state
        .materializer
        .snapshots(&candidates)
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| ServerError::NotFound(format!("/projections/{name}")))
}

/// `GET /projections/{name}?key=..&limit=..`.
pub async fn rows_of(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    // In a cluster, every partition's rows, from their owners.
    let gathered = match snapshot(&state, &name) {
        Ok(s) => match (state.materializer.scatter(), &s.split) {
            (Some(scatter), Some(_)) => Some(
                scatter
                    .all_rows(&s)
                    .await
                    .map_err(|e| ServerError::Unavailable(e.0)),
            ),
            _ => None,
        },
        Err(e) => Some(Err(e)),
    };
    let answer = (|| {
        let s = snapshot(&state, &name)?;
        let limit = match params.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| ServerError::BadRequest(format!("Invalid limit: {l}")))?,
            None => DEFAULT_LIMIT,
        };
        let cols = columns(&s);
        let mut batches: Vec<RecordBatch> = match gathered {
            Some(rows) => rows?,
            None => s.batches()?,
        };
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if let Some(key) = params.get("key") {
            batches = lookup(&s, batches, key)?;
        }
        let mut out = Vec::new();
        for b in &batches {
            if out.len() >= limit {
                break;
            }
            let arrays: Vec<ArrayRef> = cols.iter().map(|c| b.column(c.3).clone()).collect();
            for row in rows::json_rows(&arrays, Some(limit - out.len()))? {
                let values: Vec<Value> =
                    serde_json::from_str(&row).map_err(|e| ServerError::Internal(e.to_string()))?;
                let object: serde_json::Map<String, Value> =
                    cols.iter().map(|c| c.0.clone()).zip(values).collect();
                out.push(Value::Object(object));
            }
        }
        let mut body = describe(&s);
        body["rows"] = Value::Array(out);
        body["totalRows"] = json!(total);
        Ok::<_, ServerError>(body)
    })();
    match answer {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The rows whose (single) key column equals `key`, read as that column's
/// type.
fn lookup(
    s: &Snapshot,
    batches: Vec<RecordBatch>,
    key: &str,
) -> Result<Vec<RecordBatch>, ServerError> {
    let keys: Vec<_> = s.source.schema.key_columns().collect();
    let [column] = keys.as_slice() else {
        return Err(ServerError::BadRequest(format!(
            "{} has {} key columns; ?key= looks up sources with one",
            s.source.name,
            keys.len()
        )));
    };
    let value = sluice_engine::format::json::coerce(&Value::String(key.into()), &column.sql_type)
        .map_err(|e| {
        ServerError::BadRequest(format!("Invalid key for {}: {e}", column.name))
    })?;
    let value = Scalar::new(
        value
            .to_array()
            .map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let position = s
        .source
        .schema
        .columns()
        .iter()
        .position(|c| c.name == column.name)
        .unwrap_or(0);
    batches
        .iter()
        .map(|b| {
            let mask =
                eq(b.column(position), &value).map_err(|e| ServerError::Internal(e.to_string()))?;
            filter_record_batch(b, &mask).map_err(|e| ServerError::Internal(e.to_string()))
        })
        .collect()
}

/// `GET /projections/{name}/changes`: server-sent events.
pub async fn changes(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let query = (|| {
        let s = snapshot(&state, &name)?;
        let sql = format!("SELECT * FROM `{}` EMIT CHANGES;", s.source.name);
        let parsed = sluice_sql::parser::parse_statement(&sql).map_err(|e| {
            ServerError::BadRequest(format!("Cannot follow {}: {e}", s.source.name))
        })?;
        let Statement::Select(query) = parsed.statement else {
            return Err(ServerError::Internal("not a query".into()));
        };
        Ok(query)
    })();
    let opened = match query {
        Ok(query) => state.push.start_blocking(query, true).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok(sub) => stream_response(sub, StreamFormat::Events, "text/event-stream"),
        Err(e) => e.into_response(),
    }
}

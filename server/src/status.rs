//! ksqlDB's command statuses: every statement `/ksql` runs that changes
//! the catalog or the queries is a command with an id such as
//! `stream/PAGEVIEWS/create`, `table/USERS/drop` or
//! `terminate/CSAS_X_1/execute`. `GET /status` lists them
//! (`{"commandStatuses": {id: status}}`) and
//! `GET /status/{type}/{entity}/{action}` reports one
//! (`{"status": "SUCCESS", "message": ...}`), or ksqlDB's 404 error when
//! no such command ran. Statements run synchronously here, so a command
//! that has an id has succeeded: failed statements are not recorded,
//! as ksqlDB rejects them before they become commands.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sluice_sql::StatementResult;
use sluice_sql::parser::{SourceKind, Statement};

use crate::AppState;
use crate::error::ServerError;

/// The commands run so far, oldest first.
#[derive(Default)]
pub struct CommandLog {
    commands: Mutex<Vec<(String, Value)>>,
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Stream => "stream",
        SourceKind::Table => "table",
    }
}

/// The id ksqlDB gives the command of `statement`; `None` for statements
/// that are not commands (queries, inserts of values, SHOW, DESCRIBE...).
pub fn command_id(statement: &Statement) -> Option<String> {
    let (kind, entity, action) = match statement {
        Statement::CreateSource(c) => (kind_name(c.kind), c.name.clone(), "create"),
        Statement::CreateAsSelect(c) => (kind_name(c.kind), c.name.clone(), "create"),
        // INSERT INTO ... SELECT writes into an existing stream.
        Statement::InsertInto { target, .. } => ("stream", target.clone(), "create"),
        Statement::Drop { kind, name, .. } => (kind_name(*kind), name.clone(), "drop"),
        Statement::Terminate { query_id } => (
            "terminate",
            query_id.clone().unwrap_or_else(|| "ALL".into()),
            "execute",
        ),
        _ => return None,
    };
    Some(format!("{kind}/{entity}/{action}"))
}

impl CommandLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the command `id` succeeded with `result`.
    pub fn record(&self, id: &str, result: &StatementResult) {
        let status = match result {
            StatementResult::Status { message } => json!({"status": "SUCCESS", "message": message}),
            StatementResult::QueryStarted {
                query_id, message, ..
            } => json!({"status": "SUCCESS", "message": message, "queryId": query_id}),
            _ => json!({"status": "SUCCESS", "message": ""}),
        };
        let mut commands = self.commands.lock();
        // A source created again (after a drop) is a new command with the
        // same id: the newest status is the one reported.
        commands.retain(|(c, _)| c != id);
        commands.push((id.to_string(), status));
    }

    fn find(&self, id: &str) -> Option<Value> {
        self.commands
            .lock()
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, s)| s.clone())
    }

    fn all(&self) -> serde_json::Map<String, Value> {
        self.commands
            .lock()
            .iter()
            .map(|(id, s)| (id.clone(), s["status"].clone()))
            .collect()
    }
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, crate::KSQL_MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// `GET /status`.
pub async fn all_statuses(State(state): State<AppState>) -> Response {
    ok(json!({"commandStatuses": state.commands.all()}))
}

/// `GET /status/{type}/{entity}/{action}`.
pub async fn status(
    State(state): State<AppState>,
    Path((kind, entity, action)): Path<(String, String, String)>,
) -> Response {
    let kind = kind.to_lowercase();
    let action = action.to_lowercase();
    if !["stream", "table", "terminate", "topic", "cluster", "type"].contains(&kind.as_str()) {
        return ServerError::BadRequest(format!("Invalid command type: {kind}")).into_response();
    }
    if !["create", "drop", "execute"].contains(&action.as_str()) {
        return ServerError::BadRequest(format!("Invalid command action: {action}"))
            .into_response();
    }
    // Clients may quote the name as ksqlDB prints it.
    let entity = entity.trim_matches('`');
    match state.commands.find(&format!("{kind}/{entity}/{action}")) {
        Some(status) => ok(status),
        None => ServerError::Missing("Command not found".into()).into_response(),
    }
}

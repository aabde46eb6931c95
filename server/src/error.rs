//! [`ServerError`] and its rendering as ksqlDB's error JSON
//! (`@type`, `error_code`, `message`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    BadRequest(String),
    /// A statement was rejected; ksqlDB's `statement_error`.
    #[error("{message}")]
    Statement { statement: String, message: String },
    #[error("Path not found: {0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("Method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// Something a request names does not exist (a command id...).
    #[error("{0}")]
    Missing(String),
    /// A limit on concurrent work was reached; the client may retry.
    #[error("{0}")]
    TooManyRequests(String),
    /// Not ready yet (a source created a moment ago); the client may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

impl ServerError {
    /// The HTTP status and ksqlDB's error code.
    fn codes(&self) -> (StatusCode, u32) {
        match self {
            ServerError::BadRequest(_) => (StatusCode::BAD_REQUEST, 40000),
            ServerError::Statement { .. } => (StatusCode::BAD_REQUEST, 40001),
            ServerError::NotFound(_) | ServerError::Missing(_) => (StatusCode::NOT_FOUND, 40400),
            ServerError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, 40500),
            ServerError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, 42900),
            ServerError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 50300),
            ServerError::Internal(_)
            | ServerError::Tls(_)
            | ServerError::Bind(_)
            | ServerError::Serve(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50000),
        }
    }

    /// Names the statement a statement error is about.
    pub fn for_statement(self, sql: &str) -> Self {
        match self {
            ServerError::Statement { message, .. } => ServerError::Statement {
                statement: sql.to_string(),
                message,
            },
            other => other,
        }
    }

    /// ksqlDB's error JSON for this error.
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.codes();
        match self {
            ServerError::Statement { statement, message } => json!({
                "@type": "statement_error",
                "error_code": code,
                "message": message,
                "statementText": statement,
                "entities": [],
            }),
            other => {
                json!({"@type": "generic_error", "error_code": code, "message": other.to_string()})
            }
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let (status, _) = self.codes();
        let body = self.body();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, crate::KSQL_MEDIA_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

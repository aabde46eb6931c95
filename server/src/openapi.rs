//! The OpenAPI 3 description of the REST API, `server/openapi.json`,
//! served at `GET /openapi.json`. The document is written by hand and
//! compiled in; `tests/openapi.rs` checks it against [`crate::router`] in
//! both directions, so a route added without documentation fails the build.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The document, as checked in.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
        .into_response()
}

//! Optional authentication of requests: HTTP basic (one user) or a bearer
//! token. Off unless configured; `GET /healthcheck` stays open so probes
//! work without credentials. A request without valid credentials gets 401
//! with ksqlDB's error JSON and a `WWW-Authenticate` challenge.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{AppState, KSQL_MEDIA_TYPE};

/// Credentials a client must present.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer { token: String },
}

impl std::fmt::Debug for Auth {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Bearer { .. } => f.write_str("Bearer(***)"),
        }
    }
}

impl Auth {
    /// Whether an `Authorization` header value carries these credentials.
    pub fn accepts(&self, authorization: &str) -> bool {
        let (scheme, value) = authorization.trim().split_once(' ').unwrap_or(("", ""));
        match self {
            Auth::Bearer { token } => {
                scheme.eq_ignore_ascii_case("Bearer") && same(value.trim(), token)
            }
            Auth::Basic { user, password } => {
                if !scheme.eq_ignore_ascii_case("Basic") {
                    return false;
                }
                let Ok(decoded) = sluice_engine::format::json::base64_decode(value.trim()) else {
                    return false;
                };
                let Ok(decoded) = String::from_utf8(decoded) else {
                    return false;
                };
                let Some((u, p)) = decoded.split_once(':') else {
                    return false;
                };
                // Both compared, so the time taken does not tell which
                // part was wrong.
                same(u, user) & same(p, password)
            }
        }
    }

    fn challenge(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "Basic realm=\"sluice\"",
            Auth::Bearer { .. } => "Bearer realm=\"sluice\"",
        }
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The middleware: passes requests through when auth is off, for open
/// paths, or with valid credentials.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(auth) = &state.config.auth else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthcheck" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if presented.is_some_and(|v| auth.accepts(v)) {
        return next.run(request).await;
    }
    let body = json!({
        "@type": "generic_error",
        "error_code": 40100,
        "message": "Unauthorized: valid credentials are required",
    });
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, KSQL_MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(auth.challenge()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_credentials() {
        let basic = Auth::Basic {
            user: "ann".into(),
            password: "s3cret".into(),
        };
        // base64("ann:s3cret")
        assert!(basic.accepts("Basic YW5uOnMzY3JldA=="));
        assert!(!basic.accepts("Basic YW5uOnMzY3JldDE="));
        assert!(!basic.accepts("Bearer s3cret"));
        assert!(!basic.accepts("Basic !!!"));
        assert!(!basic.accepts(""));
        let bearer = Auth::Bearer {
            token: "tok".into(),
        };
        assert!(bearer.accepts("Bearer tok"));
        assert!(!bearer.accepts("Bearer tok2"));
        assert!(!bearer.accepts("Bearer to"));
        assert_eq!(format!("{bearer:?}"), "Bearer(***)");
    }
}

//! The web UI: static assets from `server/ui/` compiled into the binary,
//! so `sluice serve` and `sluice demo` need no Node.js or files at run
//! time. `/` serves the page, `/ui/{file}` its scripts and styles. The UI
//! is plain ES modules and CSS, no build step: it reads everything through
//! the public HTTP API (pull and push queries, `/projections`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ServerError;

/// Every asset: name, media type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
    ("app.js", JS, include_str!("../ui/app.js")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("charts.js", JS, include_str!("../ui/charts.js")),
    ("matches.js", JS, include_str!("../ui/matches.js")),
    ("match.js", JS, include_str!("../ui/match.js")),
    ("leaderboards.js", JS, include_str!("../ui/leaderboards.js")),
    ("analytics.js", JS, include_str!("../ui/analytics.js")),
    ("agents.js", JS, include_str!("../ui/agents.js")),
    ("console.js", JS, include_str!("../ui/console.js")),
    ("projections.js", JS, include_str!("../ui/projections.js")),
    (
        "processing-log.js",
        JS,
        include_str!("../ui/processing-log.js"),
    ),
    ("metrics.js", JS, include_str!("../ui/metrics.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(file, ..)| *file == name) {
        Some((_, media_type, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *media_type),
                // Assets change with the binary; revalidating is cheap.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ServerError::NotFound(format!("No UI asset '{name}'.")).into_response(),
    }
}

/// `GET /`.
pub async fn index() -> Response {
    asset("index.html")
}

/// `GET /ui/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    asset(&name)
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every module a script imports is served, so a renamed file cannot
    /// break the page silently.
    #[test]
    fn every_imported_module_is_an_asset() {
        for (name, _, body) in ASSETS.iter().filter(|(n, ..)| n.ends_with(".js")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(start) = line.find("'./") else {
                    continue;
                };
                let rest = &line[start + 3..];
                let Some(end) = rest.find('\'') else { continue };
                let target = &rest[..end];
                assert!(
                    ASSETS.iter().any(|(n, ..)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
        }
    }
}

//! `GET /openapi.json` against the live router, both ways: every route the
//! router declares is documented with its methods, and every documented
//! path and method reaches a handler (not the router's 404 fallback nor its
//! 405). Also a structural check that the document is OpenAPI 3.0.
//!
//! The router's routes are read from the `.route(..)` calls in `server/src`
//! (axum cannot list them), so a route added without documentation fails
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::TopicBackend;
use sluice_server::{AppState, ServerConfig, openapi::OPENAPI_JSON, router};
use sluice_sql::KsqlContext;
use tower::ServiceExt;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn spec() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("server/openapi.json is JSON")
}

/// Path -> methods the document gives.
fn documented(spec: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = spec["paths"].as_object().expect("paths object");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("path item object")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// The server's sources, `server/src/**/*.rs`.
fn server_sources() -> Vec<(std::path::PathBuf, String)> {
    let mut pending = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut out = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("server/src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).expect("readable source");
                out.push((path, text));
            }
        }
    }
    out
}

/// Path -> methods of every `.route(..)` in the server's sources. Routers
/// combined with `nest` or `merge` would hide paths from this reading, so
/// they fail the test until it learns them.
fn declared() -> BTreeMap<String, BTreeSet<String>> {
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, source) in server_sources() {
        for combinator in [".nest(", ".merge(", ".nest_service(", ".route_service("] {
            assert!(
                !source.contains(combinator),
                "{}: {combinator}..) hides routes from tests/openapi.rs; teach it to read them",
                file.display()
            );
        }
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(\"") {
            rest = &rest[at + ".route(\"".len()..];
            let end = rest.find('"').expect("closing quote of a route path");
            let path = rest[..end].to_string();
            // The method router runs to the parenthesis closing `.route(`.
            let mut depth = 1usize;
            let mut close = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[end..close];
            let methods = routes.entry(path).or_default();
            for m in METHODS.iter().chain(&["any"]) {
                let bytes = call.as_bytes();
                let mut from = 0;
                while let Some(i) = call[from..].find(&format!("{m}(")) {
                    let i = from + i;
                    let before = if i == 0 { b' ' } else { bytes[i - 1] };
                    if !(before.is_ascii_alphanumeric() || before == b'_' || before == b':') {
                        methods.insert(m.to_string());
                    }
                    from = i + 1;
                }
            }
        }
    }
    assert!(!routes.is_empty(), "no routes found in server/src");
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_declared() {
    let spec = spec();
    let documented = documented(&spec);
    let declared = declared();
    for (path, methods) in &declared {
        assert!(
            !methods.contains("any"),
            "{path} takes any method: document it per method"
        );
        let doc = documented
            .get(path)
            .unwrap_or_else(|| panic!("{path} is routed but missing from server/openapi.json"));
        assert_eq!(methods, doc, "methods of {path}: router vs document");
    }
    for path in documented.keys() {
        assert!(
            declared.contains_key(path),
            "{path} is documented but not routed"
        );
    }
}

fn app() -> axum::Router {
    let backend: Arc<dyn TopicBackend> = Arc::new(sluice_connectors::EmbeddedTopics::new());
    let runtime = Arc::new(Runtime::new(
        backend,
        Arc::new(ProcessingLog::default()),
        16,
    ));
    router(AppState::new(
        Arc::new(KsqlContext::new(runtime)),
        "test",
        ServerConfig::default(),
    ))
    // Marks the router's own "no such path" answer, which otherwise looks
    // like a handler's 404 (an unknown projection).
    .fallback(|| async { StatusCode::IM_A_TEAPOT })
}

/// A concrete URL for a templated path: each `{param}` takes the
/// parameter's `example`.
fn concrete(spec: &Value, path: &str, operation: &Value) -> String {
    let mut params: Vec<Value> = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    params.extend(
        spec["paths"][path]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let mut url = path.to_string();
    for p in params {
        let p = resolve(spec, &p);
        if p["in"] == "path" {
            let name = p["name"].as_str().expect("parameter name");
            let example = p["example"]
                .as_str()
                .unwrap_or_else(|| panic!("path parameter {name} of {path} needs an example"));
            url = url.replace(&format!("{{{name}}}"), example);
        }
    }
    assert!(!url.contains('{'), "{path}: undeclared path parameter");
    url
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => spec
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let spec = spec();
    let app = app();
    for (path, methods) in documented(&spec) {
        for method in METHODS {
            let operation = &spec["paths"][&path][*method];
            let url = if operation.is_null() {
                concrete(
                    &spec,
                    &path,
                    &spec["paths"][&path][methods.first().expect("a method")],
                )
            } else {
                concrete(&spec, &path, operation)
            };
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&url)
                .body(Body::from("{}"))
                .expect("request");
            // Only the status line matters: streaming bodies are not read.
            let status = app
                .clone()
                .oneshot(request)
                .await
                .expect("response")
                .status();
            if methods.contains(*method) {
                assert!(
                    status != StatusCode::IM_A_TEAPOT && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{} {url} is documented but answered {status}",
                    method.to_uppercase()
                );
            } else if *method != "head" {
                // axum answers HEAD wherever GET is routed.
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{} {url} is not documented but answered",
                    method.to_uppercase()
                );
            }
        }
    }
    let request = Request::builder()
        .uri("/no/such/path")
        .body(Body::empty())
        .expect("request");
    let status = app.oneshot(request).await.expect("response").status();
    assert_eq!(status, StatusCode::IM_A_TEAPOT, "the fallback marker works");
}

/// Every `$ref` in `v` points into the document.
fn check_refs(spec: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    match child.as_str() {
                        Some(r) if r.starts_with("#/") && spec.pointer(&r[1..]).is_some() => {}
                        _ => problems.push(format!("{at}: unresolved $ref {child}")),
                    }
                } else {
                    check_refs(spec, child, &format!("{at}/{k}"), problems);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_refs(spec, child, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// The structure OpenAPI 3.0 requires of the parts this document uses.
#[test]
fn document_is_structurally_openapi_3_0() {
    let spec = spec();
    let mut problems = Vec::new();
    if !spec["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0."))
    {
        problems.push("openapi must be a 3.0.x version string".into());
    }
    for field in ["title", "version"] {
        if !spec["info"][field].is_string() {
            problems.push(format!("info.{field} must be a string"));
        }
    }
    let allowed_top = [
        "openapi",
        "info",
        "servers",
        "paths",
        "components",
        "security",
        "tags",
        "externalDocs",
    ];
    for key in spec.as_object().expect("object").keys() {
        if !allowed_top.contains(&key.as_str()) && !key.starts_with("x-") {
            problems.push(format!("unknown top-level field {key}"));
        }
    }
    let mut operation_ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths object") {
        if !path.starts_with('/') {
            problems.push(format!("path {path} must start with /"));
        }
        for (method, operation) in item.as_object().expect("path item") {
            if method == "parameters" || method == "summary" || method == "description" {
                continue;
            }
            if !METHODS.contains(&method.as_str()) {
                problems.push(format!("{path}: unknown field {method}"));
                continue;
            }
            let at = format!("{method} {path}");
            match operation["operationId"].as_str() {
                Some(id) if operation_ids.insert(id.to_string()) => {}
                Some(id) => problems.push(format!("{at}: duplicate operationId {id}")),
                None => problems.push(format!("{at}: no operationId")),
            }
            let responses = operation["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                problems.push(format!("{at}: responses must be a non-empty object"));
            }
            for (code, response) in responses.into_iter().flatten() {
                let valid = code == "default"
                    || (code.len() == 3 && code.chars().all(|c| c.is_ascii_digit() || c == 'X'));
                if !valid {
                    problems.push(format!("{at}: bad response code {code}"));
                }
                if !resolve(&spec, response)["description"].is_string() {
                    problems.push(format!("{at} {code}: a response needs a description"));
                }
            }
            if let Some(body) = operation.get("requestBody")
                && body["content"].as_object().is_none_or(|c| c.is_empty())
            {
                problems.push(format!("{at}: requestBody needs content"));
            }
            for p in operation["parameters"].as_array().into_iter().flatten() {
                let p = resolve(&spec, p);
                let location = p["in"].as_str().unwrap_or_default();
                if !["path", "query", "header", "cookie"].contains(&location) {
                    problems.push(format!("{at}: parameter location {location}"));
                }
                if location == "path" && p["required"] != Value::Bool(true) {
                    problems.push(format!("{at}: path parameters must be required"));
                }
                if !p["name"].is_string() || !(p["schema"].is_object() || p["content"].is_object())
                {
                    problems.push(format!("{at}: a parameter needs a name and a schema"));
                }
            }
        }
    }
    check_refs(&spec, &spec, "#", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_document_is_served() {
    let request = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let response = app().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .expect("body");
    let served: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(served, spec());
}

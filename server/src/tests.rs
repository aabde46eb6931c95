use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::TopicBackend;
use sluice_sql::KsqlContext;
use tower::ServiceExt;

use super::{AppState, ServerConfig, router};

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
}

async fn call(app: axum::Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn ksql_runs_statements_and_lists_streams() {
    let app = app();
    let (status, body) = call(
        app.clone(),
        "POST",
        "/ksql",
        r#"{"ksql": "CREATE STREAM s (id INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON', partitions=2); SHOW STREAMS;"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["@type"], "currentStatus");
    assert_eq!(body[0]["commandStatus"]["message"], "Stream created");
    assert_eq!(body[1]["@type"], "streams");
    assert_eq!(body[1]["streams"][0]["name"], "S");
    assert_eq!(body[1]["streams"][0]["valueFormat"], "JSON");
}

#[tokio::test]
async fn bad_sql_is_a_statement_error_with_position() {
    let (status, body) = call(
        app(),
        "POST",
        "/ksql",
        r#"{"ksql": "CREATE STREAM s (id INT KEY) WITH (kafka_topic=);"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["@type"], "statement_error");
    assert_eq!(body["error_code"], 40001);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 1:"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_body_and_unknown_path_answer_in_ksql_shape() {
    let (status, body) = call(app(), "POST", "/ksql", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], 40000);
    let (status, body) = call(app(), "GET", "/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error_code"], 40400);
    let (status, body) = call(app(), "GET", "/info", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["KsqlServerInfo"]["serverStatus"], "RUNNING");
}

#[tokio::test]
async fn command_statuses_by_id_and_in_full() {
    let app = app();
    let (status, body) = call(
        app.clone(),
        "POST",
        "/ksql",
        r#"{"ksql": "CREATE STREAM s (id INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON', partitions=1); CREATE STREAM t AS SELECT * FROM s; SHOW STREAMS;"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["commandId"], "stream/S/create");
    assert_eq!(body[1]["commandId"], "stream/T/create");
    assert!(body[2].get("commandId").is_none(), "{body}");
    let (status, body) = call(app.clone(), "GET", "/status", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"commandStatuses": {"stream/S/create": "SUCCESS", "stream/T/create": "SUCCESS"}})
    );
    let (status, body) = call(app.clone(), "GET", "/status/stream/S/create", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"status": "SUCCESS", "message": "Stream created"})
    );
    // The name as ksqlDB quotes it, and a query started by the command.
    let (status, body) = call(app.clone(), "GET", "/status/stream/%60T%60/create", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "SUCCESS");
    assert!(body["queryId"].is_string(), "{body}");
    let (status, body) = call(app.clone(), "GET", "/status/stream/NOPE/create", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error_code"], 40400);
    assert_eq!(body["message"], "Command not found");
    let (status, body) = call(app.clone(), "GET", "/status/bogus/S/create", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], 40000);
    // A drop is a command of its own.
    let (status, _) = call(app.clone(), "POST", "/ksql", r#"{"ksql": "CREATE STREAM u (v STRING) WITH (kafka_topic='u', value_format='JSON', partitions=1); DROP STREAM u;"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(app.clone(), "GET", "/status/stream/U/drop", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_methods_answer_405_in_ksql_shape() {
    for (method, path) in [
        ("POST", "/info"),
        ("POST", "/healthcheck"),
        ("POST", "/status"),
        ("DELETE", "/projections"),
        ("GET", "/ksql"),
        ("GET", "/query-stream"),
        ("POST", "/ws/query"),
    ] {
        let (status, body) = call(app(), method, path, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(body["error_code"], 40500, "{method} {path}: {body}");
        assert_eq!(body["@type"], "generic_error");
    }
}

#[tokio::test]
async fn healthcheck_reports_every_subsystem() {
    let (status, body) = call(app(), "GET", "/healthcheck", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["isHealthy"], true);
    assert_eq!(body["details"]["queries"]["failed"], 0);
    assert_eq!(body["details"]["metastore"]["isHealthy"], true);
}

#[tokio::test]
async fn describe_function_answers_with_its_documentation() {
    let (status, body) = call(
        app(),
        "POST",
        "/ksql",
        r#"{"ksql": "DESCRIBE FUNCTION ucase;"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entity = &body[0];
    assert_eq!(entity["@type"], "describe_function");
    assert_eq!(entity["name"], "UCASE");
    assert_eq!(entity["type"], "SCALAR");
    assert_eq!(entity["functions"][0]["returnType"], "STRING");
    assert!(
        entity["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    let (status, body) = call(
        app(),
        "POST",
        "/ksql",
        r#"{"ksql": "DESCRIBE FUNCTION no_such_function;"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["@type"], "statement_error");
}

#[tokio::test]
async fn describe_names_the_window_type_of_a_windowed_table() {
    let app = app();
    let (status, body) = call(
        app.clone(),
        "POST",
        "/ksql",
        r#"{"ksql": "CREATE STREAM s (id INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON', partitions=1); CREATE TABLE per_minute AS SELECT id, COUNT(*) AS n FROM s WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY id EMIT CHANGES; DESCRIBE per_minute; DESCRIBE s;"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[2]["sourceDescription"]["windowType"], "TUMBLING");
    assert_eq!(body[3]["sourceDescription"]["windowType"], Value::Null);
}

//! Tests of `/query`, `/query-stream` and `/close-query`: pull queries
//! over projections and push queries driven by the runtime.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::TopicBackend;
use sluice_sql::KsqlContext;
use tower::ServiceExt;

use crate::push::PushLimits;
use crate::{AppState, ServerConfig, router};

/// Generous bound on any single wait, so a bug fails the test instead of
/// hanging it.
const WAIT: Duration = Duration::from_secs(30);

fn state(config: ServerConfig) -> AppState {
    let backend: Arc<dyn TopicBackend> = Arc::new(sluice_connectors::EmbeddedTopics::new());
    let runtime = Arc::new(Runtime::new(
        backend,
        Arc::new(ProcessingLog::default()),
        16,
    ));
    AppState::new(Arc::new(KsqlContext::new(runtime)), "test", config)
}

/// Executes statements and lets the runtime process everything.
fn run(state: &AppState, sql: &str) {
    if let Err(e) = state.ctx.execute(sql) {
        panic!("{sql}: {e}");
    }
    state.ctx.runtime().run_until_idle();
}

fn request(path: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

async fn call(state: &AppState, path: &str, body: Value) -> (StatusCode, String) {
    let response = router(state.clone())
        .oneshot(request(path, body))
        .await
        .expect("response");
    let status = response.status();
    let bytes = tokio::time::timeout(WAIT, axum::body::to_bytes(response.into_body(), 1 << 24))
        .await
        .expect("body in time")
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A pull query through `/query`: the parsed array.
async fn pull(state: &AppState, sql: &str) -> Vec<Value> {
    let (status, body) = call(state, "/query", json!({"ksql": sql})).await;
    assert_eq!(status, StatusCode::OK, "{sql}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{sql}: {e}: {body}"))
}

fn rows(answer: &[Value]) -> Vec<Value> {
    answer
        .iter()
        .filter_map(|m| m.get("row").map(|r| r["columns"].clone()))
        .collect()
}

fn users(state: &AppState) {
    run(
        state,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name STRING, region STRING, score INT)
           WITH (kafka_topic='users', value_format='JSON', partitions=2);
         INSERT INTO users (id, name, region, score) VALUES (1, 'ann', 'north', 10);
         INSERT INTO users (id, name, region, score) VALUES (2, 'bob', 'south', 20);
         INSERT INTO users (id, name, region, score) VALUES (3, 'cy', 'north', 30);
         INSERT INTO users (id, name, region, score) VALUES (2, 'bob', 'east', 25);",
    );
}

#[tokio::test]
async fn pull_key_lookup_has_ksqldb_header_and_latest_value() {
    let state = state(ServerConfig::default());
    users(&state);
    let answer = pull(&state, "select * from users where id = 2;").await;
    assert_eq!(
        answer[0]["header"]["schema"],
        "`ID` BIGINT KEY, `NAME` STRING, `REGION` STRING, `SCORE` INTEGER"
    );
    assert!(answer[0]["header"]["queryId"].is_string());
    assert_eq!(rows(&answer), vec![json!([2, "bob", "east", 25])]);
    // Tables end without a final message.
    assert_eq!(answer.len(), 2);
}

#[tokio::test]
async fn pull_with_predicate_order_by_and_limit() {
    let state = state(ServerConfig::default());
    users(&state);
    let answer = pull(
        &state,
        "SELECT name, score * 2 FROM users WHERE score > 15 ORDER BY score DESC LIMIT 2;",
    )
    .await;
    assert_eq!(
        answer[0]["header"]["schema"],
        "`NAME` STRING, `KSQL_COL_0` INTEGER"
    );
    assert_eq!(rows(&answer), vec![json!(["cy", 60]), json!(["bob", 50])]);
}

#[tokio::test]
async fn pull_aggregate_and_group_by() {
    let state = state(ServerConfig::default());
    users(&state);
    let answer = pull(
        &state,
        "SELECT region, COUNT(*) AS n, SUM(score) AS total FROM users GROUP BY region ORDER BY region;",
    )
    .await;
    assert_eq!(
        answer[0]["header"]["schema"],
        "`REGION` STRING, `N` BIGINT, `TOTAL` BIGINT"
    );
    assert_eq!(
        rows(&answer),
        vec![json!(["east", 1, 25]), json!(["north", 2, 40])]
    );
}

#[tokio::test]
async fn pull_joins_two_projections() {
    let state = state(ServerConfig::default());
    users(&state);
    run(
        &state,
        "CREATE TABLE regions (region STRING PRIMARY KEY, label STRING)
           WITH (kafka_topic='regions', value_format='JSON', partitions=1);
         INSERT INTO regions (region, label) VALUES ('north', 'North');
         INSERT INTO regions (region, label) VALUES ('east', 'East');",
    );
    let answer = pull(
        &state,
        "SELECT u.name, r.label FROM users u JOIN regions r ON u.region = r.region ORDER BY u.name;",
    )
    .await;
    assert_eq!(
        rows(&answer),
        vec![
            json!(["ann", "North"]),
            json!(["bob", "East"]),
            json!(["cy", "North"])
        ]
    );
}

#[tokio::test]
async fn pull_windowed_table_lookup_names_the_window() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM clicks (user STRING KEY, page STRING)
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_minute AS SELECT user, COUNT(*) AS count FROM clicks
           WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;",
    );
    for (user, ts) in [("a", 1_000), ("a", 2_000), ("b", 3_000), ("a", 61_000)] {
        let sql = format!("INSERT INTO clicks (user, page, ROWTIME) VALUES ('{user}', 'p', {ts});");
        run(&state, &sql);
    }
    let answer = pull(
        &state,
        "SELECT * FROM per_minute WHERE user = 'a' AND WINDOWSTART = 0;",
    )
    .await;
    assert_eq!(
        answer[0]["header"]["schema"],
        "`USER` STRING KEY, `WINDOWSTART` BIGINT KEY, `WINDOWEND` BIGINT KEY, `COUNT` BIGINT"
    );
    assert_eq!(rows(&answer), vec![json!(["a", 0, 60_000, 2])]);
    let answer = pull(&state, "SELECT * FROM per_minute WHERE user = 'a';").await;
    assert_eq!(rows(&answer).len(), 2);
}

#[tokio::test]
async fn pull_over_a_stream_scans_it_and_completes() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
         INSERT INTO s (k, v) VALUES (1, 10);
         INSERT INTO s (k, v) VALUES (1, 11);",
    );
    let answer = pull(&state, "SELECT * FROM s;").await;
    assert_eq!(answer[0]["header"]["schema"], "`K` INTEGER, `V` INTEGER");
    assert_eq!(rows(&answer), vec![json!([1, 10]), json!([1, 11])]);
    assert_eq!(answer[3]["finalMessage"], "Query Completed");
    // A LIMIT that cuts the scan short says so.
    let answer = pull(&state, "SELECT * FROM s LIMIT 1;").await;
    assert_eq!(rows(&answer).len(), 1);
    assert_eq!(answer[2]["finalMessage"], "Limit Reached");
    let answer = pull(&state, "SELECT CAST(v AS STRING) AS t FROM s LIMIT 5;").await;
    assert_eq!(answer[0]["header"]["schema"], "`T` STRING");
    assert_eq!(answer[3]["finalMessage"], "Query Completed");
}

#[tokio::test]
async fn bad_queries_are_statement_errors() {
    let state = state(ServerConfig::default());
    users(&state);
    for (sql, needle) in [
        ("SELECT * FROM nope;", "NOPE does not exist"),
        ("SELECT nope FROM users;", "NOPE"),
        ("SELEKT * FROM users;", ""),
        (
            "CREATE STREAM x (a INT) WITH (kafka_topic='x', value_format='JSON', partitions=1);",
            "not a query",
        ),
    ] {
        let (status, body) = call(&state, "/query", json!({"ksql": sql})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        let body: Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(body["error_code"], 40001, "{sql}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{sql}: {body}"
        );
    }
    let (status, body) = call(&state, "/query", json!({"sql": "SELECT 1;"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A push query the planner rejects names its statement.
    let sql = "SELECT nope FROM users EMIT CHANGES;";
    let (status, body) = call(&state, "/query", json!({"ksql": sql})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(body["statementText"], sql);
    assert_eq!(body["error_code"], 40001);
}

#[tokio::test]
async fn query_stream_pull_is_delimited_or_json() {
    let state = state(ServerConfig::default());
    users(&state);
    let (status, body) = call(
        &state,
        "/query-stream",
        json!({"sql": "SELECT id, name FROM users WHERE id = 1;"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines[0]["columnNames"], json!(["ID", "NAME"]));
    assert_eq!(lines[0]["columnTypes"], json!(["BIGINT", "STRING"]));
    assert_eq!(lines[1], json!([1, "ann"]));

    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/query-stream")
                .header("accept", "application/json")
                .body(Body::from(
                    json!({"sql": "SELECT id FROM users ORDER BY id;"}).to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let all: Value = serde_json::from_slice(&bytes).expect("json array");
    assert_eq!(all[0]["columnNames"], json!(["ID"]));
    assert_eq!(all[1], json!([1]));
    assert_eq!(all.as_array().map(Vec::len), Some(4));
}

/// Reads a streamed body until it ends.
async fn read_to_end(body: Body) -> String {
    let mut stream = body.into_data_stream();
    let mut out = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
    {
        out.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    out
}

#[tokio::test]
async fn push_query_streams_rows_until_its_limit() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
         INSERT INTO s (k, v) VALUES ('old', 0);",
    );
    let response = router(state.clone())
        .oneshot(request(
            "/query",
            json!({"ksql": "SELECT v, k FROM s WHERE v > 1 EMIT CHANGES LIMIT 2;"}),
        ))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(state.push.running(), 1);
    // From the latest offset: the row inserted before is not seen.
    run(
        &state,
        "INSERT INTO s (k, v) VALUES ('a', 1);
         INSERT INTO s (k, v) VALUES ('b', 2);
         INSERT INTO s (k, v) VALUES ('c', 3);
         INSERT INTO s (k, v) VALUES ('d', 4);",
    );
    let body = read_to_end(response.into_body()).await;
    let answer: Vec<Value> = serde_json::from_str(&body).expect(&body);
    assert_eq!(answer[0]["header"]["schema"], "`V` INTEGER, `K` STRING");
    assert_eq!(rows(&answer), vec![json!([2, "b"]), json!([3, "c"])]);
    assert_eq!(answer[3]["finalMessage"], "Limit Reached");
    assert_eq!(state.push.running(), 0);
    // The transient query is gone from the engine, and its topic too.
    assert!(state.ctx.runtime().states().is_empty());
    assert!(
        state
            .ctx
            .backend()
            .list_topics()
            .iter()
            .all(|t| !t.name.starts_with("_sluice_transient"))
    );
}

#[tokio::test]
async fn push_query_over_a_table_marks_tombstones_from_earliest() {
    let state = state(ServerConfig::default());
    users(&state);
    let response = router(state.clone())
        .oneshot(request(
            "/query",
            json!({"ksql": "SELECT * FROM users EMIT CHANGES LIMIT 4;",
                   "streamsProperties": {"auto.offset.reset": "earliest"}}),
        ))
        .await
        .expect("response");
    state.ctx.runtime().run_until_idle();
    let body = read_to_end(response.into_body()).await;
    let answer: Vec<Value> = serde_json::from_str(&body).expect(&body);
    assert_eq!(
        answer[0]["header"]["schema"],
        "`ID` BIGINT, `NAME` STRING, `REGION` STRING, `SCORE` INTEGER"
    );
    assert_eq!(rows(&answer).len(), 4);
    assert_eq!(answer[5]["finalMessage"], "Limit Reached");
}

#[tokio::test]
async fn slow_push_client_is_cut_off_without_stalling_the_engine() {
    let state = state(ServerConfig {
        push: PushLimits {
            max_queries: 10,
            buffer_rows: 2,
        },
        ..ServerConfig::default()
    });
    run(
        &state,
        "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);",
    );
    let response = router(state.clone())
        .oneshot(request(
            "/query-stream",
            json!({"sql": "SELECT * FROM s EMIT CHANGES;"}),
        ))
        .await
        .expect("response");
    // The client reads nothing while five rows arrive: the engine runs to
    // idle regardless and the query is stopped.
    for i in 0..5 {
        run(&state, &format!("INSERT INTO s (k, v) VALUES ({i}, {i});"));
    }
    assert_eq!(state.push.running(), 0);
    let body = read_to_end(response.into_body()).await;
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines[0]["columnNames"], json!(["K", "V"]));
    let last = lines.last().expect("error line");
    assert_eq!(last["error_code"], 50000, "{body}");
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not keep up"),
        "{body}"
    );
}

#[tokio::test]
async fn push_query_limit_and_close_query() {
    let state = state(ServerConfig {
        push: PushLimits {
            max_queries: 1,
            buffer_rows: 100,
        },
        ..ServerConfig::default()
    });
    run(
        &state,
        "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);",
    );
    let response = router(state.clone())
        .oneshot(request(
            "/query-stream",
            json!({"sql": "SELECT * FROM s EMIT CHANGES;"}),
        ))
        .await
        .expect("response");
    let mut stream = response.into_body().into_data_stream();
    let header = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("header in time")
        .expect("header")
        .expect("bytes");
    let header: Value = serde_json::from_slice(&header).expect("header json");
    let id = header["queryId"].as_str().expect("query id").to_string();

    // A second push query is over the limit.
    let (status, body) = call(
        &state,
        "/query-stream",
        json!({"sql": "SELECT * FROM s EMIT CHANGES;"}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    run(&state, "INSERT INTO s (k, v) VALUES (7, 70);");
    let (status, _) = call(&state, "/close-query", json!({"queryId": id})).await;
    assert_eq!(status, StatusCode::OK);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("chunk in time")
    {
        rest.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    assert_eq!(rest, "[7,70]\n");
    assert_eq!(state.push.running(), 0);
    let (status, body) = call(&state, "/close-query", json!({"queryId": id})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The closed query's slot is free again.
    let response = router(state.clone())
        .oneshot(request(
            "/query-stream",
            json!({"sql": "SELECT * FROM s EMIT CHANGES;"}),
        ))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn dropping_a_push_response_stops_the_query() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);",
    );
    let response = router(state.clone())
        .oneshot(request(
            "/query",
            json!({"ksql": "SELECT * FROM s EMIT CHANGES;"}),
        ))
        .await
        .expect("response");
    assert_eq!(state.push.running(), 1);
    drop(response);
    assert_eq!(state.push.running(), 0);
    assert!(state.ctx.runtime().states().is_empty());
}

#[tokio::test]
async fn inserts_stream_acks_each_row_and_rejects_bad_ones() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM s (k INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON', partitions=1);",
    );
    let body = "{\"target\": \"s\"}\n{\"K\": 1, \"v\": \"one\", \"ROWTIME\": 5}\n{\"k\": \"x\"}\n{\"nope\": 1}\n{\"k\": 2, \"v\": \"two\"}";
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/inserts-stream")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let acks = read_to_end(response.into_body()).await;
    let acks: Vec<Value> = acks
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(acks[0], json!({"status": "ok", "seq": 0}));
    assert_eq!(acks[1]["status"], "error");
    assert_eq!(acks[1]["seq"], 1);
    assert_eq!(acks[1]["error_code"], 40000);
    assert!(
        acks[2]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope")
    );
    assert_eq!(acks[3], json!({"status": "ok", "seq": 3}));
    state.ctx.runtime().run_until_idle();
    let answer = pull(&state, "SELECT k, v, ROWTIME FROM s ORDER BY k;").await;
    assert_eq!(rows(&answer)[0], json!([1, "one", 5]));
    assert_eq!(rows(&answer)[1][1], "two");

    // An unknown target is answered with one error line.
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/inserts-stream")
                .body(Body::from("{\"target\": \"missing\"}\n{}"))
                .expect("request"),
        )
        .await
        .expect("response");
    let reply = read_to_end(response.into_body()).await;
    let reply: Value = serde_json::from_str(reply.trim()).expect("error line");
    assert_eq!(reply["error_code"], 40000);
}

async fn get(state: &AppState, path: &str) -> (StatusCode, Value) {
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
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
async fn projections_list_rows_and_key_lookup() {
    let state = state(ServerConfig::default());
    users(&state);
    let (status, list) = get(&state, "/projections").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "USERS");
    assert_eq!(list[0]["type"], "TABLE");
    assert_eq!(list[0]["rows"], 3);
    assert_eq!(
        list[0]["columns"][0],
        json!({"name": "ID", "type": "BIGINT", "key": true})
    );

    let (status, one) = get(&state, "/projections/users?key=2").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        one["rows"],
        json!([{"ID": 2, "NAME": "bob", "REGION": "east", "SCORE": 25}])
    );
    let (_, limited) = get(&state, "/projections/USERS?limit=2").await;
    assert_eq!(limited["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(limited["totalRows"], 3);

    let (status, body) = get(&state, "/projections/users?key=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get(&state, "/projections/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_code"], 40400);
}

#[tokio::test]
async fn projection_changes_arrive_as_server_sent_events() {
    let state = state(ServerConfig::default());
    users(&state);
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .uri("/projections/users/changes")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut stream = response.into_body().into_data_stream();
    let mut next = async || {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event in time")
            .expect("event")
            .expect("bytes");
        String::from_utf8_lossy(&chunk).into_owned()
    };
    assert!(next().await.starts_with("event: header\ndata: {"));
    run(
        &state,
        "INSERT INTO users (id, name, region, score) VALUES (9, 'zed', 'west', 1);",
    );
    assert_eq!(next().await, "event: row\ndata: [9,\"zed\",\"west\",1]\n\n");
}

/// `/query-stream` over HTTP/2 cleartext (prior knowledge), on a socket.
#[tokio::test]
async fn query_stream_over_http2_cleartext() {
    let state = state(ServerConfig::default());
    users(&state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/query-stream"))
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send");
    send.send_data(
        bytes::Bytes::from(json!({"sql": "SELECT id FROM users WHERE id = 3;"}).to_string()),
        true,
    )
    .expect("body");
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("data in time")
    {
        let chunk = chunk.expect("chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1], "[3]");
    server.abort();
}

#[tokio::test]
async fn auth_when_configured_guards_everything_but_healthcheck() {
    let state = state(ServerConfig {
        auth: Some(crate::auth::Auth::Bearer {
            token: "tok".into(),
        }),
        ..ServerConfig::default()
    });
    let (status, body) = call(&state, "/query", json!({"ksql": "SELECT 1;"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error_code"], 40100);
    let (status, _) = get(&state, "/healthcheck").await;
    assert_eq!(status, StatusCode::OK);
    let response = router(state.clone())
        .oneshot(
            Request::builder()
                .uri("/info")
                .header("authorization", "Bearer tok")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    // Off by default.
    let (status, _) = get(&self::state(ServerConfig::default()), "/info").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn query_stream_and_projection_errors() {
    let state = state(ServerConfig::default());
    users(&state);
    for (body, code) in [
        (json!({"sql": "SELECT * FROM nope;"}), 40001),
        (json!({"sql": "SELEKT 1;"}), 40001),
        (
            json!({"sql": "SELECT nope FROM users EMIT CHANGES;"}),
            40001,
        ),
        (json!({"ksql": "SELECT * FROM users;"}), 40000),
    ] {
        let (status, answer) = call(&state, "/query-stream", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let answer: Value = serde_json::from_str(&answer).expect("json error");
        assert_eq!(answer["error_code"], code, "{body}: {answer}");
    }
    let (status, body) = get(&state, "/projections/nope/changes").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_code"], 40400);
    let (status, body) = call(&state, "/close-query", json!({"id": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn pull_window_bounds_compare_with_text_timestamps_and_plus_concatenates() {
    let state = state(ServerConfig::default());
    run(
        &state,
        "CREATE STREAM clicks (user STRING KEY, page STRING)
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_minute AS SELECT user, COUNT(*) AS count FROM clicks
           WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;",
    );
    for ts in [1_000, 61_000, 121_000] {
        run(
            &state,
            &format!("INSERT INTO clicks (user, page, ROWTIME) VALUES ('a', 'p', {ts});"),
        );
    }
    let answer = pull(
        &state,
        "SELECT WINDOWSTART FROM per_minute WHERE user = 'a' AND WINDOWSTART >= '1970-01-01T00:01' AND WINDOWEND <= '1970-01-01T00:02:00.000+0000';",
    )
    .await;
    assert_eq!(rows(&answer), vec![json!([60_000])]);
    let answer = pull(
        &state,
        "SELECT COUNT(*) FROM per_minute WHERE WINDOWSTART BETWEEN '1970' AND '1970-01-01T00:01';",
    )
    .await;
    assert_eq!(rows(&answer), vec![json!([2])]);
    let answer = pull(
        &state,
        "SELECT user + '-' + 'x' AS tag FROM per_minute WHERE user = 'a' AND WINDOWSTART = 0;",
    )
    .await;
    assert_eq!(rows(&answer), vec![json!(["a-x"])]);
    let (status, body) = call(
        &state,
        "/query",
        json!({"ksql": "SELECT * FROM per_minute WHERE WINDOWSTART > 'yesterday';"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("Failed to parse timestamp 'yesterday'"),
        "{body}"
    );
}

#[tokio::test]
async fn pull_queries_refuse_functions_of_unbounded_size() {
    let state = state(ServerConfig::default());
    users(&state);
    for sql in [
        "SELECT array_repeat(1, 2147483647) FROM users;",
        "SELECT RANGE(1, 2000000000) FROM users;",
    ] {
        let (status, body) = call(&state, "/query", json!({"ksql": sql})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert!(body.contains("not available in pull queries"), "{body}");
    }
    // ksqlDB's GENERATE_SERIES is bounded, and still answers.
    let answer = pull(
        &state,
        "SELECT GENERATE_SERIES(1, 3) AS s FROM users WHERE id = 1;",
    )
    .await;
    assert_eq!(rows(&answer), vec![json!([[1, 2, 3]])]);
}

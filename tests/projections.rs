//! The product's projections (`queries/*.sql`) on small hand-made event
//! sets: each table and derived stream is checked row by row through the
//! server's pull-query API, as the UI reads them.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use serde_json::{Value, json};
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record};
use sluice_server::{AppState, ServerConfig, router};
use sluice_sql::KsqlContext;
use tower::ServiceExt;

/// A minute boundary, so windows start at T0.
const T0: i64 = 1_800_000_000_000;

/// Every source `queries/` defines, by kind.
fn load_queries(ctx: &KsqlContext) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("queries/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file).expect("read");
        if let Err(e) = ctx.execute(&sql) {
            panic!("{}:{}:{}: {}", file.display(), e.line, e.column, e.error);
        }
    }
}

struct Product {
    ctx: Arc<KsqlContext>,
    app: axum::Router,
}

impl Product {
    fn new() -> Self {
        let ctx = Arc::new(KsqlContext::with_backend(
            Arc::new(EmbeddedTopics::new()),
            64,
        ));
        let state = AppState::new(ctx.clone(), "test", ServerConfig::default());
        load_queries(&ctx);
        Product {
            app: router(state),
            ctx,
        }
    }

    fn produce(&self, topic: &str, key: &str, value: Value) {
        let timestamp = value["event_ts"].as_i64().expect("event_ts");
        self.produce_raw(
            topic,
            key,
            serde_json::to_vec(&value).expect("json"),
            timestamp,
        );
    }

    fn produce_raw(&self, topic: &str, key: &str, value: Vec<u8>, timestamp: i64) {
        let record = Record {
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(value)),
            timestamp,
            headers: Vec::new(),
        };
        self.ctx
            .runtime()
            .backend()
            .produce(topic, vec![(Partitioning::ByKey, record)])
            .expect("produce");
    }

    /// Rows of a pull query as JSON objects keyed by lower-case column.
    async fn rows(&self, sql: &str) -> Vec<Value> {
        self.ctx.runtime().run_until_idle();
        let request = Request::builder()
            .method("POST")
            .uri("/query-stream")
            .header("accept", "application/json")
            .body(Body::from(json!({ "sql": sql }).to_string()))
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("response");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("json answer");
        let Some([header, rows @ ..]) = body.as_array().map(Vec::as_slice) else {
            panic!("{sql}: {body}");
        };
        let names: Vec<String> = header["columnNames"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_lowercase())
            .collect();
        rows.iter()
            .map(|row| {
                let cells = row.as_array().expect("row");
                Value::Object(names.iter().cloned().zip(cells.iter().cloned()).collect())
            })
            .collect()
    }
}

/// Two finished matches, one in play, and a malformed record between.
fn match_events(p: &Product) {
    let e = |p: &Product, id: &str, t: i64, mut v: Value| {
        v["event_ts"] = json!(T0 + t);
        p.produce("match.events", id, v);
    };
    let players_m1 = json!([
        {"id": "ada", "kind": "HUMAN", "model": null},
        {"id": "bot-gpt-4o", "kind": "ROBOT", "model": "gpt-4o"},
        {"id": "bob", "kind": "HUMAN", "model": null}]);
    e(
        p,
        "m1",
        0,
        json!({"event_type": "MATCH_CREATED", "mode": "classic"}),
    );
    e(
        p,
        "m1",
        1_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "ada", "player_kind": "HUMAN"}),
    );
    e(
        p,
        "m1",
        2_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "bot-gpt-4o", "player_kind": "ROBOT", "model": "gpt-4o"}),
    );
    e(
        p,
        "m1",
        3_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "bob", "player_kind": "HUMAN"}),
    );
    e(
        p,
        "m1",
        10_000,
        json!({"event_type": "MESSAGE_SENT", "player_id": "ada", "player_kind": "HUMAN", "text": "hi"}),
    );
    e(
        p,
        "m1",
        10_800,
        json!({"event_type": "ROBOT_RESPONSE", "player_id": "bot-gpt-4o", "player_kind": "ROBOT", "model": "gpt-4o", "text": "hello", "latency_ms": 800, "tokens": 40}),
    );
    p.produce_raw(
        "match.events",
        "m1",
        b"{\"event_type\": \"MESSAGE_SE".to_vec(),
        T0 + 15_000,
    );
    e(
        p,
        "m1",
        20_000,
        json!({"event_type": "MESSAGE_SENT", "player_id": "bob", "player_kind": "HUMAN", "text": "who?"}),
    );
    e(
        p,
        "m1",
        21_200,
        json!({"event_type": "ROBOT_RESPONSE", "player_id": "bot-gpt-4o", "player_kind": "ROBOT", "model": "gpt-4o", "text": "not me", "latency_ms": 1200, "tokens": 60}),
    );
    e(
        p,
        "m1",
        30_000,
        json!({"event_type": "VOTE_CAST", "voter_id": "ada", "suspect_id": "bot-gpt-4o"}),
    );
    e(
        p,
        "m1",
        31_000,
        json!({"event_type": "VOTE_CAST", "voter_id": "bob", "suspect_id": "ada"}),
    );
    e(
        p,
        "m1",
        32_000,
        json!({"event_type": "MATCH_ENDED", "winner": "ROBOT", "reason": "ROBOT_UNDETECTED", "model": "gpt-4o", "players": players_m1}),
    );

    let players_m2 = json!([
        {"id": "ada", "kind": "HUMAN", "model": null},
        {"id": "bot-llama", "kind": "ROBOT", "model": "llama"}]);
    e(
        p,
        "m2",
        90_000,
        json!({"event_type": "MATCH_CREATED", "mode": "duel"}),
    );
    e(
        p,
        "m2",
        91_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "ada", "player_kind": "HUMAN"}),
    );
    e(
        p,
        "m2",
        92_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "bot-llama", "player_kind": "ROBOT", "model": "llama"}),
    );
    e(
        p,
        "m2",
        95_000,
        json!({"event_type": "MESSAGE_SENT", "player_id": "ada", "player_kind": "HUMAN", "text": "you?"}),
    );
    e(
        p,
        "m2",
        95_500,
        json!({"event_type": "ROBOT_RESPONSE", "player_id": "bot-llama", "player_kind": "ROBOT", "model": "llama", "text": "me", "latency_ms": 500, "tokens": 30}),
    );
    e(
        p,
        "m2",
        99_000,
        json!({"event_type": "VOTE_CAST", "voter_id": "ada", "suspect_id": "bot-llama"}),
    );
    e(
        p,
        "m2",
        100_000,
        json!({"event_type": "MATCH_ENDED", "winner": "HUMANS", "reason": "ROBOT_UNMASKED", "model": "llama", "players": players_m2}),
    );

    e(
        p,
        "m3",
        100_000,
        json!({"event_type": "MATCH_CREATED", "mode": "classic"}),
    );
    e(
        p,
        "m3",
        101_000,
        json!({"event_type": "PLAYER_JOINED", "player_id": "bob", "player_kind": "HUMAN"}),
    );
    e(
        p,
        "m3",
        105_000,
        json!({"event_type": "MESSAGE_SENT", "player_id": "bob", "player_kind": "HUMAN", "text": "anyone?"}),
    );
}

/// One session: planning, a coder task failing once then succeeding,
/// quality gates in two 10-minute windows, heartbeats.
fn agent_events(p: &Product) {
    let at = |t: i64, mut v: Value| {
        v["event_ts"] = json!(T0 + t);
        v
    };
    p.produce("session.events", "s1", at(0, json!({"event_type": "SESSION_CREATED", "project": "p1", "workflow_state": "PLANNING", "iteration": 0, "manager_model": "opus", "worker_model": "sonnet"})));
    p.produce("session.events", "s1", at(20_000, json!({"event_type": "WORKFLOW_STATE_UPDATED", "workflow_state": "EXECUTING", "iteration": 1})));
    p.produce(
        "session.events",
        "s1",
        at(
            200_000,
            json!({"event_type": "SESSION_COMPLETED", "workflow_state": "DONE", "iteration": 1}),
        ),
    );
    let task = |kind: &str, t: i64, task: &str, attempt: i64, role: &str, extra: Value| {
        let mut v = at(
            t,
            json!({"event_type": kind, "session_id": "s1", "task_id": task, "attempt": attempt, "agent_role": role, "agent_id": "a1", "model": "m"}),
        );
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    p.produce(
        "agent.tasks.manager",
        "c1",
        task("TASK_ASSIGNED", 1_000, "t1", 1, "planner", json!({})),
    );
    p.produce(
        "agent.tasks.manager",
        "c1",
        task(
            "TASK_COMPLETED",
            15_000,
            "t1",
            1,
            "planner",
            json!({"duration_ms": 14_000, "tokens": 700}),
        ),
    );
    p.produce(
        "agent.tasks.worker",
        "c2",
        task("TASK_ASSIGNED", 21_000, "t2", 1, "coder", json!({})),
    );
    p.produce(
        "agent.tasks.worker",
        "c2",
        task(
            "TASK_FAILED",
            50_000,
            "t2",
            1,
            "coder",
            json!({"duration_ms": 29_000, "tokens": 300, "error": "timeout"}),
        ),
    );
    p.produce(
        "agent.tasks.worker",
        "c3",
        task("TASK_ASSIGNED", 51_000, "t2", 2, "coder", json!({})),
    );
    p.produce(
        "agent.tasks.worker",
        "c3",
        task(
            "TASK_COMPLETED",
            90_000,
            "t2",
            2,
            "coder",
            json!({"duration_ms": 39_000, "tokens": 2_000}),
        ),
    );
    p.produce(
        "quality.gates",
        "s1",
        at(
            100_000,
            json!({"gate": "lint", "passed": true, "score": 0.9, "iteration": 1}),
        ),
    );
    p.produce(
        "quality.gates",
        "s1",
        at(
            101_000,
            json!({"gate": "unit-tests", "passed": false, "score": 0.4, "iteration": 1}),
        ),
    );
    p.produce(
        "quality.gates",
        "s1",
        at(
            700_000,
            json!({"gate": "lint", "passed": true, "score": 0.8, "iteration": 2}),
        ),
    );
    p.produce("monitoring.events", "mgr-1", at(5_000, json!({"session_id": "s1", "agent_role": "planner", "status": "BUSY", "cpu_pct": 50.0, "tokens_total": 100})));
    p.produce("monitoring.events", "mgr-1", at(20_000, json!({"session_id": "s1", "agent_role": "planner", "status": "IDLE", "cpu_pct": 2.0, "tokens_total": 300})));
}

/// The projections this file checks; the last test fails when
/// `queries/` gains one that is not listed (and so not checked).
const CHECKED: &[&str] = &[
    "MATCH_EVENTS",
    "MATCH_HISTORY",
    "MATCH_RESULTS",
    "PLAYER_LEADERBOARD",
    "ROBOT_MODEL_LEADERBOARD",
    "MATCHES_PER_MINUTE",
    "ROBOT_MODEL_PERFORMANCE",
    "SESSION_EVENTS",
    "MANAGER_TASKS",
    "WORKER_TASKS",
    "QUALITY_GATES",
    "MONITORING_EVENTS",
    "SESSION_STATE",
    "AGENT_STATUS",
    "TASK_EVENTS",
    "TASK_LATENCY_BY_ROLE",
    "TASKS_ASSIGNED",
    "TASKS_FINISHED",
    "TASK_ROUNDTRIPS",
    "SESSION_TASKS",
    "QUALITY_GATE_PASS_RATE",
];

#[tokio::test]
async fn match_history_has_one_row_per_match() {
    let p = Product::new();
    match_events(&p);
    let rows = p
        .rows("SELECT * FROM match_history ORDER BY match_id;")
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        json!({"match_id": "m1", "mode": "classic", "started_at": T0, "last_update": T0 + 32_000,
               "duration_ms": 32_000, "players": ["ada", "bot-gpt-4o", "bob"], "robot_model": "gpt-4o",
               "messages": 4, "votes": 2, "status": "FINISHED", "winner": "ROBOT",
               "reason": "ROBOT_UNDETECTED"})
    );
    assert_eq!(
        rows[1],
        json!({"match_id": "m2", "mode": "duel", "started_at": T0 + 90_000, "last_update": T0 + 100_000,
               "duration_ms": 10_000, "players": ["ada", "bot-llama"], "robot_model": "llama",
               "messages": 2, "votes": 1, "status": "FINISHED", "winner": "HUMANS",
               "reason": "ROBOT_UNMASKED"})
    );
    assert_eq!(
        rows[2],
        json!({"match_id": "m3", "mode": "classic", "started_at": T0 + 100_000, "last_update": T0 + 105_000,
               "duration_ms": 5_000, "players": ["bob"], "robot_model": null, "messages": 1, "votes": 0,
               "status": "LIVE", "winner": null, "reason": null})
    );
    // The malformed record was logged, not counted, and did not stop m1.
    assert!(!p.ctx.runtime().processing_log().entries().is_empty());
    let events = p.rows("SELECT COUNT(*) AS n FROM match_events;").await;
    assert_eq!(events[0]["n"], json!(21));
}

#[tokio::test]
async fn leaderboards_count_matches_and_wins() {
    let p = Product::new();
    match_events(&p);
    let results = p
        // ksqlDB's struct dereference, in a pull query's SELECT and WHERE.
        .rows(
            "SELECT match_id, player->id AS id FROM match_results \
             WHERE player->kind = 'HUMAN' OR player->id LIKE 'bot-%' ORDER BY match_id, id;",
        )
        .await;
    let pairs: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            (
                r["match_id"].as_str().unwrap_or_default().into(),
                r["id"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("m1", "ada"),
            ("m1", "bob"),
            ("m1", "bot-gpt-4o"),
            ("m2", "ada"),
            ("m2", "bot-llama")
        ]
        .map(|(m, i)| (m.to_string(), i.to_string()))
    );
    let players = p.rows("SELECT player_id, kind, matches, wins, last_played FROM player_leaderboard ORDER BY player_id;").await;
    assert_eq!(
        players,
        vec![
            json!({"player_id": "ada", "kind": "HUMAN", "matches": 2, "wins": 1, "last_played": T0 + 100_000}),
            json!({"player_id": "bob", "kind": "HUMAN", "matches": 1, "wins": 0, "last_played": T0 + 32_000}),
            json!({"player_id": "bot-gpt-4o", "kind": "ROBOT", "matches": 1, "wins": 1, "last_played": T0 + 32_000}),
            json!({"player_id": "bot-llama", "kind": "ROBOT", "matches": 1, "wins": 0, "last_played": T0 + 100_000}),
        ]
    );
    let models = p
        .rows("SELECT * FROM robot_model_leaderboard ORDER BY model;")
        .await;
    assert_eq!(
        models,
        vec![
            json!({"model": "gpt-4o", "matches": 1, "wins": 1, "responses": 2, "avg_latency_ms": 1000.0, "avg_tokens": 50.0}),
            json!({"model": "llama", "matches": 1, "wins": 0, "responses": 1, "avg_latency_ms": 500.0, "avg_tokens": 30.0}),
        ]
    );
}

#[tokio::test]
async fn windowed_match_analytics() {
    let p = Product::new();
    match_events(&p);
    let per_minute = p
        .rows("SELECT mode, WINDOWSTART AS ws, started FROM matches_per_minute ORDER BY ws, mode;")
        .await;
    assert_eq!(
        per_minute,
        vec![
            json!({"mode": "classic", "ws": T0, "started": 1}),
            json!({"mode": "classic", "ws": T0 + 60_000, "started": 1}),
            json!({"mode": "duel", "ws": T0 + 60_000, "started": 1}),
        ]
    );
    // 5-minute windows advancing by a minute: m1's events (T0+10.8s to
    // T0+32s) fall in the five windows starting T0-4min .. T0; m2's
    // (T0+95.5s to T0+100s) in those starting T0-3min .. T0+1min.
    let performance = p.rows("SELECT model, WINDOWSTART AS ws, matches, robot_wins, win_rate, responses, p95_latency_ms FROM robot_model_performance ORDER BY model, ws;").await;
    let gpt: Vec<&Value> = performance
        .iter()
        .filter(|r| r["model"] == "gpt-4o")
        .collect();
    let starts: Vec<i64> = gpt.iter().filter_map(|r| r["ws"].as_i64()).collect();
    assert_eq!(
        starts,
        (-4..=0).map(|m| T0 + m * 60_000).collect::<Vec<_>>()
    );
    for r in &gpt {
        assert_eq!(
            (
                r["matches"].clone(),
                r["robot_wins"].clone(),
                r["responses"].clone()
            ),
            (json!(1), json!(1), json!(2))
        );
        assert_eq!(r["win_rate"], json!(1.0));
        let p95 = r["p95_latency_ms"].as_f64().expect("p95");
        assert!(
            (1100.0..=1200.0).contains(&p95),
            "p95 of 800 and 1200 ms: {p95}"
        );
    }
    let llama: Vec<&Value> = performance
        .iter()
        .filter(|r| r["model"] == "llama")
        .collect();
    let starts: Vec<i64> = llama.iter().filter_map(|r| r["ws"].as_i64()).collect();
    assert_eq!(
        starts,
        (-3..=1).map(|m| T0 + m * 60_000).collect::<Vec<_>>()
    );
    assert!(
        llama
            .iter()
            .all(|r| r["win_rate"] == json!(0.0) && r["p95_latency_ms"] == json!(500.0))
    );
}

#[tokio::test]
async fn agent_sessions_tasks_and_gates() {
    let p = Product::new();
    agent_events(&p);
    let sessions = p.rows("SELECT * FROM session_state;").await;
    assert_eq!(
        sessions,
        vec![
            json!({"session_id": "s1", "project": "p1", "created_at": T0, "last_update": T0 + 200_000,
                    "workflow_state": "DONE", "iterations": 1, "manager_model": "opus",
                    "worker_model": "sonnet", "reason": null, "events": 3})
        ]
    );
    let agents = p.rows("SELECT * FROM agent_status;").await;
    assert_eq!(
        agents,
        vec![
            json!({"agent_id": "mgr-1", "agent_role": "planner", "session_id": "s1", "status": "IDLE",
                    "cpu_pct": 2.0, "tokens_total": 300, "last_seen": T0 + 20_000})
        ]
    );
    for (stream, expected) in [
        ("manager_tasks", 2),
        ("worker_tasks", 4),
        ("task_events", 6),
        ("tasks_assigned", 3),
        ("tasks_finished", 3),
    ] {
        let n = p
            .rows(&format!("SELECT COUNT(*) AS n FROM {stream};"))
            .await;
        assert_eq!(n[0]["n"], json!(expected), "{stream}");
    }
    let latency = p.rows("SELECT agent_role, WINDOWSTART AS ws, tasks, failures, avg_ms, max_ms FROM task_latency_by_role ORDER BY ws, agent_role;").await;
    assert_eq!(
        latency,
        vec![
            json!({"agent_role": "coder", "ws": T0, "tasks": 1, "failures": 1, "avg_ms": 29_000.0, "max_ms": 29_000}),
            json!({"agent_role": "planner", "ws": T0, "tasks": 1, "failures": 0, "avg_ms": 14_000.0, "max_ms": 14_000}),
            json!({"agent_role": "coder", "ws": T0 + 60_000, "tasks": 1, "failures": 0, "avg_ms": 39_000.0, "max_ms": 39_000}),
        ]
    );
    let trips = p.rows("SELECT correlation_id, task_id, attempt, agent_role, roundtrip_ms, outcome, error FROM task_roundtrips ORDER BY correlation_id;").await;
    assert_eq!(
        trips,
        vec![
            json!({"correlation_id": "c1", "task_id": "t1", "attempt": 1, "agent_role": "planner", "roundtrip_ms": 14_000, "outcome": "TASK_COMPLETED", "error": null}),
            json!({"correlation_id": "c2", "task_id": "t2", "attempt": 1, "agent_role": "coder", "roundtrip_ms": 29_000, "outcome": "TASK_FAILED", "error": "timeout"}),
            json!({"correlation_id": "c3", "task_id": "t2", "attempt": 2, "agent_role": "coder", "roundtrip_ms": 39_000, "outcome": "TASK_COMPLETED", "error": null}),
        ]
    );
    let tasks = p.rows("SELECT * FROM session_tasks;").await;
    assert_eq!(
        tasks,
        vec![
            json!({"session_id": "s1", "assigned": 3, "completed": 2, "failed": 1, "tokens": 3_000})
        ]
    );
    let gates = p.rows("SELECT gate, WINDOWSTART AS ws, runs, passed, pass_rate, avg_score FROM quality_gate_pass_rate ORDER BY ws, gate;").await;
    assert_eq!(
        gates,
        vec![
            json!({"gate": "lint", "ws": T0, "runs": 1, "passed": 1, "pass_rate": 1.0, "avg_score": 0.9}),
            json!({"gate": "unit-tests", "ws": T0, "runs": 1, "passed": 0, "pass_rate": 0.0, "avg_score": 0.4}),
            json!({"gate": "lint", "ws": T0 + 600_000, "runs": 1, "passed": 1, "pass_rate": 1.0, "avg_score": 0.8}),
        ]
    );
}

#[tokio::test]
async fn every_projection_in_queries_is_checked_here() {
    let p = Product::new();
    let listed = p.rows("SELECT 1 AS one FROM match_events LIMIT 1;").await;
    assert!(listed.is_empty());
    let request = Request::builder()
        .method("GET")
        .uri("/projections")
        .body(Body::empty())
        .expect("request");
    let response = p.app.clone().oneshot(request).await.expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let all: Value = serde_json::from_slice(&bytes).expect("json");
    let defined: BTreeSet<String> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let checked: BTreeSet<String> = CHECKED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        defined, checked,
        "every source of queries/ needs its checks in this file"
    );
}

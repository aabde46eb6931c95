//! `GET /metrics` scraped while a persistent query runs on a live runtime:
//! its counters move with the input, the consumer lag falls to zero once
//! the input stops, bad records count as processing errors, and HTTP
//! requests are counted by route.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use serde_json::json;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record};
use sluice_server::{AppState, ServerConfig, router};
use sluice_sql::KsqlContext;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(30);

fn produce(ctx: &KsqlContext, key: &str, value: Vec<u8>) {
    let record = Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value)),
        timestamp: 1_800_000_000_000,
        headers: Vec::new(),
    };
    ctx.runtime()
        .backend()
        .produce("clicks", vec![(Partitioning::ByKey, record)])
        .expect("produce");
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, media, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample `name{labels...}` whose labels include `with`.
fn sample(text: &str, name: &str, with: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split_once([' ', '{'])
                .is_some_and(|(n, rest)| n == name && (with.is_empty() || rest.contains(with)))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_running_query() {
    let ctx = Arc::new(KsqlContext::with_backend(
        Arc::new(EmbeddedTopics::new()),
        16,
    ));
    let state = AppState::new(ctx.clone(), "metrics-test", ServerConfig::default());
    ctx.execute(
        "CREATE STREAM CLICKS (ID STRING KEY, PAGE STRING) \
           WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=2);
         CREATE TABLE PAGES AS SELECT PAGE, COUNT(*) AS HITS FROM CLICKS GROUP BY PAGE;",
    )
    .expect("sources");
    let app = router(state);
    let query = "query_id=\"CTAS_PAGES_";

    // Before anything runs: records waiting, none read.
    for i in 0..50 {
        let value = serde_json::to_vec(&json!({"PAGE": format!("p{}", i % 5)})).expect("json");
        produce(&ctx, &format!("k{i}"), value);
    }
    let (status, media, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(media.starts_with("text/plain; version=0.0.4"), "{media}");
    assert!(
        text.contains("# TYPE sluice_query_records_in_total counter"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_query_consumer_lag", query),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_query_records_in_total", query),
        Some(0.0)
    );

    // The runtime runs while a producer keeps writing.
    let driver = ctx.runtime().spawn().expect("runtime");
    let producing = Arc::new(AtomicBool::new(true));
    let produced = Arc::new(AtomicU64::new(50));
    let producer = {
        let (ctx, producing, produced) = (ctx.clone(), producing.clone(), produced.clone());
        std::thread::spawn(move || {
            while producing.load(Ordering::SeqCst) {
                let n = produced.fetch_add(1, Ordering::SeqCst);
                let value =
                    serde_json::to_vec(&json!({"PAGE": format!("p{}", n % 5)})).expect("json");
                produce(&ctx, &format!("k{n}"), value);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut last_in = 0.0;
    let mut moves = 0;
    let start = Instant::now();
    while moves < 3 {
        let (_, _, text) = get(&app, "/metrics").await;
        let records_in = sample(&text, "sluice_query_records_in_total", query).expect("in");
        if records_in > last_in {
            moves += 1;
            last_in = records_in;
        }
        assert!(start.elapsed() < WAIT, "records_in stuck at {records_in}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    producing.store(false, Ordering::SeqCst);
    producer.join().expect("producer");
    // A malformed record goes to the processing log, not the table.
    produce(&ctx, "bad", b"{not json".to_vec());
    let total = produced.load(Ordering::SeqCst) as f64 + 1.0;

    // Input stopped: everything is read, the lag falls to zero.
    let start = Instant::now();
    let text = loop {
        let (_, _, text) = get(&app, "/metrics").await;
        let lag = sample(&text, "sluice_query_consumer_lag", query).expect("lag");
        let records_in = sample(&text, "sluice_query_records_in_total", query).expect("in");
        if lag == 0.0 && records_in == total {
            break text;
        }
        assert!(
            start.elapsed() < WAIT,
            "lag {lag}, {records_in} of {total} read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(sample(&text, "sluice_query_records_out_total", query).expect("out") > 0.0);
    assert_eq!(
        sample(&text, "sluice_query_state_rows", query),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_query_processing_errors_total", query),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sluice_query_late_records_total", query),
        Some(0.0)
    );
    assert_eq!(sample(&text, "sluice_query_running", query), Some(1.0));

    // Requests are counted by route template, with a latency histogram.
    let (status, _, _) = get(&app, "/projections/NO_SUCH").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, text) = get(&app, "/metrics").await;
    assert!(
        sample(
            &text,
            "sluice_http_requests_total",
            "route=\"/metrics\",method=\"GET\",code=\"200\""
        )
        .expect("metrics requests")
            >= 3.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_http_requests_total",
            "route=\"/projections/{name}\",method=\"GET\",code=\"404\""
        ),
        Some(1.0),
        "{text}"
    );
    let count = sample(
        &text,
        "sluice_http_request_duration_seconds_count",
        "route=\"/metrics\"",
    )
    .expect("count");
    let inf = sample(
        &text,
        "sluice_http_request_duration_seconds_bucket",
        "route=\"/metrics\",le=\"+Inf\"",
    )
    .expect("+Inf bucket");
    assert_eq!(count, inf);

    ctx.runtime().stop();
    driver.join().expect("driver");
}

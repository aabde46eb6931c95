//! Bad records are counted and kept in the processing log, and the query
//! goes on with the records after them.

use std::sync::Arc;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::processing_log::ProcessingErrorKind;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

fn record(key: &str, value: &str) -> (Partitioning, Record) {
    (
        Partitioning::ByKey,
        Record {
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from(value.to_string())),
            timestamp: 1,
            headers: vec![],
        },
    )
}

#[test]
fn malformed_json_is_logged_and_later_records_still_flow() {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 64);
    ctx.execute(
        "CREATE STREAM moves (player STRING KEY, x INT, y INT) WITH (kafka_topic='moves', value_format='JSON', partitions=1);
         CREATE STREAM far AS SELECT player, x * x + y * y AS d2 FROM moves WHERE x > 1;",
    )
    .expect("statements run");

    topics
        .produce(
            "moves",
            vec![
                record("ana", r#"{"x": 3, "y": 4}"#),
                record("bob", r#"{"x": 5, "y": "#), // truncated JSON
                record("cyd", r#"{"x": "not a number", "y": 1}"#),
                record("dan", r#"{"x": 2, "y": 0}"#),
            ],
        )
        .expect("produce");
    ctx.runtime().run_until_idle();

    let out: Vec<String> = topics
        .records("FAR")
        .expect("sink topic exists")
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(out, vec![r#"{"D2":25}"#, r#"{"D2":4}"#]);

    let log = ctx.runtime().processing_log();
    assert_eq!(log.total(), 2);
    let entries = log.entries();
    assert!(
        entries
            .iter()
            .all(|e| e.kind == ProcessingErrorKind::Deserialization)
    );
    assert_eq!(entries[0].offset, Some(1));
    assert!(
        entries[0].message.contains("JSON"),
        "{}",
        entries[0].message
    );
    assert_eq!(
        entries[1].record.as_deref(),
        Some(r#"{"x": "not a number", "y": 1}"#)
    );
    assert!(entries.iter().all(|e| e.query_id == "CSAS_FAR_0"));
}

#[test]
fn an_expression_error_nulls_one_value_and_keeps_the_row() {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 64);
    ctx.execute(
        "CREATE STREAM s (k STRING KEY, a INT, b INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);
         CREATE STREAM q AS SELECT k, a / b AS ratio, a FROM s;",
    )
    .expect("statements run");
    topics
        .produce(
            "s",
            vec![
                record("one", r#"{"a": 6, "b": 3}"#),
                record("two", r#"{"a": 1, "b": 0}"#),
            ],
        )
        .expect("produce");
    ctx.runtime().run_until_idle();
    let out: Vec<String> = topics
        .records("Q")
        .expect("sink topic exists")
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(out, vec![r#"{"RATIO":2,"A":6}"#, r#"{"RATIO":null,"A":1}"#]);
    let entries = ctx.runtime().processing_log().entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, ProcessingErrorKind::Evaluation);
}

#[test]
fn failed_records_reach_the_processing_log_topic_while_output_continues() {
    use sluice_engine::processing_log::ProcessingLogTopic;
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 64);
    let forwarder = ProcessingLogTopic::new(
        ctx.runtime().processing_log().clone(),
        topics.clone(),
        "default_ksql_processing_log",
    )
    .expect("log topic");
    ctx.runtime().observe(Arc::new(forwarder));
    ctx.execute(
        "CREATE STREAM moves (player STRING KEY, x INT) WITH (kafka_topic='moves', value_format='JSON', partitions=1);
         CREATE STREAM doubled AS SELECT player, x * 2 AS x2 FROM moves;",
    )
    .expect("statements run");
    topics
        .produce(
            "moves",
            vec![
                record("ana", r#"{"x": 1}"#),
                record("bob", r#"{"x": "#),
                record("cyd", r#"{"x": 3}"#),
            ],
        )
        .expect("produce");
    ctx.runtime().run_until_idle();

    let out = topics.records("DOUBLED").expect("sink");
    assert_eq!(out.len(), 2, "the records around the bad one still flow");
    let logged = topics
        .records("default_ksql_processing_log")
        .expect("log topic");
    assert_eq!(logged.len(), 1);
    let value: serde_json::Value =
        serde_json::from_slice(logged[0].record.value.as_deref().expect("a log message"))
            .expect("JSON");
    assert_eq!(value["level"], "ERROR");
    assert_eq!(value["message"]["type"], 0);
    assert_eq!(value["message"]["deserializationError"]["topic"], "moves");
    assert!(
        value["logger"]
            .as_str()
            .is_some_and(|l| l.starts_with("processing.CSAS_DOUBLED"))
    );
}

//! Stream-table join: 1,000,000 stream events enriched from a
//! 100,000-row table, on one core.
//!
//! Numbers from one run, on the same events:
//! - `json decode limit`: decoding the stream's JSON records into Arrow
//!   and nothing else, the ceiling of the input path;
//! - `table load`: the table's changelog read into the join's state;
//! - `query, json`: the whole persistent query on embedded topics: JSON
//!   decode, re-keying by the join expression, the join, projection and
//!   encoding to the sink topic.
//!
//! `cargo bench --bench stream_table_join` (SLUICE_BENCH_EVENTS and
//! SLUICE_BENCH_TABLE_ROWS change the sizes).

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::schema::{Column, LogicalSchema, SqlType};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

use common::{BATCH, rate};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn table_records(rows: usize) -> Vec<Record> {
    (0..rows)
        .map(|i| Record {
            key: Some(Bytes::from(format!("player-{i}"))),
            value: Some(Bytes::from(format!(
                r#"{{"NAME":"Player {i}","RATING":{},"ROBOT":{}}}"#,
                1000 + i % 1500,
                i % 3 == 0
            ))),
            timestamp: 0,
            headers: vec![],
        })
        .collect()
}

/// Every 10th event names a player the table does not have.
fn stream_records(events: usize, rows: usize) -> Vec<Record> {
    (0..events)
        .map(|i| {
            let player = (i * 7919) % (rows + rows / 10);
            Record {
                key: Some(Bytes::from(format!("m-{}", i % 50_000))),
                value: Some(Bytes::from(format!(
                    r#"{{"PLAYER":"player-{player}","TEXT":"move {i}","LATENCY_MS":{}}}"#,
                    i % 900
                ))),
                timestamp: 1 + i as i64,
                headers: vec![],
            }
        })
        .collect()
}

fn bench_decode_limit(records: &[Record]) -> f64 {
    let schema = LogicalSchema::new(vec![
        Column::key("MATCH_ID", SqlType::String),
        Column::value("PLAYER", SqlType::String),
        Column::value("TEXT", SqlType::String),
        Column::value("LATENCY_MS", SqlType::Int),
    ]);
    common::decode_limit_seconds(schema, records)
}

/// Returns (table load seconds, stream seconds, joined rows written).
fn bench_query(table: Vec<Record>, stream: Vec<Record>) -> (f64, f64, usize) {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), BATCH);
    ctx.execute(
        "CREATE TABLE players (id STRING PRIMARY KEY, name STRING, rating INT, robot BOOLEAN)
           WITH (kafka_topic='players', value_format='JSON', partitions=1);
         CREATE STREAM moves (match_id STRING KEY, player STRING, text STRING, latency_ms INT)
           WITH (kafka_topic='moves', value_format='JSON', partitions=1);
         CREATE STREAM enriched AS
           SELECT m.player, m.match_id, text, latency_ms, name, rating, robot
           FROM moves m LEFT JOIN players p ON m.player = p.id;",
    )
    .expect("statements");
    let explicit = |records: Vec<Record>| -> Vec<(Partitioning, Record)> {
        records
            .into_iter()
            .map(|r| (Partitioning::Explicit(0), r))
            .collect()
    };
    topics
        .produce("players", explicit(table))
        .expect("produce table");
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    let table_seconds = started.elapsed().as_secs_f64();
    topics
        .produce("moves", explicit(stream))
        .expect("produce stream");
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    let stream_seconds = started.elapsed().as_secs_f64();
    assert_eq!(ctx.runtime().processing_log().total(), 0);
    let written = topics.records("ENRICHED").expect("sink").len();
    (table_seconds, stream_seconds, written)
}

fn main() {
    let events = env("SLUICE_BENCH_EVENTS", 1_000_000);
    let rows = env("SLUICE_BENCH_TABLE_ROWS", 100_000);
    println!(
        "stream-table LEFT JOIN, {events} stream events against {rows} table rows, batches of {BATCH}, one thread"
    );
    let stream = stream_records(events, rows);
    let limit = bench_decode_limit(&stream);
    println!("  json decode limit:        {}", rate(events, limit));
    let (table_seconds, query, written) = bench_query(table_records(rows), stream);
    assert_eq!(written, events);
    println!("  table load:               {}", rate(rows, table_seconds));
    println!(
        "  query, json in and out:   {}  ({:.0}% of the decode limit)",
        rate(events, query),
        100.0 * limit / query
    );
    println!(
        "{{\"scenario\":\"stream-table-join\",\"events\":{events},\"table_rows\":{rows},\"events_per_sec\":{:.0},\"limit_events_per_sec\":{:.0}}}",
        events as f64 / query,
        events as f64 / limit
    );
}

//! Tumbling-window COUNT/SUM over 10,000 keys, on one core.
//!
//! Three numbers from one run, on the same events:
//! - `arrow`: the window operator alone, fed pre-decoded Arrow batches;
//! - `json decode limit`: decoding the JSON records into Arrow and nothing
//!   else, the ceiling of the input path;
//! - `query, json`: the whole persistent query on embedded topics: JSON
//!   decode, window aggregation, projection, encoding to the sink topic.
//!
//! `cargo bench --bench tumbling` (set SLUICE_BENCH_EVENTS to change the
//! event count, default 2,000,000).

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use datafusion::arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{col, lit};
use sluice_connectors::EmbeddedTopics;
use sluice_engine::batch::ChangeBatch;
use sluice_engine::operator::time_window_aggregate::{EmitMode, TimeWindowAggregate, WindowTiming};
use sluice_engine::operator::{Operator, OperatorContext};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::schema::{Column, LogicalSchema, SqlType};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_engine::window::WindowType;
use sluice_sql::KsqlContext;

use common::{BATCH, rate};

const KEYS: usize = 10_000;
const MINUTE: i64 = 60_000;

fn key(i: usize) -> String {
    format!("player-{}", i % KEYS)
}

fn timestamp(i: usize) -> i64 {
    (i as i64) * 3
}

fn bench_arrow(events: usize) -> f64 {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", DataType::Int64, true),
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
    ]));
    let output: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("C", DataType::Int64, true),
        Field::new("S", DataType::Int64, true),
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
        Field::new("WINDOWSTART", DataType::Int64, false),
        Field::new("WINDOWEND", DataType::Int64, false),
    ]));
    let batches: Vec<RecordBatch> = (0..events)
        .step_by(BATCH)
        .map(|first| {
            let ids: Vec<usize> = (first..(first + BATCH).min(events)).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(ids.iter().map(|i| key(*i)))),
                    Arc::new(Int64Array::from_iter_values(
                        ids.iter().map(|i| (*i % 100) as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        ids.iter().map(|i| timestamp(*i)),
                    )),
                    Arc::new(Int32Array::from_iter_values(ids.iter().map(|_| 0))),
                    Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| *i as i64))),
                ],
            )
            .expect("batch")
        })
        .collect();
    let count = AggregateExprBuilder::new(count_udaf(), vec![lit(1i64)])
        .schema(schema.clone())
        .alias("C")
        .build()
        .expect("count");
    let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("V", &schema).expect("V")])
        .schema(schema.clone())
        .alias("S")
        .build()
        .expect("sum");
    let mut op = TimeWindowAggregate::new(
        WindowType::Tumbling { size_ms: MINUTE },
        WindowTiming {
            grace_ms: MINUTE,
            retention_ms: 10 * MINUTE,
            emit: EmitMode::Changes,
            flush_interval: None,
        },
        vec![col("K", &schema).expect("K")],
        vec![Arc::new(count), Arc::new(sum)],
        &schema,
        output,
    )
    .expect("operator");
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    let started = Instant::now();
    let mut emitted = 0;
    for batch in batches {
        emitted += op
            .process(ChangeBatch::new(batch), &ctx)
            .expect("process")
            .num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(emitted > 0);
    seconds
}

fn json_records(events: usize) -> Vec<Record> {
    (0..events)
        .map(|i| Record {
            key: Some(Bytes::from(key(i))),
            value: Some(Bytes::from(format!(
                r#"{{"V":{},"MATCH":"m-{}"}}"#,
                i % 100,
                i % 977
            ))),
            timestamp: timestamp(i),
            headers: vec![],
        })
        .collect()
}

fn bench_decode_limit(records: &[Record]) -> f64 {
    let schema = LogicalSchema::new(vec![
        Column::key("K", SqlType::String),
        Column::value("V", SqlType::Bigint),
        Column::value("MATCH", SqlType::String),
    ]);
    common::decode_limit_seconds(schema, records)
}

fn bench_query(records: Vec<Record>) -> f64 {
    let events = records.len();
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), BATCH);
    ctx.execute(
        "CREATE STREAM events (k STRING KEY, v BIGINT, match STRING) WITH (kafka_topic='events', value_format='JSON', partitions=1);
         CREATE TABLE per_minute AS SELECT k, COUNT(*) AS c, SUM(v) AS s FROM events
           WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 10 MINUTES, GRACE PERIOD 1 MINUTE) GROUP BY k;",
    )
    .expect("statements");
    topics
        .produce(
            "events",
            records
                .into_iter()
                .map(|r| (Partitioning::Explicit(0), r))
                .collect(),
        )
        .expect("produce");
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(ctx.runtime().processing_log().total(), 0);
    assert!(!topics.records("PER_MINUTE").expect("sink").is_empty());
    let _ = events;
    seconds
}

fn main() {
    let events: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    println!("tumbling COUNT/SUM, {KEYS} keys, {events} events, batches of {BATCH}, one thread");
    let arrow = bench_arrow(events);
    println!("  arrow (pre-decoded):      {}", rate(events, arrow));
    let records = json_records(events);
    let limit = bench_decode_limit(&records);
    println!("  json decode limit:        {}", rate(events, limit));
    let query = bench_query(records);
    println!(
        "  query, json in and out:   {}  ({:.0}% of the decode limit)",
        rate(events, query),
        100.0 * limit / query
    );
    println!(
        "{{\"scenario\":\"tumbling\",\"events\":{events},\"arrow_events_per_sec\":{:.0},\"events_per_sec\":{:.0},\"limit_events_per_sec\":{:.0}}}",
        events as f64 / arrow,
        events as f64 / query,
        events as f64 / limit
    );
}

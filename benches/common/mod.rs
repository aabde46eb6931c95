//! What the benchmarks share: the JSON decode limit measured the same way
//! for every scenario, and how rates are printed.

use std::sync::Arc;
use std::time::Instant;

use sluice_engine::format::{Format, RecordCodec};
use sluice_engine::operator::OperatorContext;
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::query::{SourceSpec, TimestampSource, source};
use sluice_engine::schema::LogicalSchema;
use sluice_engine::topic::{ConsumedRecord, Record};

/// Records per batch, in every benchmark.
pub const BATCH: usize = 8_192;

pub fn rate(events: usize, seconds: f64) -> String {
    format!("{:>12.0} events/s", events as f64 / seconds)
}

/// Seconds to decode `records` (KAFKA keys, JSON values of `schema`) into
/// Arrow and nothing else: the ceiling of a query's input path.
pub fn decode_limit_seconds(schema: LogicalSchema, records: &[Record]) -> f64 {
    let spec = SourceSpec {
        topic: "bench".into(),
        codec: RecordCodec::new(&schema, Format::Kafka, Format::Json, true),
        schema,
        is_table: false,
        timestamp: TimestampSource::RecordTime,
        window: None,
    };
    let consumed: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, r)| ConsumedRecord {
            topic: Arc::from("bench"),
            partition: 0,
            offset: i as i64,
            record: r.clone(),
        })
        .collect();
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    let started = Instant::now();
    let mut rows = 0;
    for chunk in consumed.chunks(BATCH) {
        rows += source::decode(&spec, chunk, &ctx)
            .expect("decode")
            .num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(rows, records.len());
    seconds
}

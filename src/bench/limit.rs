//! The raw ceiling of a query's input path: decoding the same JSON bytes
//! into Arrow and nothing else. Shared by `sluice bench` and `benches/`
//! (which include this file), so every figure is compared with the same
//! limit.

use std::sync::Arc;
use std::time::Instant;

use sluice_engine::format::{Format, RecordCodec};
use sluice_engine::operator::OperatorContext;
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::query::{SourceSpec, TimestampSource, source};
use sluice_engine::schema::LogicalSchema;
use sluice_engine::topic::{ConsumedRecord, Record};

/// Seconds to decode `records` (KAFKA keys, JSON values of `schema`) into
/// Arrow in batches of `batch`, on this thread.
pub fn decode_limit_seconds(schema: LogicalSchema, records: &[Record], batch: usize) -> f64 {
    let spec = SourceSpec {
        topic: "bench".into(),
        codec: RecordCodec::new(&schema, Format::Kafka, Format::Json, true),
        schema,
        is_table: false,
        timestamp: TimestampSource::RecordTime,
        window: None,
        repartitioned: false,
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
    for chunk in consumed.chunks(batch.max(1)) {
        rows += source::decode(&spec, chunk, &ctx).map_or(0, |b| b.num_rows());
    }
    let seconds = started.elapsed().as_secs_f64();
    debug_assert_eq!(rows, records.len());
    seconds
}

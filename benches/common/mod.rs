//! What the benchmarks share: the JSON decode limit measured the same way
//! for every scenario, and how rates are printed.

use sluice_engine::schema::LogicalSchema;
use sluice_engine::topic::Record;

/// Records per batch, in every benchmark.
pub const BATCH: usize = 8_192;

pub fn rate(events: usize, seconds: f64) -> String {
    format!("{:>12.0} events/s", events as f64 / seconds)
}

// The same limit `sluice bench` reports, from one file.
#[path = "../../src/bench/limit.rs"]
mod limit;

/// Seconds to decode `records` (KAFKA keys, JSON values of `schema`) into
/// Arrow and nothing else: the ceiling of a query's input path.
pub fn decode_limit_seconds(schema: LogicalSchema, records: &[Record]) -> f64 {
    limit::decode_limit_seconds(schema, records, BATCH)
}

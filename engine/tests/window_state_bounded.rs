//! Expired windows free their state: memory is bounded by retention, not
//! by history.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{col, lit};
use sluice_engine::batch::ChangeBatch;
use sluice_engine::operator::time_window_aggregate::{EmitMode, TimeWindowAggregate, WindowTiming};
use sluice_engine::operator::{Operator, OperatorContext};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::window::WindowType;

const EVENTS: i64 = 2_000_000;
const KEYS: i64 = 10_000;
const EVENT_TIME_MS: i64 = 2 * 60 * 60 * 1000;
const MINUTE: i64 = 60_000;
const BATCH: i64 = 10_000;

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("K", DataType::Int64, true),
        Field::new("V", DataType::Int64, true),
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
    ]))
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("K", DataType::Int64, true),
        Field::new("COUNT", DataType::Int64, true),
        Field::new("SUM", DataType::Int64, true),
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
        Field::new("WINDOWSTART", DataType::Int64, false),
        Field::new("WINDOWEND", DataType::Int64, false),
    ]))
}

#[test]
fn two_hours_of_events_keep_only_the_retained_windows() {
    let schema = input_schema();
    let count = AggregateExprBuilder::new(count_udaf(), vec![lit(1i64)])
        .schema(schema.clone())
        .alias("COUNT")
        .build()
        .unwrap();
    let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("V", &schema).unwrap()])
        .schema(schema.clone())
        .alias("SUM")
        .build()
        .unwrap();
    let timing = WindowTiming {
        grace_ms: MINUTE,
        retention_ms: 10 * MINUTE,
        emit: EmitMode::Changes,
        flush_interval: None,
    };
    let mut op = TimeWindowAggregate::new(
        WindowType::Tumbling { size_ms: MINUTE },
        timing,
        vec![col("K", &schema).unwrap()],
        vec![Arc::new(count), Arc::new(sum)],
        &schema,
        output_schema(),
    )
    .unwrap();
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "test",
        log: &log,
    };

    // Latest emitted (count, sum) of every window ever seen.
    let mut latest: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
    let mut most_live = 0;
    for first in (0..EVENTS).step_by(BATCH as usize) {
        let ids: Vec<i64> = (first..first + BATCH).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % KEYS))),
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 7))),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|i| i * EVENT_TIME_MS / EVENTS),
                )),
                Arc::new(Int32Array::from_iter_values(ids.iter().map(|_| 0))),
                Arc::new(Int64Array::from_iter_values(ids.iter().copied())),
            ],
        )
        .unwrap();
        let out = op.process(ChangeBatch::new(batch), &ctx).unwrap().data;
        let column = |i: usize| {
            out.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let (keys, counts, sums, starts) = (column(0), column(1), column(2), column(6));
        for row in 0..out.num_rows() {
            latest.insert(
                (keys.value(row), starts.value(row)),
                (counts.value(row), sums.value(row)),
            );
        }
        most_live = most_live.max(op.live_windows());
    }

    // Ten minutes of retention hold at most 12 one-minute windows per key
    // (the open one, the ones within grace, and the retained past).
    assert!(
        most_live <= (KEYS * 12) as usize,
        "{most_live} live windows"
    );
    assert!(op.live_windows() <= (KEYS * 12) as usize);
    assert!(op.live_groups() <= KEYS as usize);
    // 120 minutes of windows were created and all but the retained ones freed.
    assert_eq!(latest.len() as i64, KEYS * (EVENT_TIME_MS / MINUTE));
    // Nothing was lost or counted twice.
    assert_eq!(op.late_records(), 0);
    assert_eq!(latest.values().map(|(c, _)| c).sum::<i64>(), EVENTS);
    assert_eq!(
        latest.values().map(|(_, s)| s).sum::<i64>(),
        (0..EVENTS).map(|i| i % 7).sum::<i64>()
    );
    assert_eq!(log.total(), 0);
}

//! Criterion micro benchmarks of the hot paths, one batch of 8,192 rows
//! per iteration, reported as rows per second:
//! - `json_decode`: JSON values (and a KAFKA key) into Arrow, the input
//!   path of every query;
//! - `filter_projection`: `WHERE price > 50` then `auction, bidder,
//!   price * 100` on pre-decoded Arrow;
//! - `tumbling_window`: COUNT and SUM per key over 10,000 keys in
//!   1-minute tumbling windows, on pre-decoded Arrow, time advancing;
//! - `stream_table_join`: stream rows probing a 100,000-row table.
//!
//! `cd benches/micro && cargo bench` (see Cargo.toml for why this is a
//! package of its own).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::Operator as BinaryOp;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::{binary, col, lit};
use sluice_engine::batch::ChangeBatch;
use sluice_engine::format::{Format, RecordCodec};
use sluice_engine::operator::filter::Filter;
use sluice_engine::operator::join_rows::{JoinKind, JoinSide};
use sluice_engine::operator::projection::Projection;
use sluice_engine::operator::stream_table_join::StreamTableJoin;
use sluice_engine::operator::time_window_aggregate::{EmitMode, TimeWindowAggregate, WindowTiming};
use sluice_engine::operator::{JoinOperator, Operator, OperatorContext};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::query::{SourceSpec, TimestampSource, source};
use sluice_engine::schema::{Column, LogicalSchema, SqlType};
use sluice_engine::topic::{ConsumedRecord, Record};
use sluice_engine::window::WindowType;

/// Rows per batch, as the server runs queries.
const BATCH: usize = 8_192;
const KEYS: usize = 10_000;
const TABLE_ROWS: usize = 100_000;
const MINUTE: i64 = 60_000;

/// The pseudo columns every operator input ends with.
fn with_pseudo(mut fields: Vec<Field>) -> SchemaRef {
    fields.extend([
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// `columns`, then ROWTIME from `first_time` 1 ms apart, partition 0 and
/// offsets from `first`.
fn batch(
    schema: &SchemaRef,
    mut columns: Vec<ArrayRef>,
    first: usize,
    first_time: i64,
) -> RecordBatch {
    let n = columns[0].len();
    columns.push(Arc::new(Int64Array::from_iter_values(
        (0..n).map(|i| first_time + i as i64),
    )));
    columns.push(Arc::new(Int32Array::from_iter_values((0..n).map(|_| 0))));
    columns.push(Arc::new(Int64Array::from_iter_values(
        (0..n).map(|i| (first + i) as i64),
    )));
    RecordBatch::try_new(schema.clone(), columns).expect("a benchmark batch")
}

fn json_decode(c: &mut Criterion) {
    let schema = LogicalSchema::new(vec![
        Column::key("AUCTION", SqlType::Bigint),
        Column::value("BIDDER", SqlType::Bigint),
        Column::value("PRICE", SqlType::Bigint),
        Column::value("CHANNEL", SqlType::String),
        Column::value("URL", SqlType::String),
    ]);
    let spec = SourceSpec {
        topic: "bids".into(),
        codec: RecordCodec::new(&schema, Format::Kafka, Format::Json, true),
        schema,
        is_table: false,
        timestamp: TimestampSource::RecordTime,
        window: None,
        repartitioned: false,
    };
    let records: Vec<ConsumedRecord> = (0..BATCH)
        .map(|i| ConsumedRecord {
            topic: Arc::from("bids"),
            partition: 0,
            offset: i as i64,
            record: Record {
                key: Some(Bytes::copy_from_slice(&((i % 50_000) as i64).to_be_bytes())),
                value: Some(Bytes::from(format!(
                    r#"{{"bidder":{},"price":{},"channel":"{}","url":"https://example.com/a/{}"}}"#,
                    i % 7_919,
                    i % 100,
                    ["web", "app", "api"][i % 3],
                    i % 1_000
                ))),
                timestamp: i as i64,
                headers: Vec::new(),
            },
        })
        .collect();
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("bids", |b| {
        b.iter(|| {
            let decoded = source::decode(&spec, &records, &ctx).map_or(0, |b| b.num_rows());
            assert_eq!(decoded, BATCH);
        })
    });
    group.finish();
}

fn filter_projection(c: &mut Criterion) {
    let schema = with_pseudo(vec![
        Field::new("AUCTION", DataType::Int64, true),
        Field::new("BIDDER", DataType::Int64, true),
        Field::new("PRICE", DataType::Int64, true),
    ]);
    let input = batch(
        &schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..BATCH).map(|i| (i % 50_000) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..BATCH).map(|i| (i % 7_919) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..BATCH).map(|i| (i % 100) as i64),
            )),
        ],
        0,
        0,
    );
    let column = |name: &str| col(name, &schema).expect("a column");
    let predicate = binary(column("PRICE"), BinaryOp::Gt, lit(50i64), &schema).expect("price > 50");
    let mut filter = Filter::for_stream(predicate, schema.clone());
    let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![
        column("AUCTION"),
        column("BIDDER"),
        binary(column("PRICE"), BinaryOp::Multiply, lit(100i64), &schema).expect("price * 100"),
        column("ROWTIME"),
        column("ROWPARTITION"),
        column("ROWOFFSET"),
    ];
    let mut projection = Projection::new(
        exprs,
        with_pseudo(vec![
            Field::new("AUCTION", DataType::Int64, true),
            Field::new("BIDDER", DataType::Int64, true),
            Field::new("PRICE_CENTS", DataType::Int64, true),
        ]),
    );
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    let expected = (0..BATCH).filter(|i| i % 100 > 50).count();
    let mut group = c.benchmark_group("filter_projection");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("price_gt_50", |b| {
        b.iter(|| {
            let kept = filter
                .process(ChangeBatch::new(input.clone()), &ctx)
                .expect("filter");
            let out = projection.process(kept, &ctx).expect("projection");
            assert_eq!(out.num_rows(), expected);
        })
    });
    group.finish();
}

fn tumbling_window(c: &mut Criterion) {
    let schema = with_pseudo(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", DataType::Int64, true),
    ]);
    let mut output_fields = vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("C", DataType::Int64, true),
        Field::new("S", DataType::Int64, true),
    ];
    output_fields.extend([
        Field::new("ROWTIME", DataType::Int64, false),
        Field::new("ROWPARTITION", DataType::Int32, false),
        Field::new("ROWOFFSET", DataType::Int64, false),
        Field::new("WINDOWSTART", DataType::Int64, false),
        Field::new("WINDOWEND", DataType::Int64, false),
    ]);
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
        Arc::new(Schema::new(output_fields)),
    )
    .expect("operator");
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    // Event time goes on from batch to batch (1 ms per row), so windows
    // open, fill and expire as in a long run.
    let mut next = 0usize;
    let mut group = c.benchmark_group("tumbling_window");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("count_sum_10k_keys", |b| {
        b.iter_batched(
            || {
                let first = next;
                next += BATCH;
                batch(
                    &schema,
                    vec![
                        Arc::new(StringArray::from_iter_values(
                            (first..first + BATCH).map(|i| format!("player-{}", i % KEYS)),
                        )),
                        Arc::new(Int64Array::from_iter_values(
                            (first..first + BATCH).map(|i| (i % 100) as i64),
                        )),
                    ],
                    first,
                    first as i64,
                )
            },
            |input| {
                let out = op.process(ChangeBatch::new(input), &ctx).expect("window");
                assert!(out.num_rows() > 0);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A join side as the planner lays it out: the join key first, the
/// columns, then the side's time, partition and offset, all nullable (a
/// LEFT JOIN's missing side is a row of nulls).
fn join_side(alias: &str, fields: Vec<Field>) -> SchemaRef {
    let mut fields = fields;
    fields.extend([
        Field::new(format!("{alias}_ROWTIME"), DataType::Int64, true),
        Field::new(format!("{alias}_ROWPARTITION"), DataType::Int32, true),
        Field::new(format!("{alias}_ROWOFFSET"), DataType::Int64, true),
    ]);
    Arc::new(Schema::new(fields))
}

fn stream_table_join(c: &mut Criterion) {
    let stream_schema = join_side(
        "M",
        vec![
            Field::new("PLAYER", DataType::Utf8, true),
            Field::new("X", DataType::Int64, true),
        ],
    );
    let table_schema = join_side(
        "P",
        vec![
            Field::new("ID", DataType::Utf8, true),
            Field::new("NAME", DataType::Utf8, true),
        ],
    );
    let mut output_fields = vec![Field::new("PLAYER", DataType::Utf8, true)];
    for (side, schema) in [("L_", &stream_schema), ("R_", &table_schema)] {
        output_fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(format!("{side}{}", f.name()), f.data_type().clone(), true)),
        );
    }
    let output = with_pseudo(output_fields);
    let mut join = StreamTableJoin::new(
        JoinKind::Left,
        stream_schema.clone(),
        table_schema.clone(),
        output,
    )
    .expect("join");
    let log = ProcessingLog::default();
    let ctx = OperatorContext {
        query_id: "bench",
        log: &log,
    };
    for first in (0..TABLE_ROWS).step_by(BATCH) {
        let ids = first..(first + BATCH).min(TABLE_ROWS);
        let rows = batch(
            &table_schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| format!("p-{i}")),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.map(|i| format!("player {i}")),
                )),
            ],
            first,
            0,
        );
        join.process(JoinSide::Right, ChangeBatch::new(rows), &ctx)
            .expect("table rows");
    }
    // One in eleven players is not in the table (the LEFT JOIN's nulls).
    let input = batch(
        &stream_schema,
        vec![
            Arc::new(StringArray::from_iter_values((0..BATCH).map(|i| {
                format!("p-{}", (i * 7_919) % (TABLE_ROWS + TABLE_ROWS / 10))
            }))),
            Arc::new(Int64Array::from_iter_values((0..BATCH).map(|i| i as i64))),
        ],
        0,
        1,
    );
    let mut group = c.benchmark_group("stream_table_join");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("left_join_100k_rows", |b| {
        b.iter(|| {
            let out = join
                .process(JoinSide::Left, ChangeBatch::new(input.clone()), &ctx)
                .expect("join");
            assert_eq!(out.num_rows(), BATCH);
        })
    });
    group.finish();
}

criterion_group!(
    operators,
    json_decode,
    filter_projection,
    tumbling_window,
    stream_table_join
);
criterion_main!(operators);

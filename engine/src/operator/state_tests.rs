//! Snapshot round trips: for every stateful operator kind, processing
//! input A, snapshotting (through Arrow IPC, as checkpoints store it),
//! restoring into a new operator and processing input B gives exactly the
//! output of one operator that processed A then B without interruption.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::functions_aggregate::array_agg::array_agg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::first_last::first_value_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::{AggregateUDF, Operator as BinOp};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};

use super::filter::Filter;
use super::foreign_key_join::ForeignKeyJoin;
use super::group_aggregate::GroupAggregate;
use super::join_rows::{JoinKind, JoinSide};
use super::session_window_aggregate::SessionWindowAggregate;
use super::stream_stream_join::{JoinWindow, StreamStreamJoin};
use super::stream_table_join::StreamTableJoin;
use super::table_table_join::TableTableJoin;
use super::time_window_aggregate::{EmitMode, TimeWindowAggregate, WindowTiming};
use super::{JoinOperator, Operator, OperatorContext};
use crate::batch::ChangeBatch;
use crate::processing_log::ProcessingLog;
use crate::window::WindowType;

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// `names` as Int64 columns, then the pseudo columns.
fn input_schema(names: &[&str]) -> SchemaRef {
    let mut fields: Vec<Field> = names.iter().map(|n| field(n, DataType::Int64)).collect();
    fields.push(field("ROWTIME", DataType::Int64));
    fields.push(field("ROWPARTITION", DataType::Int32));
    fields.push(field("ROWOFFSET", DataType::Int64));
    schema(fields)
}

/// A deterministic scramble, so inputs have repeats, gaps and disorder.
fn noise(i: i64, salt: i64) -> i64 {
    (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 97) >> 5).rem_euclid(1_000)
}

/// Rows `from..to` of a stream of `columns` value columns: keys in 0..5,
/// times mostly increasing with some disorder; every `tombstone_every`th
/// row a tombstone (0: none).
fn rows(schema: &SchemaRef, from: i64, to: i64, salt: i64, tombstone_every: i64) -> ChangeBatch {
    let values = schema.fields().len() - 3;
    let mut columns: Vec<ArrayRef> = Vec::new();
    for c in 0..values as i64 {
        columns.push(Arc::new(Int64Array::from_iter_values(
            (from..to).map(|i| noise(i, salt + c) % if c == 0 { 5 } else { 50 }),
        )));
    }
    columns.push(Arc::new(Int64Array::from_iter_values(
        (from..to).map(|i| i * 100 + noise(i, salt) % 250),
    )));
    columns.push(Arc::new(Int32Array::from_iter_values(
        (from..to).map(|i| (i % 2) as i32),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(from..to)));
    let data = RecordBatch::try_new(schema.clone(), columns).expect("input batch");
    let tombstones = BooleanArray::from_iter(
        (from..to).map(|i| Some(tombstone_every > 0 && i % tombstone_every == tombstone_every - 1)),
    );
    ChangeBatch::with_tombstones(data, tombstones)
}

fn aggregate(
    udaf: Arc<AggregateUDF>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    input: &SchemaRef,
    name: &str,
) -> Arc<AggregateFunctionExpr> {
    Arc::new(
        AggregateExprBuilder::new(udaf, args)
            .schema(input.clone())
            .alias(name)
            .build()
            .expect("aggregate"),
    )
}

/// COUNT(*), SUM(V), FIRST_VALUE(V), MAX(V) and ARRAY_AGG(V): plain,
/// two-field and list-valued accumulator states.
fn aggregates(input: &SchemaRef) -> (Vec<Arc<AggregateFunctionExpr>>, Vec<Field>) {
    let v = col("V", input).expect("V");
    let aggregates = vec![
        aggregate(count_udaf(), vec![lit(1i64)], input, "C"),
        aggregate(sum_udaf(), vec![v.clone()], input, "S"),
        aggregate(first_value_udaf(), vec![v.clone()], input, "F"),
        aggregate(max_udaf(), vec![v.clone()], input, "M"),
        aggregate(array_agg_udaf(), vec![v], input, "L"),
    ];
    // Nullable: a session's retraction carries null values.
    let fields = aggregates
        .iter()
        .map(|a| a.field().as_ref().clone().with_nullable(true))
        .collect();
    (aggregates, fields)
}

/// The output layout of an aggregate: keys, aggregates, pseudo columns
/// and, windowed, the window.
fn aggregate_output(keys: &[&str], values: Vec<Field>, windowed: bool) -> SchemaRef {
    let mut fields: Vec<Field> = keys.iter().map(|k| field(k, DataType::Int64)).collect();
    fields.extend(values);
    fields.push(field("ROWTIME", DataType::Int64));
    fields.push(field("ROWPARTITION", DataType::Int32));
    fields.push(field("ROWOFFSET", DataType::Int64));
    if windowed {
        fields.push(field("WINDOWSTART", DataType::Int64));
        fields.push(field("WINDOWEND", DataType::Int64));
    }
    schema(fields)
}

/// Writes and reads back batches as Arrow IPC, as a checkpoint does.
fn through_ipc(parts: Vec<RecordBatch>) -> Vec<RecordBatch> {
    parts
        .into_iter()
        .map(|batch| {
            let mut bytes = Vec::new();
            {
                let mut writer =
                    StreamWriter::try_new(&mut bytes, &batch.schema()).expect("ipc writer");
                writer.write(&batch).expect("ipc write");
                writer.finish().expect("ipc finish");
            }
            let mut reader = StreamReader::try_new(bytes.as_slice(), None).expect("ipc reader");
            let read = reader.next().expect("one batch").expect("ipc read");
            assert_eq!(read, batch, "IPC changes nothing");
            read
        })
        .collect()
}

/// An output batch as text, tombstones marked.
fn render(out: &ChangeBatch) -> String {
    let marks: Vec<bool> = (0..out.num_rows()).map(|r| out.is_tombstone(r)).collect();
    format!(
        "{}\ntombstones {marks:?}\n",
        pretty_format_batches(std::slice::from_ref(&out.data)).expect("pretty")
    )
}

fn ctx(log: &ProcessingLog) -> OperatorContext<'_> {
    OperatorContext { query_id: "q", log }
}

/// Runs `inputs` through `make()` in one go and, separately, with a
/// snapshot and restore after the first `split` inputs; the outputs after
/// the split must be the same, and state must not be empty at the split.
fn assert_round_trip(make: impl Fn() -> Box<dyn Operator>, inputs: Vec<ChangeBatch>, split: usize) {
    let log = ProcessingLog::default();
    let ctx = ctx(&log);
    let mut whole = make();
    let mut expected = String::new();
    let mut first = make();
    for (i, input) in inputs.iter().enumerate() {
        let out = whole.process(input.clone(), &ctx).expect("process");
        let flushed = whole.flush(&ctx).expect("flush");
        if i >= split {
            expected += &render(&out);
            if let Some(f) = flushed {
                expected += &render(&f);
            }
        }
    }
    for input in &inputs[..split] {
        first.process(input.clone(), &ctx).expect("process");
        first.flush(&ctx).expect("flush");
    }
    assert!(first.state_rows() > 0, "the split leaves state to restore");
    let state = through_ipc(first.snapshot().expect("snapshot"));
    let mut second = make();
    second.restore(state).expect("restore");
    assert_eq!(second.state_rows(), first.state_rows());
    let mut actual = String::new();
    for input in &inputs[split..] {
        let out = second.process(input.clone(), &ctx).expect("process");
        actual += &render(&out);
        if let Some(f) = second.flush(&ctx).expect("flush") {
            actual += &render(&f);
        }
    }
    assert!(expected.contains('|'), "the run after the split emits rows");
    assert_eq!(actual, expected);
}

/// Batches whose first after `split` is far behind stream time: only an
/// operator with its stream time restored drops those records as late.
fn with_late_batch(
    schema: &SchemaRef,
    mut inputs: Vec<ChangeBatch>,
    split: usize,
) -> Vec<ChangeBatch> {
    inputs.insert(split, rows(schema, 0, 4, 9, 0));
    inputs
}

/// Small batches of `rows`, in order.
fn batches(schema: &SchemaRef, count: i64, salt: i64, tombstone_every: i64) -> Vec<ChangeBatch> {
    (0..count / 4)
        .map(|b| rows(schema, b * 4, b * 4 + 4, salt, tombstone_every))
        .collect()
}

#[test]
fn group_aggregate_over_a_stream_round_trips() {
    let input = input_schema(&["K", "V"]);
    let make = || -> Box<dyn Operator> {
        let (aggs, fields) = aggregates(&input);
        Box::new(
            GroupAggregate::new(
                vec![col("K", &input).expect("K")],
                aggs,
                &input,
                None,
                aggregate_output(&["K"], fields, false),
            )
            .expect("operator"),
        )
    };
    assert_round_trip(make, batches(&input, 80, 1, 0), 10);
}

#[test]
fn group_aggregate_over_a_table_round_trips() {
    // K is the table's key; rows move between groups G and get deleted.
    let input = input_schema(&["K", "G", "V"]);
    let make = || -> Box<dyn Operator> {
        let v = col("V", &input).expect("V");
        let aggs = vec![
            aggregate(count_udaf(), vec![lit(1i64)], &input, "C"),
            aggregate(sum_udaf(), vec![v], &input, "S"),
        ];
        let fields = aggs.iter().map(|a| a.field().as_ref().clone()).collect();
        Box::new(
            GroupAggregate::new(
                vec![col("G", &input).expect("G")],
                aggs,
                &input,
                Some(1),
                aggregate_output(&["G"], fields, false),
            )
            .expect("operator"),
        )
    };
    assert_round_trip(make, batches(&input, 80, 2, 7), 10);
}

fn window_aggregate(window: WindowType, timing: WindowTiming) -> impl Fn() -> Box<dyn Operator> {
    move || {
        let input = input_schema(&["K", "V"]);
        let (aggs, fields) = aggregates(&input);
        Box::new(
            TimeWindowAggregate::new(
                window,
                timing,
                vec![col("K", &input).expect("K")],
                aggs,
                &input,
                aggregate_output(&["K"], fields, true),
            )
            .expect("operator"),
        )
    }
}

#[test]
fn tumbling_emit_changes_round_trips() {
    let timing = WindowTiming {
        grace_ms: 50,
        retention_ms: 2_000,
        emit: EmitMode::Changes,
        flush_interval: None,
    };
    let input = input_schema(&["K", "V"]);
    // Records are up to 250 ms out of order: some are late on both sides
    // of the split, which only a restored stream time gets right.
    assert_round_trip(
        window_aggregate(WindowType::Tumbling { size_ms: 200 }, timing),
        with_late_batch(&input, batches(&input, 120, 3, 0), 12),
        12,
    );
}

#[test]
fn hopping_emit_final_round_trips() {
    let timing = WindowTiming {
        grace_ms: 100,
        retention_ms: 3_000,
        emit: EmitMode::Final,
        flush_interval: None,
    };
    let input = input_schema(&["K", "V"]);
    assert_round_trip(
        window_aggregate(
            WindowType::Hopping {
                size_ms: 1_000,
                advance_ms: 500,
            },
            timing,
        ),
        with_late_batch(&input, batches(&input, 120, 4, 0), 13),
        13,
    );
}

#[test]
fn held_updates_survive_a_round_trip() {
    // With a flush interval, updates are held between flushes: the ones
    // held at the snapshot must come out of the restored operator.
    let timing = WindowTiming {
        grace_ms: 10_000,
        retention_ms: 100_000,
        emit: EmitMode::Changes,
        flush_interval: Some(Duration::from_millis(200)),
    };
    let make = window_aggregate(WindowType::Tumbling { size_ms: 1_000 }, timing);
    let input = input_schema(&["K", "V"]);
    let log = ProcessingLog::default();
    let ctx = ctx(&log);
    let mut first = make();
    for b in batches(&input, 20, 5, 0) {
        first.process(b, &ctx).expect("process");
    }
    let state = through_ipc(first.snapshot().expect("snapshot"));
    let mut second = make();
    second.restore(state).expect("restore");
    std::thread::sleep(Duration::from_millis(250));
    let expected = first.flush(&ctx).expect("flush").expect("held updates");
    let actual = second.flush(&ctx).expect("flush").expect("held updates");
    assert!(expected.num_rows() > 0);
    assert_eq!(render(&actual), render(&expected));
}

#[test]
fn session_windows_round_trip() {
    let input = input_schema(&["K", "V"]);
    let make = || -> Box<dyn Operator> {
        let input = input_schema(&["K", "V"]);
        let (aggs, fields) = aggregates(&input);
        Box::new(
            SessionWindowAggregate::new(
                250,
                WindowTiming {
                    grace_ms: 200,
                    retention_ms: 5_000,
                    emit: EmitMode::Changes,
                    flush_interval: None,
                },
                vec![col("K", &input).expect("K")],
                aggs,
                &input,
                aggregate_output(&["K"], fields, true),
            )
            .expect("operator"),
        )
    };
    assert_round_trip(
        make,
        with_late_batch(&input, batches(&input, 120, 6, 0), 14),
        14,
    );
}

#[test]
fn table_filter_round_trips() {
    let input = input_schema(&["K", "V"]);
    let make = || -> Box<dyn Operator> {
        let predicate = Arc::new(BinaryExpr::new(
            col("V", &input).expect("V"),
            BinOp::Gt,
            lit(20i64),
        ));
        Box::new(Filter::for_table(predicate, input.clone(), 1).expect("filter"))
    };
    assert_round_trip(make, batches(&input, 80, 7, 5), 10);
}

/// A join as an [`Operator`] whose input alternates sides batch by batch,
/// so the round-trip harness drives joins too.
struct Alternating {
    join: Box<dyn JoinOperator>,
    left: bool,
}

impl Operator for Alternating {
    fn name(&self) -> &'static str {
        self.join.name()
    }
    fn output_schema(&self) -> SchemaRef {
        self.join.output_schema()
    }
    fn process(
        &mut self,
        input: ChangeBatch,
        ctx: &OperatorContext,
    ) -> crate::error::Result<ChangeBatch> {
        let side = if self.left {
            JoinSide::Left
        } else {
            JoinSide::Right
        };
        self.left = !self.left;
        self.join.process(side, input, ctx)
    }
    fn state_rows(&self) -> usize {
        self.join.state_rows()
    }
    fn snapshot(&mut self) -> crate::error::Result<Vec<RecordBatch>> {
        let mut parts = self.join.snapshot()?;
        parts.push(super::state::meta(&[("left", i64::from(self.left))])?);
        Ok(parts)
    }
    fn restore(&mut self, mut state: Vec<RecordBatch>) -> crate::error::Result<()> {
        let meta = state.pop().expect("side");
        self.left = super::state::meta_value(&meta, "left")? == 1;
        self.join.restore(state)
    }
}

/// Both sides share one layout: key, one value, pseudo columns.
fn join_output(left: &SchemaRef, right: &SchemaRef) -> SchemaRef {
    let mut fields = vec![field("K", DataType::Int64)];
    fields.extend(left.fields().iter().map(|f| f.as_ref().clone()));
    fields.extend(right.fields().iter().map(|f| f.as_ref().clone()));
    fields.push(field("ROWTIME", DataType::Int64));
    fields.push(field("ROWPARTITION", DataType::Int32));
    fields.push(field("ROWOFFSET", DataType::Int64));
    schema(fields)
}

fn join_round_trip(make_join: impl Fn(SchemaRef, SchemaRef, SchemaRef) -> Box<dyn JoinOperator>) {
    join_round_trip_with(make_join, 0);
}

fn join_round_trip_with(
    make_join: impl Fn(SchemaRef, SchemaRef, SchemaRef) -> Box<dyn JoinOperator>,
    tombstone_every: i64,
) {
    let left = input_schema(&["LK", "LV"]);
    let right = input_schema(&["RK", "RV"]);
    let output = join_output(&left, &right);
    let make = || -> Box<dyn Operator> {
        Box::new(Alternating {
            join: make_join(left.clone(), right.clone(), output.clone()),
            left: true,
        })
    };
    let inputs: Vec<ChangeBatch> = (0..30)
        .map(|b| {
            let side = if b % 2 == 0 { &left } else { &right };
            rows(side, b * 4, b * 4 + 4, b % 2, tombstone_every)
        })
        .collect();
    assert_round_trip(make, inputs, 11);
}

#[test]
fn stream_stream_join_round_trips() {
    for grace_ms in [None, Some(150)] {
        join_round_trip(|l, r, o| {
            Box::new(
                StreamStreamJoin::new(
                    JoinKind::Outer,
                    JoinWindow {
                        before_ms: 300,
                        after_ms: 200,
                        grace_ms,
                    },
                    l,
                    r,
                    o,
                )
                .expect("join"),
            )
        });
    }
}

#[test]
fn stream_table_join_round_trips() {
    join_round_trip_with(
        |l, r, o| Box::new(StreamTableJoin::new(JoinKind::Left, l, r, o).expect("join")),
        6,
    );
}

#[test]
fn table_table_join_round_trips() {
    join_round_trip_with(
        |l, r, o| Box::new(TableTableJoin::new(JoinKind::Outer, l, r, o).expect("join")),
        5,
    );
}

#[test]
fn foreign_key_join_round_trips() {
    // Left column 0 is the foreign key, its value column (0..50) the
    // left table's primary key.
    join_round_trip_with(
        |l, r, o| Box::new(ForeignKeyJoin::new(JoinKind::Left, l, vec![1], r, o).expect("join")),
        6,
    );
}

#[test]
fn restoring_foreign_state_fails_clearly() {
    let input = input_schema(&["K", "V"]);
    let (aggs, fields) = aggregates(&input);
    let mut op = GroupAggregate::new(
        vec![col("K", &input).expect("K")],
        aggs,
        &input,
        None,
        aggregate_output(&["K"], fields, false),
    )
    .expect("operator");
    let err = op
        .restore(vec![super::state::meta(&[("x", 1)]).expect("meta")])
        .expect_err("wrong parts");
    assert!(err.to_string().contains("parts"), "{err}");
    let mut stateless =
        super::projection::Projection::new(vec![col("K", &input).expect("K")], input.clone());
    assert!(stateless.restore(vec![]).is_ok());
    assert!(stateless.snapshot().expect("snapshot").is_empty());
}

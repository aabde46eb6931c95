//! [`TimeWindowAggregate`]: `GROUP BY` over TUMBLING and HOPPING windows.
//!
//! Each record is added to every window it falls in. Stream time is the
//! largest record time seen; a window takes records until its end plus the
//! grace period has passed, later ones are dropped and logged. With
//! `EMIT CHANGES` every update is emitted; with `EMIT FINAL` a window is
//! emitted once, when it closes. Windows are forgotten once they are older
//! than the retention, so state is bounded by retention, not by history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// DataFusion's hash map: keys here are hashed once per record, and its
// default hasher is much faster than std's.
use datafusion::common::hash_map::Entry;
use datafusion::common::{HashMap, HashSet};

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::accumulators::{
    AggregateSet, EmittedRow, EvaluatedInput, build_output_with_keys, group_key_converter, skip_row,
};
use super::state::{self, AccumulatorStates};
use super::{Operator, OperatorContext};
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::processing_log::ProcessingErrorKind;
use crate::window::WindowType;

/// When a windowed aggregate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Every change, as it happens.
    Changes,
    /// Once per window, when it closes.
    Final,
}

/// Timing of a windowed aggregation, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WindowTiming {
    pub grace_ms: i64,
    pub retention_ms: i64,
    pub emit: EmitMode,
    /// With `EMIT CHANGES`: hold updates and emit each changed window at
    /// most once per this interval, as ksqlDB's record cache does between
    /// commits. `None` emits after every input batch.
    pub flush_interval: Option<Duration>,
}

/// A group key and how many live windows use it; a group without windows
/// is forgotten, so state stays bounded by retention, not by history.
struct GroupKey {
    row: OwnedRow,
    windows: usize,
}

struct WindowState {
    accumulators: Vec<Box<dyn Accumulator>>,
    rowtime: i64,
    partition: i32,
    offset: i64,
}

pub struct TimeWindowAggregate {
    window: WindowType,
    size_ms: i64,
    timing: WindowTiming,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: AggregateSet,
    output_schema: SchemaRef,
    converter: RowConverter,
    /// Dense ids of the group keys seen, so that per-record lookups hash a
    /// number rather than the key; `group_keys[id]` holds its values.
    group_ids: HashMap<Box<[u8]>, u32>,
    group_keys: Vec<GroupKey>,
    /// Ids whose group has no live window any more, for reuse.
    free_ids: Vec<u32>,
    /// Ids freed during the current batch: reusable once the batch's output
    /// (which may still name them) is built.
    freed_in_batch: Vec<u32>,
    windows: HashMap<(u32, i64), WindowState>,
    /// The groups of every live window by (end, start), for closing and
    /// expiry.
    by_end: BTreeMap<(i64, i64), Vec<u32>>,
    /// The group of each row of `out`, whose key the output is built from.
    out_groups: Vec<u32>,
    stream_time: i64,
    late_records: u64,
    /// Windows changed since the last flush, in first-change order.
    pending: Vec<(u32, i64)>,
    pending_set: HashSet<(u32, i64)>,
    last_flush: Instant,
}

impl TimeWindowAggregate {
    pub fn new(
        window: WindowType,
        timing: WindowTiming,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input_schema: &SchemaRef,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let size_ms = match window {
            WindowType::Tumbling { size_ms } | WindowType::Hopping { size_ms, .. } => size_ms,
            WindowType::Session => {
                return Err(EngineError::Plan(
                    "session windows need SessionWindowAggregate".into(),
                ));
            }
        };
        let converter = group_key_converter(&group_exprs, input_schema)?;
        Ok(TimeWindowAggregate {
            window,
            size_ms,
            timing,
            group_exprs,
            aggregates: AggregateSet { aggregates },
            output_schema,
            converter,
            group_ids: HashMap::new(),
            group_keys: Vec::new(),
            free_ids: Vec::new(),
            freed_in_batch: Vec::new(),
            windows: HashMap::new(),
            by_end: BTreeMap::new(),
            out_groups: Vec::new(),
            stream_time: i64::MIN,
            late_records: 0,
            pending: Vec::new(),
            pending_set: HashSet::new(),
            last_flush: Instant::now(),
        })
    }

    /// Windows held in state now.
    pub fn live_windows(&self) -> usize {
        self.windows.len()
    }

    /// Group keys with at least one live window.
    pub fn live_groups(&self) -> usize {
        self.group_ids.len()
    }

    /// Records dropped for arriving after their window closed.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    fn emit(&self, state: &mut WindowState, start: i64) -> Result<EmittedRow> {
        Ok(EmittedRow {
            key: Vec::new(),
            values: Some(AggregateSet::evaluate(&mut state.accumulators)?),
            rowtime: state.rowtime,
            partition: state.partition,
            offset: state.offset,
            window: Some((start, start.saturating_add(self.size_ms))),
        })
    }

    fn flush_due(&self) -> bool {
        self.timing
            .flush_interval
            .is_none_or(|interval| self.last_flush.elapsed() >= interval)
    }

    /// Emits every window changed since the last flush, once.
    fn drain_pending(&mut self, out: &mut Vec<EmittedRow>) -> Result<()> {
        self.pending_set.clear();
        for slot in std::mem::take(&mut self.pending) {
            // A window that expired meanwhile was emitted as it expired.
            if let Some(state) = self.windows.get_mut(&slot) {
                out.push(EmittedRow {
                    key: Vec::new(),
                    values: Some(AggregateSet::evaluate(&mut state.accumulators)?),
                    rowtime: state.rowtime,
                    partition: state.partition,
                    offset: state.offset,
                    window: Some((slot.1, slot.1.saturating_add(self.size_ms))),
                });
                self.out_groups.push(slot.0);
            }
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// The batch of `out`, keyed by the groups recorded in `out_groups`;
    /// afterwards ids freed meanwhile become reusable.
    fn build(&mut self, out: Vec<EmittedRow>) -> Result<ChangeBatch> {
        let groups = std::mem::take(&mut self.out_groups);
        let keys = if out.is_empty() {
            Vec::new()
        } else {
            self.converter.convert_rows(
                groups
                    .iter()
                    .map(|g| self.group_keys[*g as usize].row.row()),
            )?
        };
        self.free_ids.append(&mut self.freed_in_batch);
        build_output_with_keys(
            &self.output_schema,
            keys,
            self.aggregates.aggregates.len(),
            out,
        )
    }

    /// The id of a group key, assigning one to a new key.
    fn group_id(&mut self, key_row: datafusion::arrow::row::Row<'_>) -> Result<u32> {
        if let Some(id) = self.group_ids.get(key_row.as_ref()) {
            return Ok(*id);
        }
        let key = GroupKey {
            row: key_row.owned(),
            windows: 0,
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.group_keys[id as usize] = key;
                id
            }
            None => {
                self.group_keys.push(key);
                u32::try_from(self.group_keys.len() - 1).map_err(|_| {
                    EngineError::Execution("more than 2^32 live window groups".into())
                })?
            }
        };
        self.group_ids.insert(key_row.as_ref().into(), id);
        Ok(id)
    }

    /// Drops one window's hold on its group; the last one frees the id.
    fn release_group(&mut self, group: u32) {
        let key = &mut self.group_keys[group as usize];
        key.windows = key.windows.saturating_sub(1);
        if key.windows == 0 {
            self.group_ids.remove(key.row.as_ref());
            self.freed_in_batch.push(group);
        }
    }

    /// Forgets windows older than the retention, then (EMIT FINAL) emits
    /// the windows that closed. As in Kafka Streams' emit-on-close, a
    /// window that left the retention before it could be emitted is never
    /// emitted: retention is at least size plus grace, so that only happens
    /// when stream time jumps.
    fn close_and_expire(&mut self, out: &mut Vec<EmittedRow>) -> Result<()> {
        let close_before = self.stream_time.saturating_sub(self.timing.grace_ms);
        let expire_before = self.stream_time.saturating_sub(self.timing.retention_ms);
        let finalize = self.timing.emit == EmitMode::Final;
        while let Some((&(end, start), _)) = self.by_end.first_key_value() {
            let expired = start < expire_before;
            let closed = end <= close_before;
            let due = expired || (finalize && closed);
            if !due {
                break;
            }
            let Some((_, mut groups)) = self.by_end.pop_first() else {
                break;
            };
            if !expired {
                // Simultaneous closings come out in key order, as from a
                // key-ordered store.
                groups.sort_by(|a, b| {
                    self.group_keys[*a as usize]
                        .row
                        .cmp(&self.group_keys[*b as usize].row)
                });
            }
            for group in groups {
                if let Some(mut state) = self.windows.remove(&(group, start)) {
                    // An expiring window still owes the update it is
                    // holding back (EMIT CHANGES between flushes): a batch
                    // can span more than the retention, as a backlog does,
                    // and dropping it would lose the window's last value.
                    let owed = expired && self.pending_set.remove(&(group, start));
                    if !expired || owed {
                        out.push(self.emit(&mut state, start)?);
                        self.out_groups.push(group);
                    }
                    self.release_group(group);
                }
            }
        }
        Ok(())
    }
}

impl Operator for TimeWindowAggregate {
    fn name(&self) -> &'static str {
        "TimeWindowAggregate"
    }

    fn state_rows(&self) -> usize {
        self.windows.len()
    }

    fn late_records(&self) -> u64 {
        self.late_records
    }

    fn flush(&mut self, _ctx: &OperatorContext) -> Result<Option<ChangeBatch>> {
        if self.pending.is_empty() || !self.flush_due() {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.drain_pending(&mut out)?;
        Ok(Some(self.build(out)?))
    }

    fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let n = input.num_rows();
        let evaluated = EvaluatedInput::new(
            &input.data,
            &self.group_exprs,
            &self.aggregates,
            &self.converter,
            ctx,
        )?;
        let mut out = Vec::new();
        // Changed windows are emitted once per flush: after each batch (one
        // record per batch is ksqlDB's per-record output; larger batches
        // coalesce), or once per flush interval when one is set.
        for row in 0..n {
            if skip_row(&input, &evaluated, row, ctx) {
                continue;
            }
            let rowtime = evaluated.rowtimes.value(row);
            self.stream_time = self.stream_time.max(rowtime);
            let close_before = self.stream_time.saturating_sub(self.timing.grace_ms);
            let group = self.group_id(evaluated.group_rows.row(row))?;
            for start in self.window.windows_for(rowtime) {
                let end = start.saturating_add(self.size_ms);
                if end <= close_before {
                    self.late_records += 1;
                    ctx.log_error(
                        ProcessingErrorKind::Dropped,
                        format!("Record dropped: window [{start}, {end}) closed (record time {rowtime}, stream time {})", self.stream_time),
                    );
                    continue;
                }
                let state = match self.windows.entry((group, start)) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => {
                        self.group_keys[group as usize].windows += 1;
                        self.by_end.entry((end, start)).or_default().push(group);
                        v.insert(WindowState {
                            accumulators: self.aggregates.new_accumulators(false)?,
                            rowtime,
                            partition: evaluated.partitions.value(row),
                            offset: evaluated.offsets.value(row),
                        })
                    }
                };
                AggregateSet::update(&mut state.accumulators, &evaluated.args, row)?;
                state.rowtime = state.rowtime.max(rowtime);
                state.partition = evaluated.partitions.value(row);
                state.offset = evaluated.offsets.value(row);
                if self.timing.emit == EmitMode::Changes && self.pending_set.insert((group, start))
                {
                    self.pending.push((group, start));
                }
            }
            self.close_and_expire(&mut out)?;
        }
        if self.flush_due() {
            self.drain_pending(&mut out)?;
        }
        self.build(out)
    }

    /// Two parts: every live window (`key0..`, `start`, `rowtime`,
    /// `partition`, `offset`, its place among the held updates `pending`
    /// or -1, accumulator states `agg{i}.{j}`), and the counters
    /// `stream_time`, `late_records`.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let pending: HashMap<(u32, i64), i64> = self
            .pending
            .iter()
            .enumerate()
            .map(|(i, slot)| (*slot, i as i64))
            .collect();
        let n = self.windows.len();
        let mut keys = Vec::with_capacity(n);
        let (mut starts, mut rowtimes, mut partitions, mut offsets, mut places) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut states = AccumulatorStates::default();
        for (slot, window) in self.windows.iter_mut() {
            keys.push(&self.group_keys[slot.0 as usize].row);
            starts.push(slot.1);
            rowtimes.push(window.rowtime);
            partitions.push(window.partition);
            offsets.push(window.offset);
            places.push(pending.get(slot).copied().unwrap_or(-1));
            states.push(&mut window.accumulators)?;
        }
        let mut columns = state::key_columns(&self.converter, keys.into_iter(), "key")?;
        let mut add = |name: &str, array: ArrayRef| columns.push((name.to_string(), array));
        add("start", Arc::new(Int64Array::from(starts)));
        add("rowtime", Arc::new(Int64Array::from(rowtimes)));
        add("partition", Arc::new(Int32Array::from(partitions)));
        add("offset", Arc::new(Int64Array::from(offsets)));
        add("pending", Arc::new(Int64Array::from(places)));
        columns.extend(states.into_columns()?);
        Ok(vec![
            state::batch(columns, n)?,
            state::meta(&[
                ("stream_time", self.stream_time),
                ("late_records", self.late_records as i64),
            ])?,
        ])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [windows, meta] = state::expect_parts::<2>("TimeWindowAggregate", parts)?;
        self.stream_time = state::meta_value(&meta, "stream_time")?;
        self.late_records = u64::try_from(state::meta_value(&meta, "late_records")?).unwrap_or(0);
        let keys = self
            .converter
            .convert_columns(&state::numbered(&windows, "key"))?;
        let starts = state::i64s(&windows, "start")?;
        let rowtimes = state::i64s(&windows, "rowtime")?;
        let partitions = state::i32s(&windows, "partition")?;
        let offsets = state::i64s(&windows, "offset")?;
        let places = state::i64s(&windows, "pending")?;
        let states = AccumulatorStates::columns_of(&windows, self.aggregates.aggregates.len());
        let mut pending = Vec::new();
        for row in 0..windows.num_rows() {
            let group = self.group_id(keys.row(row))?;
            let start = starts.value(row);
            let mut accumulators = self.aggregates.new_accumulators(false)?;
            AccumulatorStates::restore_row(&states, row, &mut accumulators)?;
            let previous = self.windows.insert(
                (group, start),
                WindowState {
                    accumulators,
                    rowtime: rowtimes.value(row),
                    partition: partitions.value(row),
                    offset: offsets.value(row),
                },
            );
            if previous.is_some() {
                return Err(EngineError::Checkpoint(
                    "TimeWindowAggregate state holds a window twice".into(),
                ));
            }
            self.group_keys[group as usize].windows += 1;
            let end = start.saturating_add(self.size_ms);
            self.by_end.entry((end, start)).or_default().push(group);
            if places.value(row) >= 0 {
                pending.push((places.value(row), (group, start)));
            }
        }
        pending.sort_unstable();
        self.pending = pending.into_iter().map(|(_, slot)| slot).collect();
        self.pending_set = self.pending.iter().copied().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::{Array, Int32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{col, lit};

    use super::*;
    use crate::processing_log::ProcessingLog;

    fn schema(names: &[&str]) -> SchemaRef {
        Arc::new(Schema::new(
            names
                .iter()
                .map(|n| {
                    Field::new(
                        *n,
                        if *n == "ROWPARTITION" {
                            DataType::Int32
                        } else {
                            DataType::Int64
                        },
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        ))
    }

    fn batch(schema: &SchemaRef, keys: &[i64], times: &[i64]) -> ChangeBatch {
        let n = keys.len();
        ChangeBatch::new(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(keys.to_vec())),
                    Arc::new(Int64Array::from(times.to_vec())),
                    Arc::new(Int32Array::from(vec![0; n])),
                    Arc::new(Int64Array::from_iter_values(0..n as i64)),
                ],
            )
            .expect("batch"),
        )
    }

    /// COUNT(*) per key `K` over 1-second tumbling windows.
    fn counting_operator(timing: WindowTiming) -> (SchemaRef, TimeWindowAggregate) {
        let input = schema(&["K", "ROWTIME", "ROWPARTITION", "ROWOFFSET"]);
        let output = schema(&[
            "K",
            "C",
            "ROWTIME",
            "ROWPARTITION",
            "ROWOFFSET",
            "WINDOWSTART",
            "WINDOWEND",
        ]);
        let count = AggregateExprBuilder::new(count_udaf(), vec![lit(1i64)])
            .schema(input.clone())
            .alias("C")
            .build()
            .expect("count");
        let op = TimeWindowAggregate::new(
            WindowType::Tumbling { size_ms: 1_000 },
            timing,
            vec![col("K", &input).expect("K")],
            vec![Arc::new(count)],
            &input,
            output,
        )
        .expect("operator");
        (input, op)
    }

    #[test]
    fn a_flush_interval_coalesces_updates_across_batches() {
        let timing = WindowTiming {
            grace_ms: 1_000,
            retention_ms: 10_000,
            emit: EmitMode::Changes,
            flush_interval: Some(Duration::from_millis(40)),
        };
        let (input, mut op) = counting_operator(timing);
        let log = ProcessingLog::default();
        let ctx = OperatorContext {
            query_id: "t",
            log: &log,
        };
        assert_eq!(
            op.process(batch(&input, &[1, 2], &[10, 20]), &ctx)
                .expect("process")
                .num_rows(),
            0
        );
        assert_eq!(
            op.process(batch(&input, &[1], &[30]), &ctx)
                .expect("process")
                .num_rows(),
            0
        );
        assert!(
            op.flush(&ctx).expect("flush").is_none(),
            "nothing is due yet"
        );
        std::thread::sleep(Duration::from_millis(50));
        let flushed = op.flush(&ctx).expect("flush").expect("due now").data;
        // One update per changed window, carrying both batches.
        let counts = flushed
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("counts")
            .clone();
        assert_eq!(counts.iter().flatten().collect::<Vec<_>>(), vec![2, 1]);
        assert!(
            op.flush(&ctx).expect("flush").is_none(),
            "nothing left to flush"
        );
    }

    /// A backlog batch spanning more than the retention: the first
    /// window expires within the batch, before the batch's flush, and must
    /// still be emitted once with its final count.
    #[test]
    fn a_window_expiring_within_a_batch_is_still_emitted() {
        let timing = WindowTiming {
            grace_ms: 0,
            retention_ms: 1_000,
            emit: EmitMode::Changes,
            flush_interval: None,
        };
        let (input, mut op) = counting_operator(timing);
        let log = ProcessingLog::default();
        let ctx = OperatorContext {
            query_id: "t",
            log: &log,
        };
        let out = op
            .process(batch(&input, &[1, 1, 1], &[10, 20, 5_000]), &ctx)
            .expect("process")
            .data;
        let column = |i: usize| {
            out.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64")
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        };
        assert_eq!(column(5), vec![0, 5_000], "window starts");
        assert_eq!(column(1), vec![2, 1], "counts");
        assert_eq!(op.state_rows(), 1, "the expired window is gone");
    }
}

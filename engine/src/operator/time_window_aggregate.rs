//! [`TimeWindowAggregate`]: `GROUP BY` over TUMBLING and HOPPING windows.
//!
//! Each record is added to every window it falls in. Stream time is the
//! largest record time seen; a window takes records until its end plus the
//! grace period has passed, later ones are dropped and logged. With
//! `EMIT CHANGES` every update is emitted; with `EMIT FINAL` a window is
//! emitted once, when it closes. Windows are forgotten once they are older
//! than the retention, so state is bounded by retention, not by history.
//!
//! State is kept per window: the groups seen in it and their accumulators
//! ([`GroupStates`]), so that a batch updates each window's aggregates in
//! one vectorised call and an expiring window is dropped whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// DataFusion's hash map: keys here are hashed once per record, and its
// default hasher is much faster than std's.
use datafusion::common::HashMap;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, interleave_record_batch, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::accumulators::{EvaluatedInput, group_key_converter, skip_row};
use super::group_states::GroupStates;
use super::state;
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

/// One live window: its groups, numbered by slot, and their state.
struct Window {
    slot_of: HashMap<u32, u32>,
    /// Per slot: the group id, and the newest record's time and position.
    groups: Vec<u32>,
    rowtimes: Vec<i64>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Per slot: whether an update is held for the next flush.
    pending: Vec<bool>,
    states: GroupStates,
}

impl Window {
    fn new(aggregates: &Arc<[Arc<AggregateFunctionExpr>]>) -> Result<Self> {
        Ok(Window {
            slot_of: HashMap::new(),
            groups: Vec::new(),
            rowtimes: Vec::new(),
            partitions: Vec::new(),
            offsets: Vec::new(),
            pending: Vec::new(),
            states: GroupStates::new(aggregates.clone())?,
        })
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    /// The slot of `group`, and whether it is new to this window.
    fn slot(&mut self, group: u32) -> Result<(usize, bool)> {
        if let Some(slot) = self.slot_of.get(&group) {
            return Ok((*slot as usize, false));
        }
        let slot = self.states.add_group()?;
        let id = u32::try_from(slot)
            .map_err(|_| EngineError::Execution("more than 2^32 groups in one window".into()))?;
        self.slot_of.insert(group, id);
        self.groups.push(group);
        self.rowtimes.push(i64::MIN);
        self.partitions.push(0);
        self.offsets.push(0);
        self.pending.push(false);
        Ok((slot, true))
    }
}

/// The rows of one input batch that go to one window.
#[derive(Default)]
struct WindowRows {
    rows: Vec<u32>,
    slots: Vec<usize>,
}

impl WindowRows {
    /// Records that `row` goes to `slot` of the window at `start`; a batch
    /// touches few windows, so a list beats a map.
    fn add(windows: &mut Vec<(i64, WindowRows)>, start: i64, row: usize, slot: usize) {
        let at = match windows.iter().position(|(s, _)| *s == start) {
            Some(at) => at,
            None => {
                windows.push((start, WindowRows::default()));
                windows.len() - 1
            }
        };
        windows[at].1.rows.push(row as u32);
        windows[at].1.slots.push(slot);
    }
}

pub struct TimeWindowAggregate {
    window: WindowType,
    size_ms: i64,
    timing: WindowTiming,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Arc<[Arc<AggregateFunctionExpr>]>,
    output_schema: SchemaRef,
    converter: RowConverter,
    /// Dense ids of the group keys seen, so that windows index groups by a
    /// number rather than the key; `group_keys[id]` holds its values.
    group_ids: HashMap<Box<[u8]>, u32>,
    group_keys: Vec<GroupKey>,
    /// Ids whose group has no live window any more, for reuse.
    free_ids: Vec<u32>,
    /// Live windows by start (all have the same size, so this is also
    /// the order they close and expire in).
    windows: BTreeMap<i64, Window>,
    stream_time: i64,
    late_records: u64,
    /// Updates held for the next flush, (window start, slot), in
    /// first-change order.
    pending: Vec<(i64, usize)>,
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
            aggregates: aggregates.into(),
            output_schema,
            converter,
            group_ids: HashMap::new(),
            group_keys: Vec::new(),
            free_ids: Vec::new(),
            windows: BTreeMap::new(),
            stream_time: i64::MIN,
            late_records: 0,
            pending: Vec::new(),
            last_flush: Instant::now(),
        })
    }

    /// (group, window) pairs held in state now.
    pub fn live_windows(&self) -> usize {
        self.windows.values().map(Window::len).sum()
    }

    /// Group keys with at least one live window.
    pub fn live_groups(&self) -> usize {
        self.group_ids.len()
    }

    /// Records dropped for arriving after their window closed.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    fn flush_due(&self) -> bool {
        self.timing
            .flush_interval
            .is_none_or(|interval| self.last_flush.elapsed() >= interval)
    }

    /// The output rows of `slots` of the window starting at `start`.
    fn emit(&mut self, start: i64, slots: &[usize]) -> Result<RecordBatch> {
        let end = start.saturating_add(self.size_ms);
        let window = self
            .windows
            .get_mut(&start)
            .ok_or_else(|| EngineError::Execution(format!("no window at {start}")))?;
        let values = window.states.values(slots)?;
        let keys = self.converter.convert_rows(
            slots
                .iter()
                .map(|s| self.group_keys[window.groups[*s] as usize].row.row()),
        )?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        columns.extend(keys);
        columns.extend(values);
        let pick_i64 =
            |v: &[i64]| Arc::new(Int64Array::from_iter_values(slots.iter().map(|s| v[*s])));
        columns.push(pick_i64(&window.rowtimes));
        columns.push(Arc::new(Int32Array::from_iter_values(
            slots.iter().map(|s| window.partitions[*s]),
        )));
        columns.push(pick_i64(&window.offsets));
        if self.output_schema.fields().len() > columns.len() {
            columns.push(Arc::new(Int64Array::from_value(start, slots.len())));
            columns.push(Arc::new(Int64Array::from_value(end, slots.len())));
        }
        // The planner's output types may differ from what the key encoding
        // or an accumulator produces (e.g. a narrower integer).
        let columns = columns
            .into_iter()
            .zip(self.output_schema.fields().iter())
            .map(|(array, field)| {
                Ok(if array.data_type() == field.data_type() {
                    array
                } else {
                    datafusion::arrow::compute::cast(&array, field.data_type())?
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.output_schema.clone(), columns)?)
    }

    /// Emits every window changed since the last flush, once, in the
    /// order they first changed.
    fn drain_pending(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        // Per window, the slots to emit; and per output row, which
        // window's batch and row it comes from.
        let mut parts: Vec<(i64, Vec<usize>)> = Vec::new();
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(self.pending.len());
        for (start, slot) in std::mem::take(&mut self.pending) {
            // A window that expired meanwhile was emitted as it expired.
            let Some(window) = self.windows.get_mut(&start) else {
                continue;
            };
            window.pending[slot] = false;
            let part = match parts.iter().position(|(s, _)| *s == start) {
                Some(part) => part,
                None => {
                    parts.push((start, Vec::new()));
                    parts.len() - 1
                }
            };
            order.push((part, parts[part].1.len()));
            parts[part].1.push(slot);
        }
        let batches = parts
            .iter()
            .map(|(start, slots)| self.emit(*start, slots))
            .collect::<Result<Vec<_>>>()?;
        match batches.len() {
            0 => {}
            1 => out.extend(batches),
            _ => {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                out.push(interleave_record_batch(&refs, &order)?);
            }
        }
        Ok(())
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
            self.free_ids.push(group);
        }
    }

    /// Forgets windows older than the retention, then (EMIT FINAL) emits
    /// the windows that closed. As in Kafka Streams' emit-on-close, a
    /// window that left the retention before it could be emitted is never
    /// emitted: retention is at least size plus grace, so that only happens
    /// when stream time jumps.
    fn close_and_expire(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        let close_before = self.stream_time.saturating_sub(self.timing.grace_ms);
        let expire_before = self.stream_time.saturating_sub(self.timing.retention_ms);
        let finalize = self.timing.emit == EmitMode::Final;
        while let Some((&start, _)) = self.windows.first_key_value() {
            let end = start.saturating_add(self.size_ms);
            let expired = start < expire_before;
            let closed = end <= close_before;
            if !(expired || (finalize && closed)) {
                break;
            }
            let Some(window) = self.windows.get(&start) else {
                break;
            };
            let slots: Vec<usize> = if expired {
                // An expiring window still owes the updates it is holding
                // back (EMIT CHANGES between flushes): a batch can span
                // more than the retention, as a backlog does, and dropping
                // them would lose the window's last values.
                (0..window.len()).filter(|s| window.pending[*s]).collect()
            } else {
                // Simultaneous closings come out in key order, as from a
                // key-ordered store.
                let mut slots: Vec<usize> = (0..window.len()).collect();
                slots.sort_by(|a, b| {
                    self.group_keys[window.groups[*a] as usize]
                        .row
                        .cmp(&self.group_keys[window.groups[*b] as usize].row)
                });
                slots
            };
            if !slots.is_empty() {
                out.push(self.emit(start, &slots)?);
            }
            if let Some(window) = self.windows.remove(&start) {
                for group in window.groups {
                    self.release_group(group);
                }
            }
        }
        Ok(())
    }

    fn build(&self, out: Vec<RecordBatch>) -> Result<ChangeBatch> {
        let data = match out.len() {
            0 => return Ok(ChangeBatch::empty(self.output_schema.clone())),
            1 => out
                .into_iter()
                .next()
                .ok_or_else(|| EngineError::Execution("no output".into()))?,
            _ => concat_batches(&self.output_schema, &out)?,
        };
        Ok(ChangeBatch::new(data))
    }
}

impl Operator for TimeWindowAggregate {
    fn name(&self) -> &'static str {
        "TimeWindowAggregate"
    }

    fn state_rows(&self) -> usize {
        self.live_windows()
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
        let changes = self.timing.emit == EmitMode::Changes;
        // Which rows go to which window (and slot there); the windows'
        // accumulators are then updated once per window.
        let mut touched: Vec<(i64, WindowRows)> = Vec::new();
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
                let window = match self.windows.get_mut(&start) {
                    Some(window) => window,
                    None => self
                        .windows
                        .entry(start)
                        .or_insert(Window::new(&self.aggregates)?),
                };
                let (slot, new) = window.slot(group)?;
                if new {
                    self.group_keys[group as usize].windows += 1;
                }
                window.rowtimes[slot] = window.rowtimes[slot].max(rowtime);
                window.partitions[slot] = evaluated.partitions.value(row);
                window.offsets[slot] = evaluated.offsets.value(row);
                if changes && !window.pending[slot] {
                    window.pending[slot] = true;
                    self.pending.push((start, slot));
                }
                WindowRows::add(&mut touched, start, row, slot);
            }
        }
        for (start, rows) in touched {
            let Some(window) = self.windows.get_mut(&start) else {
                continue;
            };
            if rows.rows.len() == n {
                // Every row, in order: no need to copy the arguments.
                window.states.update(&evaluated.args, &rows.slots)?;
            } else {
                let indices = UInt32Array::from(rows.rows);
                let args = evaluated
                    .args
                    .iter()
                    .map(|args| {
                        args.iter()
                            .map(|a| take(a.as_ref(), &indices, None))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                window.states.update(&args, &rows.slots)?;
            }
        }
        let mut out = Vec::new();
        self.close_and_expire(&mut out)?;
        // Changed windows are emitted once per flush: after each batch (one
        // record per batch is ksqlDB's per-record output; larger batches
        // coalesce), or once per flush interval when one is set.
        if self.flush_due() {
            self.drain_pending(&mut out)?;
        }
        self.build(out)
    }

    /// Two parts: every live (group, window) (`key0..`, `start`,
    /// `rowtime`, `partition`, `offset`, its place among the held updates
    /// `pending` or -1, accumulator states `agg{i}.{j}`), and the counters
    /// `stream_time`, `late_records`.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let places: HashMap<(i64, usize), i64> = self
            .pending
            .iter()
            .enumerate()
            .map(|(i, slot)| (*slot, i as i64))
            .collect();
        let mut parts = Vec::with_capacity(self.windows.len());
        for (start, window) in self.windows.iter_mut() {
            let n = window.len();
            let keys = window
                .groups
                .iter()
                .map(|g| &self.group_keys[*g as usize].row);
            let mut columns = state::key_columns(&self.converter, keys, "key")?;
            let mut add = |name: &str, array: ArrayRef| columns.push((name.to_string(), array));
            add("start", Arc::new(Int64Array::from_value(*start, n)));
            add(
                "rowtime",
                Arc::new(Int64Array::from(window.rowtimes.clone())),
            );
            add(
                "partition",
                Arc::new(Int32Array::from(window.partitions.clone())),
            );
            add("offset", Arc::new(Int64Array::from(window.offsets.clone())));
            add(
                "pending",
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|s| places.get(&(*start, s)).copied().unwrap_or(-1)),
                )),
            );
            for (i, fields) in window.states.states()?.into_iter().enumerate() {
                for (j, field) in fields.into_iter().enumerate() {
                    add(&format!("agg{i}.{j}"), field);
                }
            }
            parts.push(state::batch(columns, n)?);
        }
        let windows = match parts.first() {
            Some(first) => concat_batches(&first.schema(), &parts)?,
            None => {
                let keys = state::key_columns(&self.converter, std::iter::empty(), "key")?;
                let mut columns = keys;
                for name in ["start", "rowtime", "offset", "pending"] {
                    columns.push((
                        name.to_string(),
                        Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef,
                    ));
                }
                columns.push((
                    "partition".to_string(),
                    Arc::new(Int32Array::from(Vec::<i32>::new())),
                ));
                state::batch(columns, 0)?
            }
        };
        Ok(vec![
            windows,
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
        let states: Vec<Vec<ArrayRef>> = (0..self.aggregates.len())
            .map(|i| state::numbered(&windows, &format!("agg{i}.")))
            .collect();
        let mut restored: Vec<(i64, WindowRows)> = Vec::new();
        let mut pending = Vec::new();
        for row in 0..windows.num_rows() {
            let group = self.group_id(keys.row(row))?;
            let start = starts.value(row);
            let window = match self.windows.get_mut(&start) {
                Some(window) => window,
                None => self
                    .windows
                    .entry(start)
                    .or_insert(Window::new(&self.aggregates)?),
            };
            let (slot, new) = window.slot(group)?;
            if !new {
                return Err(EngineError::Checkpoint(
                    "TimeWindowAggregate state holds a window twice".into(),
                ));
            }
            self.group_keys[group as usize].windows += 1;
            window.rowtimes[slot] = rowtimes.value(row);
            window.partitions[slot] = partitions.value(row);
            window.offsets[slot] = offsets.value(row);
            if places.value(row) >= 0 {
                window.pending[slot] = true;
                pending.push((places.value(row), (start, slot)));
            }
            WindowRows::add(&mut restored, start, row, slot);
        }
        for (start, rows) in restored {
            let Some(window) = self.windows.get_mut(&start) else {
                continue;
            };
            let indices = UInt32Array::from(rows.rows);
            let picked = states
                .iter()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|a| take(a.as_ref(), &indices, None))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            window.states.merge_states(&picked, &rows.slots)?;
        }
        pending.sort_unstable();
        self.pending = pending.into_iter().map(|(_, slot)| slot).collect();
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

//! [`SessionWindowAggregate`]: `GROUP BY` over SESSION windows.
//!
//! A session is a run of records of one key with gaps shorter than the
//! inactivity gap. A record that bridges sessions merges them: each
//! replaced session is retracted with a tombstone and the merged session
//! emitted, as Kafka Streams does. Session updates carry the session's end
//! as their timestamp.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// DataFusion's hash map: keys here are hashed once per record, and its
// default hasher is much faster than std's.
use datafusion::common::HashMap;

use datafusion::arrow::array::{Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::accumulators::{
    AggregateSet, EmittedRow, EvaluatedInput, build_output, group_key_converter, skip_row,
};
use super::state::{self, AccumulatorStates};
use super::time_window_aggregate::{EmitMode, WindowTiming};
use super::{Operator, OperatorContext};
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::processing_log::ProcessingErrorKind;

struct Session {
    end: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    partition: i32,
    offset: i64,
}

pub struct SessionWindowAggregate {
    gap_ms: i64,
    timing: WindowTiming,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: AggregateSet,
    output_schema: SchemaRef,
    converter: RowConverter,
    /// Per key: its key values and its sessions by start.
    sessions: HashMap<OwnedRow, (Vec<ScalarValue>, BTreeMap<i64, Session>)>,
    /// (end, key, start) of every live session: closing and expiry take
    /// only the sessions that are due, instead of scanning all of them.
    by_end: BTreeSet<(i64, OwnedRow, i64)>,
    stream_time: i64,
    late_records: u64,
}

impl SessionWindowAggregate {
    pub fn new(
        gap_ms: i64,
        timing: WindowTiming,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input_schema: &SchemaRef,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let converter = group_key_converter(&group_exprs, input_schema)?;
        Ok(SessionWindowAggregate {
            gap_ms,
            timing,
            group_exprs,
            aggregates: AggregateSet { aggregates },
            output_schema,
            converter,
            sessions: HashMap::new(),
            by_end: BTreeSet::new(),
            stream_time: i64::MIN,
            late_records: 0,
        })
    }

    /// Sessions end for good once no record could still extend them.
    fn close_time(&self) -> i64 {
        self.stream_time
            .saturating_sub(self.timing.grace_ms)
            .saturating_sub(self.gap_ms)
    }

    /// Emits closed sessions (EMIT FINAL) and forgets expired ones,
    /// oldest end first.
    fn close_and_expire(&mut self, out: &mut Vec<EmittedRow>) -> Result<()> {
        let close_time = self.close_time();
        let finalize = self.timing.emit == EmitMode::Final;
        let due_before = if finalize {
            close_time
        } else {
            close_time.min(self.stream_time.saturating_sub(self.timing.retention_ms))
        };
        while self
            .by_end
            .first()
            .is_some_and(|(end, _, _)| *end < due_before)
        {
            let Some((end, key, start)) = self.by_end.pop_first() else {
                break;
            };
            let Some((key_values, sessions)) = self.sessions.get_mut(&key) else {
                continue;
            };
            let Some(mut session) = sessions.remove(&start) else {
                continue;
            };
            if finalize {
                out.push(EmittedRow {
                    key: key_values.clone(),
                    values: Some(AggregateSet::evaluate(&mut session.accumulators)?),
                    rowtime: end,
                    partition: session.partition,
                    offset: session.offset,
                    window: Some((start, end)),
                });
            }
            if sessions.is_empty() {
                self.sessions.remove(&key);
            }
        }
        Ok(())
    }
}

impl Operator for SessionWindowAggregate {
    fn name(&self) -> &'static str {
        "SessionWindowAggregate"
    }

    fn state_rows(&self) -> usize {
        self.sessions.values().map(|(_, s)| s.len()).sum()
    }

    fn late_records(&self) -> u64 {
        self.late_records
    }

    fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let evaluated = EvaluatedInput::new(
            &input.data,
            &self.group_exprs,
            &self.aggregates.aggregates,
            &self.converter,
            ctx,
        )?;
        let mut out = Vec::new();
        for row in 0..input.num_rows() {
            if skip_row(&input, &evaluated, row, ctx) {
                continue;
            }
            let ts = evaluated.rowtimes.value(row);
            self.stream_time = self.stream_time.max(ts);
            let close_time = self.close_time();
            let key = evaluated.group_rows.row(row).owned();
            if !self.sessions.contains_key(&key) {
                self.sessions
                    .insert(key.clone(), (evaluated.key_values(row)?, BTreeMap::new()));
            }
            let gap = self.gap_ms;
            let Some((key_values, sessions)) = self.sessions.get_mut(&key) else {
                continue;
            };
            let overlapping: Vec<i64> = sessions
                .range(..=ts.saturating_add(gap))
                .filter(|(_, s)| s.end >= ts.saturating_sub(gap))
                .map(|(start, _)| *start)
                .collect();
            let merged_start = overlapping.first().map_or(ts, |s| (*s).min(ts));
            let merged_end = overlapping
                .iter()
                .filter_map(|s| sessions.get(s))
                .map(|s| s.end)
                .fold(ts, i64::max);
            if merged_end < close_time {
                self.late_records += 1;
                ctx.log_error(
                    ProcessingErrorKind::Dropped,
                    format!("Record dropped: session [{merged_start}, {merged_end}] closed (stream time {})", self.stream_time),
                );
                continue;
            }
            let mut accumulators = self.aggregates.new_accumulators(false)?;
            for start in &overlapping {
                if let Some(mut old) = sessions.remove(start) {
                    self.by_end.remove(&(old.end, key.clone(), *start));
                    AggregateSet::merge(&mut accumulators, &mut old.accumulators)?;
                    if self.timing.emit == EmitMode::Changes {
                        out.push(EmittedRow {
                            key: key_values.clone(),
                            values: None,
                            rowtime: old.end,
                            partition: old.partition,
                            offset: old.offset,
                            window: Some((*start, old.end)),
                        });
                    }
                }
            }
            AggregateSet::update(&mut accumulators, &evaluated.args, row)?;
            let mut session = Session {
                end: merged_end,
                accumulators,
                partition: evaluated.partitions.value(row),
                offset: evaluated.offsets.value(row),
            };
            if self.timing.emit == EmitMode::Changes {
                out.push(EmittedRow {
                    key: key_values.clone(),
                    values: Some(AggregateSet::evaluate(&mut session.accumulators)?),
                    rowtime: merged_end,
                    partition: session.partition,
                    offset: session.offset,
                    window: Some((merged_start, merged_end)),
                });
            }
            sessions.insert(merged_start, session);
            self.by_end.insert((merged_end, key, merged_start));
            self.close_and_expire(&mut out)?;
        }
        build_output(
            &self.output_schema,
            self.group_exprs.len(),
            self.aggregates.aggregates.len(),
            out,
        )
    }

    /// Two parts: every live session (`key0..`, `start`, `end`,
    /// `partition`, `offset`, accumulator states `agg{i}.{j}`), and the
    /// counters `stream_time`, `late_records`.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let mut keys = Vec::new();
        let (mut starts, mut ends, mut partitions, mut offsets) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut states = AccumulatorStates::default();
        for (key, (_, sessions)) in self.sessions.iter_mut() {
            for (start, session) in sessions.iter_mut() {
                keys.push(key);
                starts.push(*start);
                ends.push(session.end);
                partitions.push(session.partition);
                offsets.push(session.offset);
                states.push(&mut session.accumulators)?;
            }
        }
        let n = starts.len();
        let mut columns = state::key_columns(&self.converter, keys.into_iter(), "key")?;
        columns.push(("start".into(), Arc::new(Int64Array::from(starts))));
        columns.push(("end".into(), Arc::new(Int64Array::from(ends))));
        columns.push(("partition".into(), Arc::new(Int32Array::from(partitions))));
        columns.push(("offset".into(), Arc::new(Int64Array::from(offsets))));
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
        let [sessions, meta] = state::expect_parts::<2>("SessionWindowAggregate", parts)?;
        self.stream_time = state::meta_value(&meta, "stream_time")?;
        self.late_records = u64::try_from(state::meta_value(&meta, "late_records")?).unwrap_or(0);
        let key_arrays = state::numbered(&sessions, "key");
        let keys = self.converter.convert_columns(&key_arrays)?;
        let starts = state::i64s(&sessions, "start")?;
        let ends = state::i64s(&sessions, "end")?;
        let partitions = state::i32s(&sessions, "partition")?;
        let offsets = state::i64s(&sessions, "offset")?;
        let states = AccumulatorStates::columns_of(&sessions, self.aggregates.aggregates.len());
        self.sessions.clear();
        self.by_end.clear();
        for row in 0..sessions.num_rows() {
            let key = keys.row(row).owned();
            let mut accumulators = self.aggregates.new_accumulators(false)?;
            AccumulatorStates::restore_row(&states, row, &mut accumulators)?;
            let (start, end) = (starts.value(row), ends.value(row));
            if !self.sessions.contains_key(&key) {
                let values = key_arrays
                    .iter()
                    .map(|a| ScalarValue::try_from_array(a, row))
                    .collect::<Result<Vec<_>, _>>()?;
                self.sessions.insert(key.clone(), (values, BTreeMap::new()));
            }
            if let Some((_, by_start)) = self.sessions.get_mut(&key) {
                by_start.insert(
                    start,
                    Session {
                        end,
                        accumulators,
                        partition: partitions.value(row),
                        offset: offsets.value(row),
                    },
                );
            }
            self.by_end.insert((end, key, start));
        }
        Ok(())
    }
}

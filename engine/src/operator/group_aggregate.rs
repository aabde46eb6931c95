//! [`GroupAggregate`]: `GROUP BY` aggregation over a stream or a table.
//!
//! Aggregates are DataFusion [`AggregateFunctionExpr`]s, so every built-in
//! and user-defined aggregate works incrementally through its
//! [`Accumulator`]. Over a stream each row is added to its group. Over a
//! table a row replaces the previous row of the same source key: the old
//! row is retracted first (its group emits an "undo" update) and the new
//! one added, which is ksqlDB's table aggregation.
//!
//! Every input row that changes a group emits that group's new value, as
//! ksqlDB does with its record cache off.

use std::sync::Arc;

// DataFusion's hash map: keys here are hashed once per record, and its
// default hasher is much faster than std's.
use datafusion::common::HashMap;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::accumulators::{
    AggregateSet, EmittedRow, EvaluatedInput, build_output, group_key_converter, skip_row,
};
use super::state::{self, AccumulatorStates};
use super::{Operator, OperatorContext};
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};

/// Grouped aggregation. Output columns: the group keys, the aggregate
/// results, then `ROWTIME`, `ROWPARTITION`, `ROWOFFSET`.
pub struct GroupAggregate {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: AggregateSet,
    /// Set when the input is a table changelog: its first `n` columns are
    /// the source key.
    table_key_count: Option<usize>,
    output_schema: SchemaRef,
    group_rows: RowConverter,
    source_rows: Option<RowConverter>,
    groups: HashMap<OwnedRow, Group>,
    /// Table input only: the current row of every source key.
    current: HashMap<OwnedRow, Contribution>,
}

struct Group {
    key: Vec<ScalarValue>,
    accumulators: Vec<Box<dyn Accumulator>>,
    rowtime: i64,
}

/// What one table row added to its group, kept so it can be retracted.
struct Contribution {
    group: OwnedRow,
    /// Per aggregate, per argument: the row's argument value.
    args: Vec<Vec<ScalarValue>>,
}

impl GroupAggregate {
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input_schema: &SchemaRef,
        table_key_count: Option<usize>,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let source_rows = match table_key_count {
            Some(n) => Some(RowConverter::new(
                input_schema.fields()[..n]
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?),
            None => None,
        };
        let group_rows = group_key_converter(&group_exprs, input_schema)?;
        Ok(GroupAggregate {
            group_exprs,
            aggregates: AggregateSet { aggregates },
            table_key_count,
            output_schema,
            group_rows,
            source_rows,
            groups: HashMap::new(),
            current: HashMap::new(),
        })
    }

    /// Number of live groups: the state this operator holds.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn emit(group: &mut Group, partition: i32, offset: i64) -> Result<EmittedRow> {
        Ok(EmittedRow {
            key: group.key.clone(),
            values: Some(AggregateSet::evaluate(&mut group.accumulators)?),
            rowtime: group.rowtime,
            partition,
            offset,
            window: None,
        })
    }
}

impl Operator for GroupAggregate {
    fn name(&self) -> &'static str {
        "GroupAggregate"
    }

    fn state_rows(&self) -> usize {
        self.groups.len() + self.current.len()
    }

    fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let batch = &input.data;
        let evaluated = EvaluatedInput::new(
            batch,
            &self.group_exprs,
            &self.aggregates.aggregates,
            &self.group_rows,
            ctx,
        )?;
        let source_keys = match (&self.source_rows, self.table_key_count) {
            (Some(conv), Some(count)) => Some(conv.convert_columns(&batch.columns()[..count])?),
            _ => None,
        };
        let retractable = self.table_key_count.is_some();

        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            let rowtime = evaluated.rowtimes.value(row);
            let (partition, offset) = (
                evaluated.partitions.value(row),
                evaluated.offsets.value(row),
            );
            let null_group = evaluated.has_null_key(row);

            // Table input: first take back what this key contributed before.
            // When the new row lands in the same group, the group changes
            // once (Kafka Streams sends such an update as one change).
            if let Some(source_keys) = &source_keys {
                let source_key = source_keys.row(row).owned();
                if let Some(previous) = self.current.remove(&source_key)
                    && let Some(group) = self.groups.get_mut(&previous.group)
                {
                    for (acc, args) in group.accumulators.iter_mut().zip(&previous.args) {
                        let arrays = args
                            .iter()
                            .map(|v| v.to_array())
                            .collect::<Result<Vec<_>, _>>()?;
                        acc.retract_batch(&arrays)?;
                    }
                    group.rowtime = group.rowtime.max(rowtime);
                    let stays_in_group = !input.is_tombstone(row)
                        && !null_group
                        && previous.group.row() == evaluated.group_rows.row(row);
                    if !stays_in_group {
                        out.push(Self::emit(group, partition, offset)?);
                    }
                }
                if !input.is_tombstone(row) && !null_group {
                    let args = evaluated
                        .args
                        .iter()
                        .map(|a| {
                            a.iter()
                                .map(|arr| ScalarValue::try_from_array(arr, row))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    self.current.insert(
                        source_key,
                        Contribution {
                            group: evaluated.group_rows.row(row).owned(),
                            args,
                        },
                    );
                }
            }
            if skip_row(&input, &evaluated, row, ctx) {
                continue;
            }
            let group_key = evaluated.group_rows.row(row).owned();
            if !self.groups.contains_key(&group_key) {
                let group = Group {
                    key: evaluated.key_values(row)?,
                    accumulators: self.aggregates.new_accumulators(retractable)?,
                    rowtime,
                };
                self.groups.insert(group_key.clone(), group);
            }
            let Some(group) = self.groups.get_mut(&group_key) else {
                continue;
            };
            AggregateSet::update(&mut group.accumulators, &evaluated.args, row)?;
            group.rowtime = group.rowtime.max(rowtime);
            out.push(Self::emit(group, partition, offset)?);
        }
        build_output(
            &self.output_schema,
            self.group_exprs.len(),
            self.aggregates.aggregates.len(),
            out,
        )
    }

    /// Two parts: the groups (`key0..`, `rowtime`, accumulator states
    /// `agg{i}.{j}`), and for table input the current row of every source
    /// key (`src0..`, its group `key0..`, its arguments `arg{i}.{j}`).
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let mut keys = Vec::with_capacity(self.groups.len());
        let mut rowtimes = Vec::with_capacity(self.groups.len());
        let mut states = AccumulatorStates::default();
        for (key, group) in self.groups.iter_mut() {
            keys.push(key);
            rowtimes.push(group.rowtime);
            states.push(&mut group.accumulators)?;
        }
        let mut columns = state::key_columns(&self.group_rows, keys.into_iter(), "key")?;
        columns.push(("rowtime".into(), Arc::new(Int64Array::from(rowtimes))));
        columns.extend(states.into_columns()?);
        let groups = state::batch(columns, self.groups.len())?;

        let mut columns = Vec::new();
        if let Some(source_rows) = &self.source_rows {
            columns.extend(state::key_columns(source_rows, self.current.keys(), "src")?);
            columns.extend(state::key_columns(
                &self.group_rows,
                self.current.values().map(|c| &c.group),
                "key",
            )?);
            if !self.current.is_empty() {
                for (i, aggregate) in self.aggregates.aggregates.iter().enumerate() {
                    for j in 0..aggregate.expressions().len() {
                        let values = self
                            .current
                            .values()
                            .map(|c| c.args.get(i).and_then(|a| a.get(j)).cloned())
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                EngineError::Checkpoint("a table row lacks an argument".into())
                            })?;
                        columns.push((format!("arg{i}.{j}"), ScalarValue::iter_to_array(values)?));
                    }
                }
            }
        }
        let current = state::batch(columns, self.current.len())?;
        Ok(vec![groups, current])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [groups, current] = state::expect_parts::<2>("GroupAggregate", parts)?;
        let key_arrays = state::numbered(&groups, "key");
        let key_rows = self.group_rows.convert_columns(&key_arrays)?;
        let rowtimes = state::i64s(&groups, "rowtime")?;
        let states = AccumulatorStates::columns_of(&groups, self.aggregates.aggregates.len());
        let retractable = self.table_key_count.is_some();
        self.groups.clear();
        for row in 0..groups.num_rows() {
            let mut accumulators = self.aggregates.new_accumulators(retractable)?;
            AccumulatorStates::restore_row(&states, row, &mut accumulators)?;
            let key = key_arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<Vec<_>, _>>()?;
            self.groups.insert(
                key_rows.row(row).owned(),
                Group {
                    key,
                    accumulators,
                    rowtime: rowtimes.value(row),
                },
            );
        }
        self.current.clear();
        let Some(source_rows) = &self.source_rows else {
            return Ok(());
        };
        if current.num_rows() == 0 {
            return Ok(());
        }
        let sources = source_rows.convert_columns(&state::numbered(&current, "src"))?;
        let groups = self
            .group_rows
            .convert_columns(&state::numbered(&current, "key"))?;
        let args: Vec<Vec<_>> = (0..self.aggregates.aggregates.len())
            .map(|i| state::numbered(&current, &format!("arg{i}.")))
            .collect();
        for row in 0..current.num_rows() {
            let args = args
                .iter()
                .map(|a| {
                    a.iter()
                        .map(|arr| ScalarValue::try_from_array(arr, row))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.current.insert(
                sources.row(row).owned(),
                Contribution {
                    group: groups.row(row).owned(),
                    args,
                },
            );
        }
        Ok(())
    }
}

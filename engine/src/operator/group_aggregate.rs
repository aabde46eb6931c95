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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::{Operator, OperatorContext, evaluate_isolating_errors};
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::processing_log::ProcessingErrorKind;
use crate::schema::{ROWOFFSET, ROWPARTITION, ROWTIME};

/// Grouped aggregation. Output columns: the group keys, the aggregate
/// results, then `ROWTIME`, `ROWPARTITION`, `ROWOFFSET`.
pub struct GroupAggregate {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
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

/// One emitted row before it is assembled into arrays.
struct Emitted {
    key: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
    rowtime: i64,
    partition: i32,
    offset: i64,
}

impl GroupAggregate {
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input_schema: &SchemaRef,
        table_key_count: Option<usize>,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let group_fields = group_exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let source_rows = match table_key_count {
            Some(n) => Some(RowConverter::new(
                input_schema.fields()[..n]
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?),
            None => None,
        };
        Ok(GroupAggregate {
            group_exprs,
            aggregates,
            table_key_count,
            output_schema,
            group_rows: RowConverter::new(group_fields)?,
            source_rows,
            groups: HashMap::new(),
            current: HashMap::new(),
        })
    }

    /// Number of live groups: the state this operator holds.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.aggregates
            .iter()
            .map(|a| {
                Ok(if self.table_key_count.is_some() {
                    a.create_sliding_accumulator()?
                } else {
                    a.create_accumulator()?
                })
            })
            .collect()
    }

    fn emit(group: &mut Group, partition: i32, offset: i64) -> Result<Emitted> {
        let values = group
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Emitted {
            key: group.key.clone(),
            values,
            rowtime: group.rowtime,
            partition,
            offset,
        })
    }

    fn build_output(&self, rows: Vec<Emitted>) -> Result<ChangeBatch> {
        if rows.is_empty() {
            return Ok(ChangeBatch::empty(self.output_schema.clone()));
        }
        let key_count = self.group_exprs.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for (i, field) in self.output_schema.fields().iter().enumerate() {
            let array = match field.name().as_str() {
                ROWTIME if i >= key_count + self.aggregates.len() => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rowtime)))
                        as ArrayRef
                }
                ROWPARTITION if i >= key_count + self.aggregates.len() => Arc::new(
                    Int32Array::from_iter_values(rows.iter().map(|r| r.partition)),
                ),
                ROWOFFSET if i >= key_count + self.aggregates.len() => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset)))
                }
                _ => {
                    let values = rows.iter().map(|r| {
                        if i < key_count {
                            r.key[i].clone()
                        } else {
                            r.values[i - key_count].clone()
                        }
                    });
                    let array = ScalarValue::iter_to_array(values)?;
                    if array.data_type() == field.data_type() {
                        array
                    } else {
                        datafusion::arrow::compute::cast(&array, field.data_type())?
                    }
                }
            };
            columns.push(array);
        }
        Ok(ChangeBatch::new(RecordBatch::try_new(
            self.output_schema.clone(),
            columns,
        )?))
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::Plan(format!("aggregate input lacks column {name}")))
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
        let n = batch.num_rows();
        if n == 0 {
            return Ok(ChangeBatch::empty(self.output_schema.clone()));
        }
        let group_arrays = self
            .group_exprs
            .iter()
            .map(|e| evaluate_isolating_errors(e, batch, ctx))
            .collect::<Result<Vec<_>>>()?;
        let arg_arrays = self
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| evaluate_isolating_errors(e, batch, ctx))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let group_keys = self.group_rows.convert_columns(&group_arrays)?;
        let source_keys = match (&self.source_rows, self.table_key_count) {
            (Some(conv), Some(count)) => Some(conv.convert_columns(&batch.columns()[..count])?),
            _ => None,
        };
        let rowtimes = column(batch, ROWTIME)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let partitions = column(batch, ROWPARTITION)?
            .as_any()
            .downcast_ref::<Int32Array>()
            .cloned();
        let offsets = column(batch, ROWOFFSET)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let (Some(rowtimes), Some(partitions), Some(offsets)) = (rowtimes, partitions, offsets)
        else {
            return Err(EngineError::Plan(
                "pseudo columns have unexpected types".into(),
            ));
        };

        let mut out = Vec::new();
        for row in 0..n {
            let (rowtime, partition, offset) = (
                rowtimes.value(row),
                partitions.value(row),
                offsets.value(row),
            );
            let null_group = group_arrays.iter().any(|a| a.is_null(row));

            // Table input: first take back what this key contributed before.
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
                    out.push(Self::emit(group, partition, offset)?);
                }
                if input.is_tombstone(row) {
                    continue;
                }
                if !null_group {
                    let args = arg_arrays
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
                            group: group_keys.row(row).owned(),
                            args,
                        },
                    );
                }
            } else if input.is_tombstone(row) {
                continue;
            }

            if null_group {
                ctx.log_error(
                    ProcessingErrorKind::Dropped,
                    "Record dropped: a GROUP BY expression evaluated to null".to_string(),
                );
                continue;
            }
            let group_key = group_keys.row(row).owned();
            if !self.groups.contains_key(&group_key) {
                let key = group_arrays
                    .iter()
                    .map(|a| ScalarValue::try_from_array(a, row))
                    .collect::<Result<Vec<_>, _>>()?;
                let accumulators = self.new_accumulators()?;
                self.groups.insert(
                    group_key.clone(),
                    Group {
                        key,
                        accumulators,
                        rowtime,
                    },
                );
            }
            let Some(group) = self.groups.get_mut(&group_key) else {
                continue;
            };
            for (acc, args) in group.accumulators.iter_mut().zip(&arg_arrays) {
                let slices: Vec<ArrayRef> = args.iter().map(|a| a.slice(row, 1)).collect();
                acc.update_batch(&slices)?;
            }
            group.rowtime = group.rowtime.max(rowtime);
            out.push(Self::emit(group, partition, offset)?);
        }
        self.build_output(out)
    }
}

//! What every aggregating operator shares: creating, feeding and reading
//! the accumulators of one group, and assembling emitted rows into a batch.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::batch::ChangeBatch;
use crate::error::Result;

/// The aggregate functions of one query.
pub struct AggregateSet {
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
}

impl AggregateSet {
    /// Fresh accumulators for a new group; `retractable` ones can take
    /// rows back (table aggregation).
    pub fn new_accumulators(&self, retractable: bool) -> Result<Vec<Box<dyn Accumulator>>> {
        self.aggregates
            .iter()
            .map(|a| {
                Ok(if retractable {
                    a.create_sliding_accumulator()?
                } else {
                    a.create_accumulator()?
                })
            })
            .collect()
    }

    /// Adds row `row` of the evaluated arguments.
    pub fn update(
        accumulators: &mut [Box<dyn Accumulator>],
        args: &[Vec<ArrayRef>],
        row: usize,
    ) -> Result<()> {
        for (acc, args) in accumulators.iter_mut().zip(args) {
            // Most aggregates take one argument: skip the Vec for them.
            match args.as_slice() {
                [only] => acc.update_batch(&[only.slice(row, 1)])?,
                many => {
                    let slices: Vec<ArrayRef> = many.iter().map(|a| a.slice(row, 1)).collect();
                    acc.update_batch(&slices)?
                }
            }
        }
        Ok(())
    }

    /// Folds `from` into `into` through their intermediate states, as
    /// merging sessions does.
    pub fn merge(
        into: &mut [Box<dyn Accumulator>],
        from: &mut [Box<dyn Accumulator>],
    ) -> Result<()> {
        for (target, source) in into.iter_mut().zip(from.iter_mut()) {
            let state = source.state()?;
            let arrays = state
                .iter()
                .map(|s| s.to_array())
                .collect::<Result<Vec<_>, _>>()?;
            target.merge_batch(&arrays)?;
        }
        Ok(())
    }

    pub fn evaluate(accumulators: &mut [Box<dyn Accumulator>]) -> Result<Vec<ScalarValue>> {
        Ok(accumulators
            .iter_mut()
            .map(|a| a.evaluate())
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// One row an aggregating operator emits.
pub struct EmittedRow {
    pub key: Vec<ScalarValue>,
    /// `None` for a tombstone (a window that merged away).
    pub values: Option<Vec<ScalarValue>>,
    pub rowtime: i64,
    pub partition: i32,
    pub offset: i64,
    pub window: Option<(i64, i64)>,
}

/// Assembles emitted rows into a batch of `schema`: keys, aggregates, the
/// pseudo columns, then the window columns if the schema has them.
pub fn build_output(
    schema: &SchemaRef,
    key_count: usize,
    value_count: usize,
    rows: Vec<EmittedRow>,
) -> Result<ChangeBatch> {
    if rows.is_empty() {
        return Ok(ChangeBatch::empty(schema.clone()));
    }
    let keys = (0..key_count)
        .map(|i| {
            let values = rows.iter().map(|r| r.key[i].clone());
            Ok(ScalarValue::iter_to_array(values)?)
        })
        .collect::<Result<Vec<_>>>()?;
    build_output_with_keys(schema, keys, value_count, rows)
}

/// [`build_output`] for operators that have their key columns as arrays
/// already (the rows' own `key` is then ignored).
pub fn build_output_with_keys(
    schema: &SchemaRef,
    keys: Vec<ArrayRef>,
    value_count: usize,
    rows: Vec<EmittedRow>,
) -> Result<ChangeBatch> {
    if rows.is_empty() {
        return Ok(ChangeBatch::empty(schema.clone()));
    }
    let key_count = keys.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let fit = |array: ArrayRef, field: &datafusion::arrow::datatypes::Field| -> Result<ArrayRef> {
        Ok(if array.data_type() == field.data_type() {
            array
        } else {
            datafusion::arrow::compute::cast(&array, field.data_type())?
        })
    };
    for (array, field) in keys.into_iter().zip(schema.fields().iter()) {
        columns.push(fit(array, field)?);
    }
    for (j, field) in schema
        .fields()
        .iter()
        .enumerate()
        .skip(key_count)
        .take(value_count)
    {
        let values = rows.iter().map(|r| match &r.values {
            Some(v) => Ok(v[j - key_count].clone()),
            None => ScalarValue::try_new_null(field.data_type()),
        });
        let values = values.collect::<Result<Vec<_>, _>>()?;
        columns.push(fit(ScalarValue::iter_to_array(values)?, field)?);
    }
    columns.push(Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.rowtime),
    )));
    columns.push(Arc::new(Int32Array::from_iter_values(
        rows.iter().map(|r| r.partition),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.offset),
    )));
    if schema.fields().len() > columns.len() {
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.window.map_or(0, |w| w.0)),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.window.map_or(0, |w| w.1)),
        )));
    }
    let tombstones = datafusion::arrow::array::BooleanArray::from_iter(
        rows.iter().map(|r| Some(r.values.is_none())),
    );
    Ok(ChangeBatch::with_tombstones(
        RecordBatch::try_new(schema.clone(), columns)?,
        tombstones,
    ))
}

/// An input batch with its group keys and aggregate arguments evaluated.
pub struct EvaluatedInput {
    pub group_arrays: Vec<ArrayRef>,
    pub group_rows: datafusion::arrow::row::Rows,
    pub args: Vec<Vec<ArrayRef>>,
    pub rowtimes: Int64Array,
    pub partitions: Int32Array,
    pub offsets: Int64Array,
}

impl EvaluatedInput {
    pub fn new(
        batch: &RecordBatch,
        group_exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        aggregates: &[Arc<AggregateFunctionExpr>],
        converter: &datafusion::arrow::row::RowConverter,
        ctx: &super::OperatorContext,
    ) -> Result<Self> {
        use super::evaluate_isolating_errors;
        use crate::error::EngineError;
        use crate::schema::{ROWOFFSET, ROWPARTITION, ROWTIME};
        let group_arrays = group_exprs
            .iter()
            .map(|e| evaluate_isolating_errors(e, batch, ctx))
            .collect::<Result<Vec<_>>>()?;
        let args = aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| evaluate_isolating_errors(e, batch, ctx))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let group_rows = converter.convert_columns(&group_arrays)?;
        let pseudo = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| EngineError::Plan(format!("aggregate input lacks column {name}")))
        };
        let rowtimes = pseudo(ROWTIME)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let partitions = pseudo(ROWPARTITION)?
            .as_any()
            .downcast_ref::<Int32Array>()
            .cloned();
        let offsets = pseudo(ROWOFFSET)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let (Some(rowtimes), Some(partitions), Some(offsets)) = (rowtimes, partitions, offsets)
        else {
            return Err(EngineError::Plan(
                "pseudo columns have unexpected types".into(),
            ));
        };
        Ok(EvaluatedInput {
            group_arrays,
            group_rows,
            args,
            rowtimes,
            partitions,
            offsets,
        })
    }

    pub fn has_null_key(&self, row: usize) -> bool {
        use datafusion::arrow::array::Array;
        self.group_arrays.iter().any(|a| a.is_null(row))
    }

    pub fn key_values(&self, row: usize) -> Result<Vec<ScalarValue>> {
        Ok(self
            .group_arrays
            .iter()
            .map(|a| ScalarValue::try_from_array(a, row))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// Rows an aggregate does not take: deletions, and rows whose group key
/// has a null (dropped and logged, as ksqlDB does).
pub fn skip_row(
    input: &ChangeBatch,
    evaluated: &EvaluatedInput,
    row: usize,
    ctx: &super::OperatorContext,
) -> bool {
    if input.is_tombstone(row) {
        return true;
    }
    if evaluated.has_null_key(row) {
        ctx.log_error(
            crate::processing_log::ProcessingErrorKind::Dropped,
            "Record dropped: a GROUP BY expression evaluated to null".into(),
        );
        return true;
    }
    false
}

/// Row encoding of the group keys computed by `group_exprs`.
pub fn group_key_converter(
    group_exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    input_schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<datafusion::arrow::row::RowConverter> {
    use datafusion::arrow::row::{RowConverter, SortField};
    let fields = group_exprs
        .iter()
        .map(|e| Ok(SortField::new(e.data_type(input_schema)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RowConverter::new(fields)?)
}

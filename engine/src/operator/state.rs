//! Operator state as Arrow batches: the shape checkpoints store.
//!
//! Each stateful operator turns what it holds into a few
//! [`RecordBatch`]es ([`super::Operator::snapshot`]) and rebuilds itself
//! from them ([`super::Operator::restore`]). The helpers here are what
//! they share: building batches from named columns, reading typed columns
//! back with a clear error, scalar counters ("meta" batches) and the
//! intermediate states of aggregate accumulators.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, RecordBatchOptions,
    new_empty_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::error::{EngineError, Result};

/// A batch of the named columns (all nullable), `rows` long.
pub fn batch(columns: Vec<(String, ArrayRef)>, rows: usize) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(name, array.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// An array of `values`, or an empty one of `data_type` when there are
/// none (a typed empty column keeps the batch's schema meaningful).
pub fn scalars(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    Ok(ScalarValue::iter_to_array(values)?)
}

fn missing(name: &str) -> EngineError {
    EngineError::Checkpoint(format!("operator state lacks column {name}"))
}

/// Column `name` of a state batch.
pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| missing(name))
}

pub fn i64s<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| missing(name))
}

pub fn i32s<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int32Array> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| missing(name))
}

pub fn bools<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a BooleanArray> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| missing(name))
}

/// The columns `{prefix}0`, `{prefix}1`, ... of a batch, as many as exist.
pub fn numbered(batch: &RecordBatch, prefix: &str) -> Vec<ArrayRef> {
    (0..)
        .map_while(|i| batch.column_by_name(&format!("{prefix}{i}")).cloned())
        .collect()
}

/// Named `i64` counters (stream time, sequence numbers) as a one-row batch.
pub fn meta(values: &[(&str, i64)]) -> Result<RecordBatch> {
    batch(
        values
            .iter()
            .map(|(name, v)| {
                (
                    (*name).to_string(),
                    Arc::new(Int64Array::from(vec![*v])) as ArrayRef,
                )
            })
            .collect(),
        1,
    )
}

/// Counter `name` of a [`meta`] batch.
pub fn meta_value(batch: &RecordBatch, name: &str) -> Result<i64> {
    let values = i64s(batch, name)?;
    if values.is_empty() || values.is_null(0) {
        return Err(missing(name));
    }
    Ok(values.value(0))
}

/// Exactly `n` state batches, or an error naming the operator.
pub fn expect_parts<const N: usize>(
    operator: &str,
    state: Vec<RecordBatch>,
) -> Result<[RecordBatch; N]> {
    let found = state.len();
    state.try_into().map_err(|_| {
        EngineError::Checkpoint(format!("{operator} state has {found} parts, expected {N}"))
    })
}

/// Key columns of row-encoded keys, `{prefix}0`, `{prefix}1`, ...
pub fn key_columns<'a>(
    converter: &RowConverter,
    rows: impl Iterator<Item = &'a OwnedRow>,
    prefix: &str,
) -> Result<Vec<(String, ArrayRef)>> {
    let arrays = converter.convert_rows(rows.map(|r| r.row()))?;
    Ok(arrays
        .into_iter()
        .enumerate()
        .map(|(i, a)| (format!("{prefix}{i}"), a))
        .collect())
}

/// The intermediate states of many groups' accumulators, column by
/// column: `agg{i}.{j}` is field `j` of aggregate `i`'s state.
#[derive(Default)]
pub struct AccumulatorStates {
    /// Per aggregate, per state field: one value per group.
    fields: Vec<Vec<Vec<ScalarValue>>>,
}

impl AccumulatorStates {
    /// Appends one group's states.
    pub fn push(&mut self, accumulators: &mut [Box<dyn Accumulator>]) -> Result<()> {
        if self.fields.len() < accumulators.len() {
            self.fields.resize_with(accumulators.len(), Vec::new);
        }
        for (acc, fields) in accumulators.iter_mut().zip(&mut self.fields) {
            let state = acc.state()?;
            if fields.len() < state.len() {
                fields.resize_with(state.len(), Vec::new);
            }
            for (value, field) in state.into_iter().zip(fields.iter_mut()) {
                field.push(value);
            }
        }
        Ok(())
    }

    /// The named columns; none when no group was pushed (restoring no
    /// groups needs no state).
    pub fn into_columns(self) -> Result<Vec<(String, ArrayRef)>> {
        let mut columns = Vec::new();
        for (i, fields) in self.fields.into_iter().enumerate() {
            for (j, values) in fields.into_iter().enumerate() {
                columns.push((format!("agg{i}.{j}"), ScalarValue::iter_to_array(values)?));
            }
        }
        Ok(columns)
    }

    /// The state columns of `batch`, per aggregate.
    pub fn columns_of(batch: &RecordBatch, aggregates: usize) -> Vec<Vec<ArrayRef>> {
        (0..aggregates)
            .map(|i| numbered(batch, &format!("agg{i}.")))
            .collect()
    }

    /// Merges row `row` of the state columns into fresh accumulators.
    pub fn restore_row(
        columns: &[Vec<ArrayRef>],
        row: usize,
        accumulators: &mut [Box<dyn Accumulator>],
    ) -> Result<()> {
        if columns.len() != accumulators.len() {
            return Err(EngineError::Checkpoint(format!(
                "state holds {} aggregates, the query has {}",
                columns.len(),
                accumulators.len()
            )));
        }
        for (acc, fields) in accumulators.iter_mut().zip(columns) {
            // Merging a state of the wrong width could panic inside the
            // accumulator: check against what a fresh one reports.
            let width = acc.state()?.len();
            if width != fields.len() {
                return Err(EngineError::Checkpoint(format!(
                    "an aggregate's state has {} fields, expected {width}",
                    fields.len()
                )));
            }
            let slices: Vec<ArrayRef> = fields.iter().map(|f| f.slice(row, 1)).collect();
            acc.merge_batch(&slices)?;
        }
        Ok(())
    }
}

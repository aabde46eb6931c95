//! [`Explode`]: the table functions of a SELECT (`EXPLODE`,
//! `CUBE_EXPLODE`): each input row becomes one row per element of its
//! generated arrays.
//!
//! Every generator expression yields an array per row. A row produces as
//! many rows as its longest generated array; shorter (or null) arrays give
//! null for the missing positions, as ksqlDB does. The output is the input
//! columns, repeated, followed by one column per generator holding the
//! element.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate_isolating_errors};
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};

pub struct Explode {
    generators: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Explode {
    /// `schema` is the input schema followed by one field per generator,
    /// typed as its elements.
    pub fn new(generators: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Explode { generators, schema }
    }
}

impl Operator for Explode {
    fn name(&self) -> &'static str {
        "Explode"
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let lists = self
            .generators
            .iter()
            .map(|g| {
                let array = evaluate_isolating_errors(g, &input.data, ctx)?;
                match array.as_list_opt::<i32>() {
                    Some(list) => Ok(list.clone()),
                    None => Err(EngineError::Plan(format!(
                        "a table function produced {}, not an array",
                        array.data_type()
                    ))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // For every output row: its input row and element position.
        let mut rows: Vec<u32> = Vec::new();
        let mut positions: Vec<usize> = Vec::new();
        for row in 0..input.num_rows() {
            let count = lists
                .iter()
                .map(|l| {
                    if l.is_null(row) {
                        0
                    } else {
                        l.value_length(row)
                    }
                })
                .max()
                .unwrap_or(0);
            for p in 0..count.max(0) as usize {
                rows.push(row as u32);
                positions.push(p);
            }
        }
        let indices = UInt32Array::from(rows.clone());
        let mut columns: Vec<ArrayRef> = input
            .data
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<_, _>>()?;
        for (list, field) in lists
            .iter()
            .zip(self.schema.fields().iter().skip(input.data.num_columns()))
        {
            let element_type = field.data_type();
            let values = list.values();
            // Positions into the list's flat values; past the end is null.
            let null_slot = values.len() as u32;
            let padded = concat(&[values.as_ref(), new_null_array(element_type, 1).as_ref()])?;
            let picks: UInt32Array = rows
                .iter()
                .zip(&positions)
                .map(|(row, p)| {
                    let row = *row as usize;
                    if list.is_null(row) || *p >= list.value_length(row) as usize {
                        null_slot
                    } else {
                        list.value_offsets()[row] as u32 + *p as u32
                    }
                })
                .collect();
            columns.push(take(padded.as_ref(), &picks, None)?);
        }
        let data = RecordBatch::try_new(self.schema.clone(), columns)?;
        let tombstones = BooleanArray::from(
            rows.iter()
                .map(|r| input.is_tombstone(*r as usize))
                .collect::<Vec<_>>(),
        );
        Ok(ChangeBatch::with_tombstones(data, tombstones))
    }
}

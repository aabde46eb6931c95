//! [`Projection`]: computes the output columns of a query from its input.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate_isolating_errors};
use crate::batch::ChangeBatch;
use crate::error::Result;

/// Evaluates one expression per output column. Tombstone marks pass
/// through unchanged: a deleted key stays deleted.
pub struct Projection {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Projection {
    /// `schema` names and types the outputs of `exprs`, in order.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Projection { exprs, schema }
    }
}

impl Operator for Projection {
    fn name(&self) -> &'static str {
        "Projection"
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let columns = self
            .exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(e, f)| {
                let array = evaluate_isolating_errors(e, &input.data, ctx)?;
                if array.data_type() == f.data_type() {
                    Ok(array)
                } else {
                    Ok(datafusion::arrow::compute::cast(&array, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(input.num_rows()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(ChangeBatch {
            data,
            tombstones: input.tombstones,
        })
    }
}

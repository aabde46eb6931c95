//! Operators: the steps of a persistent query between source and sink.
//!
//! Every operator consumes and produces [`ChangeBatch`]es. One file per
//! operator: [`filter`], [`projection`], [`explode`], [`group_aggregate`].

pub mod accumulators;
pub mod explode;
pub mod filter;
pub mod group_aggregate;
pub mod projection;
pub mod session_window_aggregate;
pub mod time_window_aggregate;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::processing_log::{ProcessingErrorKind, ProcessingLog, ProcessingLogEntry};

/// What an operator may use besides its input: who it runs for and where
/// failed records go.
pub struct OperatorContext<'a> {
    pub query_id: &'a str,
    pub log: &'a ProcessingLog,
}

impl OperatorContext<'_> {
    pub fn log_error(&self, kind: ProcessingErrorKind, message: String) {
        self.log.log(ProcessingLogEntry {
            query_id: self.query_id.to_string(),
            kind,
            message,
            topic: None,
            partition: None,
            offset: None,
            record: None,
        });
    }
}

/// One step of a query.
pub trait Operator: Send {
    /// A short name for plans and logs.
    fn name(&self) -> &'static str;
    fn output_schema(&self) -> SchemaRef;
    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch>;
    /// Rows of state the operator holds (groups, windows, sessions); 0 for
    /// stateless operators.
    fn state_rows(&self) -> usize {
        0
    }
    /// Emits what the operator holds back (coalesced updates) once it is
    /// due; called when the query has no input, so held updates never wait
    /// for the next record.
    fn flush(&mut self, _ctx: &OperatorContext) -> Result<Option<ChangeBatch>> {
        Ok(None)
    }
}

/// Evaluates `expr` over the whole batch; if that fails, row by row, so one
/// bad row costs only its own value: it becomes null and is logged, as
/// ksqlDB does for expression errors.
pub fn evaluate_isolating_errors(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    ctx: &OperatorContext,
) -> Result<ArrayRef> {
    match expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
    {
        Ok(array) => Ok(array),
        Err(_) if batch.num_rows() > 0 => {
            let data_type = expr.data_type(&batch.schema())?;
            let mut values = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let one = batch.slice(row, 1);
                let value = expr
                    .evaluate(&one)
                    .and_then(|v| v.into_array(1))
                    .and_then(|a| ScalarValue::try_from_array(&a, 0));
                match value {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        ctx.log_error(
                            ProcessingErrorKind::Evaluation,
                            format!("Error computing expression {expr}: {e}"),
                        );
                        values.push(ScalarValue::try_new_null(&data_type)?);
                    }
                }
            }
            Ok(ScalarValue::iter_to_array(values)?)
        }
        Err(e) => Err(e.into()),
    }
}

//! Operators: the steps of a persistent query between source and sink.
//!
//! Every operator consumes and produces [`ChangeBatch`]es. One file per
//! operator: [`filter`], [`projection`], [`explode`], [`group_aggregate`],
//! [`replay_filter`], the window aggregates, and the joins
//! ([`JoinOperator`]s with two inputs: [`stream_stream_join`], [`stream_table_join`],
//! [`table_table_join`], [`foreign_key_join`], sharing [`join_rows`]).

pub mod accumulators;
pub mod explode;
pub mod filter;
pub mod foreign_key_join;
pub mod group_aggregate;
pub mod group_states;
pub mod join_rows;
pub mod projection;
pub mod replay_filter;
pub mod session_window_aggregate;
pub mod state;
#[cfg(test)]
mod state_tests;
pub mod stream_stream_join;
pub mod stream_table_join;
pub mod table_table_join;
pub mod time_window_aggregate;

use std::cell::RefCell;
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
    /// Records dropped for arriving after their window closed; 0 for
    /// operators without windows.
    fn late_records(&self) -> u64 {
        0
    }
    /// Emits what the operator holds back (coalesced updates) once it is
    /// due; called when the query has no input, so held updates never wait
    /// for the next record.
    fn flush(&mut self, _ctx: &OperatorContext) -> Result<Option<ChangeBatch>> {
        Ok(None)
    }
    /// Everything the operator holds (groups, windows, stream time, held
    /// updates) as Arrow batches, for a checkpoint; nothing for stateless
    /// operators. Taken between batches.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }
    /// Rebuilds a freshly created operator from its [`Operator::snapshot`],
    /// so that it continues exactly as the snapshotted one would.
    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        no_state(self.name(), &state)
    }
}

/// The restore of an operator that keeps no state: anything given is a
/// checkpoint that does not belong to this plan.
fn no_state(name: &str, state: &[RecordBatch]) -> Result<()> {
    if state.is_empty() {
        Ok(())
    } else {
        Err(crate::error::EngineError::Checkpoint(format!(
            "{name} keeps no state, but the checkpoint has {} parts for it",
            state.len()
        )))
    }
}

/// A step with two inputs: a join. Batches arrive on either side; the
/// layout of sides and output is described in [`join_rows`].
pub trait JoinOperator: Send {
    fn name(&self) -> &'static str;
    fn output_schema(&self) -> SchemaRef;
    fn process(
        &mut self,
        side: join_rows::JoinSide,
        input: ChangeBatch,
        ctx: &OperatorContext,
    ) -> Result<ChangeBatch>;
    fn state_rows(&self) -> usize;
    /// The rows both sides keep and the join's stream times, as Arrow
    /// batches (see [`Operator::snapshot`]).
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>>;
    /// Rebuilds a freshly created join from its [`JoinOperator::snapshot`].
    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()>;
}

thread_local! {
    /// Failed function calls of the expression evaluating on this thread,
    /// `None` when none is.
    static FUNCTION_ERRORS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Records that a function call failed for one row and gave null instead,
/// as ksqlDB's functions do, so the processing log gets it. False when no
/// evaluation collects errors (the result is null all the same).
pub fn report_function_error(message: String) -> bool {
    FUNCTION_ERRORS.with(|errors| match errors.borrow_mut().as_mut() {
        Some(errors) => {
            errors.push(message);
            true
        }
        None => false,
    })
}

/// Runs `f`, returning what it returned and the function errors reported
/// meanwhile.
fn collecting_function_errors<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let outer = FUNCTION_ERRORS.with(|e| e.replace(Some(Vec::new())));
    let result = f();
    let errors = FUNCTION_ERRORS
        .with(|e| e.replace(outer))
        .unwrap_or_default();
    (result, errors)
}

/// Evaluates `expr` over the whole batch; if that fails, row by row, so one
/// bad row costs only its own value: it becomes null and is logged, as
/// ksqlDB does for expression errors. Function calls that failed for a row
/// but gave null (see [`report_function_error`]) are logged too.
pub fn evaluate_isolating_errors(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    ctx: &OperatorContext,
) -> Result<ArrayRef> {
    let (result, errors) = collecting_function_errors(|| {
        expr.evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
    });
    let log_all = |errors: Vec<String>| {
        for e in errors {
            ctx.log_error(
                ProcessingErrorKind::Evaluation,
                format!("Error computing expression {expr}: {e}"),
            );
        }
    };
    match result {
        Ok(array) => {
            log_all(errors);
            Ok(array)
        }
        Err(_) if batch.num_rows() > 0 => {
            let data_type = expr.data_type(&batch.schema())?;
            let mut values = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let one = batch.slice(row, 1);
                let (value, errors) = collecting_function_errors(|| {
                    expr.evaluate(&one)
                        .and_then(|v| v.into_array(1))
                        .and_then(|a| ScalarValue::try_from_array(&a, 0))
                });
                log_all(errors);
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

//! Encodes a query's output batch and hands it to the sink topic's writer.

use bytes::Bytes;
use datafusion::arrow::array::{Array, Int64Array};
use datafusion::common::ScalarValue;

use super::SinkSpec;
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::operator::OperatorContext;
use crate::processing_log::ProcessingErrorKind;
use crate::schema::ROWTIME;
use crate::topic::{Partitioning, Record, TopicWriter};
use crate::window::{WINDOWEND, WINDOWSTART};

/// Writes every row of `batch` to the sink topic's writer (in flight until
/// it is flushed); returns the count written. Rows that cannot be encoded
/// are logged and skipped.
pub fn write(
    spec: &SinkSpec,
    batch: &ChangeBatch,
    writer: &mut dyn TopicWriter,
    ctx: &OperatorContext,
) -> Result<usize> {
    let data = &batch.data;
    let key_count = spec.schema.key_count();
    let value_count = spec.schema.columns().len() - key_count;
    let keys = &data.columns()[..key_count];
    let values = &data.columns()[key_count..key_count + value_count];
    let rowtimes = data
        .column_by_name(ROWTIME)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| EngineError::Plan("sink input lacks ROWTIME".into()))?;
    let window_column = |name: &str| {
        data.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
    };
    let windows = match (window_column(WINDOWSTART), window_column(WINDOWEND)) {
        (Some(s), Some(e)) => Some((s, e)),
        _ if spec.window.is_some() => {
            return Err(EngineError::Plan(
                "windowed sink input lacks its window".into(),
            ));
        }
        _ => None,
    };
    let mut records = Vec::with_capacity(data.num_rows());
    for row in 0..data.num_rows() {
        let key = match spec.codec.encode_key_as(keys, row, spec.computed_key) {
            Ok(k) => match (&spec.window, &windows) {
                (Some(w), Some((starts, ends))) => {
                    Some(w.encode_key(k.unwrap_or_default(), starts.value(row), ends.value(row)))
                }
                _ => k,
            },
            Err(e) => {
                ctx.log_error(
                    ProcessingErrorKind::Serialization,
                    format!("Error serializing key: {e}"),
                );
                continue;
            }
        };
        let value = if batch.is_tombstone(row) {
            None
        } else {
            match spec.codec.encode_value(values, row) {
                Ok(v) => v,
                Err(e) => {
                    ctx.log_error(
                        ProcessingErrorKind::Serialization,
                        format!("Error serializing value: {e}"),
                    );
                    continue;
                }
            }
        };
        let timestamp = match spec.timestamp.column() {
            None if rowtimes.is_null(row) => 0,
            None => rowtimes.value(row),
            Some(i) => {
                let value = data
                    .columns()
                    .get(i)
                    .map(|c| ScalarValue::try_from_array(c, row))
                    .transpose()?
                    .unwrap_or(ScalarValue::Null);
                match spec.timestamp.time_of(&value) {
                    Some(t) => t,
                    None => {
                        ctx.log_error(
                            ProcessingErrorKind::Serialization,
                            format!(
                                "Record dropped: invalid timestamp {value} in its timestamp column"
                            ),
                        );
                        continue;
                    }
                }
            }
        };
        records.push((
            Partitioning::ByKey,
            Record {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                timestamp,
                headers: vec![],
            },
        ));
    }
    let written = records.len();
    if written > 0 {
        writer.write(records)?;
    }
    Ok(written)
}

//! Turns consumed records into a [`ChangeBatch`] of the source schema.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::common::ScalarValue;

use super::SourceSpec;
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::operator::OperatorContext;
use crate::processing_log::{ProcessingErrorKind, ProcessingLogEntry};
use crate::topic::ConsumedRecord;

/// Decodes every record it can; the rest go to the processing log.
pub fn decode(
    spec: &SourceSpec,
    records: &[ConsumedRecord],
    ctx: &OperatorContext,
) -> Result<ChangeBatch> {
    let schema = spec.schema.batch_schema(spec.window.is_some());
    let width = spec.schema.columns().len();
    let mut columns: Vec<Vec<ScalarValue>> = (0..width)
        .map(|_| Vec::with_capacity(records.len()))
        .collect();
    let mut rowtimes = Vec::with_capacity(records.len());
    let mut partitions = Vec::with_capacity(records.len());
    let mut offsets = Vec::with_capacity(records.len());
    let mut tombstones = Vec::with_capacity(records.len());
    let mut window_starts = Vec::with_capacity(records.len());
    let mut window_ends = Vec::with_capacity(records.len());

    for consumed in records {
        let record = &consumed.record;
        // Windowed key, key and value: any failure skips the record, once.
        let decoded = split_window(spec, record.key.as_deref()).and_then(|(key_bytes, window)| {
            let mut row = spec.codec.decode_key(key_bytes)?;
            match &record.value {
                Some(v) => row.extend(spec.codec.decode_value(v)?),
                None => {
                    for c in spec.codec.value_columns() {
                        row.push(ScalarValue::try_new_null(&c.sql_type.to_arrow())?);
                    }
                }
            }
            Ok((row, window))
        });
        let (row, window) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => {
                log_record(
                    ctx,
                    consumed,
                    ProcessingErrorKind::Deserialization,
                    e.to_string(),
                );
                continue;
            }
        };
        let rowtime = match spec.timestamp.column() {
            None => Some(record.timestamp),
            Some(_) if record.value.is_none() => Some(record.timestamp),
            Some(i) => row.get(i).and_then(|v| spec.timestamp.time_of(v)),
        };
        let Some(rowtime) = rowtime.filter(|t| *t >= 0) else {
            log_record(
                ctx,
                consumed,
                ProcessingErrorKind::Deserialization,
                "Record dropped: its timestamp column is null or negative".into(),
            );
            continue;
        };
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
        rowtimes.push(rowtime);
        partitions.push(consumed.partition);
        offsets.push(consumed.offset);
        tombstones.push(record.value.is_none());
        let (start, end) = window.unwrap_or((0, 0));
        window_starts.push(start);
        window_ends.push(end);
    }

    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(width + 3);
    for (values, field) in columns.into_iter().zip(schema.fields()) {
        arrays.push(if values.is_empty() {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values)?
        });
    }
    arrays.push(Arc::new(Int64Array::from(rowtimes)));
    arrays.push(Arc::new(Int32Array::from(partitions)));
    arrays.push(Arc::new(Int64Array::from(offsets)));
    if spec.window.is_some() {
        arrays.push(Arc::new(Int64Array::from(window_starts)));
        arrays.push(Arc::new(Int64Array::from(window_ends)));
    }
    let data = RecordBatch::try_new(schema, arrays)?;
    Ok(ChangeBatch::with_tombstones(
        data,
        BooleanArray::from(tombstones),
    ))
}

/// Key bytes and, for windowed sources, the window's start and end.
type SplitKey<'a> = (Option<&'a [u8]>, Option<(i64, i64)>);

/// The key bytes without their window, and the window, for windowed
/// sources; the key as it is otherwise.
fn split_window<'a>(spec: &SourceSpec, key: Option<&'a [u8]>) -> Result<SplitKey<'a>> {
    match (&spec.window, key) {
        (Some(w), Some(bytes)) => {
            let (key, start, end) = w.decode_key(bytes)?;
            Ok((Some(key), Some((start, end))))
        }
        (_, key) => Ok((key, None)),
    }
}

fn log_record(
    ctx: &OperatorContext,
    consumed: &ConsumedRecord,
    kind: ProcessingErrorKind,
    message: String,
) {
    let record = consumed
        .record
        .value
        .as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    ctx.log.log(ProcessingLogEntry {
        query_id: ctx.query_id.to_string(),
        kind,
        message,
        topic: Some(consumed.topic.to_string()),
        partition: Some(consumed.partition),
        offset: Some(consumed.offset),
        record,
    });
}

//! Turns consumed records into a [`ChangeBatch`] of the source schema.
//!
//! Records of a repartition topic are read as the source records they
//! were made from: key, partition and offset come from their headers
//! (see [`super::sink::RepartitionSink`]).

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
        let (key, partition, offset) = if spec.repartitioned {
            match provenance(record) {
                Ok(p) => p,
                Err(message) => {
                    log_record(ctx, consumed, ProcessingErrorKind::Deserialization, message);
                    continue;
                }
            }
        } else {
            (record.key.as_deref(), consumed.partition, consumed.offset)
        };
        // Windowed key, key and value: any failure skips the record, once.
        let decoded = split_window(spec, key).and_then(|(key_bytes, window)| {
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
        partitions.push(partition);
        offsets.push(offset);
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

/// The key, partition and offset of the source record a repartition
/// record was made from, as its headers hold them.
fn provenance(
    record: &crate::topic::Record,
) -> std::result::Result<(Option<&[u8]>, i32, i64), String> {
    use super::sink::{SOURCE_KEY_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER};
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let partition = header(SOURCE_PARTITION_HEADER)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes);
    let offset = header(SOURCE_OFFSET_HEADER)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes);
    match (partition, offset) {
        (Some(p), Some(o)) => Ok((header(SOURCE_KEY_HEADER), p, o)),
        _ => Err(
            "Record dropped: a repartition record without its source partition and offset headers"
                .into(),
        ),
    }
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

//! Encodes a query's output batch and hands it to the sink topic's writer.
//!
//! The first stage of a repartitioned aggregate ([`RepartitionSink`]) also
//! stamps each record with where its source record came from.

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, Int32Array, Int64Array};
use datafusion::common::ScalarValue;

use super::SinkSpec;
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::format::RecordCodec;
use crate::operator::OperatorContext;
use crate::processing_log::ProcessingErrorKind;
use crate::schema::{ROWOFFSET, ROWPARTITION, ROWTIME};
use crate::topic::{Partitioning, Record, TopicWriter};
use crate::window::{WINDOWEND, WINDOWSTART};

/// Header holding the source record's key bytes (absent for no key).
pub const SOURCE_KEY_HEADER: &str = "sluice.source.key";
/// Header holding the source record's partition, 4 bytes big-endian.
pub const SOURCE_PARTITION_HEADER: &str = "sluice.source.partition";
/// Header holding the source record's offset, 8 bytes big-endian.
pub const SOURCE_OFFSET_HEADER: &str = "sluice.source.offset";

/// The sink of a repartition stage: rows are the result's key (the
/// GROUP BY values, so records of one group land on one partition), the
/// source's value columns, then the source's key
/// columns. The source key goes to a header with the source record's
/// partition and offset, so the next stage reads each record as the one
/// it came from and can tell a replayed record from a new one.
#[derive(Debug, Clone)]
pub struct RepartitionSink {
    /// The source's codec: encodes its key columns.
    pub source_key: RecordCodec,
}

impl RepartitionSink {
    /// The provenance headers of `row`: the source key (from the columns
    /// after the sink's), partition and offset.
    fn headers(
        &self,
        source_keys: &[ArrayRef],
        partitions: &Int32Array,
        offsets: &Int64Array,
        row: usize,
    ) -> Result<Vec<(String, Option<Bytes>)>> {
        let mut headers = Vec::with_capacity(3);
        if let Some(key) = self.source_key.encode_key(source_keys, row)? {
            headers.push((SOURCE_KEY_HEADER.to_string(), Some(Bytes::from(key))));
        }
        headers.push((
            SOURCE_PARTITION_HEADER.to_string(),
            Some(Bytes::copy_from_slice(&partitions.value(row).to_be_bytes())),
        ));
        headers.push((
            SOURCE_OFFSET_HEADER.to_string(),
            Some(Bytes::copy_from_slice(&offsets.value(row).to_be_bytes())),
        ));
        Ok(headers)
    }
}

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
    let provenance = match &spec.repartition {
        Some(r) => {
            let start = key_count + value_count;
            let source_keys = data
                .columns()
                .get(start..start + r.source_key.key_columns().len())
                .ok_or_else(|| {
                    EngineError::Plan("repartition input lacks the source key".into())
                })?;
            let partitions = data
                .column_by_name(ROWPARTITION)
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>());
            let offsets = data
                .column_by_name(ROWOFFSET)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
            let (Some(partitions), Some(offsets)) = (partitions, offsets) else {
                return Err(EngineError::Plan(
                    "repartition input lacks ROWPARTITION or ROWOFFSET".into(),
                ));
            };
            Some((r, source_keys, partitions, offsets))
        }
        None => None,
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
        let headers = match &provenance {
            Some((r, source_keys, partitions, offsets)) => {
                match r.headers(source_keys, partitions, offsets, row) {
                    Ok(h) => h,
                    Err(e) => {
                        ctx.log_error(
                            ProcessingErrorKind::Serialization,
                            format!("Error serializing the source key: {e}"),
                        );
                        continue;
                    }
                }
            }
            None => vec![],
        };
        records.push((
            Partitioning::ByKey,
            Record {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                timestamp,
                headers,
            },
        ));
    }
    let written = records.len();
    if written > 0 {
        writer.write(records)?;
    }
    Ok(written)
}

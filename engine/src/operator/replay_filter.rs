//! [`ReplayFilter`]: drops records a repartition stage wrote twice.
//!
//! The first stage of a repartitioned aggregate writes at least once: after
//! a failover its next owner restores the last checkpoint and writes the
//! records after it again. Each record carries the partition and offset of
//! the source record it came from (`ROWPARTITION`, `ROWOFFSET` once read,
//! see [`crate::query::sink::RepartitionSink`]), and a stage processes its
//! source partition in order, so a record whose source offset is at or
//! below the highest already taken from that source partition is one taken
//! before. The highest offsets are checkpointed with the aggregate they
//! guard, so a restored aggregate and its filter agree.
//!
//! One filter guards one partition of the repartition topic: records of
//! one source partition are in order within each repartition partition,
//! not across them. The aggregate stage runs one unit per partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Operator, OperatorContext};
use crate::batch::ChangeBatch;
use crate::error::{EngineError, Result};
use crate::schema::{ROWOFFSET, ROWPARTITION};

/// Passes each source record once, by its source partition and offset.
pub struct ReplayFilter {
    schema: SchemaRef,
    /// The highest source offset taken, per source partition.
    highest: BTreeMap<i32, i64>,
    /// Records dropped as replays, for logs and tests.
    dropped: u64,
}

impl ReplayFilter {
    /// A filter of rows of `schema`, which has `ROWPARTITION` and
    /// `ROWOFFSET` columns.
    pub fn new(schema: SchemaRef) -> Result<Self> {
        for name in [ROWPARTITION, ROWOFFSET] {
            if schema.column_with_name(name).is_none() {
                return Err(EngineError::Plan(format!(
                    "ReplayFilter needs a {name} column"
                )));
            }
        }
        Ok(ReplayFilter {
            schema,
            highest: BTreeMap::new(),
            dropped: 0,
        })
    }

    /// Records dropped as replays so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn snapshot_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
        ]))
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| EngineError::Plan(format!("ReplayFilter input lacks {name}")))
}

impl Operator for ReplayFilter {
    fn name(&self) -> &'static str {
        "ReplayFilter"
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let partitions: &Int32Array = column(&input.data, ROWPARTITION)?;
        let offsets: &Int64Array = column(&input.data, ROWOFFSET)?;
        let mut keep = Vec::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let (partition, offset) = (partitions.value(row), offsets.value(row));
            let new = self.highest.get(&partition).is_none_or(|h| offset > *h);
            if new {
                self.highest.insert(partition, offset);
            } else {
                self.dropped += 1;
            }
            keep.push(new);
        }
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped == 0 {
            return Ok(input);
        }
        // Only after a failover of the re-keying stage: worth a line.
        tracing::info!(query = %ctx.query_id, dropped, total = self.dropped, "replayed records dropped");
        input.filter(&BooleanArray::from(keep))
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let partitions: Int32Array = self.highest.keys().copied().collect();
        let offsets: Int64Array = self.highest.values().copied().collect();
        Ok(vec![RecordBatch::try_new(
            Self::snapshot_schema(),
            vec![Arc::new(partitions), Arc::new(offsets)],
        )?])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        let [batch] = state.as_slice() else {
            return Err(EngineError::Checkpoint(format!(
                "ReplayFilter keeps one part, the checkpoint has {}",
                state.len()
            )));
        };
        let partitions: &Int32Array = column(batch, "partition")?;
        let offsets: &Int64Array = column(batch, "offset")?;
        self.highest = (0..batch.num_rows())
            .map(|row| (partitions.value(row), offsets.value(row)))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processing_log::ProcessingLog;

    fn batch(rows: &[(i32, i64)]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ROWPARTITION, DataType::Int32, false),
            Field::new(ROWOFFSET, DataType::Int64, false),
        ]));
        let partitions: Int32Array = rows.iter().map(|r| r.0).collect();
        let offsets: Int64Array = rows.iter().map(|r| r.1).collect();
        ChangeBatch::new(
            RecordBatch::try_new(schema, vec![Arc::new(partitions), Arc::new(offsets)])
                .expect("batch"),
        )
    }

    fn offsets(batch: &ChangeBatch) -> Vec<(i32, i64)> {
        let p: &Int32Array = column(&batch.data, ROWPARTITION).expect("partitions");
        let o: &Int64Array = column(&batch.data, ROWOFFSET).expect("offsets");
        (0..batch.num_rows())
            .map(|r| (p.value(r), o.value(r)))
            .collect()
    }

    #[test]
    fn drops_what_it_took_before_per_source_partition_and_survives_a_restore() {
        let log = ProcessingLog::default();
        let ctx = OperatorContext {
            query_id: "Q",
            log: &log,
        };
        let schema = batch(&[]).data.schema();
        let mut filter = ReplayFilter::new(schema.clone()).expect("filter");
        let first = filter
            .process(batch(&[(0, 5), (1, 2), (0, 9)]), &ctx)
            .expect("first");
        assert_eq!(offsets(&first), vec![(0, 5), (1, 2), (0, 9)]);
        // A replay of partition 0 from offset 5, and new records.
        let replay = filter
            .process(batch(&[(0, 5), (0, 9), (1, 3), (0, 10)]), &ctx)
            .expect("replay");
        assert_eq!(offsets(&replay), vec![(1, 3), (0, 10)]);
        assert_eq!(filter.dropped(), 2);

        let saved = filter.snapshot().expect("snapshot");
        let mut restored = ReplayFilter::new(schema).expect("filter");
        restored.restore(saved).expect("restore");
        let after = restored
            .process(batch(&[(0, 10), (1, 3), (1, 4), (2, 0)]), &ctx)
            .expect("after");
        assert_eq!(offsets(&after), vec![(1, 4), (2, 0)]);
    }
}

//! [`ChangeBatch`]: the unit of data that flows between operators.

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter as filter_array;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;

/// A batch of rows plus, for table changelogs, which rows are tombstones
/// (deletions of their key: the value columns of such rows are null).
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    pub data: RecordBatch,
    /// `None` means no row is a tombstone.
    pub tombstones: Option<BooleanArray>,
}

impl ChangeBatch {
    pub fn new(data: RecordBatch) -> Self {
        ChangeBatch {
            data,
            tombstones: None,
        }
    }

    pub fn with_tombstones(data: RecordBatch, tombstones: BooleanArray) -> Self {
        let tombstones = (tombstones.true_count() > 0).then_some(tombstones);
        ChangeBatch { data, tombstones }
    }

    pub fn empty(schema: SchemaRef) -> Self {
        ChangeBatch::new(RecordBatch::new_empty(schema))
    }

    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    pub fn is_tombstone(&self, row: usize) -> bool {
        self.tombstones
            .as_ref()
            .is_some_and(|t| t.is_valid(row) && t.value(row))
    }

    /// Keeps the rows where `mask` is true.
    pub fn filter(&self, mask: &BooleanArray) -> Result<ChangeBatch> {
        let data = filter_record_batch(&self.data, mask)?;
        let tombstones = match &self.tombstones {
            Some(t) => {
                let kept = filter_array(t, mask)?;
                let kept = kept.as_any().downcast_ref::<BooleanArray>().cloned();
                kept.filter(|k| k.true_count() > 0)
            }
            None => None,
        };
        Ok(ChangeBatch { data, tombstones })
    }
}

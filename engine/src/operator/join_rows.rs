//! What every join operator shares: the layout of its inputs and output,
//! the rows it keeps ([`RowStore`]), join-key encoding and the assembly
//! of joined rows ([`JoinOutput`]).
//!
//! A join input ("side") is a batch whose column 0 is the join key and
//! whose last three columns are the row's event time (Int64), partition
//! (Int32) and offset (Int64). The output is the joined key (whichever
//! side has it), every left column, every right column, then `ROWTIME`,
//! `ROWPARTITION` and `ROWOFFSET` of the result. A side that did not match
//! contributes nulls.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
    RecordBatchOptions, new_null_array,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{interleave, is_not_null};
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::HashMap;

use crate::batch::ChangeBatch;
use crate::error::Result;

/// Which input of a join a batch arrives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSide {
    Left,
    Right,
}

/// INNER, LEFT, RIGHT or FULL OUTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Outer,
}

impl JoinKind {
    /// Whether rows of `side` are emitted even without a match.
    pub fn keeps_unmatched(self, side: JoinSide) -> bool {
        matches!(
            (self, side),
            (JoinKind::Outer, _)
                | (JoinKind::Left, JoinSide::Left)
                | (JoinKind::Right, JoinSide::Right)
        )
    }
}

/// The encoded join key of a row: equal keys encode to equal bytes.
pub type KeyBytes = Box<[u8]>;

/// Encodes join keys; null keys encode to `None` (they never join).
pub struct KeyEncoder {
    converter: RowConverter,
}

impl KeyEncoder {
    pub fn new(key_type: &DataType) -> Result<Self> {
        Ok(KeyEncoder {
            converter: RowConverter::new(vec![SortField::new(key_type.clone())])?,
        })
    }

    pub fn encode(&self, keys: &ArrayRef) -> Result<Vec<Option<KeyBytes>>> {
        let rows = self.converter.convert_columns(std::slice::from_ref(keys))?;
        Ok((0..keys.len())
            .map(|i| keys.is_valid(i).then(|| rows.row(i).as_ref().into()))
            .collect())
    }
}

/// A row kept by a join: the batch it came in and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    batch: u64,
    row: u32,
}

struct StoredBatch {
    batch: RecordBatch,
    live: usize,
}

/// Keeps input batches alive while any of their rows is referenced, so
/// joins store rows without copying them one by one.
pub struct RowStore {
    batches: HashMap<u64, StoredBatch>,
    next: u64,
    schema: SchemaRef,
}

impl RowStore {
    pub fn new(schema: SchemaRef) -> Self {
        RowStore {
            batches: HashMap::new(),
            next: 0,
            schema,
        }
    }

    /// Registers a batch; its rows become referable by [`RowStore::row`]
    /// and the batch is dropped by [`RowStore::sweep`] if none is kept.
    pub fn add_batch(&mut self, batch: RecordBatch) -> u64 {
        let id = self.next;
        self.next += 1;
        self.batches.insert(id, StoredBatch { batch, live: 0 });
        id
    }

    pub fn row(batch: u64, row: usize) -> RowRef {
        RowRef {
            batch,
            row: u32::try_from(row).unwrap_or(u32::MAX),
        }
    }

    pub fn retain(&mut self, r: RowRef) {
        if let Some(b) = self.batches.get_mut(&r.batch) {
            b.live += 1;
        }
    }

    pub fn release(&mut self, r: RowRef) {
        if let Some(b) = self.batches.get_mut(&r.batch) {
            b.live = b.live.saturating_sub(1);
            if b.live == 0 {
                self.batches.remove(&r.batch);
            }
        }
    }

    /// Drops `batch` if no row of it was retained.
    pub fn sweep(&mut self, batch: u64) {
        if self.batches.get(&batch).is_some_and(|b| b.live == 0) {
            self.batches.remove(&batch);
        }
    }

    /// Batches currently alive (for state accounting).
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// The rows `refs` as one batch of the store's schema, for a snapshot.
    pub fn snapshot(&self, refs: &[RowRef]) -> Result<RecordBatch> {
        let refs: Vec<Option<RowRef>> = refs.iter().copied().map(Some).collect();
        let columns = self.gather(&refs)?;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(refs.len())),
        )?)
    }

    /// The event time of a row (the side's third column from the end).
    pub fn time_of(&self, r: RowRef) -> i64 {
        self.batches
            .get(&r.batch)
            .map(|b| side_time(&b.batch, r.row as usize))
            .unwrap_or(0)
    }

    /// The columns of `refs` (None: a row of nulls), one array per column.
    fn gather(&self, refs: &[Option<RowRef>]) -> Result<Vec<ArrayRef>> {
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut slot: HashMap<u64, usize> = HashMap::new();
        let null_row = RecordBatch::try_new_with_options(
            self.schema.clone(),
            self.schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), 1))
                .collect(),
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        sources.push(&null_row);
        let mut indices = Vec::with_capacity(refs.len());
        for r in refs {
            let at = match r {
                Some(r) => match self.batches.get(&r.batch) {
                    Some(stored) => {
                        let s = *slot.entry(r.batch).or_insert_with(|| {
                            sources.push(&stored.batch);
                            sources.len() - 1
                        });
                        (s, r.row as usize)
                    }
                    None => (0, 0),
                },
                None => (0, 0),
            };
            indices.push(at);
        }
        (0..self.schema.fields().len())
            .map(|c| {
                let columns: Vec<&dyn Array> =
                    sources.iter().map(|b| b.column(c).as_ref()).collect();
                Ok(interleave(&columns, &indices)?)
            })
            .collect()
    }
}

/// The event time of row `row` of a side batch.
pub fn side_time(batch: &RecordBatch, row: usize) -> i64 {
    let n = batch.num_columns();
    match batch.column(n - 3).as_primitive_opt::<Int64Type>() {
        Some(a) if a.is_valid(row) => a.value(row),
        _ => 0,
    }
}

fn side_partition(batch: &RecordBatch, row: usize) -> i32 {
    let n = batch.num_columns();
    match batch.column(n - 2).as_primitive_opt::<Int32Type>() {
        Some(a) if a.is_valid(row) => a.value(row),
        _ => 0,
    }
}

fn side_offset(batch: &RecordBatch, row: usize) -> i64 {
    let n = batch.num_columns();
    match batch.column(n - 1).as_primitive_opt::<Int64Type>() {
        Some(a) if a.is_valid(row) => a.value(row),
        _ => 0,
    }
}

/// Collects joined rows and builds the output batch.
pub struct JoinOutput {
    left: Vec<Option<RowRef>>,
    right: Vec<Option<RowRef>>,
    time: Vec<i64>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    tombstone: Vec<bool>,
}

impl JoinOutput {
    pub fn new() -> Self {
        JoinOutput {
            left: vec![],
            right: vec![],
            time: vec![],
            partition: vec![],
            offset: vec![],
            tombstone: vec![],
        }
    }

    /// Adds a result row caused by row `trigger` of `batch` (whose
    /// partition and offset the result takes).
    pub fn push(
        &mut self,
        left: Option<RowRef>,
        right: Option<RowRef>,
        time: i64,
        batch: &RecordBatch,
        trigger: usize,
        tombstone: bool,
    ) {
        self.left.push(left);
        self.right.push(right);
        self.time.push(time);
        self.partition.push(side_partition(batch, trigger));
        self.offset.push(side_offset(batch, trigger));
        self.tombstone.push(tombstone);
    }

    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }

    pub fn build(
        self,
        left: &RowStore,
        right: &RowStore,
        schema: &SchemaRef,
    ) -> Result<ChangeBatch> {
        let n = self.left.len();
        let left_columns = left.gather(&self.left)?;
        let right_columns = right.gather(&self.right)?;
        let left_key = left_columns[0].clone();
        let right_key = right_columns[0].clone();
        let key_type = schema.field(0).data_type();
        let left_key = datafusion::arrow::compute::cast(&left_key, key_type)?;
        let right_key = datafusion::arrow::compute::cast(&right_key, key_type)?;
        let key = zip(&is_not_null(&left_key)?, &left_key, &right_key)?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        columns.push(key);
        columns.extend(left_columns);
        columns.extend(right_columns);
        columns.push(Arc::new(Int64Array::from(self.time)) as ArrayRef);
        columns.push(Arc::new(Int32Array::from(self.partition)) as ArrayRef);
        columns.push(Arc::new(Int64Array::from(self.offset)) as ArrayRef);
        let data = RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        Ok(ChangeBatch::with_tombstones(
            data,
            BooleanArray::from(self.tombstone),
        ))
    }
}

impl Default for JoinOutput {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds `batch` to `store` and returns its id with the encoded key of
/// every row.
pub fn admit(
    store: &mut RowStore,
    encoder: &KeyEncoder,
    batch: &ChangeBatch,
) -> Result<(u64, Vec<Option<KeyBytes>>)> {
    let keys = encoder.encode(batch.data.column(0))?;
    let id = store.add_batch(batch.data.clone());
    Ok((id, keys))
}

/// Puts snapshotted rows back into `store`: returns the ids of the rows
/// (each retained once) with their encoded keys. The batch must have the
/// side's layout, which a checkpoint of another plan would not.
pub fn restore_rows(
    store: &mut RowStore,
    encoder: &KeyEncoder,
    rows: RecordBatch,
) -> Result<Vec<(RowRef, Option<KeyBytes>)>> {
    if rows.num_columns() != store.schema.fields().len() {
        return Err(crate::error::EngineError::Checkpoint(format!(
            "join state rows have {} columns, the join's side has {}",
            rows.num_columns(),
            store.schema.fields().len()
        )));
    }
    let batch = ChangeBatch::new(rows);
    let (id, keys) = admit(store, encoder, &batch)?;
    let restored = keys
        .into_iter()
        .enumerate()
        .map(|(row, key)| {
            let r = RowStore::row(id, row);
            store.retain(r);
            (r, key)
        })
        .collect();
    store.sweep(id);
    Ok(restored)
}

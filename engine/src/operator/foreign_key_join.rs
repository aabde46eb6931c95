//! [`ForeignKeyJoin`]: joins a table to another table's primary key
//! through an expression over its own rows (INNER or LEFT), as Kafka
//! Streams' foreign-key join does.
//!
//! The result is keyed by the left table's primary key. Left rows are
//! indexed by the foreign key they point to, so a change to a right row
//! updates every left row that references it (in left-key order). A left
//! row that stops matching leaves the result (a tombstone) in an INNER
//! join and stays with nulls in a LEFT join.

use std::collections::BTreeSet;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::HashMap;

use super::join_rows::{
    JoinKind, JoinOutput, JoinSide, KeyBytes, KeyEncoder, RowRef, RowStore, admit, restore_rows,
    side_time,
};
use super::{JoinOperator, OperatorContext, state};
use crate::batch::ChangeBatch;
use crate::error::Result;

struct LeftRow {
    row: RowRef,
    foreign_key: Option<KeyBytes>,
}

pub struct ForeignKeyJoin {
    kind: JoinKind,
    /// Encodes foreign keys (left column 0) and right primary keys.
    encoder: KeyEncoder,
    /// Encodes the left table's primary key.
    left_key: RowConverter,
    /// Positions of the left primary key columns in left batches.
    left_key_columns: Vec<usize>,
    left: RowStore,
    right: RowStore,
    left_rows: HashMap<KeyBytes, LeftRow>,
    right_rows: HashMap<KeyBytes, RowRef>,
    /// Foreign key -> the left rows pointing at it, by left key.
    referencing: HashMap<KeyBytes, BTreeSet<KeyBytes>>,
    output: SchemaRef,
}

impl ForeignKeyJoin {
    pub fn new(
        kind: JoinKind,
        left_schema: SchemaRef,
        left_key_columns: Vec<usize>,
        right_schema: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        let fields = left_key_columns
            .iter()
            .map(|&i| SortField::new(left_schema.field(i).data_type().clone()))
            .collect();
        Ok(ForeignKeyJoin {
            kind,
            encoder: KeyEncoder::new(left_schema.field(0).data_type())?,
            left_key: RowConverter::new(fields)?,
            left_key_columns,
            left: RowStore::new(left_schema),
            right: RowStore::new(right_schema),
            left_rows: HashMap::new(),
            right_rows: HashMap::new(),
            referencing: HashMap::new(),
            output,
        })
    }

    fn left_keys(&self, batch: &ChangeBatch) -> Result<Vec<KeyBytes>> {
        let columns: Vec<ArrayRef> = self
            .left_key_columns
            .iter()
            .map(|&i| batch.data.column(i).clone())
            .collect();
        let rows = self.left_key.convert_columns(&columns)?;
        Ok((0..batch.num_rows())
            .map(|i| rows.row(i).as_ref().into())
            .collect())
    }

    /// Returns the id of the input batch and the rows no longer kept.
    fn process_left(
        &mut self,
        input: &ChangeBatch,
        out: &mut JoinOutput,
    ) -> Result<(u64, Vec<RowRef>)> {
        let pks = self.left_keys(input)?;
        let (id, fks) = admit(&mut self.left, &self.encoder, input)?;
        let mut released = Vec::new();
        for (row, (pk, fk)) in pks.into_iter().zip(fks).enumerate() {
            let this = RowStore::row(id, row);
            let time = side_time(&input.data, row);
            let deleted = input.is_tombstone(row);
            let old = self.left_rows.remove(&pk);
            if let Some(old) = &old {
                released.push(old.row);
                if let Some(old_fk) = &old.foreign_key
                    && let Some(set) = self.referencing.get_mut(old_fk)
                {
                    set.remove(&pk);
                    if set.is_empty() {
                        self.referencing.remove(old_fk);
                    }
                }
            }
            if deleted {
                if old.is_some() {
                    out.push(Some(this), None, time, &input.data, row, true);
                }
                continue;
            }
            self.left.retain(this);
            if let Some(f) = &fk {
                self.referencing
                    .entry(f.clone())
                    .or_default()
                    .insert(pk.clone());
            }
            let right = fk.as_ref().and_then(|f| self.right_rows.get(f)).copied();
            match right {
                Some(r) => {
                    let t = time.max(self.right.time_of(r));
                    out.push(Some(this), Some(r), t, &input.data, row, false);
                }
                None if self.kind == JoinKind::Left => {
                    out.push(Some(this), None, time, &input.data, row, false)
                }
                None => {
                    // The row may have matched through its old foreign key.
                    let moved = old.as_ref().is_some_and(|o| o.foreign_key != fk);
                    if moved {
                        out.push(Some(this), None, time, &input.data, row, true);
                    }
                }
            }
            self.left_rows.insert(
                pk,
                LeftRow {
                    row: this,
                    foreign_key: fk,
                },
            );
        }
        Ok((id, released))
    }

    fn process_right(
        &mut self,
        input: &ChangeBatch,
        out: &mut JoinOutput,
    ) -> Result<(u64, Vec<RowRef>)> {
        let (id, keys) = admit(&mut self.right, &self.encoder, input)?;
        let mut released = Vec::new();
        for (row, key) in keys.into_iter().enumerate() {
            let Some(key) = key else { continue };
            let this = RowStore::row(id, row);
            let time = side_time(&input.data, row);
            let deleted = input.is_tombstone(row);
            let old = if deleted {
                self.right_rows.remove(&key)
            } else {
                self.right.retain(this);
                self.right_rows.insert(key.clone(), this)
            };
            if let Some(old) = old {
                released.push(old);
            }
            let Some(lefts) = self.referencing.get(&key) else {
                continue;
            };
            for pk in lefts {
                let Some(left) = self.left_rows.get(pk) else {
                    continue;
                };
                let t = time.max(self.left.time_of(left.row));
                match (deleted, self.kind) {
                    (false, _) => out.push(Some(left.row), Some(this), t, &input.data, row, false),
                    (true, JoinKind::Left) => {
                        out.push(Some(left.row), None, t, &input.data, row, false)
                    }
                    (true, _) => out.push(Some(left.row), None, t, &input.data, row, true),
                }
            }
        }
        Ok((id, released))
    }
}

impl JoinOperator for ForeignKeyJoin {
    fn name(&self) -> &'static str {
        "ForeignKeyJoin"
    }

    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    fn state_rows(&self) -> usize {
        self.left_rows.len() + self.right_rows.len()
    }

    fn process(
        &mut self,
        side: JoinSide,
        input: ChangeBatch,
        _ctx: &OperatorContext,
    ) -> Result<ChangeBatch> {
        let mut out = JoinOutput::new();
        match side {
            JoinSide::Left => {
                let (id, released) = self.process_left(&input, &mut out)?;
                let result = out.build(&self.left, &self.right, &self.output)?;
                for r in released {
                    self.left.release(r);
                }
                self.left.sweep(id);
                Ok(result)
            }
            JoinSide::Right => {
                let (id, released) = self.process_right(&input, &mut out)?;
                let result = out.build(&self.left, &self.right, &self.output)?;
                for r in released {
                    self.right.release(r);
                }
                self.right.sweep(id);
                Ok(result)
            }
        }
    }

    /// Two parts: the current left rows and the current right rows, each
    /// in its side's layout; the foreign-key index is rebuilt from them.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let left: Vec<RowRef> = self.left_rows.values().map(|l| l.row).collect();
        let right: Vec<RowRef> = self.right_rows.values().copied().collect();
        Ok(vec![
            self.left.snapshot(&left)?,
            self.right.snapshot(&right)?,
        ])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [left, right] = state::expect_parts::<2>("ForeignKeyJoin", parts)?;
        let pks = self.left_keys(&ChangeBatch::new(left.clone()))?;
        let restored = restore_rows(&mut self.left, &self.encoder, left)?;
        for (pk, (row, foreign_key)) in pks.into_iter().zip(restored) {
            if let Some(f) = &foreign_key {
                self.referencing
                    .entry(f.clone())
                    .or_default()
                    .insert(pk.clone());
            }
            self.left_rows.insert(pk, LeftRow { row, foreign_key });
        }
        for (r, key) in restore_rows(&mut self.right, &self.encoder, right)? {
            match key {
                Some(key) => {
                    self.right_rows.insert(key, r);
                }
                None => self.right.release(r),
            }
        }
        Ok(())
    }
}

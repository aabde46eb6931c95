//! [`TableTableJoin`]: joins two tables on their primary key (INNER, LEFT,
//! RIGHT, FULL OUTER), as Kafka Streams' table-table join does.
//!
//! Both sides keep their current row per key. A change on either side
//! emits the new joined row for its key, or a tombstone when the key left
//! the result; a change whose key has no row on the other side emits only
//! if the join keeps unmatched rows of that side. The result carries the
//! later time of the two rows.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;

use super::join_rows::{
    JoinKind, JoinOutput, JoinSide, KeyBytes, KeyEncoder, RowRef, RowStore, admit, restore_rows,
    side_time,
};
use super::{JoinOperator, OperatorContext, state};
use crate::batch::ChangeBatch;
use crate::error::Result;

pub struct TableTableJoin {
    kind: JoinKind,
    encoder: KeyEncoder,
    left: RowStore,
    right: RowStore,
    left_rows: HashMap<KeyBytes, RowRef>,
    right_rows: HashMap<KeyBytes, RowRef>,
    output: SchemaRef,
}

impl TableTableJoin {
    pub fn new(
        kind: JoinKind,
        left_schema: SchemaRef,
        right_schema: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        Ok(TableTableJoin {
            kind,
            encoder: KeyEncoder::new(left_schema.field(0).data_type())?,
            left: RowStore::new(left_schema),
            right: RowStore::new(right_schema),
            left_rows: HashMap::new(),
            right_rows: HashMap::new(),
            output,
        })
    }
}

impl JoinOperator for TableTableJoin {
    fn name(&self) -> &'static str {
        "TableTableJoin"
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
        let (own_store, own_rows, other_store, other_rows) = match side {
            JoinSide::Left => (
                &mut self.left,
                &mut self.left_rows,
                &self.right,
                &self.right_rows,
            ),
            JoinSide::Right => (
                &mut self.right,
                &mut self.right_rows,
                &self.left,
                &self.left_rows,
            ),
        };
        let (id, keys) = admit(own_store, &self.encoder, &input)?;
        let keeps_own = self.kind.keeps_unmatched(side);
        let mut out = JoinOutput::new();
        let mut released = Vec::new();
        for (row, key) in keys.into_iter().enumerate() {
            let Some(key) = key else { continue };
            let this = RowStore::row(id, row);
            let deleted = input.is_tombstone(row);
            let previous = if deleted {
                own_rows.remove(&key)
            } else {
                own_store.retain(this);
                own_rows.insert(key.clone(), this)
            };
            if let Some(old) = previous {
                released.push(old);
            }
            let time = side_time(&input.data, row);
            let other = other_rows.get(&key).copied();
            let other_time = other.map(|o| other_store.time_of(o));
            let result_time = other_time.map_or(time, |t| t.max(time));
            let (l, r) = match side {
                JoinSide::Left => (Some(this), other),
                JoinSide::Right => (other, Some(this)),
            };
            match (other, deleted) {
                // Both rows exist: the joined row.
                (Some(_), false) => out.push(l, r, result_time, &input.data, row, false),
                // This side's row went away: the other side's row stays in
                // the result only if the join keeps it unmatched.
                (Some(_), true) => {
                    if self.kind.keeps_unmatched(other_side(side)) {
                        match side {
                            JoinSide::Left => {
                                out.push(None, r, result_time, &input.data, row, false)
                            }
                            JoinSide::Right => {
                                out.push(l, None, result_time, &input.data, row, false)
                            }
                        }
                    } else {
                        out.push(l, r, result_time, &input.data, row, true)
                    }
                }
                (None, false) if keeps_own => out.push(l, r, result_time, &input.data, row, false),
                (None, true) if keeps_own && previous.is_some() => {
                    out.push(l, r, result_time, &input.data, row, true)
                }
                (None, _) => {}
            }
        }
        let result = out.build(&self.left, &self.right, &self.output)?;
        let own_store = match side {
            JoinSide::Left => &mut self.left,
            JoinSide::Right => &mut self.right,
        };
        for old in released {
            own_store.release(old);
        }
        own_store.sweep(id);
        Ok(result)
    }

    /// Two parts: the current rows of the left side, then of the right,
    /// each in its side's layout.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let left: Vec<RowRef> = self.left_rows.values().copied().collect();
        let right: Vec<RowRef> = self.right_rows.values().copied().collect();
        Ok(vec![
            self.left.snapshot(&left)?,
            self.right.snapshot(&right)?,
        ])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [left, right] = state::expect_parts::<2>("TableTableJoin", parts)?;
        for (store, rows, batch) in [
            (&mut self.left, &mut self.left_rows, left),
            (&mut self.right, &mut self.right_rows, right),
        ] {
            for (r, key) in restore_rows(store, &self.encoder, batch)? {
                match key {
                    Some(key) => {
                        if let Some(old) = rows.insert(key, r) {
                            store.release(old);
                        }
                    }
                    None => store.release(r),
                }
            }
        }
        Ok(())
    }
}

fn other_side(side: JoinSide) -> JoinSide {
    match side {
        JoinSide::Left => JoinSide::Right,
        JoinSide::Right => JoinSide::Left,
    }
}

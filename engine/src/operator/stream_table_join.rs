//! [`StreamTableJoin`]: enriches each stream row with the current row of a
//! table under the same key (INNER or LEFT).
//!
//! The table side only updates state: a change to the table never emits,
//! a stream row sees the table as it is when the row is processed. The
//! result carries the stream row's time.

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

pub struct StreamTableJoin {
    kind: JoinKind,
    encoder: KeyEncoder,
    stream: RowStore,
    table: RowStore,
    rows: HashMap<KeyBytes, RowRef>,
    output: SchemaRef,
}

impl StreamTableJoin {
    /// The stream is the left side, the table the right.
    pub fn new(
        kind: JoinKind,
        stream_schema: SchemaRef,
        table_schema: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        Ok(StreamTableJoin {
            kind,
            encoder: KeyEncoder::new(stream_schema.field(0).data_type())?,
            stream: RowStore::new(stream_schema),
            table: RowStore::new(table_schema),
            rows: HashMap::new(),
            output,
        })
    }
}

impl JoinOperator for StreamTableJoin {
    fn name(&self) -> &'static str {
        "StreamTableJoin"
    }

    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    fn state_rows(&self) -> usize {
        self.rows.len()
    }

    fn process(
        &mut self,
        side: JoinSide,
        input: ChangeBatch,
        _ctx: &OperatorContext,
    ) -> Result<ChangeBatch> {
        match side {
            JoinSide::Right => {
                let (id, keys) = admit(&mut self.table, &self.encoder, &input)?;
                for (row, key) in keys.into_iter().enumerate() {
                    let Some(key) = key else { continue };
                    let previous = if input.is_tombstone(row) {
                        self.rows.remove(&key)
                    } else {
                        let r = RowStore::row(id, row);
                        self.table.retain(r);
                        self.rows.insert(key, r)
                    };
                    if let Some(old) = previous {
                        self.table.release(old);
                    }
                }
                self.table.sweep(id);
                Ok(ChangeBatch::empty(self.output.clone()))
            }
            JoinSide::Left => {
                let (id, keys) = admit(&mut self.stream, &self.encoder, &input)?;
                let mut out = JoinOutput::new();
                for (row, key) in keys.into_iter().enumerate() {
                    let Some(key) = key else { continue };
                    if input.is_tombstone(row) {
                        continue;
                    }
                    let this = RowStore::row(id, row);
                    let time = side_time(&input.data, row);
                    match self.rows.get(&key) {
                        Some(t) => out.push(Some(this), Some(*t), time, &input.data, row, false),
                        None if self.kind == JoinKind::Left => {
                            out.push(Some(this), None, time, &input.data, row, false)
                        }
                        None => {}
                    }
                }
                let result = out.build(&self.stream, &self.table, &self.output)?;
                self.stream.sweep(id);
                Ok(result)
            }
        }
    }

    /// One part: the current table rows, in the table side's layout.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let refs: Vec<RowRef> = self.rows.values().copied().collect();
        Ok(vec![self.table.snapshot(&refs)?])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [rows] = state::expect_parts::<1>("StreamTableJoin", parts)?;
        for (r, key) in restore_rows(&mut self.table, &self.encoder, rows)? {
            match key {
                Some(key) => {
                    if let Some(old) = self.rows.insert(key, r) {
                        self.table.release(old);
                    }
                }
                None => self.table.release(r),
            }
        }
        Ok(())
    }
}

//! [`Filter`]: keeps the rows for which a predicate is true (`WHERE`,
//! `HAVING`).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, BooleanBuilder, RecordBatch};
use datafusion::arrow::compute::prep_null_mask_filter;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate_isolating_errors, state};
use crate::batch::ChangeBatch;
use crate::error::Result;

/// A filter over a stream drops failing rows. Over a table changelog it
/// must also retract: a key whose earlier row passed and whose new row
/// fails becomes a tombstone downstream, so the result table never keeps a
/// row its filter no longer accepts.
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
    table: Option<TableFilterState>,
}

struct TableFilterState {
    key_columns: Vec<usize>,
    converter: RowConverter,
    /// Keys whose current row passed the predicate.
    present: HashSet<OwnedRow>,
}

impl Filter {
    pub fn for_stream(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Self {
        Filter {
            predicate,
            schema,
            table: None,
        }
    }

    /// The first `key_count` columns of the input, and its window if it
    /// has one, are the table's key.
    pub fn for_table(
        predicate: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
        key_count: usize,
    ) -> Result<Self> {
        Self::for_table_keyed_by(predicate, schema, (0..key_count).collect())
    }

    /// A table filter whose key is the given columns (and the window).
    pub fn for_table_keyed_by(
        predicate: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
        mut key_columns: Vec<usize>,
    ) -> Result<Self> {
        for name in [crate::window::WINDOWSTART, crate::window::WINDOWEND] {
            if let Ok(i) = schema.index_of(name) {
                key_columns.push(i);
            }
        }
        let fields = key_columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        Ok(Filter {
            predicate,
            schema,
            table: Some(TableFilterState {
                key_columns,
                converter,
                present: HashSet::new(),
            }),
        })
    }
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn state_rows(&self) -> usize {
        self.table.as_ref().map_or(0, |t| t.present.len())
    }

    fn process(&mut self, input: ChangeBatch, ctx: &OperatorContext) -> Result<ChangeBatch> {
        let result = evaluate_isolating_errors(&self.predicate, &input.data, ctx)?;
        let passed = result
            .as_any()
            .downcast_ref::<BooleanArray>()
            // A null predicate drops the row, as SQL's WHERE does.
            .map(|b| {
                if b.null_count() > 0 {
                    prep_null_mask_filter(b)
                } else {
                    b.clone()
                }
            })
            .unwrap_or_else(|| BooleanArray::from(vec![false; input.num_rows()]));
        let Some(table) = &mut self.table else {
            // A stream record without value has nothing to match: ksqlDB
            // drops it at a WHERE.
            let passed = match &input.tombstones {
                Some(t) => datafusion::arrow::compute::and_not(&passed, t)?,
                None => passed,
            };
            return input.filter(&passed);
        };
        let keys = table.converter.convert_columns(
            &table
                .key_columns
                .iter()
                .map(|i| input.data.column(*i).clone())
                .collect::<Vec<_>>(),
        )?;
        let mut keep = BooleanBuilder::with_capacity(input.num_rows());
        let mut tombstone = BooleanBuilder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let key = keys.row(row).owned();
            let accepted = !input.is_tombstone(row) && passed.value(row);
            if accepted {
                table.present.insert(key);
                keep.append_value(true);
                tombstone.append_value(false);
            } else if table.present.remove(&key) {
                keep.append_value(true);
                tombstone.append_value(true);
            } else {
                keep.append_value(false);
                tombstone.append_value(false);
            }
        }
        let marked = ChangeBatch::with_tombstones(input.data, tombstone.finish());
        marked.filter(&keep.finish())
    }

    /// A table filter keeps the keys whose row passed: `key0`, `key1`...
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let Some(table) = &self.table else {
            return Ok(Vec::new());
        };
        let columns = state::key_columns(&table.converter, table.present.iter(), "key")?;
        Ok(vec![state::batch(columns, table.present.len())?])
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let Some(table) = &mut self.table else {
            return super::no_state("Filter", &parts);
        };
        let [keys] = state::expect_parts::<1>("Filter", parts)?;
        let columns = state::numbered(&keys, "key");
        let rows = table.converter.convert_columns(&columns)?;
        table.present = rows.iter().map(|r| r.owned()).collect();
        Ok(())
    }
}

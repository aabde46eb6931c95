//! `TOPK(col, k)` and `TOPKDISTINCT(col, k)`: ksqlDB's aggregates of the
//! `k` largest values (distinct ones for the second), largest first.
//!
//! `TOPK(col, other1, ..., k)` carries other columns along: the result is
//! an array of structs `{sort_col, col0, col1, ...}` ordered by `sort_col`;
//! rows with equal `sort_col` keep arrival order.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use super::collect::list_state_rows;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TopK {
    name: &'static str,
    distinct: bool,
    signature: Signature,
}

impl TopK {
    pub fn new(distinct: bool) -> Self {
        TopK {
            name: if distinct { "topkdistinct" } else { "topk" },
            distinct,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for TopK {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [] | [_] => plan_err!("{} takes a column and a count", self.name.to_uppercase()),
            [t, _] => Ok(DataType::new_list(t.clone(), true)),
            [t, others @ .., _] => Ok(DataType::new_list(item_struct(t, others), true)),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = args
            .exprs
            .last()
            .filter(|_| args.exprs.len() >= 2)
            .and_then(|e| e.downcast_ref::<Literal>())
            .and_then(|l| match *l.value() {
                ScalarValue::Int32(Some(k)) => usize::try_from(k).ok(),
                ScalarValue::Int64(Some(k)) => usize::try_from(k).ok(),
                _ => None,
            });
        let Some(k) = k.filter(|k| *k > 0) else {
            return plan_err!(
                "{}: the count must be a positive integer literal",
                self.name.to_uppercase()
            );
        };
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let data_type = match self.return_type(&types)? {
            DataType::List(item) => item.data_type().clone(),
            other => return plan_err!("{} cannot return {other}", self.name.to_uppercase()),
        };
        Ok(Box::new(TopKAccumulator {
            k,
            distinct: self.distinct,
            carried: types.len() > 2,
            data_type,
            values: vec![],
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let types: Vec<DataType> = args
            .input_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            self.return_type(&types)?,
            true,
        ))])
    }
}

/// The struct of `TOPK(col, others..., k)`'s items.
fn item_struct(sorted: &DataType, others: &[DataType]) -> DataType {
    let mut fields = vec![Field::new("sort_col", sorted.clone(), true)];
    fields.extend(
        others
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("col{i}"), t.clone(), true)),
    );
    DataType::Struct(fields.into())
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    distinct: bool,
    /// Whether items are `{sort_col, col0...}` structs.
    carried: bool,
    data_type: DataType,
    /// The current top values, largest first.
    values: Vec<ScalarValue>,
}

impl TopKAccumulator {
    /// The value an item sorts by.
    fn sort_key(&self, item: &ScalarValue) -> ScalarValue {
        match item {
            ScalarValue::Struct(s) if self.carried => s
                .columns()
                .first()
                .and_then(|c| ScalarValue::try_from_array(c, 0).ok())
                .unwrap_or(ScalarValue::Null),
            other => other.clone(),
        }
    }

    fn offer(&mut self, value: ScalarValue) {
        let key = self.sort_key(&value);
        if key.is_null() || (self.distinct && self.values.contains(&value)) {
            return;
        }
        let at = self
            .values
            .iter()
            .position(|v| key.partial_cmp(&self.sort_key(v)) == Some(Ordering::Greater))
            .unwrap_or(self.values.len());
        if at < self.k {
            self.values.insert(at, value);
            self.values.truncate(self.k);
        }
    }

    fn offer_all(&mut self, array: &dyn Array) -> Result<()> {
        for i in 0..array.len() {
            self.offer(ScalarValue::try_from_array(array, i)?);
        }
        Ok(())
    }
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if !self.carried {
            return match values.first() {
                Some(a) => self.offer_all(a.as_ref()),
                None => exec_err!("TOPK needs its column"),
            };
        }
        // The sorted column and the carried ones (the count is last).
        let columns = &values[..values.len().saturating_sub(1)];
        let DataType::Struct(fields) = &self.data_type else {
            return exec_err!("TOPK items are not structs");
        };
        let items = StructArray::try_new(fields.clone(), columns.to_vec(), None)?;
        self.offer_all(&items)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &self.values,
            &self.data_type,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for items in list_state_rows(states, "TOPK")? {
            self.offer_all(items.as_ref())?;
        }
        Ok(())
    }
}

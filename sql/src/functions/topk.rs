//! `TOPK(col, k)` and `TOPKDISTINCT(col, k)`: ksqlDB's aggregates of the
//! `k` largest values (distinct ones for the second), largest first.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

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
            signature: Signature::any(2, Volatility::Immutable),
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
        match arg_types.first() {
            Some(t) => Ok(DataType::new_list(t.clone(), true)),
            None => plan_err!("{} takes a column and a count", self.name.to_uppercase()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = args
            .exprs
            .get(1)
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
        let Some(field) = args.expr_fields.first() else {
            return plan_err!("{} takes a column and a count", self.name.to_uppercase());
        };
        Ok(Box::new(TopKAccumulator {
            k,
            distinct: self.distinct,
            data_type: field.data_type().clone(),
            values: vec![],
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            DataType::new_list(item, true),
            true,
        ))])
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    distinct: bool,
    data_type: DataType,
    /// The current top values, largest first.
    values: Vec<ScalarValue>,
}

impl TopKAccumulator {
    fn offer(&mut self, value: ScalarValue) {
        if value.is_null() || (self.distinct && self.values.contains(&value)) {
            return;
        }
        let at = self
            .values
            .iter()
            .position(|v| value.partial_cmp(v) == Some(Ordering::Greater))
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
        match values.first() {
            Some(a) => self.offer_all(a.as_ref()),
            None => exec_err!("TOPK needs its column"),
        }
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
        let Some(lists) = states
            .first()
            .and_then(|s| s.as_any().downcast_ref::<ListArray>())
        else {
            return exec_err!("TOPK state is not a list");
        };
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.offer_all(lists.value(i).as_ref())?;
            }
        }
        Ok(())
    }
}

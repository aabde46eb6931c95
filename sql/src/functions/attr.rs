//! `ATTR(col)`: a group's value when every row has the same one, null
//! when they differ (or the group is empty). Nulls count as a value.
//! Retracts, for table aggregation: values are counted, so removing the
//! odd one out restores the common value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::collect::{same, tagged_state, tagged_state_rows};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Attr {
    signature: Signature,
}

impl Default for Attr {
    fn default() -> Self {
        Attr {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Attr {
    fn name(&self) -> &str {
        "attr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) => Ok(t.clone()),
            None => plan_err!("ATTR takes one column"),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(field) = args.expr_fields.first() else {
            return plan_err!("ATTR takes one column");
        };
        Ok(Box::new(AttrAccumulator {
            data_type: field.data_type().clone(),
            counts: vec![],
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "values"),
                DataType::new_list(item, true),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "counts"),
                DataType::new_list(DataType::Int64, true),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct AttrAccumulator {
    data_type: DataType,
    /// Each distinct value with how many rows have it.
    counts: Vec<(ScalarValue, i64)>,
}

impl AttrAccumulator {
    fn add(&mut self, value: ScalarValue, by: i64) {
        match self.counts.iter_mut().find(|(v, _)| same(v, &value)) {
            Some((_, n)) => *n += by,
            None if by > 0 => self.counts.push((value, by)),
            None => {}
        }
        self.counts.retain(|(_, n)| *n > 0);
    }

    fn add_all(&mut self, values: &[ArrayRef], by: i64) -> Result<()> {
        let Some(array) = values.first() else {
            return exec_err!("ATTR needs its column");
        };
        for i in 0..array.len() {
            self.add(ScalarValue::try_from_array(array, i)?, by);
        }
        Ok(())
    }
}

impl Accumulator for AttrAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add_all(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add_all(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.counts.as_slice() {
            [(only, _)] => Ok(only.clone()),
            _ => ScalarValue::try_new_null(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.iter().map(|(v, _)| v.size() + 8).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(tagged_state(
            self.counts.iter().map(|(v, n)| (v.clone(), *n)),
            &self.data_type,
        ))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (items, numbers) in tagged_state_rows(states, "ATTR")? {
            for i in 0..items.len().min(numbers.len()) {
                self.add(ScalarValue::try_from_array(&items, i)?, numbers.value(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    #[test]
    fn one_value_or_null_and_retracts() {
        let mut a = AttrAccumulator {
            data_type: DataType::Int32,
            counts: vec![],
        };
        let ints = |v: &[i32]| -> ArrayRef { Arc::new(Int32Array::from(v.to_vec())) };
        a.update_batch(&[ints(&[4, 4])]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int32(Some(4)));
        a.update_batch(&[ints(&[5])]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int32(None));
        a.retract_batch(&[ints(&[5])]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int32(Some(4)));
    }
}

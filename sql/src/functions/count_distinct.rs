//! `COUNT_DISTINCT(col)`: how many distinct non-null values a group has
//! seen. ksqlDB estimates this with a HyperLogLog sketch; Sluice counts
//! exactly, which is what the estimate approximates. Not retractable, as in
//! ksqlDB.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{HashSet, Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::collect::list_state_rows;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CountDistinct {
    signature: Signature,
}

impl Default for CountDistinct {
    fn default() -> Self {
        CountDistinct {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for CountDistinct {
    fn name(&self) -> &str {
        "count_distinct"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let data_type = args
            .expr_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(Box::new(CountDistinctAccumulator {
            data_type,
            seen: HashSet::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "seen"),
            DataType::new_list(item, true),
            true,
        ))])
    }
}

#[derive(Debug)]
struct CountDistinctAccumulator {
    data_type: DataType,
    seen: HashSet<ScalarValue>,
}

impl CountDistinctAccumulator {
    fn add_all(&mut self, array: &dyn Array) -> Result<()> {
        for i in 0..array.len() {
            if array.is_valid(i) {
                self.seen.insert(ScalarValue::try_from_array(array, i)?);
            }
        }
        Ok(())
    }
}

impl Accumulator for CountDistinctAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(a) => self.add_all(a.as_ref()),
            None => exec_err!("COUNT_DISTINCT needs its column"),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.seen.len() as i64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.seen.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.seen.iter().cloned().collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &self.data_type,
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for items in list_state_rows(states, "COUNT_DISTINCT")? {
            self.add_all(items.as_ref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn counts_distinct_non_nulls_and_merges() {
        let mut a = CountDistinctAccumulator {
            data_type: DataType::Utf8,
            seen: HashSet::default(),
        };
        let batch: ArrayRef = Arc::new(StringArray::from(vec![
            Some("x"),
            None,
            Some("x"),
            Some("y"),
        ]));
        a.update_batch(&[batch]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        let mut b = CountDistinctAccumulator {
            data_type: DataType::Utf8,
            seen: HashSet::default(),
        };
        let state: Vec<ArrayRef> = a
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        b.merge_batch(&state).unwrap();
        assert_eq!(b.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
    }
}

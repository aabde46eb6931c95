//! `SUM_LIST(array)`: ksqlDB's aggregate summing the elements of each
//! row's array (INT, BIGINT or DOUBLE elements; null elements and null
//! arrays add nothing). The result has the element type and starts at 0.
//! Retracts, for table aggregation.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SumList {
    signature: Signature,
}

impl Default for SumList {
    fn default() -> Self {
        SumList {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

fn element_type(arg: Option<&DataType>) -> Result<DataType> {
    match arg {
        Some(DataType::List(item)) => match item.data_type() {
            t @ (DataType::Int32 | DataType::Int64 | DataType::Float64) => Ok(t.clone()),
            DataType::Int8 | DataType::Int16 => Ok(DataType::Int32),
            DataType::Float32 => Ok(DataType::Float64),
            other => plan_err!("SUM_LIST cannot sum {other}"),
        },
        other => plan_err!(
            "Function 'sum_list' does not accept parameters ({})",
            other.map(|t| t.to_string()).unwrap_or_default()
        ),
    }
}

impl AggregateUDFImpl for SumList {
    fn name(&self) -> &str {
        "sum_list"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        element_type(arg_types.first())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let field = args.expr_fields.first().map(|f| f.data_type());
        let data_type = element_type(field)?;
        Ok(Box::new(SumListAccumulator {
            floating: data_type == DataType::Float64,
            data_type,
            whole: 0,
            fraction: 0.0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "whole"),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "fraction"),
                DataType::Float64,
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct SumListAccumulator {
    floating: bool,
    data_type: DataType,
    /// The sum of whole-number elements (wrapping as Java does).
    whole: i64,
    /// The sum of DOUBLE elements.
    fraction: f64,
}

impl SumListAccumulator {
    fn add(&mut self, values: &[ArrayRef], sign: i64) -> Result<()> {
        let Some(lists) = values.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return exec_err!("SUM_LIST takes an array");
        };
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            let items = lists.value(i);
            if self.floating {
                let items = cast(&items, &DataType::Float64)?;
                for x in items.as_primitive::<Float64Type>().iter().flatten() {
                    self.fraction += sign as f64 * x;
                }
            } else {
                let items = cast(&items, &DataType::Int64)?;
                for x in items.as_primitive::<Int64Type>().iter().flatten() {
                    self.whole = self.whole.wrapping_add(sign.wrapping_mul(x));
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for SumListAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.data_type {
            DataType::Float64 => ScalarValue::Float64(Some(self.fraction)),
            DataType::Int32 => ScalarValue::Int32(Some(self.whole as i32)),
            _ => ScalarValue::Int64(Some(self.whole)),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.whole)),
            ScalarValue::Float64(Some(self.fraction)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [whole, fraction] = states else {
            return exec_err!("SUM_LIST state has two parts");
        };
        for w in whole.as_primitive::<Int64Type>().iter().flatten() {
            self.whole = self.whole.wrapping_add(w);
        }
        for f in fraction.as_primitive::<Float64Type>().iter().flatten() {
            self.fraction += f;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_unsums_lists() {
        let list = |items: &[Option<i32>]| -> ArrayRef {
            let values: Vec<ScalarValue> = items.iter().map(|v| ScalarValue::Int32(*v)).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Int32))
                .to_array()
                .unwrap()
        };
        let mut acc = SumListAccumulator {
            floating: false,
            data_type: DataType::Int32,
            whole: 0,
            fraction: 0.0,
        };
        acc.update_batch(&[list(&[Some(1), Some(2), None])])
            .unwrap();
        acc.update_batch(&[list(&[Some(10)])]).unwrap();
        acc.retract_batch(&[list(&[Some(1), Some(2)])]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Int32(Some(10)));
    }
}

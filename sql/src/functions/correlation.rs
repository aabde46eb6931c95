//! `CORRELATION(x, y)`: the Pearson correlation coefficient of a group's
//! (x, y) pairs, as a DOUBLE. Pairs with a null are skipped; fewer than two
//! pairs, or a constant x or y, give NaN (0/0), as the formula does in
//! ksqlDB's Java. Retracts, for table aggregation.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Correlation {
    signature: Signature,
}

impl Default for Correlation {
    fn default() -> Self {
        Correlation {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The running sums the coefficient is computed from.
const PARTS: [&str; 6] = ["n", "sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy"];

impl AggregateUDFImpl for Correlation {
    fn name(&self) -> &str {
        "correlation"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [x, y]
                if [x, y]
                    .iter()
                    .all(|t| t.is_numeric() || **t == DataType::Null) =>
            {
                Ok(vec![DataType::Float64; 2])
            }
            _ => plan_err!(
                "Function 'correlation' does not accept parameters ({})",
                super::rowwise::type_names(arg_types)
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CorrelationAccumulator { sums: [0.0; 6] }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(PARTS
            .iter()
            .map(|p| {
                Arc::new(Field::new(
                    format_state_name(args.name, p),
                    DataType::Float64,
                    true,
                ))
            })
            .collect())
    }
}

#[derive(Debug)]
struct CorrelationAccumulator {
    /// n, Σx, Σy, Σx², Σy², Σxy.
    sums: [f64; 6],
}

impl CorrelationAccumulator {
    fn add(&mut self, values: &[ArrayRef], sign: f64) -> Result<()> {
        let (Some(x), Some(y)) = (values.first(), values.get(1)) else {
            return exec_err!("CORRELATION takes two columns");
        };
        let (x, y) = (cast(x, &DataType::Float64)?, cast(y, &DataType::Float64)?);
        let (x, y) = (
            x.as_primitive::<Float64Type>(),
            y.as_primitive::<Float64Type>(),
        );
        for i in 0..x.len().min(y.len()) {
            if x.is_null(i) || y.is_null(i) {
                continue;
            }
            let (a, b) = (x.value(i), y.value(i));
            for (s, v) in self.sums.iter_mut().zip([1.0, a, b, a * a, b * b, a * b]) {
                *s += sign * v;
            }
        }
        Ok(())
    }
}

impl Accumulator for CorrelationAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, 1.0)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, -1.0)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let [n, sx, sy, sxx, syy, sxy] = self.sums;
        let numerator = n * sxy - sx * sy;
        let denominator = ((n * sxx - sx * sx) * (n * syy - sy * sy)).sqrt();
        Ok(ScalarValue::Float64(Some(numerator / denominator)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self
            .sums
            .iter()
            .map(|s| ScalarValue::Float64(Some(*s)))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() != PARTS.len() {
            return exec_err!("CORRELATION state has {} parts", PARTS.len());
        }
        for (sum, state) in self.sums.iter_mut().zip(states) {
            let state = cast(state, &DataType::Float64)?;
            for v in state.as_primitive::<Float64Type>().iter().flatten() {
                *sum += v;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn perfectly_correlated_pairs_give_one() {
        let mut a = CorrelationAccumulator { sums: [0.0; 6] };
        let x: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            Some(2.0),
            None,
            Some(3.0),
        ]));
        let y: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(2.0),
            Some(4.0),
            Some(9.0),
            Some(6.0),
        ]));
        a.update_batch(&[x, y]).unwrap();
        let ScalarValue::Float64(Some(r)) = a.evaluate().unwrap() else {
            panic!("not a double")
        };
        assert!((r - 1.0).abs() < 1e-12);
    }
}

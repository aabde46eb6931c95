//! `STDDEV_SAMPLE(col)` and `STDDEV_SAMP(col)`: ksqlDB's sample standard
//! deviation aggregates over INT, BIGINT or DOUBLE.
//!
//! ksqlDB's `STDDEV_SAMP` returns the sample *variance* (no square root);
//! Sluice keeps that so results match. Either is 0.0 until a group has two
//! values; nulls are skipped. Both retract, for table aggregation.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Stddev {
    name: &'static str,
    /// `STDDEV_SAMPLE` takes the root; `STDDEV_SAMP` does not.
    root: bool,
    signature: Signature,
}

impl Stddev {
    pub fn new(root: bool) -> Self {
        Stddev {
            name: if root { "stddev_sample" } else { "stddev_samp" },
            root,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Stddev {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_numeric() || *t == DataType::Null => Ok(vec![DataType::Float64]),
            _ => plan_err!(
                "Function '{}' does not accept parameters ({})",
                self.name,
                super::rowwise::type_names(arg_types)
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(StddevAccumulator {
            root: self.root,
            count: 0,
            mean: 0.0,
            m2: 0.0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "mean"),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "m2"),
                DataType::Float64,
                true,
            )),
        ])
    }
}

/// Welford's running mean and sum of squared deviations.
#[derive(Debug)]
struct StddevAccumulator {
    root: bool,
    count: i64,
    mean: f64,
    m2: f64,
}

impl StddevAccumulator {
    fn doubles(values: &[ArrayRef]) -> Result<Vec<f64>> {
        let Some(array) = values.first() else {
            return exec_err!("STDDEV needs its column");
        };
        let array = cast(array, &DataType::Float64)?;
        Ok(array
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .collect())
    }

    fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn remove(&mut self, x: f64) {
        if self.count <= 1 {
            self.count = 0;
            self.mean = 0.0;
            self.m2 = 0.0;
            return;
        }
        let delta = x - self.mean;
        self.count -= 1;
        self.mean -= delta / self.count as f64;
        self.m2 -= delta * (x - self.mean);
    }
}

impl Accumulator for StddevAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in Self::doubles(values)? {
            self.add(x);
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for x in Self::doubles(values)? {
            self.remove(x);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let variance = if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).max(0.0)
        };
        Ok(ScalarValue::Float64(Some(if self.root {
            variance.sqrt()
        } else {
            variance
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Float64(Some(self.mean)),
            ScalarValue::Float64(Some(self.m2)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [counts, means, m2s] = states else {
            return exec_err!("STDDEV state has three parts");
        };
        let counts = counts.as_primitive::<Int64Type>();
        let means = means.as_primitive::<Float64Type>();
        let m2s = m2s.as_primitive::<Float64Type>();
        for i in 0..counts.len() {
            if counts.is_null(i) || counts.value(i) == 0 {
                continue;
            }
            let (n, mean, m2) = (counts.value(i), means.value(i), m2s.value(i));
            let total = self.count + n;
            let delta = mean - self.mean;
            self.m2 += m2 + delta * delta * (self.count as f64) * (n as f64) / total as f64;
            self.mean += delta * n as f64 / total as f64;
            self.count = total;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    fn acc(root: bool) -> StddevAccumulator {
        StddevAccumulator {
            root,
            count: 0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    #[test]
    fn sample_variance_and_deviation() {
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.0),
            Some(10.0),
            None,
            Some(7.0),
        ]));
        let mut var = acc(false);
        var.update_batch(std::slice::from_ref(&values)).unwrap();
        let ScalarValue::Float64(Some(v)) = var.evaluate().unwrap() else {
            panic!()
        };
        assert!((v - 26.333333333333332).abs() < 1e-9);
        let mut dev = acc(true);
        dev.update_batch(&[values]).unwrap();
        let gone: ArrayRef = Arc::new(Float64Array::from(vec![7.0]));
        dev.retract_batch(&[gone]).unwrap();
        let ScalarValue::Float64(Some(d)) = dev.evaluate().unwrap() else {
            panic!()
        };
        assert!((d - 7.0710678118654755).abs() < 1e-9);
    }
}

//! `EARLIEST_BY_OFFSET` and `LATEST_BY_OFFSET`: ksqlDB's aggregates of a
//! group's first or last value in arrival order.
//!
//! `f(col)` is one value, `f(col, n)` an array of up to `n` values, oldest
//! first; a trailing boolean says whether nulls are skipped (the default)
//! or count as values. Like ksqlDB, every value taken gets a number from a
//! process-wide sequence, so that merged groups (session windows) keep
//! arrival order. Neither retracts: ksqlDB offers them on streams only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use super::collect::{tagged_state, tagged_state_rows};

/// Arrival numbers shared by every accumulator of the process.
static SEQUENCE: AtomicI64 = AtomicI64::new(0);

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByOffset {
    name: &'static str,
    latest: bool,
    signature: Signature,
}

impl ByOffset {
    /// `LATEST_BY_OFFSET` when `latest`, else `EARLIEST_BY_OFFSET`.
    pub fn new(latest: bool) -> Self {
        ByOffset {
            name: if latest {
                "latest_by_offset"
            } else {
                "earliest_by_offset"
            },
            latest,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn usage(&self) -> String {
        format!(
            "{}(column [, count] [, ignoreNulls]): count must be a positive integer literal and ignoreNulls a boolean literal",
            self.name.to_uppercase()
        )
    }
}

/// Whether the second argument asks for several values.
fn is_count(t: Option<&DataType>) -> bool {
    matches!(t, Some(DataType::Int32 | DataType::Int64))
}

impl AggregateUDFImpl for ByOffset {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value] | [value, DataType::Boolean] => Ok(value.clone()),
            [value, n] | [value, n, DataType::Boolean] if is_count(Some(n)) => {
                Ok(DataType::new_list(value.clone(), true))
            }
            _ => plan_err!("{}", self.usage()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let literal = |i: usize| {
            args.exprs
                .get(i)
                .and_then(|e| e.downcast_ref::<Literal>())
                .map(|l| l.value().clone())
        };
        let mut count = None;
        let mut ignore_nulls = true;
        for i in 1..args.exprs.len() {
            match literal(i) {
                Some(ScalarValue::Int32(Some(n))) if i == 1 && n > 0 => count = Some(n as usize),
                Some(ScalarValue::Int64(Some(n))) if i == 1 && n > 0 => {
                    count = usize::try_from(n).ok()
                }
                Some(ScalarValue::Boolean(Some(b))) if i == args.exprs.len() - 1 => {
                    ignore_nulls = b
                }
                _ => return plan_err!("{}", self.usage()),
            }
        }
        let Some(field) = args.expr_fields.first() else {
            return plan_err!("{}", self.usage());
        };
        Ok(Box::new(ByOffsetAccumulator {
            latest: self.latest,
            count,
            ignore_nulls,
            data_type: field.data_type().clone(),
            entries: vec![],
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
                format_state_name(args.name, "sequence"),
                DataType::new_list(DataType::Int64, true),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct ByOffsetAccumulator {
    latest: bool,
    /// `None` for the single-value form.
    count: Option<usize>,
    ignore_nulls: bool,
    data_type: DataType,
    /// The kept values with their arrival numbers, oldest first.
    entries: Vec<(i64, ScalarValue)>,
}

impl ByOffsetAccumulator {
    fn keep(&self) -> usize {
        self.count.unwrap_or(1)
    }

    fn trim(&mut self) {
        let keep = self.keep();
        if self.entries.len() > keep {
            if self.latest {
                self.entries.drain(..self.entries.len() - keep);
            } else {
                self.entries.truncate(keep);
            }
        }
    }

    fn offer(&mut self, sequence: i64, value: ScalarValue) {
        if self.ignore_nulls && value.is_null() {
            return;
        }
        let at = self.entries.partition_point(|(s, _)| *s <= sequence);
        self.entries.insert(at, (sequence, value));
        self.trim();
    }
}

impl Accumulator for ByOffsetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(array) = values.first() else {
            return exec_err!("BY_OFFSET needs its column");
        };
        for i in 0..array.len() {
            let value = ScalarValue::try_from_array(array, i)?;
            let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            self.offer(sequence, value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let values: Vec<ScalarValue> = self.entries.iter().map(|(_, v)| v.clone()).collect();
        match self.count {
            Some(_) => Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &values,
                &self.data_type,
            ))),
            None => match values.into_iter().next() {
                Some(v) => Ok(v),
                None => ScalarValue::try_new_null(&self.data_type),
            },
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .entries
                .iter()
                .map(|(_, v)| v.size() + 8)
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(tagged_state(
            self.entries.iter().map(|(s, v)| (v.clone(), *s)),
            &self.data_type,
        ))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (items, numbers) in tagged_state_rows(states, "BY_OFFSET")? {
            if numbers.len() != items.len() {
                return exec_err!("BY_OFFSET state lists differ in length");
            }
            for i in 0..items.len() {
                let value = ScalarValue::try_from_array(items.as_ref(), i)?;
                // Values in a state already passed the null rule.
                let at = self
                    .entries
                    .partition_point(|(s, _)| *s <= numbers.value(i));
                self.entries.insert(at, (numbers.value(i), value));
            }
            self.trim();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    fn acc(latest: bool, count: Option<usize>, ignore_nulls: bool) -> ByOffsetAccumulator {
        ByOffsetAccumulator {
            latest,
            count,
            ignore_nulls,
            data_type: DataType::Int32,
            entries: vec![],
        }
    }

    fn feed(a: &mut ByOffsetAccumulator, values: &[Option<i32>]) {
        a.update_batch(&[Arc::new(Int32Array::from(values.to_vec()))])
            .unwrap();
    }

    #[test]
    fn single_values_skip_nulls_by_default() {
        let mut earliest = acc(false, None, true);
        feed(&mut earliest, &[None, Some(1), Some(2)]);
        assert_eq!(earliest.evaluate().unwrap(), ScalarValue::Int32(Some(1)));
        let mut latest = acc(true, None, true);
        feed(&mut latest, &[Some(1), Some(2), None]);
        assert_eq!(latest.evaluate().unwrap(), ScalarValue::Int32(Some(2)));
        let mut latest = acc(true, None, false);
        feed(&mut latest, &[Some(1), None]);
        assert_eq!(latest.evaluate().unwrap(), ScalarValue::Int32(None));
    }

    #[test]
    fn several_values_keep_arrival_order() {
        let mut latest = acc(true, Some(2), false);
        feed(&mut latest, &[Some(1), None, Some(3)]);
        let kept: Vec<_> = latest.entries.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            kept,
            vec![ScalarValue::Int32(None), ScalarValue::Int32(Some(3))]
        );
    }

    #[test]
    fn merge_orders_by_arrival() {
        let mut first = acc(true, Some(2), false);
        feed(&mut first, &[Some(1)]);
        let mut second = acc(true, Some(2), false);
        feed(&mut second, &[Some(2)]);
        feed(&mut first, &[Some(3)]);
        let state: Vec<ArrayRef> = second
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        first.merge_batch(&state).unwrap();
        let kept: Vec<_> = first.entries.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            kept,
            vec![ScalarValue::Int32(Some(2)), ScalarValue::Int32(Some(3))]
        );
    }
}

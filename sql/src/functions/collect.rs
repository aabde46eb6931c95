//! `COLLECT_LIST(col)` and `COLLECT_SET(col)`: ksqlDB's aggregates that
//! gather a group's values into an array, in arrival order.
//!
//! Nulls are collected like any value; `COLLECT_SET` keeps the first of
//! equal values. Both stop growing at a limit (ksqlDB's
//! `ksql.functions.collect_list.limit` / `collect_set.limit`, default
//! 1000). Both retract, for aggregation over a table: a list drops the
//! last occurrence of the value, a set the value itself.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListArray, MapArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// ksqlDB's default for both limits.
pub const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Collect {
    name: &'static str,
    distinct: bool,
    limit: usize,
    signature: Signature,
}

impl Collect {
    /// `COLLECT_SET` when `distinct`, else `COLLECT_LIST`.
    pub fn new(distinct: bool, limit: usize) -> Self {
        Collect {
            name: if distinct {
                "collect_set"
            } else {
                "collect_list"
            },
            distinct,
            limit,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Collect {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) => Ok(DataType::new_list(t.clone(), true)),
            None => plan_err!("{} takes one column", self.name.to_uppercase()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(field) = args.expr_fields.first() else {
            return plan_err!("{} takes one column", self.name.to_uppercase());
        };
        Ok(Box::new(CollectAccumulator {
            distinct: self.distinct,
            limit: self.limit,
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

/// The lists of every non-null row of a single-list aggregate state, for
/// `merge_batch`.
pub(crate) fn list_state_rows(states: &[ArrayRef], aggregate: &str) -> Result<Vec<ArrayRef>> {
    let Some(lists) = states
        .first()
        .and_then(|s| s.as_any().downcast_ref::<ListArray>())
    else {
        return exec_err!("{aggregate} state is not a list");
    };
    Ok((0..lists.len())
        .filter(|i| lists.is_valid(*i))
        .map(|i| lists.value(i))
        .collect())
}

/// The state of an aggregate that keeps values each tagged with a BIGINT
/// (a count, a sequence number): two parallel lists.
pub(crate) fn tagged_state(
    pairs: impl Iterator<Item = (ScalarValue, i64)>,
    data_type: &DataType,
) -> Vec<ScalarValue> {
    let (values, tags): (Vec<ScalarValue>, Vec<ScalarValue>) =
        pairs.map(|(v, t)| (v, ScalarValue::Int64(Some(t)))).unzip();
    vec![
        ScalarValue::List(ScalarValue::new_list_nullable(&values, data_type)),
        ScalarValue::List(ScalarValue::new_list_nullable(&tags, &DataType::Int64)),
    ]
}

/// The (values, tags) lists of every non-null row of states written by
/// [`tagged_state`], for `merge_batch`.
pub(crate) fn tagged_state_rows(
    states: &[ArrayRef],
    aggregate: &str,
) -> Result<Vec<(ArrayRef, datafusion::arrow::array::Int64Array)>> {
    let list = |i: usize| {
        states
            .get(i)
            .and_then(|s| s.as_any().downcast_ref::<ListArray>())
    };
    let (Some(values), Some(tags)) = (list(0), list(1)) else {
        return exec_err!("{aggregate} state is not two lists");
    };
    let mut rows = Vec::new();
    for row in 0..values.len() {
        if values.is_null(row) || tags.is_null(row) {
            continue;
        }
        let numbers = tags.value(row);
        let Some(numbers) = numbers
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
        else {
            return exec_err!("{aggregate} state tags are not BIGINT");
        };
        rows.push((values.value(row), numbers.clone()));
    }
    Ok(rows)
}

/// Value equality as ksqlDB's (Java's) collections see it: maps are equal
/// when they hold the same entries, whatever their order.
pub(crate) fn same(a: &ScalarValue, b: &ScalarValue) -> bool {
    match (a, b) {
        (ScalarValue::Map(x), ScalarValue::Map(y)) if x.len() == 1 && y.len() == 1 => {
            let (Some(x), Some(y)) = (map_entries(x), map_entries(y)) else {
                return a == b;
            };
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| same(k, k2) && same(v, v2)))
        }
        _ => a == b,
    }
}

fn map_entries(map: &MapArray) -> Option<Vec<(ScalarValue, ScalarValue)>> {
    if map.is_null(0) {
        return Some(vec![]);
    }
    let entries = map.value(0);
    let (keys, values) = (entries.column(0), entries.column(1));
    (0..entries.len())
        .map(|i| {
            Some((
                ScalarValue::try_from_array(keys, i).ok()?,
                ScalarValue::try_from_array(values, i).ok()?,
            ))
        })
        .collect()
}

#[derive(Debug)]
struct CollectAccumulator {
    distinct: bool,
    limit: usize,
    data_type: DataType,
    values: Vec<ScalarValue>,
}

impl CollectAccumulator {
    fn add(&mut self, value: ScalarValue) {
        if self.values.len() >= self.limit
            || (self.distinct && self.values.iter().any(|v| same(v, &value)))
        {
            return;
        }
        self.values.push(value);
    }

    fn add_all(&mut self, array: &dyn Array) -> Result<()> {
        for i in 0..array.len() {
            self.add(ScalarValue::try_from_array(array, i)?);
        }
        Ok(())
    }
}

impl Accumulator for CollectAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(a) => self.add_all(a.as_ref()),
            None => exec_err!("COLLECT needs its column"),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(array) = values.first() else {
            return exec_err!("COLLECT needs its column");
        };
        for i in 0..array.len() {
            let value = ScalarValue::try_from_array(array, i)?;
            if let Some(at) = self.values.iter().rposition(|v| same(v, &value)) {
                self.values.remove(at);
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
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
        for items in list_state_rows(states, "COLLECT")? {
            self.add_all(items.as_ref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    fn acc(distinct: bool, limit: usize) -> CollectAccumulator {
        CollectAccumulator {
            distinct,
            limit,
            data_type: DataType::Int32,
            values: vec![],
        }
    }

    fn ints(values: &[Option<i32>]) -> ArrayRef {
        Arc::new(Int32Array::from(values.to_vec()))
    }

    fn collected(a: &CollectAccumulator) -> Vec<Option<i32>> {
        a.values
            .iter()
            .map(|v| match v {
                ScalarValue::Int32(x) => *x,
                _ => panic!("not an int"),
            })
            .collect()
    }

    #[test]
    fn list_keeps_duplicates_and_nulls_up_to_the_limit() {
        let mut a = acc(false, 4);
        a.update_batch(&[ints(&[Some(1), None, Some(1), Some(2), Some(3)])])
            .unwrap();
        assert_eq!(collected(&a), vec![Some(1), None, Some(1), Some(2)]);
    }

    #[test]
    fn set_keeps_first_of_equal_values() {
        let mut a = acc(true, 10);
        a.update_batch(&[ints(&[Some(2), Some(1), Some(2), None, None])])
            .unwrap();
        assert_eq!(collected(&a), vec![Some(2), Some(1), None]);
    }

    #[test]
    fn list_retracts_last_occurrence() {
        let mut a = acc(false, 10);
        a.update_batch(&[ints(&[Some(1), Some(2), Some(1)])])
            .unwrap();
        a.retract_batch(&[ints(&[Some(1), Some(7)])]).unwrap();
        assert_eq!(collected(&a), vec![Some(1), Some(2)]);
    }

    #[test]
    fn merge_appends_states() {
        let mut a = acc(false, 10);
        a.update_batch(&[ints(&[Some(1)])]).unwrap();
        let mut b = acc(false, 10);
        b.update_batch(&[ints(&[Some(2)])]).unwrap();
        let state = b.state().unwrap()[0].to_array().unwrap();
        a.merge_batch(&[state]).unwrap();
        assert_eq!(collected(&a), vec![Some(1), Some(2)]);
    }
}

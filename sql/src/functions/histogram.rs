//! `HISTOGRAM(col)`: ksqlDB's aggregate counting each distinct string of a
//! group, as a `MAP<STRING, BIGINT>`. Nulls are not counted; at most 1000
//! distinct values are tracked (ksqlDB's limit). Retracts for table
//! aggregation: a value whose count drops to zero leaves the map.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, MapArray, MapBuilder, MapFieldNames, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use sluice_engine::schema::SqlType;

/// ksqlDB's cap on distinct values per histogram.
const LIMIT: usize = 1000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Histogram {
    signature: Signature,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

fn map_type() -> DataType {
    SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Bigint)).to_arrow()
}

impl AggregateUDFImpl for Histogram {
    fn name(&self) -> &str {
        "histogram"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(map_type())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(HistogramAccumulator::default()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "counts"),
            map_type(),
            true,
        ))])
    }
}

#[derive(Debug, Default)]
struct HistogramAccumulator {
    /// Counts in first-seen order.
    counts: Vec<(String, i64)>,
}

impl HistogramAccumulator {
    fn add(&mut self, value: &str, by: i64) {
        if let Some((_, n)) = self.counts.iter_mut().find(|(v, _)| v == value) {
            *n += by;
        } else if self.counts.len() < LIMIT && by > 0 {
            self.counts.push((value.to_string(), by));
        }
        self.counts.retain(|(_, n)| *n > 0);
    }

    fn strings(values: &[ArrayRef]) -> Result<Vec<Option<String>>> {
        let Some(array) = values.first() else {
            return exec_err!("HISTOGRAM needs its column");
        };
        (0..array.len())
            .map(|i| match ScalarValue::try_from_array(array, i)? {
                ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                    Ok(s)
                }
                ScalarValue::Null => Ok(None),
                other => exec_err!("HISTOGRAM counts strings, not {}", other.data_type()),
            })
            .collect()
    }
}

impl Accumulator for HistogramAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for s in Self::strings(values)?.into_iter().flatten() {
            self.add(&s, 1);
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for s in Self::strings(values)?.into_iter().flatten() {
            self.add(&s, -1);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "key".into(),
            value: "value".into(),
        };
        let mut builder = MapBuilder::new(Some(names), StringBuilder::new(), Int64Builder::new());
        for (value, n) in &self.counts {
            builder.keys().append_value(value);
            builder.values().append_value(*n);
        }
        builder.append(true)?;
        let map = builder.finish();
        // Match the declared type's field nullability.
        let map = datafusion::arrow::compute::cast(&map, &map_type())?;
        ScalarValue::try_from_array(&map, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.iter().map(|(s, _)| s.len() + 32).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(maps) = states
            .first()
            .and_then(|s| s.as_any().downcast_ref::<MapArray>())
        else {
            return exec_err!("HISTOGRAM state is not a map");
        };
        for row in 0..maps.len() {
            if maps.is_null(row) {
                continue;
            }
            let entries = maps.value(row);
            for i in 0..entries.len() {
                let key = ScalarValue::try_from_array(entries.column(0), i)?;
                let count = ScalarValue::try_from_array(entries.column(1), i)?;
                if let (ScalarValue::Utf8(Some(k)), ScalarValue::Int64(Some(n))) = (key, count) {
                    self.add(&k, n);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn counts_and_uncounts() {
        let mut h = HistogramAccumulator::default();
        let batch: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("b"),
            Some("a"),
        ]));
        h.update_batch(&[batch]).unwrap();
        assert_eq!(h.counts, vec![("a".into(), 2), ("b".into(), 1)]);
        let gone: ArrayRef = Arc::new(StringArray::from(vec!["b"]));
        h.retract_batch(&[gone]).unwrap();
        assert_eq!(h.counts, vec![("a".into(), 2)]);
        let state: Vec<ArrayRef> = h
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        let mut other = HistogramAccumulator::default();
        other.merge_batch(&state).unwrap();
        assert_eq!(other.counts, vec![("a".into(), 2)]);
    }
}

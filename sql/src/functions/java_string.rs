//! Casts of collections as ksqlDB's Java code performs them.
//!
//! - [`JavaString`]: `CAST(x AS STRING)` of an array, map, struct, double
//!   or timestamp: the text ksqlDB's Java code gives the value (`[1, 2]`,
//!   `{a=1, b=2}`, `Struct{A=1,B=x}` without null fields, `1.0E7`,
//!   `2020-01-01T00:00:00.000`).
//! - [`JavaCast`]: `CAST` between arrays or maps, element by element;
//!   BIGINT to INT narrows as Java's `(int)` does (wrapping), where
//!   DataFusion would give null.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, MapArray, StructArray, new_empty_array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use sluice_engine::format::delimited::field_text;

use super::datetime::{Pattern, format_millis};
use super::rowwise::{RowKind, string};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JavaString;

impl RowKind for JavaString {
    fn name(&self) -> &'static str {
        "java_string"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(args.to_vec())
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        match args.first() {
            Some(v) if !v.is_null() => Ok(string(java_text(v)?)),
            _ => Ok(ScalarValue::Null),
        }
    }
}

/// A cast between collection types, element by element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JavaCast(pub DataType);

impl RowKind for JavaCast {
    fn name(&self) -> &'static str {
        "java_cast"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(args.to_vec())
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.0.clone())
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        match args.first() {
            Some(v) => java_cast(v, &self.0),
            None => Ok(ScalarValue::Null),
        }
    }
}

/// `value` as `target`, recursing into arrays and maps.
fn java_cast(value: &ScalarValue, target: &DataType) -> Result<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_new_null(target);
    }
    Ok(match (value, target) {
        (ScalarValue::Int64(Some(v)), DataType::Int32) => ScalarValue::Int32(Some(*v as i32)),
        (ScalarValue::List(list), DataType::List(item)) => {
            let items = list.value(0);
            let cast = (0..items.len())
                .map(|i| java_cast(&ScalarValue::try_from_array(&items, i)?, item.data_type()))
                .collect::<Result<Vec<_>>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&cast, item.data_type()))
        }
        (ScalarValue::Map(map), DataType::Map(entries, sorted)) => {
            let DataType::Struct(fields) = entries.data_type() else {
                return exec_err!("map entries are not a struct");
            };
            let kv = map.value(0);
            let column = |c: usize, t: &DataType| -> Result<ArrayRef> {
                let items = (0..kv.len())
                    .map(|i| java_cast(&ScalarValue::try_from_array(kv.column(c), i)?, t))
                    .collect::<Result<Vec<_>>>()?;
                if items.is_empty() {
                    return Ok(new_empty_array(t));
                }
                ScalarValue::iter_to_array(items)
            };
            let keys = column(0, fields[0].data_type())?;
            let values = column(1, fields[1].data_type())?;
            let entries_array = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
            let map = MapArray::try_new(
                entries.clone(),
                OffsetBuffer::from_lengths([kv.len()]),
                entries_array,
                None,
                *sorted,
            )?;
            ScalarValue::Map(Arc::new(map))
        }
        (v, t) => v.cast_to(t)?,
    })
}

/// Java's `toString` of a value.
pub fn java_text(v: &ScalarValue) -> Result<String> {
    if v.is_null() {
        return Ok("null".into());
    }
    Ok(match v {
        ScalarValue::List(list) => {
            let items = list.value(0);
            let parts = (0..items.len())
                .map(|i| java_text(&ScalarValue::try_from_array(&items, i)?))
                .collect::<Result<Vec<_>>>()?;
            format!("[{}]", parts.join(", "))
        }
        ScalarValue::Map(map) => {
            let entries = map.value(0);
            let parts = (0..entries.len())
                .map(|i| {
                    let k = ScalarValue::try_from_array(entries.column(0), i)?;
                    let v = ScalarValue::try_from_array(entries.column(1), i)?;
                    Ok(format!("{}={}", java_text(&k)?, java_text(&v)?))
                })
                .collect::<Result<Vec<_>>>()?;
            format!("{{{}}}", parts.join(", "))
        }
        ScalarValue::Struct(s) => {
            let mut parts = Vec::new();
            for (field, column) in s.fields().iter().zip(s.columns()) {
                let value = ScalarValue::try_from_array(column, 0)?;
                if !value.is_null() {
                    parts.push(format!("{}={}", field.name(), java_text(&value)?));
                }
            }
            format!("Struct{{{}}}", parts.join(","))
        }
        ScalarValue::TimestampMillisecond(Some(ms), _) => {
            let pattern = Pattern::parse("yyyy-MM-dd'T'HH:mm:ss.SSS")?;
            format_millis(*ms, &pattern, None)?
        }
        other => {
            let array = other.to_array()?;
            match field_text(array.as_ref(), 0) {
                Ok(text) => text,
                Err(e) => return exec_err!("cannot render {}: {e}", other.data_type()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_narrows_like_java() {
        let list = ScalarValue::List(ScalarValue::new_list_nullable(
            &[
                ScalarValue::Int64(Some(1)),
                ScalarValue::Int64(None),
                ScalarValue::Int64(Some(2_147_483_648)),
            ],
            &DataType::Int64,
        ));
        assert_eq!(java_text(&list).unwrap(), "[1, null, 2147483648]");
        let narrowed = java_cast(&list, &DataType::new_list(DataType::Int32, true)).unwrap();
        assert_eq!(java_text(&narrowed).unwrap(), "[1, null, -2147483648]");
    }
}

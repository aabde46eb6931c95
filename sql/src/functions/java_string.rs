//! `CAST(x AS STRING)` of an array, map or struct: the text Java's
//! `toString` gives the value in ksqlDB (`[1, 2]`, `{a=1, b=2}`,
//! `Struct{A=1,B=x}`; a struct leaves out its null fields).

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use sluice_engine::format::delimited::field_text;

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
        other => {
            let array = other.to_array()?;
            match field_text(array.as_ref(), 0) {
                Ok(text) => text,
                Err(e) => return exec_err!("cannot render {}: {e}", other.data_type()),
            }
        }
    })
}

//! The JSON format, with ksqlDB's coercions.
//!
//! Field names match case-insensitively; values are coerced to the column
//! type as ksqlDB's JSON deserializer does (`"12"` fits an INT column, any
//! JSON fits a STRING column as its text). Output renders DECIMAL with its
//! exact scale, TIMESTAMP as epoch millis, DATE as days and BYTES as base64.

use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::*;
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Fields, TimeUnit};
use datafusion::common::ScalarValue;
use serde_json::Value;

use super::decimal::{format_decimal, parse_decimal};
use crate::error::{EngineError, Result};
use crate::schema::{Column, SqlType};

/// Decodes one JSON document into a value per column.
pub fn decode(columns: &[Column], bytes: &[u8], unwrap: bool) -> Result<Vec<ScalarValue>> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Serde(format!("Failed to deserialize JSON: {e}")))?;
    if unwrap {
        return Ok(vec![coerce(&doc, &columns[0].sql_type)?]);
    }
    match &doc {
        Value::Object(fields) => columns
            .iter()
            .map(|c| match lookup(fields, &c.name) {
                Some(v) => coerce(v, &c.sql_type).map_err(|e| {
                    // Not `{e}`: that would say "serialization error" twice.
                    let reason = match e {
                        EngineError::Serde(reason) => reason,
                        other => other.to_string(),
                    };
                    EngineError::Serde(format!("{reason} (field `{}`)", c.name))
                }),
                None => Ok(ScalarValue::try_new_null(&c.sql_type.to_arrow())?),
            })
            .collect(),
        Value::Null => Err(EngineError::Serde("JSON value is null".into())),
        other if columns.len() == 1 => Ok(vec![coerce(other, &columns[0].sql_type)?]),
        other => Err(EngineError::Serde(format!(
            "Can't convert type. sourceType: {}, requiredType: STRUCT",
            node_type(other)
        ))),
    }
}

fn lookup<'a>(fields: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn node_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NullNode",
        Value::Bool(_) => "BooleanNode",
        Value::Number(n) if n.is_f64() => "DoubleNode",
        Value::Number(_) => "IntNode",
        Value::String(_) => "TextNode",
        Value::Array(_) => "ArrayNode",
        Value::Object(_) => "ObjectNode",
    }
}

fn mismatch(v: &Value, ty: &SqlType) -> EngineError {
    EngineError::Serde(format!(
        "Can't convert type. sourceType: {}, requiredType: {ty}",
        node_type(v)
    ))
}

/// Coerces a JSON node to a column type, as ksqlDB's JSON deserializer.
pub fn coerce(v: &Value, ty: &SqlType) -> Result<ScalarValue> {
    if v.is_null() {
        return Ok(ScalarValue::try_new_null(&ty.to_arrow())?);
    }
    let parse_err =
        |what: &str| EngineError::Serde(format!("Can't coerce string '{what}' to {ty}"));
    Ok(match ty {
        SqlType::Boolean => match v {
            Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => ScalarValue::Boolean(Some(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => {
                ScalarValue::Boolean(Some(false))
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Int => match v {
            Value::Number(n) => ScalarValue::Int32(Some(number_as_i64(n) as i32)),
            Value::String(s) => {
                ScalarValue::Int32(Some(s.trim().parse().map_err(|_| parse_err(s))?))
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Bigint => match v {
            Value::Number(n) => ScalarValue::Int64(Some(number_as_i64(n))),
            Value::String(s) => {
                ScalarValue::Int64(Some(s.trim().parse().map_err(|_| parse_err(s))?))
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Double => match v {
            Value::Number(n) => ScalarValue::Float64(n.as_f64()),
            Value::String(s) => {
                ScalarValue::Float64(Some(s.trim().parse().map_err(|_| parse_err(s))?))
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Decimal { precision, scale } => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(mismatch(v, ty)),
            };
            ScalarValue::Decimal128(
                Some(parse_decimal(&text, *precision, *scale)?),
                *precision,
                *scale,
            )
        }
        SqlType::String => match v {
            Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
            other => ScalarValue::Utf8(Some(other.to_string())),
        },
        SqlType::Bytes => match v {
            Value::String(s) => ScalarValue::Binary(Some(base64_decode(s)?)),
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Date => match v {
            Value::Number(n) => ScalarValue::Date32(Some(number_as_i64(n) as i32)),
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Time => match v {
            Value::Number(n) => ScalarValue::Time32Millisecond(Some(number_as_i64(n) as i32)),
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Timestamp => match v {
            Value::Number(n) => ScalarValue::TimestampMillisecond(Some(number_as_i64(n)), None),
            Value::String(s) => ScalarValue::TimestampMillisecond(
                Some(s.trim().parse().map_err(|_| parse_err(s))?),
                None,
            ),
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Array(elem) => match v {
            Value::Array(items) => {
                let values = items
                    .iter()
                    .map(|i| coerce(i, elem))
                    .collect::<Result<Vec<_>>>()?;
                ScalarValue::List(ScalarValue::new_list_nullable(&values, &elem.to_arrow()))
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Map(key_type, value_type) => match v {
            Value::Object(entries) => {
                let keys = entries
                    .keys()
                    .map(|k| coerce(&Value::String(k.clone()), key_type))
                    .collect::<Result<Vec<_>>>()?;
                let values = entries
                    .values()
                    .map(|e| coerce(e, value_type))
                    .collect::<Result<Vec<_>>>()?;
                map_scalar(ty, keys, values)?
            }
            _ => return Err(mismatch(v, ty)),
        },
        SqlType::Struct(fields) => match v {
            Value::Object(object) => {
                let values = fields
                    .iter()
                    .map(|(name, fty)| match lookup(object, name) {
                        Some(fv) => coerce(fv, fty),
                        None => Ok(ScalarValue::try_new_null(&fty.to_arrow())?),
                    })
                    .collect::<Result<Vec<_>>>()?;
                struct_scalar(ty, values)?
            }
            _ => return Err(mismatch(v, ty)),
        },
    })
}

fn number_as_i64(n: &serde_json::Number) -> i64 {
    n.as_i64()
        .or_else(|| n.as_u64().map(|u| u as i64))
        .unwrap_or_else(|| n.as_f64().unwrap_or_default() as i64)
}

/// A one-entry MAP scalar from its keys and values.
pub fn map_scalar(
    ty: &SqlType,
    keys: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
) -> Result<ScalarValue> {
    let DataType::Map(entries_field, sorted) = ty.to_arrow() else {
        return Err(EngineError::Serde(format!("not a map type: {ty}")));
    };
    let DataType::Struct(kv_fields) = entries_field.data_type().clone() else {
        return Err(EngineError::Serde(format!("bad map type: {ty}")));
    };
    let len = keys.len();
    let key_array = scalars_to_array(keys, kv_fields[0].data_type())?;
    let value_array = scalars_to_array(values, kv_fields[1].data_type())?;
    let entries = StructArray::try_new(kv_fields, vec![key_array, value_array], None)?;
    let offsets = OffsetBuffer::new(vec![0i32, len as i32].into());
    let map = MapArray::try_new(entries_field, offsets, entries, None, sorted)?;
    Ok(ScalarValue::Map(Arc::new(map)))
}

/// A STRUCT scalar from its field values.
pub fn struct_scalar(ty: &SqlType, values: Vec<ScalarValue>) -> Result<ScalarValue> {
    let DataType::Struct(fields) = ty.to_arrow() else {
        return Err(EngineError::Serde(format!("not a struct type: {ty}")));
    };
    let arrays = values
        .into_iter()
        .zip(fields.iter())
        .map(|(v, f)| scalars_to_array(vec![v], f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    let array = StructArray::try_new(Fields::from(fields.to_vec()), arrays, None)?;
    Ok(ScalarValue::Struct(Arc::new(array)))
}

/// Builds an array from scalars, typed even when there are none.
pub fn scalars_to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    Ok(ScalarValue::iter_to_array(values)?)
}

/// Encodes row `row` of `arrays` as a JSON document.
pub fn encode(
    columns: &[Column],
    arrays: &[&dyn Array],
    row: usize,
    unwrap: bool,
) -> Result<Vec<u8>> {
    let mut out = String::with_capacity(64);
    if unwrap {
        write_value(&mut out, arrays[0], row)?;
    } else {
        out.push('{');
        for (i, (c, a)) in columns.iter().zip(arrays).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(&mut out, &c.name);
            out.push(':');
            write_value(&mut out, *a, row)?;
        }
        out.push('}');
    }
    Ok(out.into_bytes())
}

/// Writes one cell as JSON.
pub fn write_value(out: &mut String, array: &dyn Array, row: usize) -> Result<()> {
    if array.is_null(row) {
        out.push_str("null");
        return Ok(());
    }
    macro_rules! prim {
        ($t:ty) => {{
            let v = array
                .as_any()
                .downcast_ref::<$t>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            let _ = write!(out, "{v}");
        }};
    }
    match array.data_type() {
        DataType::Boolean => prim!(BooleanArray),
        DataType::Int8 => prim!(Int8Array),
        DataType::Int16 => prim!(Int16Array),
        DataType::Int32 => prim!(Int32Array),
        DataType::Int64 => prim!(Int64Array),
        DataType::UInt8 => prim!(UInt8Array),
        DataType::UInt16 => prim!(UInt16Array),
        DataType::UInt32 => prim!(UInt32Array),
        DataType::UInt64 => prim!(UInt64Array),
        DataType::Float32 => {
            let v = array
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_double(out, v as f64);
        }
        DataType::Float64 => {
            let v = array
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_double(out, v);
        }
        DataType::Decimal128(_, scale) => {
            let v = array
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            out.push_str(&format_decimal(v, *scale));
        }
        DataType::Utf8 => {
            let v = array
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_string(out, v);
        }
        DataType::LargeUtf8 => {
            let v = array
                .as_any()
                .downcast_ref::<LargeStringArray>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_string(out, v);
        }
        DataType::Utf8View => {
            let v = array
                .as_any()
                .downcast_ref::<StringViewArray>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_string(out, v);
        }
        DataType::Binary => {
            let v = array
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| bad_array(array))?
                .value(row);
            write_string(out, &base64_encode(v));
        }
        DataType::Date32 => prim!(Date32Array),
        DataType::Time32(TimeUnit::Millisecond) => prim!(Time32MillisecondArray),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondArray),
        DataType::List(_) => {
            let list = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| bad_array(array))?;
            let items = list.value(row);
            out.push('[');
            for i in 0..items.len() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, items.as_ref(), i)?;
            }
            out.push(']');
        }
        DataType::Map(_, _) => {
            let map = array
                .as_any()
                .downcast_ref::<MapArray>()
                .ok_or_else(|| bad_array(array))?;
            let entries = map.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                let mut key = String::new();
                write_value(&mut key, keys.as_ref(), i)?;
                if key.starts_with('"') {
                    out.push_str(&key);
                } else {
                    write_string(out, &key);
                }
                out.push(':');
                write_value(out, values.as_ref(), i)?;
            }
            out.push('}');
        }
        DataType::Struct(fields) => {
            let st = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| bad_array(array))?;
            out.push('{');
            for (i, (f, col)) in fields.iter().zip(st.columns()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, f.name());
                out.push(':');
                write_value(out, col.as_ref(), row)?;
            }
            out.push('}');
        }
        DataType::Null => out.push_str("null"),
        other => {
            return Err(EngineError::Serde(format!(
                "JSON cannot encode values of type {other}"
            )));
        }
    }
    Ok(())
}

fn bad_array(array: &dyn Array) -> EngineError {
    EngineError::Serde(format!("unexpected array for type {}", array.data_type()))
}

/// Doubles render as Java does for the common cases: always with a
/// fraction (`1.0`), and non-finite values as strings.
fn write_double(out: &mut String, v: f64) {
    if !v.is_finite() {
        let _ = write!(
            out,
            "\"{}\"",
            if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
        );
        return;
    }
    out.push_str(&super::java_double(v));
}

pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let err = || EngineError::Serde(format!("Value is not valid base64: '{text}'"));
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if b == b'=' {
            break;
        }
        let v = B64.iter().position(|&c| c == b).ok_or_else(err)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![
            Column::value("A", SqlType::Int),
            Column::value("B", SqlType::String),
            Column::value(
                "C",
                SqlType::Array(Box::new(SqlType::Decimal {
                    precision: 4,
                    scale: 2,
                })),
            ),
        ]
    }

    #[test]
    fn decodes_case_insensitively_with_coercion() {
        let row = decode(
            &cols(),
            br#"{"a": "12", "b": {"x": 1}, "C": [1.5, null]}"#,
            false,
        )
        .unwrap();
        assert_eq!(row[0], ScalarValue::Int32(Some(12)));
        assert_eq!(row[1], ScalarValue::Utf8(Some(r#"{"x":1}"#.into())));
        let arrays: Vec<ArrayRef> = row.iter().map(|v| v.to_array().unwrap()).collect();
        let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
        let text = String::from_utf8(encode(&cols(), &refs, 0, false).unwrap()).unwrap();
        assert_eq!(text, r#"{"A":12,"B":"{\"x\":1}","C":[1.50,null]}"#);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(&cols(), b"{not json", false).is_err());
        assert!(decode(&cols(), br#"{"a": "twelve"}"#, false).is_err());
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd"] {
            assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
        }
    }
}

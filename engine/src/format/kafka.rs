//! The KAFKA format: Kafka's own primitive serializers, one column only.
//! INT is 4 bytes big-endian, BIGINT 8, DOUBLE an 8-byte IEEE 754 double,
//! STRING UTF-8 and BYTES the bytes themselves.

use datafusion::arrow::array::*;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::error::{EngineError, Result};
use crate::schema::{Column, SqlType};

pub fn supports(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::String | SqlType::Bytes
    )
}

pub fn decode(columns: &[Column], bytes: &[u8]) -> Result<Vec<ScalarValue>> {
    let Some(column) = columns.first() else {
        return Ok(vec![]);
    };
    let size_err = |want: usize| {
        EngineError::Serde(format!(
            "Size of data received by {}Deserializer is not {want}",
            match column.sql_type {
                SqlType::Int => "Integer",
                SqlType::Bigint => "Long",
                _ => "Double",
            }
        ))
    };
    let value = match column.sql_type {
        SqlType::Int => {
            let b: [u8; 4] = bytes.try_into().map_err(|_| size_err(4))?;
            ScalarValue::Int32(Some(i32::from_be_bytes(b)))
        }
        SqlType::Bigint => {
            let b: [u8; 8] = bytes.try_into().map_err(|_| size_err(8))?;
            ScalarValue::Int64(Some(i64::from_be_bytes(b)))
        }
        SqlType::Double => {
            let b: [u8; 8] = bytes.try_into().map_err(|_| size_err(8))?;
            ScalarValue::Float64(Some(f64::from_be_bytes(b)))
        }
        SqlType::String => {
            ScalarValue::Utf8(Some(String::from_utf8(bytes.to_vec()).map_err(|e| {
                EngineError::Serde(format!("KAFKA string is not UTF-8: {e}"))
            })?))
        }
        SqlType::Bytes => ScalarValue::Binary(Some(bytes.to_vec())),
        ref other => {
            return Err(EngineError::Serde(format!(
                "KAFKA format does not support {other}"
            )));
        }
    };
    Ok(vec![value])
}

pub fn encode(arrays: &[&dyn Array], row: usize) -> Result<Vec<u8>> {
    let Some(array) = arrays.first() else {
        return Ok(vec![]);
    };
    let bad = || EngineError::Serde(format!("unexpected array for {}", array.data_type()));
    Ok(match array.data_type() {
        DataType::Int32 => array
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(bad)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Int64 => array
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(bad)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Float64 => array
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(bad)?
            .value(row)
            .to_be_bytes()
            .to_vec(),
        DataType::Utf8 => array
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(bad)?
            .value(row)
            .as_bytes()
            .to_vec(),
        DataType::Binary => array
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(bad)?
            .value(row)
            .to_vec(),
        other => {
            return Err(EngineError::Serde(format!(
                "KAFKA format does not support {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_is_four_big_endian_bytes() {
        let cols = vec![Column::key("K", SqlType::Int)];
        assert_eq!(
            decode(&cols, &[0, 0, 1, 0]).unwrap(),
            vec![ScalarValue::Int32(Some(256))]
        );
        assert!(decode(&cols, &[1]).is_err());
        let a = Int32Array::from(vec![256]);
        assert_eq!(encode(&[&a], 0).unwrap(), vec![0, 0, 1, 0]);
    }
}

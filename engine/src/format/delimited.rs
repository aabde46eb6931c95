//! The DELIMITED format: one text field per column, separated by a
//! delimiter, quoted with `"` where needed (RFC 4180, as Commons CSV writes
//! it for ksqlDB). An empty field is null.

use datafusion::arrow::array::*;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;

use super::decimal::{format_decimal, parse_decimal};
use super::json::{base64_decode, base64_encode};
use crate::error::{EngineError, Result};
use crate::schema::{Column, SqlType};

/// Splits one line into fields, honouring quotes.
fn split(line: &str, delimiter: char) -> Result<Vec<Option<String>>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(EngineError::Serde("unterminated quoted field".into())),
                }
            }
        }
        loop {
            match chars.peek() {
                Some(&c) if c == delimiter => break,
                Some(_) if quoted => {
                    return Err(EngineError::Serde(
                        "invalid character after a quoted field".into(),
                    ));
                }
                Some(&c) => {
                    field.push(c);
                    chars.next();
                }
                None => break,
            }
        }
        fields.push(if field.is_empty() && !quoted {
            None
        } else {
            Some(field)
        });
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

pub fn decode(columns: &[Column], bytes: &[u8], delimiter: char) -> Result<Vec<ScalarValue>> {
    let line = std::str::from_utf8(bytes)
        .map_err(|e| EngineError::Serde(format!("DELIMITED value is not UTF-8: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let fields = if columns.is_empty() && line.is_empty() {
        vec![]
    } else {
        split(line, delimiter)?
    };
    if fields.len() != columns.len() {
        return Err(EngineError::Serde(format!(
            "Unexpected field count, csvFields:{} schemaFields:{}",
            fields.len(),
            columns.len()
        )));
    }
    columns
        .iter()
        .zip(fields)
        .map(|(c, f)| match f {
            None => Ok(ScalarValue::try_new_null(&c.sql_type.to_arrow())?),
            Some(text) => parse_field(&text, &c.sql_type),
        })
        .collect()
}

fn parse_field(text: &str, ty: &SqlType) -> Result<ScalarValue> {
    let err = || EngineError::Serde(format!("Invalid {ty} value: '{text}'"));
    let t = text.trim();
    Ok(match ty {
        SqlType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" => ScalarValue::Boolean(Some(true)),
            "false" => ScalarValue::Boolean(Some(false)),
            _ => return Err(err()),
        },
        SqlType::Int => ScalarValue::Int32(Some(t.parse().map_err(|_| err())?)),
        SqlType::Bigint => ScalarValue::Int64(Some(t.parse().map_err(|_| err())?)),
        SqlType::Double => ScalarValue::Float64(Some(t.parse().map_err(|_| err())?)),
        SqlType::Decimal { precision, scale } => ScalarValue::Decimal128(
            Some(parse_decimal(t, *precision, *scale)?),
            *precision,
            *scale,
        ),
        SqlType::String => ScalarValue::Utf8(Some(text.to_string())),
        SqlType::Bytes => ScalarValue::Binary(Some(base64_decode(t)?)),
        SqlType::Date => ScalarValue::Date32(Some(t.parse().map_err(|_| err())?)),
        SqlType::Time => ScalarValue::Time32Millisecond(Some(t.parse().map_err(|_| err())?)),
        SqlType::Timestamp => {
            ScalarValue::TimestampMillisecond(Some(t.parse().map_err(|_| err())?), None)
        }
        SqlType::Array(_) | SqlType::Map(_, _) | SqlType::Struct(_) => {
            return Err(EngineError::Serde(format!(
                "DELIMITED does not support {ty}"
            )));
        }
    })
}

pub fn encode(arrays: &[&dyn Array], row: usize, delimiter: char) -> Result<Vec<u8>> {
    let mut out = String::new();
    for (i, a) in arrays.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        if a.is_null(row) {
            continue;
        }
        let text = field_text(*a, row)?;
        if needs_quotes(&text, delimiter, i == 0) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    Ok(out.into_bytes())
}

/// Whether Commons CSV's minimal quoting (ksqlDB's writer) quotes a field:
/// an empty first field, a field starting at or below `#`, a first field
/// not starting with a letter or digit, a field holding the delimiter, a
/// quote or a line break, or one ending in whitespace.
fn needs_quotes(text: &str, delimiter: char, first_in_record: bool) -> bool {
    let (Some(first), Some(last)) = (text.chars().next(), text.chars().last()) else {
        return first_in_record;
    };
    first <= '#'
        || (first_in_record && !first.is_ascii_alphanumeric())
        || text.contains(delimiter)
        || text.contains(['"', '\n', '\r'])
        || last <= ' '
}

/// The text of a primitive cell, as Java's `toString` renders it.
pub fn field_text(array: &dyn Array, row: usize) -> Result<String> {
    macro_rules! v {
        ($t:ty) => {
            array
                .as_any()
                .downcast_ref::<$t>()
                .ok_or_else(|| {
                    EngineError::Serde(format!("unexpected array for {}", array.data_type()))
                })?
                .value(row)
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => v!(BooleanArray).to_string(),
        DataType::Int32 => v!(Int32Array).to_string(),
        DataType::Int64 => v!(Int64Array).to_string(),
        DataType::Float64 => super::java_double(v!(Float64Array)),
        DataType::Decimal128(_, s) => format_decimal(v!(Decimal128Array), *s),
        DataType::Utf8 => v!(StringArray).to_string(),
        DataType::Utf8View => v!(StringViewArray).to_string(),
        DataType::Binary => base64_encode(v!(BinaryArray)),
        DataType::Date32 => v!(Date32Array).to_string(),
        DataType::Time32(TimeUnit::Millisecond) => v!(Time32MillisecondArray).to_string(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => v!(TimestampMillisecondArray).to_string(),
        other => {
            return Err(EngineError::Serde(format!(
                "DELIMITED does not support {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields_and_nulls() {
        let f = split(r#"1,"a,b",,"say ""hi""""#, ',').unwrap();
        assert_eq!(
            f,
            vec![
                Some("1".into()),
                Some("a,b".into()),
                None,
                Some("say \"hi\"".into())
            ]
        );
    }

    #[test]
    fn quotes_as_commons_csv_minimal_mode() {
        assert!(needs_quotes("-1", ',', true));
        assert!(!needs_quotes("-1", ',', false));
        assert!(needs_quotes("", ',', true));
        assert!(!needs_quotes("", ',', false));
        assert!(needs_quotes(" a", ',', false));
        assert!(needs_quotes("a\t", ',', false));
        assert!(needs_quotes("a,b", ',', false));
        assert!(!needs_quotes("abc", ',', true));
    }

    #[test]
    fn field_count_must_match() {
        let cols = vec![Column::value("A", SqlType::Int)];
        assert!(decode(&cols, b"1,2", ',').is_err());
        assert_eq!(
            decode(&cols, b"7", ',').unwrap(),
            vec![ScalarValue::Int32(Some(7))]
        );
    }
}

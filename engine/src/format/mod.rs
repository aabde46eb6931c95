//! Serialization formats: topic bytes to Arrow and back, as ksqlDB does.
//!
//! A [`RecordCodec`] holds a source's key and value [`Format`]s and
//! columns. Decoding yields one [`ScalarValue`] per column so that a record
//! that fails half-way leaves no partial row behind; encoding reads Arrow
//! arrays directly. Each format lives in its own module: [`json`],
//! [`delimited`], [`kafka`], [`protobuf`].

pub mod decimal;
pub mod delimited;
pub mod json;
pub mod kafka;
pub mod protobuf;

use std::fmt;

use datafusion::arrow::array::ArrayRef;
use datafusion::common::ScalarValue;

use crate::error::{EngineError, Result};
use crate::schema::{Column, ColumnKind, LogicalSchema, SqlType};

/// A ksqlDB serialization format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// JSON objects (or a bare value for a single unwrapped column).
    Json,
    /// Delimiter-separated text, one field per column.
    Delimited { delimiter: char },
    /// Kafka's primitive serializers: one column at most.
    Kafka,
    /// No data at all: for sources without key columns.
    None,
    /// `PROTOBUF_NOSR`: protobuf messages without Schema Registry.
    Protobuf { nullable: protobuf::Nullable },
}

impl Format {
    /// Parses a ksqlDB format name (`JSON`, `DELIMITED`, `KAFKA`, `NONE`).
    /// Schema Registry formats are named in the error so callers can say
    /// they are not supported.
    pub fn from_name(name: &str, delimiter: Option<char>) -> Result<Format> {
        match name.to_ascii_uppercase().as_str() {
            "JSON" => Ok(Format::Json),
            "DELIMITED" => Ok(Format::Delimited {
                delimiter: delimiter.unwrap_or(','),
            }),
            "KAFKA" => Ok(Format::Kafka),
            "NONE" => Ok(Format::None),
            "PROTOBUF_NOSR" => Ok(Format::Protobuf {
                nullable: protobuf::Nullable::default(),
            }),
            other => Err(EngineError::Unsupported(format!("format {other}"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Delimited { .. } => "DELIMITED",
            Format::Kafka => "KAFKA",
            Format::None => "NONE",
            Format::Protobuf { .. } => "PROTOBUF_NOSR",
        }
    }

    /// Checks the format can carry these columns, with ksqlDB's messages.
    pub fn validate(&self, columns: &[&Column], kind: ColumnKind) -> Result<()> {
        /// Whether a MAP anywhere in `t` has keys other than strings.
        fn non_string_map_key(t: &SqlType) -> bool {
            match t {
                SqlType::Map(k, v) => **k != SqlType::String || non_string_map_key(v),
                SqlType::Array(item) => non_string_map_key(item),
                SqlType::Struct(fields) => fields.iter().any(|(_, f)| non_string_map_key(f)),
                _ => false,
            }
        }
        let what = match kind {
            ColumnKind::Key => "key",
            ColumnKind::Value => "value",
        };
        match self {
            Format::Kafka => {
                if columns.len() > 1 {
                    return Err(EngineError::Unsupported(format!(
                        "The 'KAFKA' format only supports a single field. Got: {}",
                        render_columns(columns)
                    )));
                }
                if let Some(c) = columns.first()
                    && !kafka::supports(&c.sql_type)
                {
                    return Err(EngineError::Unsupported(format!(
                        "The 'KAFKA' format does not support type '{}', column: `{}`",
                        c.sql_type, c.name
                    )));
                }
            }
            Format::Delimited { .. } => {
                if let Some(c) = columns.iter().find(|c| !c.sql_type.is_primitive()) {
                    return Err(EngineError::Unsupported(format!(
                        "The 'DELIMITED' format does not support type '{}', column: `{}`",
                        c.sql_type, c.name
                    )));
                }
            }
            Format::None => {
                if !columns.is_empty() {
                    return Err(EngineError::Unsupported(format!(
                        "The 'NONE' format can only be used when no columns are defined. Got: {}",
                        render_columns(columns)
                    )));
                }
            }
            Format::Protobuf { .. } => {}
            Format::Json => {
                if columns.iter().any(|c| non_string_map_key(&c.sql_type)) {
                    return Err(EngineError::Unsupported(
                        "JSON only supports MAP types with STRING keys".into(),
                    ));
                }
            }
        }
        let _ = what;
        Ok(())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn render_columns(columns: &[&Column]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("`{}` {}", c.name, c.sql_type))
        .collect();
    format!("[{}]", cols.join(", "))
}

/// Key and value serdes of one source.
#[derive(Debug, Clone)]
pub struct RecordCodec {
    pub key_format: Format,
    pub value_format: Format,
    key_columns: Vec<Column>,
    value_columns: Vec<Column>,
    /// A single value column is written bare (not in an object / record).
    pub unwrap_single_value: bool,
}

impl RecordCodec {
    pub fn new(
        schema: &LogicalSchema,
        key_format: Format,
        value_format: Format,
        wrap_single_value: bool,
    ) -> Self {
        let key_columns: Vec<Column> = schema.key_columns().cloned().collect();
        let value_columns: Vec<Column> = schema.value_columns().cloned().collect();
        let unwrap_single_value = !wrap_single_value && value_columns.len() == 1;
        RecordCodec {
            key_format,
            value_format,
            key_columns,
            value_columns,
            unwrap_single_value,
        }
    }

    pub fn key_columns(&self) -> &[Column] {
        &self.key_columns
    }

    pub fn value_columns(&self) -> &[Column] {
        &self.value_columns
    }

    /// Decodes key bytes into one value per key column. A missing key
    /// gives nulls.
    pub fn decode_key(&self, bytes: Option<&[u8]>) -> Result<Vec<ScalarValue>> {
        if self.key_columns.is_empty() {
            return Ok(vec![]);
        }
        let Some(bytes) = bytes else {
            return nulls(&self.key_columns);
        };
        // A single key column is never wrapped, as in ksqlDB.
        let unwrap = self.key_columns.len() == 1;
        decode(&self.key_format, &self.key_columns, bytes, unwrap)
    }

    pub fn decode_value(&self, bytes: &[u8]) -> Result<Vec<ScalarValue>> {
        decode(
            &self.value_format,
            &self.value_columns,
            bytes,
            self.unwrap_single_value,
        )
    }

    /// Encodes row `row` of the key arrays; `None` when there are no key
    /// columns or they are all null (a record read without key keeps
    /// none).
    pub fn encode_key(&self, arrays: &[ArrayRef], row: usize) -> Result<Option<Vec<u8>>> {
        self.encode_key_as(arrays, row, false)
    }

    /// [`RecordCodec::encode_key`] for keys a query computed (PARTITION BY,
    /// joins): ksqlDB writes those even when every column is null, as an
    /// object of nulls, unless the key is a single column.
    pub fn encode_key_as(
        &self,
        arrays: &[ArrayRef],
        row: usize,
        computed: bool,
    ) -> Result<Option<Vec<u8>>> {
        if self.key_columns.is_empty() {
            return Ok(None);
        }
        let unwrap = self.key_columns.len() == 1;
        let absent = if unwrap || !computed {
            arrays.iter().all(|a| a.is_null(row))
        } else {
            false
        };
        if absent {
            return Ok(None);
        }
        encode(&self.key_format, &self.key_columns, arrays, row, unwrap).map(Some)
    }

    pub fn encode_value(&self, arrays: &[ArrayRef], row: usize) -> Result<Option<Vec<u8>>> {
        if self.unwrap_single_value && arrays[0].is_null(row) {
            return Ok(None);
        }
        encode(
            &self.value_format,
            &self.value_columns,
            arrays,
            row,
            self.unwrap_single_value,
        )
        .map(Some)
    }
}

fn nulls(columns: &[Column]) -> Result<Vec<ScalarValue>> {
    columns
        .iter()
        .map(|c| Ok(ScalarValue::try_new_null(&c.sql_type.to_arrow())?))
        .collect()
}

fn decode(
    format: &Format,
    columns: &[Column],
    bytes: &[u8],
    unwrap: bool,
) -> Result<Vec<ScalarValue>> {
    match format {
        Format::Json => json::decode(columns, bytes, unwrap),
        Format::Delimited { delimiter } => delimited::decode(columns, bytes, *delimiter),
        Format::Kafka => kafka::decode(columns, bytes),
        Format::None => nulls(columns),
        Format::Protobuf { nullable } => protobuf::decode(columns, bytes, *nullable),
    }
}

fn encode(
    format: &Format,
    columns: &[Column],
    arrays: &[ArrayRef],
    row: usize,
    unwrap: bool,
) -> Result<Vec<u8>> {
    use std::ops::Deref;
    let arrays: Vec<&dyn datafusion::arrow::array::Array> =
        arrays.iter().map(|a| a.deref()).collect();
    match format {
        Format::Json => json::encode(columns, &arrays, row, unwrap),
        Format::Delimited { delimiter } => delimited::encode(&arrays, row, *delimiter),
        Format::Kafka => kafka::encode(&arrays, row),
        Format::None => Ok(vec![]),
        Format::Protobuf { nullable } => {
            let values = arrays
                .iter()
                .map(|a| Ok(ScalarValue::try_from_array(*a, row)?))
                .collect::<Result<Vec<_>>>()?;
            protobuf::encode(columns, &values, *nullable)
        }
    }
}

use datafusion::arrow::array::Array as _;

/// Renders a double as Java's `Double.toString` does, which is what
/// ksqlDB's text formats write: `1.0`, `0.001`, `1.0E7`, `4.9E-324`.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let magnitude = v.abs();
    if v == 0.0 || (1e-3..1e7).contains(&magnitude) {
        // Shortest round-trip digits, always with a fraction.
        return format!("{v:?}");
    }
    // Scientific: at least two significant digits, as Java writes d.dE±n.
    let shortest = format!("{v:e}");
    let (mantissa, exponent) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        let two = format!("{v:.1e}");
        two.split_once('e')
            .map(|(m, _)| m.to_string())
            .unwrap_or_else(|| format!("{mantissa}.0"))
    };
    format!("{mantissa}E{exponent}")
}

#[cfg(test)]
mod java_double_tests {
    use super::java_double;

    #[test]
    fn renders_like_java() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(f64::MIN_POSITIVE), "2.2250738585072014E-308");
        assert_eq!(java_double(4.9e-324), "4.9E-324");
        assert_eq!(java_double(-f64::MAX), "-1.7976931348623157E308");
    }
}

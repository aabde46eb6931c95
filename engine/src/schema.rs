//! ksqlDB's type system and source schemas, mapped onto Arrow.
//!
//! [`SqlType`] is a ksqlDB column type (`INT`, `DECIMAL(4,2)`,
//! `STRUCT<...>`); [`LogicalSchema`] is the list of key and value
//! [`Column`]s of a stream or table. Every batch that flows through a query
//! has the Arrow form of a logical schema plus the pseudo columns
//! (see [`LogicalSchema::arrow_schema`]).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::error::{EngineError, Result};

/// Record timestamp in epoch milliseconds.
pub const ROWTIME: &str = "ROWTIME";
/// Partition the record was read from.
pub const ROWPARTITION: &str = "ROWPARTITION";
/// Offset the record was read from.
pub const ROWOFFSET: &str = "ROWOFFSET";
/// The pseudo columns appended to every source batch, in order.
pub const PSEUDO_COLUMNS: [&str; 3] = [ROWTIME, ROWPARTITION, ROWOFFSET];

/// A ksqlDB SQL type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SqlType {
    Boolean,
    Int,
    Bigint,
    Double,
    Decimal { precision: u8, scale: i8 },
    String,
    Bytes,
    Date,
    Time,
    Timestamp,
    Array(Box<SqlType>),
    Map(Box<SqlType>, Box<SqlType>),
    Struct(Vec<(String, SqlType)>),
}

impl SqlType {
    /// The Arrow type that holds values of this type.
    pub fn to_arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::Int => DataType::Int32,
            SqlType::Bigint => DataType::Int64,
            SqlType::Double => DataType::Float64,
            SqlType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::String => DataType::Utf8,
            SqlType::Bytes => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time32(TimeUnit::Millisecond),
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Array(elem) => {
                DataType::List(Arc::new(Field::new("item", elem.to_arrow(), true)))
            }
            SqlType::Map(key, value) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key.to_arrow(), false),
                        Field::new("value", value.to_arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            SqlType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|(name, ty)| Field::new(name, ty.to_arrow(), true))
                    .collect(),
            ),
        }
    }

    /// The ksqlDB type of an Arrow type, where one exists.
    pub fn from_arrow(data_type: &DataType) -> Result<SqlType> {
        Ok(match data_type {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::Int32 => SqlType::Int,
            DataType::UInt8 | DataType::UInt16 => SqlType::Int,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::Bigint,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Decimal128(p, s) => SqlType::Decimal {
                precision: *p,
                scale: *s,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::String,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytes,
            DataType::FixedSizeBinary(_) => SqlType::Bytes,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Timestamp(_, _) => SqlType::Timestamp,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                SqlType::Array(Box::new(SqlType::from_arrow(f.data_type())?))
            }
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => SqlType::Map(
                    Box::new(SqlType::from_arrow(kv[0].data_type())?),
                    Box::new(SqlType::from_arrow(kv[1].data_type())?),
                ),
                other => {
                    return Err(EngineError::Unsupported(format!(
                        "map entries of type {other}"
                    )));
                }
            },
            DataType::Struct(fields) => SqlType::Struct(
                fields
                    .iter()
                    .map(|f| Ok((f.name().clone(), SqlType::from_arrow(f.data_type())?)))
                    .collect::<Result<_>>()?,
            ),
            DataType::Null => SqlType::String,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "no ksqlDB type for Arrow type {other}"
                )));
            }
        })
    }

    /// True for the types the KAFKA format can serialize.
    pub fn is_primitive(&self) -> bool {
        !matches!(
            self,
            SqlType::Array(_) | SqlType::Map(_, _) | SqlType::Struct(_)
        )
    }
}

/// Renders the type as ksqlDB prints it in `DESCRIBE`.
impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Int => f.write_str("INTEGER"),
            SqlType::Bigint => f.write_str("BIGINT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            SqlType::String => f.write_str("STRING"),
            SqlType::Bytes => f.write_str("BYTES"),
            SqlType::Date => f.write_str("DATE"),
            SqlType::Time => f.write_str("TIME"),
            SqlType::Timestamp => f.write_str("TIMESTAMP"),
            SqlType::Array(e) => write!(f, "ARRAY<{e}>"),
            SqlType::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            SqlType::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{name}` {ty}")?;
                }
                f.write_str(">")
            }
        }
    }
}

/// Whether a column lives in the record key or the record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Key,
    Value,
}

/// One column of a stream or table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    pub kind: ColumnKind,
}

impl Column {
    pub fn key(name: impl Into<String>, sql_type: SqlType) -> Self {
        Column {
            name: name.into(),
            sql_type,
            kind: ColumnKind::Key,
        }
    }
    pub fn value(name: impl Into<String>, sql_type: SqlType) -> Self {
        Column {
            name: name.into(),
            sql_type,
            kind: ColumnKind::Value,
        }
    }
}

/// The key and value columns of a stream or table, keys first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LogicalSchema {
    columns: Vec<Column>,
}

impl LogicalSchema {
    /// Builds a schema; key columns are moved in front of value columns,
    /// keeping their relative order.
    pub fn new(columns: Vec<Column>) -> Self {
        let (mut keys, values): (Vec<_>, Vec<_>) =
            columns.into_iter().partition(|c| c.kind == ColumnKind::Key);
        keys.extend(values);
        LogicalSchema { columns: keys }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Key)
    }

    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Value)
    }

    pub fn key_count(&self) -> usize {
        self.key_columns().count()
    }

    pub fn find(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of batches of this source: key columns, value
    /// columns, then the pseudo columns `ROWTIME`, `ROWPARTITION`,
    /// `ROWOFFSET`.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.batch_schema(false)
    }

    /// The Arrow schema of batches of this source; windowed ones also
    /// carry `WINDOWSTART` and `WINDOWEND` after the pseudo columns.
    pub fn batch_schema(&self, windowed: bool) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.sql_type.to_arrow(), true))
            .collect();
        fields.push(Field::new(ROWTIME, DataType::Int64, false));
        fields.push(Field::new(ROWPARTITION, DataType::Int32, false));
        fields.push(Field::new(ROWOFFSET, DataType::Int64, false));
        if windowed {
            fields.push(Field::new(
                crate::window::WINDOWSTART,
                DataType::Int64,
                false,
            ));
            fields.push(Field::new(crate::window::WINDOWEND, DataType::Int64, false));
        }
        Arc::new(Schema::new(fields))
    }
}

/// Renders the schema as ksqlDB's test files write it:
/// `` `ID` INTEGER KEY, `NAME` STRING``.
impl fmt::Display for LogicalSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{}` {}", c.name, c.sql_type)?;
            if c.kind == ColumnKind::Key {
                f.write_str(" KEY")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_first_and_round_trip_through_arrow() {
        let schema = LogicalSchema::new(vec![
            Column::value("V", SqlType::Array(Box::new(SqlType::Int))),
            Column::key("K", SqlType::String),
        ]);
        assert_eq!(schema.to_string(), "`K` STRING KEY, `V` ARRAY<INTEGER>");
        let arrow = schema.arrow_schema();
        assert_eq!(arrow.field(0).name(), "K");
        assert_eq!(arrow.fields().len(), 5);
        let map = SqlType::Map(
            Box::new(SqlType::String),
            Box::new(SqlType::Decimal {
                precision: 4,
                scale: 2,
            }),
        );
        assert_eq!(SqlType::from_arrow(&map.to_arrow()).unwrap(), map);
    }
}

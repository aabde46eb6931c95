//! `PROTOBUF_NOSR`: protobuf without Schema Registry. A row is a message
//! whose fields are the columns, numbered from 1 in column order, with
//! the types ksqlDB maps SQL types to:
//!
//! | SQL | protobuf |
//! |---|---|
//! | INT, BIGINT, BOOLEAN | `int32`, `int64`, `bool` (varint) |
//! | DOUBLE | `double` |
//! | STRING, BYTES | `string`, `bytes` |
//! | DECIMAL | `confluent.type.Decimal {bytes value; uint32 precision; int32 scale}` |
//! | DATE | `google.type.Date {year; month; day}` |
//! | TIME | `google.type.TimeOfDay {hours; minutes; seconds; nanos}` |
//! | TIMESTAMP | `google.protobuf.Timestamp {int64 seconds; int32 nanos}` |
//! | ARRAY | `repeated` (scalars packed) |
//! | MAP | `repeated` entry message `{key = 1; value = 2}` |
//! | STRUCT | nested message |
//!
//! Proto3 scalars have no null: with the default [`Nullable::Absent`]
//! representation a null is written as nothing and read back as the
//! type's default (`0`, `""`, `false`), as ksqlDB does. `OPTIONAL` fields
//! and `WRAPPER` messages (`google.protobuf.Int32Value`...) keep nulls
//! (ksqlDB's `*_PROTOBUF_NULLABLE_REPRESENTATION` property). Messages
//! (structs, decimals, dates...) always keep nulls; a null collection
//! reads back empty.

use std::sync::Arc;

use datafusion::arrow::array::{Array, MapBuilder, MapFieldNames};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::error::{EngineError, Result};
use crate::schema::{Column, SqlType};

/// How nullable scalar fields are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nullable {
    /// Plain proto3 fields: null reads back as the default value.
    #[default]
    Absent,
    /// `optional` fields: presence is kept.
    Optional,
    /// `google.protobuf.*Value` wrapper messages.
    Wrapper,
}

impl Nullable {
    /// Parses ksqlDB's `*_PROTOBUF_NULLABLE_REPRESENTATION` value.
    pub fn from_name(name: &str) -> Option<Nullable> {
        match name.to_uppercase().as_str() {
            "OPTIONAL" => Some(Nullable::Optional),
            "WRAPPER" => Some(Nullable::Wrapper),
            _ => None,
        }
    }
}

const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

fn bad(message: impl Into<String>) -> EngineError {
    EngineError::Serde(format!("PROTOBUF: {}", message.into()))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Whether values of `t` are written as length-delimited messages (and so
/// have presence).
fn is_message(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::Struct(_)
            | SqlType::Decimal { .. }
            | SqlType::Date
            | SqlType::Time
            | SqlType::Timestamp
    )
}

/// Encodes one row: `values` holds one value per column.
pub fn encode(columns: &[Column], values: &[ScalarValue], nullable: Nullable) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        put_field(&mut out, i as u32 + 1, &column.sql_type, value, nullable)?;
    }
    Ok(out)
}

fn put_field(
    out: &mut Vec<u8>,
    field: u32,
    t: &SqlType,
    value: &ScalarValue,
    nullable: Nullable,
) -> Result<()> {
    if value.is_null() {
        return Ok(());
    }
    match t {
        SqlType::Array(item) => {
            let items = list_items(value)?;
            if is_packable(item) {
                let mut packed = Vec::new();
                for v in &items {
                    put_scalar_raw(&mut packed, item, v)?;
                }
                put_len(out, field, &packed);
            } else {
                for v in &items {
                    put_element(out, field, item, v)?;
                }
            }
        }
        SqlType::Map(k, v) => {
            for (key, val) in map_entries(value)? {
                let mut entry = Vec::new();
                put_field(&mut entry, 1, k, &key, Nullable::Absent)?;
                put_field(&mut entry, 2, v, &val, nullable)?;
                put_len(out, field, &entry);
            }
        }
        t if is_message(t) => put_len(out, field, &message_bytes(t, value, nullable)?),
        t if nullable == Nullable::Wrapper => {
            // google.protobuf.*Value { value = 1 }
            let mut inner = Vec::new();
            put_scalar(&mut inner, 1, t, value)?;
            put_len(out, field, &inner);
        }
        t => put_scalar(out, field, t, value)?,
    }
    Ok(())
}

/// A repeated element: nulls become the default value (repeated fields
/// cannot hold null).
fn put_element(out: &mut Vec<u8>, field: u32, t: &SqlType, value: &ScalarValue) -> Result<()> {
    if value.is_null() {
        return match t {
            t if is_message(t) || matches!(t, SqlType::Map(_, _) | SqlType::Array(_)) => {
                put_len(out, field, &[]);
                Ok(())
            }
            t => put_scalar(out, field, t, &default_value(t)?),
        };
    }
    match t {
        // Arrays of arrays and of maps nest through a wrapper message
        // holding the inner collection as field 1.
        SqlType::Array(_) | SqlType::Map(_, _) => {
            let mut inner = Vec::new();
            put_field(&mut inner, 1, t, value, Nullable::Absent)?;
            put_len(out, field, &inner);
            Ok(())
        }
        t if is_message(t) => {
            put_len(out, field, &message_bytes(t, value, Nullable::Absent)?);
            Ok(())
        }
        t => put_scalar(out, field, t, value),
    }
}

fn is_packable(t: &SqlType) -> bool {
    matches!(
        t,
        SqlType::Int | SqlType::Bigint | SqlType::Boolean | SqlType::Double
    )
}

fn message_bytes(t: &SqlType, value: &ScalarValue, nullable: Nullable) -> Result<Vec<u8>> {
    let mut m = Vec::new();
    match (t, value) {
        (SqlType::Struct(fields), ScalarValue::Struct(s)) => {
            for (i, (name, ft)) in fields.iter().enumerate() {
                let v = match s.column_by_name(name) {
                    Some(c) => ScalarValue::try_from_array(c, 0)?,
                    None => ScalarValue::Null,
                };
                put_field(&mut m, i as u32 + 1, ft, &v, nullable)?;
            }
        }
        (SqlType::Decimal { precision, scale }, ScalarValue::Decimal128(Some(v), _, _)) => {
            put_len(&mut m, 1, &decimal_bytes(*v));
            put_tag(&mut m, 2, VARINT);
            put_varint(&mut m, u64::from(*precision));
            put_tag(&mut m, 3, VARINT);
            put_varint(&mut m, i64::from(*scale) as u64);
        }
        (SqlType::Date, ScalarValue::Date32(Some(days))) => {
            let date = chrono_date(*days)?;
            for (f, v) in [(1, date.0), (2, date.1), (3, date.2)] {
                put_tag(&mut m, f, VARINT);
                put_varint(&mut m, v as u64);
            }
        }
        (SqlType::Time, ScalarValue::Time32Millisecond(Some(ms))) => {
            let ms = i64::from(*ms);
            let parts = [
                ms / 3_600_000,
                (ms / 60_000) % 60,
                (ms / 1000) % 60,
                (ms % 1000) * 1_000_000,
            ];
            for (f, v) in parts.iter().enumerate() {
                put_tag(&mut m, f as u32 + 1, VARINT);
                put_varint(&mut m, *v as u64);
            }
        }
        (SqlType::Timestamp, ScalarValue::TimestampMillisecond(Some(ms), _)) => {
            put_tag(&mut m, 1, VARINT);
            put_varint(&mut m, ms.div_euclid(1000) as u64);
            put_tag(&mut m, 2, VARINT);
            put_varint(&mut m, (ms.rem_euclid(1000) * 1_000_000) as u64);
        }
        (t, v) => return Err(bad(format!("cannot write {} as {t}", v.data_type()))),
    }
    Ok(m)
}

/// Days since the epoch as (year, month, day), proleptic Gregorian.
fn chrono_date(days: i32) -> Result<(i64, i64, i64)> {
    // Howard Hinnant's days-from-civil inverse.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ok((year, month, day))
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Big-endian two's complement, minimal length.
fn decimal_bytes(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

fn decimal_from_bytes(bytes: &[u8]) -> Result<i128> {
    if bytes.len() > 16 {
        return Err(bad("decimal of more than 16 bytes"));
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(full))
}

fn put_scalar(out: &mut Vec<u8>, field: u32, t: &SqlType, value: &ScalarValue) -> Result<()> {
    let wire = match t {
        SqlType::Double => I64,
        SqlType::String | SqlType::Bytes => LEN,
        _ => VARINT,
    };
    match t {
        SqlType::String | SqlType::Bytes => {
            let mut raw = Vec::new();
            put_scalar_raw(&mut raw, t, value)?;
            put_len(out, field, &raw);
        }
        _ => {
            put_tag(out, field, wire);
            put_scalar_raw(out, t, value)?;
        }
    }
    Ok(())
}

/// The value without tag (and without length for strings and bytes).
fn put_scalar_raw(out: &mut Vec<u8>, t: &SqlType, value: &ScalarValue) -> Result<()> {
    let value = if value.is_null() {
        default_value(t)?
    } else {
        value.clone()
    };
    match (t, &value) {
        (SqlType::Int, ScalarValue::Int32(Some(v))) => put_varint(out, i64::from(*v) as u64),
        (SqlType::Bigint, ScalarValue::Int64(Some(v))) => put_varint(out, *v as u64),
        (SqlType::Boolean, ScalarValue::Boolean(Some(v))) => put_varint(out, u64::from(*v)),
        (SqlType::Double, ScalarValue::Float64(Some(v))) => out.extend_from_slice(&v.to_le_bytes()),
        (SqlType::String, ScalarValue::Utf8(Some(s))) => out.extend_from_slice(s.as_bytes()),
        (SqlType::Bytes, ScalarValue::Binary(Some(b))) => out.extend_from_slice(b),
        (t, v) => return Err(bad(format!("cannot write {} as {t}", v.data_type()))),
    }
    Ok(())
}

fn default_value(t: &SqlType) -> Result<ScalarValue> {
    Ok(match t {
        SqlType::Int => ScalarValue::Int32(Some(0)),
        SqlType::Bigint => ScalarValue::Int64(Some(0)),
        SqlType::Boolean => ScalarValue::Boolean(Some(false)),
        SqlType::Double => ScalarValue::Float64(Some(0.0)),
        SqlType::String => ScalarValue::Utf8(Some(String::new())),
        SqlType::Bytes => ScalarValue::Binary(Some(vec![])),
        other => ScalarValue::try_new_null(&other.to_arrow())?,
    })
}

fn list_items(value: &ScalarValue) -> Result<Vec<ScalarValue>> {
    match value {
        ScalarValue::List(l) => {
            let items = l.value(0);
            (0..items.len())
                .map(|i| Ok(ScalarValue::try_from_array(&items, i)?))
                .collect()
        }
        other => Err(bad(format!("expected an array, got {}", other.data_type()))),
    }
}

fn map_entries(value: &ScalarValue) -> Result<Vec<(ScalarValue, ScalarValue)>> {
    match value {
        ScalarValue::Map(m) => {
            let entries = m.value(0);
            (0..entries.len())
                .map(|i| {
                    Ok((
                        ScalarValue::try_from_array(entries.column(0), i)?,
                        ScalarValue::try_from_array(entries.column(1), i)?,
                    ))
                })
                .collect()
        }
        other => Err(bad(format!("expected a map, got {}", other.data_type()))),
    }
}

/// One field occurrence as read from the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| bad("truncated varint"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| bad("truncated field"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3).map_err(|_| bad("field number too large"))?;
        let wire = match (tag & 7) as u32 {
            VARINT => Wire::Varint(self.varint()?),
            I64 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed64"))?,
                ))
            }
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            I32 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed32"))?,
                ))
            }
            other => return Err(bad(format!("unsupported wire type {other}"))),
        };
        Ok(Some((field, wire)))
    }

    /// Every field of the message, in order.
    fn fields(bytes: &'a [u8]) -> Result<Vec<(u32, Wire<'a>)>> {
        let mut r = Reader { bytes, at: 0 };
        let mut out = Vec::new();
        while let Some(f) = r.next()? {
            out.push(f);
        }
        Ok(out)
    }
}

/// Decodes one row into one value per column.
pub fn decode(columns: &[Column], bytes: &[u8], nullable: Nullable) -> Result<Vec<ScalarValue>> {
    let fields = Reader::fields(bytes)?;
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| read_field(&fields, i as u32 + 1, &c.sql_type, nullable))
        .collect()
}

fn read_field(
    fields: &[(u32, Wire)],
    number: u32,
    t: &SqlType,
    nullable: Nullable,
) -> Result<ScalarValue> {
    let occurrences: Vec<&Wire> = fields
        .iter()
        .filter(|(f, _)| *f == number)
        .map(|(_, w)| w)
        .collect();
    match t {
        SqlType::Array(item) => {
            let mut items = Vec::new();
            for w in occurrences {
                match (w, is_packable(item)) {
                    (Wire::Bytes(b), true) => {
                        let mut r = Reader { bytes: b, at: 0 };
                        while r.at < b.len() {
                            let raw = match **item {
                                SqlType::Double => {
                                    let v = r.take(8)?;
                                    Wire::Fixed64(u64::from_le_bytes(
                                        v.try_into().map_err(|_| bad("fixed64"))?,
                                    ))
                                }
                                _ => Wire::Varint(r.varint()?),
                            };
                            items.push(scalar_from_wire(item, &raw)?);
                        }
                    }
                    (w, _) => items.push(element_from_wire(item, w)?),
                }
            }
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &items,
                &item.to_arrow(),
            )))
        }
        SqlType::Map(k, v) => {
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for w in occurrences {
                let Wire::Bytes(entry) = w else {
                    return Err(bad("map entry is not a message"));
                };
                let entry = Reader::fields(entry)?;
                keys.push(read_field(&entry, 1, k, Nullable::Absent)?);
                values.push(read_field(&entry, 2, v, nullable)?);
            }
            build_map(k, v, keys, values)
        }
        t => match occurrences.last() {
            None if is_message(t) || nullable != Nullable::Absent => {
                Ok(ScalarValue::try_new_null(&t.to_arrow())?)
            }
            None => default_value(t),
            Some(Wire::Bytes(b)) if is_message(t) => message_from_bytes(t, b, nullable),
            Some(Wire::Bytes(b)) if nullable == Nullable::Wrapper => {
                let inner = Reader::fields(b)?;
                read_field(&inner, 1, t, Nullable::Absent)
            }
            Some(w) => scalar_from_wire(t, w),
        },
    }
}

fn element_from_wire(t: &SqlType, w: &Wire) -> Result<ScalarValue> {
    match (t, w) {
        (SqlType::Array(_) | SqlType::Map(_, _), Wire::Bytes(b)) => {
            let inner = Reader::fields(b)?;
            read_field(&inner, 1, t, Nullable::Absent)
        }
        (t, Wire::Bytes(b)) if is_message(t) => message_from_bytes(t, b, Nullable::Absent),
        (t, w) => scalar_from_wire(t, w),
    }
}

fn build_map(
    k: &SqlType,
    v: &SqlType,
    keys: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
) -> Result<ScalarValue> {
    let map_type = SqlType::Map(Box::new(k.clone()), Box::new(v.clone())).to_arrow();
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    if keys.is_empty() {
        let mut builder = MapBuilder::new(
            Some(names),
            datafusion::arrow::array::make_builder(&k.to_arrow(), 0),
            datafusion::arrow::array::make_builder(&v.to_arrow(), 0),
        );
        builder.append(true)?;
        let map = datafusion::arrow::compute::cast(&builder.finish(), &map_type)?;
        return Ok(ScalarValue::try_from_array(&map, 0)?);
    }
    let key_array = ScalarValue::iter_to_array(keys)?;
    let value_array = ScalarValue::iter_to_array(values)?;
    let DataType::Map(entries_field, sorted) = &map_type else {
        return Err(bad("map type"));
    };
    let DataType::Struct(fields) = entries_field.data_type() else {
        return Err(bad("map entries"));
    };
    let len = key_array.len();
    let key_array = datafusion::arrow::compute::cast(&key_array, fields[0].data_type())?;
    let value_array = datafusion::arrow::compute::cast(&value_array, fields[1].data_type())?;
    let entries = datafusion::arrow::array::StructArray::try_new(
        fields.clone(),
        vec![key_array, value_array],
        None,
    )?;
    let offsets = datafusion::arrow::buffer::OffsetBuffer::from_lengths([len]);
    let map = datafusion::arrow::array::MapArray::try_new(
        entries_field.clone(),
        offsets,
        entries,
        None,
        *sorted,
    )?;
    Ok(ScalarValue::Map(Arc::new(map)))
}

fn message_from_bytes(t: &SqlType, bytes: &[u8], nullable: Nullable) -> Result<ScalarValue> {
    let fields = Reader::fields(bytes)?;
    let varint = |n: u32| -> i64 {
        fields
            .iter()
            .rev()
            .find_map(|(f, w)| match (f, w) {
                (f, Wire::Varint(v)) if *f == n => Some(*v as i64),
                _ => None,
            })
            .unwrap_or(0)
    };
    Ok(match t {
        SqlType::Struct(struct_fields) => {
            let values = struct_fields
                .iter()
                .enumerate()
                .map(|(i, (_, ft))| read_field(&fields, i as u32 + 1, ft, nullable))
                .collect::<Result<Vec<_>>>()?;
            let arrow_fields = match t.to_arrow() {
                DataType::Struct(f) => f,
                _ => return Err(bad("struct type")),
            };
            let columns = values
                .iter()
                .zip(arrow_fields.iter())
                .map(|(v, f)| {
                    let array = v.to_array()?;
                    Ok(if array.data_type() == f.data_type() {
                        array
                    } else {
                        datafusion::arrow::compute::cast(&array, f.data_type())?
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let array =
                datafusion::arrow::array::StructArray::try_new(arrow_fields, columns, None)?;
            ScalarValue::Struct(Arc::new(array))
        }
        SqlType::Decimal { precision, scale } => {
            let value = fields
                .iter()
                .rev()
                .find_map(|(f, w)| match (f, w) {
                    (1, Wire::Bytes(b)) => Some(*b),
                    _ => None,
                })
                .unwrap_or(&[]);
            let written_scale = if fields.iter().any(|(f, _)| *f == 3) {
                varint(3) as i32
            } else {
                i32::from(*scale)
            };
            let unscaled = decimal_from_bytes(value)?;
            let unscaled = rescale(unscaled, written_scale, i32::from(*scale))?;
            ScalarValue::Decimal128(Some(unscaled), *precision, *scale)
        }
        SqlType::Date => {
            let days = days_from_civil(varint(1), varint(2), varint(3));
            ScalarValue::Date32(Some(
                i32::try_from(days).map_err(|_| bad("date out of range"))?,
            ))
        }
        SqlType::Time => {
            let ms = varint(1) * 3_600_000
                + varint(2) * 60_000
                + varint(3) * 1000
                + varint(4) / 1_000_000;
            ScalarValue::Time32Millisecond(Some(
                i32::try_from(ms).map_err(|_| bad("time out of range"))?,
            ))
        }
        SqlType::Timestamp => {
            ScalarValue::TimestampMillisecond(Some(varint(1) * 1000 + varint(2) / 1_000_000), None)
        }
        other => return Err(bad(format!("{other} is not a message"))),
    })
}

fn rescale(unscaled: i128, from: i32, to: i32) -> Result<i128> {
    let factor = |d: i32| {
        10i128
            .checked_pow(d.unsigned_abs())
            .ok_or_else(|| bad("decimal scale out of range"))
    };
    if to >= from {
        unscaled
            .checked_mul(factor(to - from)?)
            .ok_or_else(|| bad("decimal overflow"))
    } else {
        Ok(unscaled / factor(from - to)?)
    }
}

fn scalar_from_wire(t: &SqlType, w: &Wire) -> Result<ScalarValue> {
    Ok(match (t, w) {
        (SqlType::Int, Wire::Varint(v)) => ScalarValue::Int32(Some(*v as i64 as i32)),
        (SqlType::Bigint, Wire::Varint(v)) => ScalarValue::Int64(Some(*v as i64)),
        (SqlType::Boolean, Wire::Varint(v)) => ScalarValue::Boolean(Some(*v != 0)),
        (SqlType::Double, Wire::Fixed64(v)) => ScalarValue::Float64(Some(f64::from_bits(*v))),
        (SqlType::Double, Wire::Fixed32(v)) => {
            ScalarValue::Float64(Some(f64::from(f32::from_bits(*v))))
        }
        (SqlType::String, Wire::Bytes(b)) => ScalarValue::Utf8(Some(
            String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))?,
        )),
        (SqlType::Bytes, Wire::Bytes(b)) => ScalarValue::Binary(Some(b.to_vec())),
        (t, _) => return Err(bad(format!("unexpected wire type for {t}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnKind;

    fn col(name: &str, t: SqlType) -> Column {
        Column {
            name: name.into(),
            sql_type: t,
            kind: ColumnKind::Value,
        }
    }

    #[test]
    fn round_trips_scalars_and_defaults_nulls() {
        let columns = vec![
            col("I", SqlType::Int),
            col("S", SqlType::String),
            col("D", SqlType::Double),
        ];
        let values = vec![
            ScalarValue::Int32(Some(-5)),
            ScalarValue::Utf8(None),
            ScalarValue::Float64(Some(1.5)),
        ];
        let bytes = encode(&columns, &values, Nullable::Absent).unwrap();
        let back = decode(&columns, &bytes, Nullable::Absent).unwrap();
        assert_eq!(back[0], ScalarValue::Int32(Some(-5)));
        assert_eq!(back[1], ScalarValue::Utf8(Some(String::new())));
        let bytes = encode(&columns, &values, Nullable::Wrapper).unwrap();
        let back = decode(&columns, &bytes, Nullable::Wrapper).unwrap();
        assert_eq!(back[1], ScalarValue::Utf8(None));
        assert_eq!(back[2], ScalarValue::Float64(Some(1.5)));
    }

    #[test]
    fn dates_and_decimals_round_trip() {
        assert_eq!(chrono_date(0).unwrap(), (1970, 1, 1));
        assert_eq!(chrono_date(-1).unwrap(), (1969, 12, 31));
        assert_eq!(days_from_civil(2022, 1, 1), 18993);
        assert_eq!(decimal_from_bytes(&decimal_bytes(-12345)).unwrap(), -12345);
        assert_eq!(decimal_bytes(127), vec![127]);
        assert_eq!(decimal_bytes(128), vec![0, 128]);
    }
}

//! ksqlDB's map functions beyond DataFusion's `map_keys`/`map_values`:
//! `MAP_UNION(m1, m2)` (the entries of both, the second's value winning
//! for a shared key; a null map counts as empty, both null give null) and
//! `AS_MAP(keys, values)` (pairs up two arrays; extra keys get null).

use std::sync::Arc;

use datafusion::arrow::array::{Array, MapArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};

use super::collect::same;
use super::rowwise::{RowKind, type_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapFn {
    Union,
    AsMap,
}

impl MapFn {
    pub const ALL: [MapFn; 2] = [MapFn::Union, MapFn::AsMap];
}

fn map_type(key: DataType, value: DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", key, false),
                Field::new("value", value, true),
            ])),
            false,
        )),
        false,
    )
}

fn entries(v: &ScalarValue) -> Result<Option<Vec<(ScalarValue, ScalarValue)>>> {
    let ScalarValue::Map(m) = v else {
        return Ok(None);
    };
    if m.is_null(0) {
        return Ok(None);
    }
    let kv = m.value(0);
    (0..kv.len())
        .map(|i| {
            Ok((
                ScalarValue::try_from_array(kv.column(0), i)?,
                ScalarValue::try_from_array(kv.column(1), i)?,
            ))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn build(pairs: Vec<(ScalarValue, ScalarValue)>, map_type: &DataType) -> Result<ScalarValue> {
    let DataType::Map(entries_field, sorted) = map_type else {
        return exec_err!("not a map type: {map_type}");
    };
    let DataType::Struct(fields) = entries_field.data_type() else {
        return exec_err!("map entries are not a struct");
    };
    let (keys, values): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let len = keys.len();
    let column = |items: Vec<ScalarValue>, t: &DataType| -> Result<_> {
        if items.is_empty() {
            return Ok(datafusion::arrow::array::new_empty_array(t));
        }
        let a = ScalarValue::iter_to_array(items)?;
        Ok(datafusion::arrow::compute::cast(&a, t)?)
    };
    let struct_array = StructArray::try_new(
        fields.clone(),
        vec![
            column(keys, fields[0].data_type())?,
            column(values, fields[1].data_type())?,
        ],
        None,
    )?;
    let map = MapArray::try_new(
        entries_field.clone(),
        OffsetBuffer::from_lengths([len]),
        struct_array,
        None,
        *sorted,
    )?;
    Ok(ScalarValue::Map(Arc::new(map)))
}

impl RowKind for MapFn {
    fn name(&self) -> &'static str {
        match self {
            MapFn::Union => "map_union",
            MapFn::AsMap => "as_map",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let ok = match (self, args) {
            (MapFn::Union, [a @ DataType::Map(_, _), b]) if a == b || *b == DataType::Null => {
                Some(vec![a.clone(), a.clone()])
            }
            (MapFn::Union, [DataType::Null, b @ DataType::Map(_, _)]) => {
                Some(vec![b.clone(), b.clone()])
            }
            (MapFn::AsMap, [k @ DataType::List(_), v @ DataType::List(_)]) => {
                Some(vec![k.clone(), v.clone()])
            }
            _ => None,
        };
        match ok {
            Some(types) => Ok(types),
            None => plan_err!(
                "Function '{}' does not accept parameters ({})",
                self.name(),
                type_names(args)
            ),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match (self, args) {
            (MapFn::Union, [m, ..]) => Ok(m.clone()),
            (MapFn::AsMap, [DataType::List(k), DataType::List(v)]) => {
                Ok(map_type(k.data_type().clone(), v.data_type().clone()))
            }
            _ => plan_err!("{} cannot take {}", self.name(), type_names(args)),
        }
    }

    fn call(&self, args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
        match self {
            MapFn::Union => {
                let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
                    return Ok(ScalarValue::Null);
                };
                let (a, b) = (entries(a)?, entries(b)?);
                if a.is_none() && b.is_none() {
                    return Ok(ScalarValue::Null);
                }
                let mut merged = a.unwrap_or_default();
                for (k, v) in b.unwrap_or_default() {
                    match merged.iter_mut().find(|(key, _)| same(key, &k)) {
                        Some(entry) => entry.1 = v,
                        None => merged.push((k, v)),
                    }
                }
                build(merged, return_type)
            }
            MapFn::AsMap => {
                let (Some(ScalarValue::List(keys)), Some(ScalarValue::List(values))) =
                    (args.first(), args.get(1))
                else {
                    return Ok(ScalarValue::Null);
                };
                if keys.is_null(0) || values.is_null(0) {
                    return Ok(ScalarValue::Null);
                }
                let (keys, values) = (keys.value(0), values.value(0));
                let mut pairs: Vec<(ScalarValue, ScalarValue)> = Vec::new();
                for i in 0..keys.len() {
                    let k = ScalarValue::try_from_array(&keys, i)?;
                    if k.is_null() {
                        continue;
                    }
                    let v = if i < values.len() {
                        ScalarValue::try_from_array(&values, i)?
                    } else {
                        ScalarValue::try_new_null(values.data_type())?
                    };
                    match pairs.iter_mut().find(|(key, _)| same(key, &k)) {
                        Some(entry) => entry.1 = v,
                        None => pairs.push((k, v)),
                    }
                }
                build(pairs, return_type)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::java_string::java_text;

    fn map(pairs: &[(&str, Option<i32>)]) -> ScalarValue {
        let t = map_type(DataType::Utf8, DataType::Int32);
        let pairs = pairs
            .iter()
            .map(|(k, v)| {
                (
                    ScalarValue::Utf8(Some(k.to_string())),
                    ScalarValue::Int32(*v),
                )
            })
            .collect();
        build(pairs, &t).unwrap()
    }

    #[test]
    fn union_prefers_the_second_map() {
        let t = map_type(DataType::Utf8, DataType::Int32);
        let out = MapFn::Union
            .call(
                &[map(&[("a", Some(1)), ("b", Some(2))]), map(&[("a", None)])],
                &t,
            )
            .unwrap();
        assert_eq!(java_text(&out).unwrap(), "{a=null, b=2}");
    }
}

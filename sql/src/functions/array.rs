//! ksqlDB's array functions whose rules DataFusion's do not share:
//! `ARRAY_JOIN` (nulls written as `null`, Java's number text),
//! `ARRAY_SORT` (nulls last either way), `ARRAY_REMOVE` (removes nulls
//! too, compares maps by content), `ARRAY_MIN`/`ARRAY_MAX` (ignore nulls)
//! for every element type, booleans and strings included.
//!
//! The set functions (`ARRAY_DISTINCT`, `ARRAY_UNION`, `ARRAY_INTERSECT`,
//! `ARRAY_EXCEPT`) keep first-occurrence order and treat null as a value
//! that appears once; `ARRAY_CONTAINS` finds a null in an array holding
//! one. `SLICE(arr, from, to)` is 1-based and inclusive (a null bound is
//! the array's end); `ARRAY_CONCAT` of a null and an array is the array.

use std::cmp::Ordering;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use sluice_engine::format::delimited::field_text;

use super::collect::same;
use super::rowwise::{RowKind, text, type_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrayFn {
    Join,
    Sort,
    Remove,
    Min,
    Max,
    Length,
    Entries,
    GenerateSeries,
    Distinct,
    Union,
    Intersect,
    Except,
    Contains,
    Slice,
    Concat,
}

impl ArrayFn {
    pub const ALL: [ArrayFn; 15] = [
        ArrayFn::Distinct,
        ArrayFn::Union,
        ArrayFn::Intersect,
        ArrayFn::Except,
        ArrayFn::Contains,
        ArrayFn::Slice,
        ArrayFn::Concat,
        ArrayFn::Length,
        ArrayFn::Entries,
        ArrayFn::GenerateSeries,
        ArrayFn::Join,
        ArrayFn::Sort,
        ArrayFn::Remove,
        ArrayFn::Min,
        ArrayFn::Max,
    ];
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// The elements of a list value; `None` for a null list.
fn elements(v: &ScalarValue) -> Result<Option<(Vec<ScalarValue>, DataType)>> {
    let ScalarValue::List(list) = v else {
        return Ok(None);
    };
    if list.is_null(0) {
        return Ok(None);
    }
    let DataType::List(item) = list.data_type() else {
        return exec_err!("not an array: {}", list.data_type());
    };
    let values = list.value(0);
    let items = (0..values.len())
        .map(|i| ScalarValue::try_from_array(&values, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((items, item.data_type().clone())))
}

/// The distinct values of `items`, first occurrences in order.
fn distinct(items: Vec<ScalarValue>) -> Vec<ScalarValue> {
    let mut out: Vec<ScalarValue> = Vec::with_capacity(items.len());
    for v in items {
        if !out.iter().any(|o| same(o, &v)) {
            out.push(v);
        }
    }
    out
}

/// `ARRAY_UNION`, `ARRAY_INTERSECT`, `ARRAY_EXCEPT` and `ARRAY_CONCAT`.
fn set_operation(f: ArrayFn, args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
    let DataType::List(item) = return_type else {
        return exec_err!("{} returns an array", f.name());
    };
    let a = args.first().map(elements).transpose()?.flatten();
    let b = args.get(1).map(elements).transpose()?.flatten();
    let values = match (f, a, b) {
        (ArrayFn::Concat, None, None) => return Ok(ScalarValue::Null),
        (ArrayFn::Concat, a, b) => {
            let mut all = a.map(|(v, _)| v).unwrap_or_default();
            all.extend(b.map(|(v, _)| v).unwrap_or_default());
            all
        }
        (_, None, _) | (_, _, None) => return Ok(ScalarValue::Null),
        (ArrayFn::Union, Some((a, _)), Some((b, _))) => distinct(a.into_iter().chain(b).collect()),
        (ArrayFn::Intersect, Some((a, _)), Some((b, _))) => distinct(
            a.into_iter()
                .filter(|v| b.iter().any(|w| same(v, w)))
                .collect(),
        ),
        (_, Some((a, _)), Some((b, _))) => distinct(
            a.into_iter()
                .filter(|v| !b.iter().any(|w| same(v, w)))
                .collect(),
        ),
    };
    let values = values
        .into_iter()
        .map(|v| {
            if v.data_type() == *item.data_type() {
                Ok(v)
            } else {
                v.cast_to(item.data_type())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(list(&values, item.data_type()))
}

/// `GENERATE_SERIES(start, end [, step])`: from `start` to `end`
/// inclusive, counting down when `end` is smaller; the step's sign must
/// lead toward `end`.
fn generate_series(args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
    let numbers: Option<Vec<i64>> = args.iter().map(super::rowwise::int).collect();
    let Some(numbers) = numbers else {
        return Ok(ScalarValue::Null);
    };
    let (Some(&start), Some(&end)) = (numbers.first(), numbers.get(1)) else {
        return exec_err!("GENERATE_SERIES takes a start and an end");
    };
    let step = match numbers.get(2) {
        Some(s) => *s,
        None if end < start => -1,
        None => 1,
    };
    if step == 0 || (end > start && step < 0) || (end < start && step > 0) {
        return exec_err!("GENERATE_SERIES step {step} cannot lead from {start} to {end}");
    }
    let count = (end - start) / step + 1;
    if count > 1_000_000 {
        return exec_err!("GENERATE_SERIES would make {count} values");
    }
    let DataType::List(item) = return_type else {
        return exec_err!("GENERATE_SERIES returns an array");
    };
    let values: Vec<ScalarValue> = (0..count)
        .map(|i| ScalarValue::Int64(Some(start + i * step)).cast_to(item.data_type()))
        .collect::<Result<_>>()?;
    Ok(list(&values, item.data_type()))
}

/// `ENTRIES(map, sorted)`: the map as `{K, V}` structs, by key when
/// `sorted`.
fn entries(args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
    let (Some(ScalarValue::Map(map)), Some(sorted)) = (args.first(), args.get(1)) else {
        return Ok(ScalarValue::Null);
    };
    if map.is_null(0) {
        return Ok(ScalarValue::Null);
    }
    let DataType::List(item) = return_type else {
        return exec_err!("ENTRIES returns an array");
    };
    let DataType::Struct(fields) = item.data_type() else {
        return exec_err!("ENTRIES returns structs");
    };
    let kv = map.value(0);
    let mut pairs = (0..kv.len())
        .map(|i| {
            Ok((
                ScalarValue::try_from_array(kv.column(0), i)?,
                ScalarValue::try_from_array(kv.column(1), i)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    if matches!(sorted, ScalarValue::Boolean(Some(true))) {
        pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    }
    let structs = pairs
        .into_iter()
        .map(|(k, v)| {
            let array = datafusion::arrow::array::StructArray::try_new(
                fields.clone(),
                vec![k.to_array()?, v.to_array()?],
                None,
            )?;
            Ok(ScalarValue::Struct(std::sync::Arc::new(array)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(list(&structs, item.data_type()))
}

fn list(items: &[ScalarValue], item_type: &DataType) -> ScalarValue {
    ScalarValue::List(ScalarValue::new_list_nullable(items, item_type))
}

impl RowKind for ArrayFn {
    fn name(&self) -> &'static str {
        match self {
            ArrayFn::Join => "array_join",
            ArrayFn::Sort => "array_sort",
            ArrayFn::Remove => "array_remove",
            ArrayFn::Min => "array_min",
            ArrayFn::Max => "array_max",
            ArrayFn::Length => "array_length",
            ArrayFn::Entries => "entries",
            ArrayFn::GenerateSeries => "generate_series",
            ArrayFn::Distinct => "array_distinct",
            ArrayFn::Union => "array_union",
            ArrayFn::Intersect => "array_intersect",
            ArrayFn::Except => "array_except",
            ArrayFn::Contains => "array_contains",
            ArrayFn::Slice => "slice",
            ArrayFn::Concat => "array_concat",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let fail = || {
            plan_err!(
                "Function '{}' does not accept parameters ({})",
                self.name(),
                type_names(args)
            )
        };
        match self {
            ArrayFn::Entries => {
                return match args {
                    [m @ DataType::Map(_, _), DataType::Boolean | DataType::Null] => {
                        Ok(vec![m.clone(), DataType::Boolean])
                    }
                    _ => fail(),
                };
            }
            ArrayFn::GenerateSeries => {
                let whole = args.iter().all(|t| t.is_integer() || *t == DataType::Null);
                let wide = args.contains(&DataType::Int64);
                let t = if wide {
                    DataType::Int64
                } else {
                    DataType::Int32
                };
                return match args.len() {
                    2 | 3 if whole => Ok(vec![t; args.len()]),
                    _ => fail(),
                };
            }
            _ => {}
        }
        let Some(DataType::List(item)) = args.first() else {
            // A null first array takes the second's type.
            return match (self, args) {
                (
                    ArrayFn::Union | ArrayFn::Intersect | ArrayFn::Except | ArrayFn::Concat,
                    [DataType::Null, l @ DataType::List(_)],
                ) => Ok(vec![l.clone(), l.clone()]),
                _ => fail(),
            };
        };
        match (self, &args[1..]) {
            (ArrayFn::Distinct, []) => return Ok(args.to_vec()),
            (ArrayFn::Union | ArrayFn::Intersect | ArrayFn::Except | ArrayFn::Concat, [other])
                if other == &args[0] || *other == DataType::Null =>
            {
                return Ok(vec![args[0].clone(), args[0].clone()]);
            }
            (ArrayFn::Union | ArrayFn::Intersect | ArrayFn::Except | ArrayFn::Concat, [other])
                if other.is_nested() =>
            {
                // Arrays of different element types meet at a common one.
                let common = datafusion::logical_expr::type_coercion::binary::comparison_coercion(
                    &args[0], other,
                );
                return match common {
                    Some(t) => Ok(vec![t.clone(), t]),
                    None => fail(),
                };
            }
            (ArrayFn::Contains, [_]) => return Ok(vec![args[0].clone(), item.data_type().clone()]),
            (ArrayFn::Slice, [a, b])
                if [a, b]
                    .iter()
                    .all(|t| t.is_integer() || **t == DataType::Null) =>
            {
                return Ok(vec![args[0].clone(), DataType::Int32, DataType::Int32]);
            }
            _ => {}
        }
        match (self, &args[1..]) {
            (ArrayFn::Min | ArrayFn::Max | ArrayFn::Length, [])
            | (ArrayFn::Sort | ArrayFn::Join, []) => Ok(args.to_vec()),
            (ArrayFn::Sort | ArrayFn::Join, [t]) if is_text(t) => {
                Ok(vec![args[0].clone(), DataType::Utf8])
            }
            // The removed value takes the element type.
            (ArrayFn::Remove, [_]) => Ok(vec![args[0].clone(), item.data_type().clone()]),
            _ => fail(),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match (self, args.first()) {
            (ArrayFn::Join, _) => DataType::Utf8,
            (ArrayFn::Length, _) => DataType::Int32,
            (ArrayFn::Contains, _) => DataType::Boolean,
            (ArrayFn::GenerateSeries, Some(t)) => DataType::new_list(t.clone(), true),
            (ArrayFn::Entries, Some(DataType::Map(entries, _))) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return plan_err!("ENTRIES takes a map");
                };
                let fields: Vec<Field> = ["K", "V"]
                    .iter()
                    .zip(kv.iter())
                    .map(|(name, f)| Field::new(*name, f.data_type().clone(), true))
                    .collect();
                DataType::new_list(DataType::Struct(fields.into()), true)
            }
            (ArrayFn::Min | ArrayFn::Max, Some(DataType::List(item))) => item.data_type().clone(),
            (_, Some(t)) => t.clone(),
            (_, None) => return plan_err!("{} takes an array", self.name()),
        })
    }

    fn call(&self, args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
        match self {
            ArrayFn::GenerateSeries => return generate_series(args, return_type),
            ArrayFn::Entries => return entries(args, return_type),
            ArrayFn::Union | ArrayFn::Intersect | ArrayFn::Except | ArrayFn::Concat => {
                return set_operation(*self, args, return_type);
            }
            _ => {}
        }
        let Some((items, item_type)) = args.first().map(elements).transpose()?.flatten() else {
            return Ok(ScalarValue::Null);
        };
        Ok(match self {
            ArrayFn::Length => ScalarValue::Int32(Some(items.len() as i32)),
            ArrayFn::Distinct => list(&distinct(items), &item_type),
            ArrayFn::Contains => {
                let wanted = args.get(1).cloned().unwrap_or(ScalarValue::Null);
                ScalarValue::Boolean(Some(items.iter().any(|v| {
                    (v.is_null() && wanted.is_null()) || (!v.is_null() && same(v, &wanted))
                })))
            }
            ArrayFn::Slice => {
                let bound = |i: usize| args.get(i).and_then(super::rowwise::int);
                let len = items.len() as i64;
                let from = bound(1).unwrap_or(1);
                let to = bound(2).unwrap_or(len);
                if from < 1 || to > len || from > to + 1 {
                    return Ok(ScalarValue::Null);
                }
                list(&items[(from - 1) as usize..to as usize], &item_type)
            }
            ArrayFn::Union | ArrayFn::Intersect | ArrayFn::Except | ArrayFn::Concat => {
                ScalarValue::Null
            }
            ArrayFn::GenerateSeries | ArrayFn::Entries => ScalarValue::Null,
            ArrayFn::Join => {
                let delimiter = match args.get(1) {
                    Some(d) => text(d).unwrap_or(""),
                    None => ",",
                };
                let ScalarValue::List(array) = &args[0] else {
                    return Ok(ScalarValue::Null);
                };
                let values = array.value(0);
                let mut parts = Vec::with_capacity(values.len());
                for i in 0..values.len() {
                    parts.push(if values.is_null(i) {
                        "null".to_string()
                    } else {
                        field_text(values.as_ref(), i).map_err(|e| {
                            datafusion::error::DataFusionError::Execution(e.to_string())
                        })?
                    });
                }
                ScalarValue::Utf8(Some(parts.join(delimiter)))
            }
            ArrayFn::Sort => {
                let descending = match args.get(1) {
                    None => false,
                    Some(d) => match text(d).map(str::to_uppercase).as_deref() {
                        Some("ASC") => false,
                        Some("DESC") => true,
                        _ => return Ok(ScalarValue::Null),
                    },
                };
                let (mut present, absent): (Vec<_>, Vec<_>) =
                    items.into_iter().partition(|v| !v.is_null());
                present.sort_by(|a, b| {
                    let o = a.partial_cmp(b).unwrap_or(Ordering::Equal);
                    if descending { o.reverse() } else { o }
                });
                present.extend(absent);
                list(&present, &item_type)
            }
            ArrayFn::Remove => {
                let unwanted = args.get(1).cloned().unwrap_or(ScalarValue::Null);
                let kept: Vec<ScalarValue> = items
                    .into_iter()
                    .filter(|v| {
                        if unwanted.is_null() {
                            !v.is_null()
                        } else {
                            !same(v, &unwanted)
                        }
                    })
                    .collect();
                list(&kept, &item_type)
            }
            ArrayFn::Min | ArrayFn::Max => {
                let want = if *self == ArrayFn::Min {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                items
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .reduce(|best, v| {
                        if v.partial_cmp(&best) == Some(want) {
                            v
                        } else {
                            best
                        }
                    })
                    .unwrap_or(ScalarValue::Null)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(values: &[Option<i32>]) -> ScalarValue {
        let items: Vec<ScalarValue> = values.iter().map(|v| ScalarValue::Int32(*v)).collect();
        list(&items, &DataType::Int32)
    }

    fn call(f: ArrayFn, args: &[ScalarValue]) -> ScalarValue {
        let types: Vec<DataType> = args.iter().map(|a| a.data_type()).collect();
        let return_type = f.return_type(&f.coerce(&types).unwrap()).unwrap();
        f.call(args, &return_type).unwrap()
    }

    #[test]
    fn sort_puts_nulls_last_both_ways() {
        let input = ints(&[Some(2), None, Some(1)]);
        assert_eq!(
            call(ArrayFn::Sort, std::slice::from_ref(&input)),
            ints(&[Some(1), Some(2), None])
        );
        let desc = ScalarValue::Utf8(Some("DESC".into()));
        assert_eq!(
            call(ArrayFn::Sort, &[input, desc]),
            ints(&[Some(2), Some(1), None])
        );
    }

    #[test]
    fn join_writes_nulls() {
        let joined = call(ArrayFn::Join, &[ints(&[Some(1), None, Some(3)])]);
        assert_eq!(joined, ScalarValue::Utf8(Some("1,null,3".into())));
    }

    #[test]
    fn remove_min_max_and_length() {
        let input = ints(&[Some(1), None, Some(1), Some(5)]);
        let removed = call(
            ArrayFn::Remove,
            &[input.clone(), ScalarValue::Int32(Some(1))],
        );
        assert_eq!(removed, ints(&[None, Some(5)]));
        assert_eq!(
            call(ArrayFn::Max, std::slice::from_ref(&input)),
            ScalarValue::Int32(Some(5))
        );
        assert_eq!(
            call(ArrayFn::Min, std::slice::from_ref(&input)),
            ScalarValue::Int32(Some(1))
        );
        assert_eq!(call(ArrayFn::Length, &[input]), ScalarValue::Int32(Some(4)));
    }

    #[test]
    fn series_count_both_ways() {
        let series = |a: i32, b: i32| {
            call(
                ArrayFn::GenerateSeries,
                &[ScalarValue::Int32(Some(a)), ScalarValue::Int32(Some(b))],
            )
        };
        assert_eq!(series(1, 3), ints(&[Some(1), Some(2), Some(3)]));
        assert_eq!(series(3, 2), ints(&[Some(3), Some(2)]));
    }
}

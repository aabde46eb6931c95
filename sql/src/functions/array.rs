//! ksqlDB's array functions whose rules DataFusion's do not share:
//! `ARRAY_JOIN` (nulls written as `null`, Java's number text),
//! `ARRAY_SORT` (nulls last either way), `ARRAY_REMOVE` (removes nulls
//! too, compares maps by content), `ARRAY_MIN`/`ARRAY_MAX` (ignore nulls)
//! for every element type, booleans and strings included.

use std::cmp::Ordering;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
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
}

impl ArrayFn {
    pub const ALL: [ArrayFn; 5] = [
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
        let Some(DataType::List(item)) = args.first() else {
            return fail();
        };
        match (self, &args[1..]) {
            (ArrayFn::Min | ArrayFn::Max, []) | (ArrayFn::Sort | ArrayFn::Join, []) => {
                Ok(args.to_vec())
            }
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
            (ArrayFn::Min | ArrayFn::Max, Some(DataType::List(item))) => item.data_type().clone(),
            (_, Some(t)) => t.clone(),
            (_, None) => return plan_err!("{} takes an array", self.name()),
        })
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let Some((items, item_type)) = args.first().map(elements).transpose()?.flatten() else {
            return Ok(ScalarValue::Null);
        };
        Ok(match self {
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

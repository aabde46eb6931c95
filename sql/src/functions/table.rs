//! ksqlDB's table functions, `EXPLODE(array)` and `CUBE_EXPLODE(array)`:
//! functions that turn one row into several.
//!
//! They are registered as scalar UDFs so that expressions around them
//! (`EXPLODE(arr)->F1`) type-check: the UDF's type is the type of one
//! generated value. The planner replaces every call with a column of the
//! engine's `Explode` operator, fed by [`TableFn::generator`]; invoking
//! the UDF itself is an error.
//!
//! `CUBE_EXPLODE([a, b])` yields every combination of the values with
//! some of them replaced by null (`[null, null]`, `[null, b]`, `[a, null]`,
//! `[a, b]`); a value that is already null does not double the rows.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, ScalarUDF};

use super::rowwise::{RowKind, RowUdf, type_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableFn {
    Explode,
    CubeExplode,
}

impl TableFn {
    pub const ALL: [TableFn; 2] = [TableFn::Explode, TableFn::CubeExplode];

    /// The table function a registered UDF stands for.
    pub fn of(udf: &ScalarUDF) -> Option<TableFn> {
        TableFn::ALL.into_iter().find(|t| t.name() == udf.name())
    }

    /// The expression whose array value, per input row, holds the rows
    /// the call generates.
    pub fn generator(self, arg: Expr) -> Expr {
        match self {
            TableFn::Explode => arg,
            TableFn::CubeExplode => Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(ScalarUDF::from(RowUdf::new(Cube))),
                vec![arg],
            )),
        }
    }
}

fn array_arg(name: &str, args: &[DataType]) -> Result<DataType> {
    match args {
        [t @ DataType::List(_)] => Ok(t.clone()),
        _ => datafusion::common::plan_err!(
            "Function '{name}' does not accept parameters ({})",
            type_names(args)
        ),
    }
}

impl RowKind for TableFn {
    fn name(&self) -> &'static str {
        match self {
            TableFn::Explode => "explode",
            TableFn::CubeExplode => "cube_explode",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![array_arg(self.name(), args)?])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let list = array_arg(self.name(), args)?;
        Ok(match (self, list) {
            (TableFn::Explode, DataType::List(item)) => item.data_type().clone(),
            (_, list) => list,
        })
    }

    fn call(&self, _args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        exec_err!(
            "{} is a table function: it can only be used in the SELECT of a stream query",
            self.name().to_uppercase()
        )
    }

    fn errors_are_null(&self) -> bool {
        false
    }
}

/// `CUBE(array)`: the array of `CUBE_EXPLODE`'s combinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cube;

impl RowKind for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![array_arg("cube_explode", args)?])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(array_arg("cube_explode", args)?, true))
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let Some(ScalarValue::List(list)) = args.first() else {
            return Ok(ScalarValue::Null);
        };
        if list.is_null(0) {
            return Ok(ScalarValue::Null);
        }
        let item_type = match list.data_type() {
            DataType::List(item) => item.data_type().clone(),
            other => return exec_err!("CUBE_EXPLODE takes an array, not {other}"),
        };
        let values = list.value(0);
        let items = (0..values.len())
            .map(|i| ScalarValue::try_from_array(&values, i))
            .collect::<Result<Vec<_>>>()?;
        let n = items.len();
        if n > 20 {
            return exec_err!("CUBE_EXPLODE of {n} values would make too many rows");
        }
        let null = ScalarValue::try_new_null(&item_type)?;
        let mut combinations = Vec::new();
        for mask in 0u32..(1 << n) {
            // Bit (n - 1 - i) keeps item i; a kept null repeats a row.
            let keeps = |i: usize| mask & (1 << (n - 1 - i)) != 0;
            if (0..n).any(|i| keeps(i) && items[i].is_null()) {
                continue;
            }
            let row: Vec<ScalarValue> = (0..n)
                .map(|i| {
                    if keeps(i) {
                        items[i].clone()
                    } else {
                        null.clone()
                    }
                })
                .collect();
            combinations.push(ScalarValue::List(ScalarValue::new_list_nullable(
                &row, &item_type,
            )));
        }
        let list_type = DataType::new_list(item_type, true);
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &combinations,
            &list_type,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_skips_combinations_of_nulls() {
        let input = ScalarValue::List(ScalarValue::new_list_nullable(
            &[ScalarValue::Int32(Some(1)), ScalarValue::Int32(None)],
            &DataType::Int32,
        ));
        let out = Cube.call(&[input], &DataType::Null).unwrap();
        let ScalarValue::List(rows) = out else {
            panic!("not a list")
        };
        assert_eq!(rows.value(0).len(), 2);
    }
}

//! [`RowUdf`]: a DataFusion scalar UDF computed one row at a time from
//! [`ScalarValue`]s, for ksqlDB functions whose per-value semantics
//! (Java string, URL and date rules) matter more than vectorised speed.
//!
//! A function family is an enum implementing [`RowKind`]: it checks and
//! coerces argument types at plan time and computes one row's result. An
//! `Err` from [`RowKind::call`] makes that call null for its row, reported
//! to the processing log, as a failing ksqlDB function does; a null result
//! is a typed null.

use std::fmt::Debug;
use std::hash::Hash;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_engine::operator::report_function_error;
use sluice_engine::schema::SqlType;

/// One family of row-wise functions.
pub trait RowKind: Debug + PartialEq + Eq + Hash + Send + Sync + 'static {
    /// The function's name, lower case.
    fn name(&self) -> &'static str;
    /// The argument types the function is called with, or a plan error.
    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>>;
    /// The result type for the coerced argument types.
    fn return_type(&self, args: &[DataType]) -> Result<DataType>;
    /// One row's result; null results may be `ScalarValue::Null`.
    fn call(&self, args: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue>;
    /// Whether the result may change between calls with equal arguments.
    fn volatile(&self) -> bool {
        false
    }
    /// Whether a failed call gives null for its row (logged), as ksqlDB's
    /// functions do, rather than failing the whole expression.
    fn errors_are_null(&self) -> bool {
        true
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RowUdf<K: RowKind> {
    kind: K,
    signature: Signature,
}

impl<K: RowKind> RowUdf<K> {
    /// One row's result, typed as the function's result; a failed call is
    /// null (and reported) unless the kind says otherwise.
    fn call_row(&self, row: &[ScalarValue], return_type: &DataType) -> Result<ScalarValue> {
        let value = match self.kind.call(row, return_type) {
            Ok(v) => v,
            Err(e) if self.kind.errors_are_null() => {
                report_function_error(format!("{}: {e}", self.kind.name().to_uppercase()));
                ScalarValue::Null
            }
            Err(e) => return Err(e),
        };
        Ok(if value.is_null() {
            ScalarValue::try_new_null(return_type)?
        } else if value.data_type() != *return_type {
            value.cast_to(return_type)?
        } else {
            value
        })
    }
}

impl<K: RowKind> RowUdf<K> {
    pub fn new(kind: K) -> Self {
        let volatility = if kind.volatile() {
            Volatility::Volatile
        } else {
            Volatility::Immutable
        };
        RowUdf {
            kind,
            signature: Signature::user_defined(volatility),
        }
    }
}

impl<K: RowKind> ScalarUDFImpl for RowUdf<K> {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.kind.coerce(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.kind.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let return_type = args.return_field.data_type().clone();
        let rows = args.number_rows;
        // Constant arguments: one call serves every row.
        let constants: Option<Vec<ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s.clone()),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        if let Some(constants) = constants.filter(|c| !c.is_empty() && !self.kind.volatile()) {
            return Ok(ColumnarValue::Scalar(
                self.call_row(&constants, &return_type)?,
            ));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut results = Vec::with_capacity(rows);
        let mut row = Vec::with_capacity(arrays.len());
        for i in 0..rows {
            row.clear();
            for a in &arrays {
                row.push(ScalarValue::try_from_array(a, i)?);
            }
            results.push(self.call_row(&row, &return_type)?);
        }
        if results.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&return_type),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(results)?))
    }
}

/// What an argument must be, for [`expect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A string: passed as `Utf8`.
    Str,
    /// Any whole number: passed as `Int64`.
    Int,
    /// Any whole number: passed as `Int32`.
    Int32,
    /// Any number: passed as `Float64`.
    Double,
    /// Bytes: passed as `Binary`.
    Bytes,
    /// Anything, passed as it is.
    Any,
}

impl Arg {
    fn accepts(self, t: &DataType) -> Option<DataType> {
        if *t == DataType::Null {
            return Some(match self {
                Arg::Str => DataType::Utf8,
                Arg::Int => DataType::Int64,
                Arg::Int32 => DataType::Int32,
                Arg::Double => DataType::Float64,
                Arg::Bytes => DataType::Binary,
                Arg::Any => DataType::Null,
            });
        }
        match self {
            Arg::Str if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
                Some(DataType::Utf8)
            }
            Arg::Int if t.is_integer() => Some(DataType::Int64),
            Arg::Int32 if t.is_integer() => Some(DataType::Int32),
            Arg::Double if t.is_numeric() => Some(DataType::Float64),
            Arg::Bytes
                if matches!(
                    t,
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                ) =>
            {
                Some(DataType::Binary)
            }
            Arg::Any => Some(t.clone()),
            _ => None,
        }
    }
}

/// Checks `args` against one of the accepted `shapes`, returning the
/// coerced types of the first that fits, else ksqlDB's message.
pub fn expect(name: &str, args: &[DataType], shapes: &[&[Arg]]) -> Result<Vec<DataType>> {
    for shape in shapes {
        if shape.len() != args.len() {
            continue;
        }
        let fitted: Option<Vec<DataType>> =
            shape.iter().zip(args).map(|(a, t)| a.accepts(t)).collect();
        if let Some(fitted) = fitted {
            return Ok(fitted);
        }
    }
    plan_err!(
        "Function '{}' does not accept parameters ({})",
        name,
        type_names(args)
    )
}

/// Types as ksqlDB names them in messages.
pub fn type_names(types: &[DataType]) -> String {
    types
        .iter()
        .map(|t| {
            if *t == DataType::Null {
                return "null".to_string();
            }
            SqlType::from_arrow(t)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| t.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string argument, `None` when null or not a string.
pub fn text(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.as_deref(),
        _ => None,
    }
}

/// A whole-number argument, `None` when null.
pub fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(x) => x.map(i64::from),
        ScalarValue::Int16(x) => x.map(i64::from),
        ScalarValue::Int32(x) => x.map(i64::from),
        ScalarValue::Int64(x) => *x,
        ScalarValue::UInt8(x) => x.map(i64::from),
        ScalarValue::UInt16(x) => x.map(i64::from),
        ScalarValue::UInt32(x) => x.map(i64::from),
        ScalarValue::UInt64(x) => x.and_then(|x| i64::try_from(x).ok()),
        _ => None,
    }
}

/// A double argument, `None` when null.
pub fn double(v: &ScalarValue) -> Option<f64> {
    match v {
        ScalarValue::Float64(x) => *x,
        ScalarValue::Float32(x) => x.map(f64::from),
        other => int(other).map(|i| i as f64),
    }
}

/// A bytes argument, `None` when null.
pub fn bytes(v: &ScalarValue) -> Option<&[u8]> {
    match v {
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => {
            b.as_deref()
        }
        _ => None,
    }
}

/// A string result.
pub fn string(s: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(s.into()))
}

//! ksqlDB's math functions whose semantics DataFusion's built-ins do not
//! share.
//!
//! - [`DoubleMath`]: the functions of doubles (`SQRT`, `LN`, `POWER`, the
//!   trigonometric family...). Every numeric argument widens to DOUBLE and
//!   the result is a DOUBLE with Java's IEEE behaviour (`SQRT(-1)` is NaN,
//!   `LN(0)` is -Infinity), never null for a non-null input.
//! - [`RoundTrunc`]: `ROUND` and `TRUNC`, with ksqlDB's result types
//!   (`ROUND(DOUBLE)` is a BIGINT, `ROUND(DECIMAL(p, s))` a `DECIMAL(p-s,
//!   0)`) and ksqlDB's rounding: halves go up, toward positive infinity, and
//!   doubles round by their shortest decimal form, so `ROUND(1.005, 2)`
//!   is 1.01.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int32Array, Int64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, DecimalType, Float64Type, Int32Type, Int64Type,
};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// A function of doubles, as ksqlDB defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MathOp {
    Sqrt,
    Cbrt,
    Exp,
    Ln,
    /// `LOG(x)` is the natural logarithm; `LOG(base, x)` any base.
    Log,
    Power,
    Acos,
    Asin,
    Atan,
    Atan2,
    Cos,
    Sin,
    Tan,
    Cot,
    Cosh,
    Sinh,
    Tanh,
    Degrees,
    Radians,
    Pi,
}

impl MathOp {
    pub const ALL: [MathOp; 20] = [
        MathOp::Sqrt,
        MathOp::Cbrt,
        MathOp::Exp,
        MathOp::Ln,
        MathOp::Log,
        MathOp::Power,
        MathOp::Acos,
        MathOp::Asin,
        MathOp::Atan,
        MathOp::Atan2,
        MathOp::Cos,
        MathOp::Sin,
        MathOp::Tan,
        MathOp::Cot,
        MathOp::Cosh,
        MathOp::Sinh,
        MathOp::Tanh,
        MathOp::Degrees,
        MathOp::Radians,
        MathOp::Pi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MathOp::Sqrt => "sqrt",
            MathOp::Cbrt => "cbrt",
            MathOp::Exp => "exp",
            MathOp::Ln => "ln",
            MathOp::Log => "log",
            MathOp::Power => "power",
            MathOp::Acos => "acos",
            MathOp::Asin => "asin",
            MathOp::Atan => "atan",
            MathOp::Atan2 => "atan2",
            MathOp::Cos => "cos",
            MathOp::Sin => "sin",
            MathOp::Tan => "tan",
            MathOp::Cot => "cot",
            MathOp::Cosh => "cosh",
            MathOp::Sinh => "sinh",
            MathOp::Tanh => "tanh",
            MathOp::Degrees => "degrees",
            MathOp::Radians => "radians",
            MathOp::Pi => "pi",
        }
    }

    /// The argument counts the function takes.
    fn arities(self) -> &'static [usize] {
        match self {
            MathOp::Pi => &[0],
            MathOp::Log => &[1, 2],
            MathOp::Power | MathOp::Atan2 => &[2],
            _ => &[1],
        }
    }

    fn apply(self, args: &[f64]) -> f64 {
        let x = args.first().copied().unwrap_or(f64::NAN);
        let y = args.get(1).copied().unwrap_or(f64::NAN);
        match self {
            MathOp::Sqrt => x.sqrt(),
            MathOp::Cbrt => x.cbrt(),
            MathOp::Exp => x.exp(),
            MathOp::Ln => x.ln(),
            MathOp::Log if args.len() == 1 => x.ln(),
            // LOG(base, value): no logarithm for a base that is not
            // positive, or is one.
            MathOp::Log => {
                if x <= 0.0 || x == 1.0 {
                    f64::NAN
                } else {
                    y.ln() / x.ln()
                }
            }
            MathOp::Power => x.powf(y),
            MathOp::Acos => x.acos(),
            MathOp::Asin => x.asin(),
            MathOp::Atan => x.atan(),
            MathOp::Atan2 => x.atan2(y),
            MathOp::Cos => x.cos(),
            MathOp::Sin => x.sin(),
            MathOp::Tan => x.tan(),
            MathOp::Cot => 1.0 / x.tan(),
            MathOp::Cosh => x.cosh(),
            MathOp::Sinh => x.sinh(),
            MathOp::Tanh => x.tanh(),
            MathOp::Degrees => x.to_degrees(),
            MathOp::Radians => x.to_radians(),
            MathOp::Pi => std::f64::consts::PI,
        }
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || *t == DataType::Null
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DoubleMath {
    op: MathOp,
    signature: Signature,
}

impl DoubleMath {
    pub fn new(op: MathOp) -> Self {
        DoubleMath {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DoubleMath {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !self.op.arities().contains(&arg_types.len()) || !arg_types.iter().all(is_numeric) {
            return plan_err!(
                "Function '{}' does not accept parameters ({})",
                self.op.name().to_uppercase(),
                type_list(arg_types)
            );
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let arrays = arrays
            .iter()
            .map(|a| cast(a, &DataType::Float64))
            .collect::<Result<Vec<_>, _>>()?;
        let doubles: Vec<&Float64Array> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let out: Float64Array = (0..rows)
            .map(|i| {
                let mut values = Vec::with_capacity(doubles.len());
                for d in &doubles {
                    if d.is_null(i) {
                        return None;
                    }
                    values.push(d.value(i));
                }
                Some(self.op.apply(&values))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn type_list(types: &[DataType]) -> String {
    types
        .iter()
        .map(|t| {
            sluice_engine::schema::SqlType::from_arrow(t)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| t.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ROUND` or `TRUNC`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RoundTrunc {
    truncate: bool,
    signature: Signature,
}

impl RoundTrunc {
    pub fn new(truncate: bool) -> Self {
        RoundTrunc {
            truncate,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn upper(&self) -> &'static str {
        if self.truncate { "TRUNC" } else { "ROUND" }
    }
}

impl ScalarUDFImpl for RoundTrunc {
    fn name(&self) -> &str {
        if self.truncate { "trunc" } else { "round" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let value = match arg_types.first() {
            Some(DataType::Int8 | DataType::Int16 | DataType::Int32) => DataType::Int32,
            Some(DataType::Int64) => DataType::Int64,
            Some(d @ DataType::Decimal128(_, _)) => d.clone(),
            Some(DataType::Float32 | DataType::Float64 | DataType::Null) => DataType::Float64,
            _ => {
                return plan_err!(
                    "Function '{}' does not accept parameters ({})",
                    self.upper(),
                    type_list(arg_types)
                );
            }
        };
        match arg_types.get(1..) {
            Some([]) => Ok(vec![value]),
            Some([places]) if places.is_integer() || *places == DataType::Null => {
                Ok(vec![value, DataType::Int32])
            }
            _ => plan_err!(
                "Function '{}' does not accept parameters ({})",
                self.upper(),
                type_list(arg_types)
            ),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let with_places = arg_types.len() == 2;
        Ok(match arg_types.first() {
            Some(DataType::Float64) if !with_places => DataType::Int64,
            Some(DataType::Decimal128(p, s)) if !with_places => {
                DataType::Decimal128(p.saturating_sub(s.max(&0).unsigned_abs()).max(1), 0)
            }
            Some(t) => t.clone(),
            None => return plan_err!("{} takes a value and optional places", self.upper()),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let return_type = args.return_field.data_type().clone();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(value) = arrays.first() else {
            return exec_err!("{} takes a value", self.upper());
        };
        let places: Vec<Option<i32>> = match arrays.get(1) {
            Some(p) => {
                let p = cast(p, &DataType::Int32)?;
                p.as_primitive::<Int32Type>().iter().collect()
            }
            None => vec![Some(0); rows],
        };
        let truncate = self.truncate;
        let out: ArrayRef = match (value.data_type(), &return_type) {
            (DataType::Float64, DataType::Int64) => {
                let v = value.as_primitive::<Float64Type>();
                Arc::new(
                    v.iter()
                        .map(|x| x.map(|x| whole_double(x, truncate)))
                        .collect::<Int64Array>(),
                )
            }
            (DataType::Float64, _) => {
                let v = value.as_primitive::<Float64Type>();
                Arc::new(
                    v.iter()
                        .zip(&places)
                        .map(|(x, p)| Some(round_double(x?, (*p)?, truncate)))
                        .collect::<Float64Array>(),
                )
            }
            (DataType::Int32, _) => {
                let v = value.as_primitive::<Int32Type>();
                Arc::new(
                    v.iter()
                        .zip(&places)
                        .map(|(x, p)| {
                            let r = round_unscaled(i128::from(x?), 0, (*p)?, truncate)?;
                            i32::try_from(r).ok()
                        })
                        .collect::<Int32Array>(),
                )
            }
            (DataType::Int64, _) => {
                let v = value.as_primitive::<Int64Type>();
                Arc::new(
                    v.iter()
                        .zip(&places)
                        .map(|(x, p)| {
                            let r = round_unscaled(i128::from(x?), 0, (*p)?, truncate)?;
                            i64::try_from(r).ok()
                        })
                        .collect::<Int64Array>(),
                )
            }
            (DataType::Decimal128(_, scale), DataType::Decimal128(out_p, out_s)) => {
                let v = value.as_primitive::<Decimal128Type>();
                let (scale, out_s) = (i32::from(*scale), i32::from(*out_s));
                let out: Decimal128Array = v
                    .iter()
                    .zip(&places)
                    .map(|(x, p)| {
                        let places = if arrays.len() == 2 { (*p)? } else { 0 };
                        let rounded = round_unscaled(x?, scale, places, truncate)?;
                        // Back to the result's scale.
                        let r = rescale(rounded, scale, out_s)?;
                        Decimal128Type::is_valid_decimal_precision(r, *out_p).then_some(r)
                    })
                    .collect();
                Arc::new(out.with_precision_and_scale(*out_p, out_s as i8)?)
            }
            (other, _) => return exec_err!("{} cannot take {other}", self.upper()),
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `ROUND(double)` (Java's `Math.round`, halves up) or `TRUNC(double)`.
fn whole_double(x: f64, truncate: bool) -> i64 {
    // `as` saturates at the BIGINT range and maps NaN to 0, as Java does.
    if truncate {
        x.trunc() as i64
    } else {
        (x + 0.5).floor() as i64
    }
}

/// Rounds (or truncates) `unscaled / 10^scale` to `places` decimal places,
/// keeping `scale`: halves go toward positive infinity. `None` on overflow.
fn round_unscaled(unscaled: i128, scale: i32, places: i32, truncate: bool) -> Option<i128> {
    let drop = scale.checked_sub(places)?;
    if drop <= 0 {
        return Some(unscaled);
    }
    if drop > 38 {
        return Some(0);
    }
    let unit = 10i128.checked_pow(drop as u32)?;
    let (q, r) = (unscaled / unit, unscaled % unit);
    let q = if truncate {
        q
    } else if r > 0 && r.checked_mul(2)? >= unit {
        q + 1
    } else if r < 0 && r.checked_mul(-2)? > unit {
        q - 1
    } else {
        q
    };
    q.checked_mul(unit)
}

/// `unscaled` at scale `from` re-expressed at scale `to`; `None` when that
/// loses digits or overflows.
fn rescale(unscaled: i128, from: i32, to: i32) -> Option<i128> {
    if to >= from {
        unscaled.checked_mul(10i128.checked_pow((to - from) as u32)?)
    } else {
        let unit = 10i128.checked_pow((from - to) as u32)?;
        (unscaled % unit == 0).then_some(unscaled / unit)
    }
}

/// Rounds a double by its shortest decimal form, as Java's
/// `BigDecimal.valueOf(x)` sees it.
fn round_double(x: f64, places: i32, truncate: bool) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let Some((unscaled, scale)) = shortest_decimal(x) else {
        return x;
    };
    match round_unscaled(unscaled, scale, places, truncate) {
        Some(r) => format!("{r}e{}", -scale).parse().unwrap_or(x),
        None => x,
    }
}

/// `x` as `unscaled / 10^scale` from its shortest round-tripping digits.
fn shortest_decimal(x: f64) -> Option<(i128, i32)> {
    let text = format!("{x:e}");
    let (mantissa, exponent) = text.split_once('e')?;
    let exponent: i32 = exponent.parse().ok()?;
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let fraction_digits = digits.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
    let unscaled: i128 = digits.replace('.', "").parse().ok()?;
    Some((
        if negative { -unscaled } else { unscaled },
        fraction_digits - exponent,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_round_half_up_by_decimal_form() {
        assert_eq!(round_double(1.005, 2, false), 1.01);
        assert_eq!(round_double(-1.5, 0, false), -1.0);
        assert_eq!(round_double(-1.7, 0, false), -2.0);
        assert_eq!(round_double(12345.678, -1, false), 12350.0);
        assert_eq!(round_double(-12345.678, -2, false), -12300.0);
        assert_eq!(round_double(1.234567, 10, false), 1.234567);
        assert_eq!(round_double(-12345.678, 1, true), -12345.6);
        assert_eq!(whole_double(-1.5, false), -1);
        assert_eq!(whole_double(1.5, false), 2);
        assert_eq!(whole_double(-1.7, true), -1);
    }

    #[test]
    fn decimals_keep_their_scale() {
        // 1.2345 at scale 4, to 2 places: 1.2300.
        assert_eq!(round_unscaled(12345, 4, 2, false), Some(12300));
        assert_eq!(round_unscaled(-15, 1, 0, false), Some(-10));
        assert_eq!(rescale(12300, 4, 0), None);
        assert_eq!(rescale(120000, 4, 0), Some(12));
    }

    #[test]
    fn logarithms_follow_java() {
        assert!(MathOp::Log.apply(&[1.0, 13.0]).is_nan());
        assert!(MathOp::Log.apply(&[0.0, 13.0]).is_nan());
        assert_eq!(MathOp::Log.apply(&[15.0, 0.0]), f64::NEG_INFINITY);
        assert!((MathOp::Log.apply(&[13.0]) - 2.5649493574615367).abs() < 1e-15);
    }
}

//! `GREATEST(...)` and `LEAST(...)`: the largest or smallest non-null
//! argument, with ksqlDB's overload resolution.
//!
//! ksqlDB offers one overload per type (INT, BIGINT, DOUBLE, DECIMAL,
//! STRING, BYTES, DATE, TIME, TIMESTAMP). Arguments of one type use that
//! overload (decimals widen to hold them all); otherwise the overloads
//! every argument converts to implicitly (INT to BIGINT, DECIMAL or
//! DOUBLE; BIGINT to DECIMAL or DOUBLE; DECIMAL to DOUBLE; a string to a
//! date, time or timestamp) must be exactly one, or the call is
//! ambiguous, as ksqlDB reports. Nulls are skipped.

use std::cmp::Ordering;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};

use super::rowwise::{RowKind, type_names};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extreme {
    greatest: bool,
}

impl Extreme {
    pub const ALL: [Extreme; 2] = [Extreme { greatest: true }, Extreme { greatest: false }];
}

/// The overloads, by how their parameter type is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overload {
    Int,
    Bigint,
    Double,
    Decimal,
    String,
    Bytes,
    Date,
    Time,
    Timestamp,
}

const OVERLOADS: [Overload; 9] = [
    Overload::Int,
    Overload::Bigint,
    Overload::Double,
    Overload::Decimal,
    Overload::String,
    Overload::Bytes,
    Overload::Date,
    Overload::Time,
    Overload::Timestamp,
];

impl Overload {
    fn exactly(self, t: &DataType) -> bool {
        match self {
            Overload::Int => *t == DataType::Int32,
            Overload::Bigint => *t == DataType::Int64,
            Overload::Double => *t == DataType::Float64,
            Overload::Decimal => matches!(t, DataType::Decimal128(_, _)),
            Overload::String => {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            }
            Overload::Bytes => matches!(t, DataType::Binary | DataType::LargeBinary),
            Overload::Date => *t == DataType::Date32,
            Overload::Time => matches!(t, DataType::Time32(_)),
            Overload::Timestamp => matches!(t, DataType::Timestamp(_, _)),
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        let text = Overload::String.exactly(t);
        self.exactly(t)
            || match self {
                Overload::Bigint => *t == DataType::Int32,
                Overload::Decimal => matches!(t, DataType::Int32 | DataType::Int64),
                Overload::Double => {
                    matches!(
                        t,
                        DataType::Int32 | DataType::Int64 | DataType::Decimal128(_, _)
                    )
                }
                Overload::Date | Overload::Time | Overload::Timestamp => text,
                _ => false,
            }
    }

    /// The parameter type for these arguments.
    fn parameter_type(self, args: &[&DataType]) -> DataType {
        match self {
            Overload::Int => DataType::Int32,
            Overload::Bigint => DataType::Int64,
            Overload::Double => DataType::Float64,
            Overload::Decimal => {
                // Wide enough for every argument's integer digits and scale.
                let (mut digits, mut scale) = (1i16, 0i16);
                for t in args {
                    let (p, s) = match t {
                        DataType::Decimal128(p, s) => (i16::from(*p), i16::from(*s)),
                        DataType::Int32 => (10, 0),
                        _ => (19, 0),
                    };
                    digits = digits.max(p - s);
                    scale = scale.max(s);
                }
                DataType::Decimal128((digits + scale).clamp(1, 38) as u8, scale.min(38) as i8)
            }
            Overload::String => DataType::Utf8,
            Overload::Bytes => DataType::Binary,
            Overload::Date => DataType::Date32,
            Overload::Time => DataType::Time32(datafusion::arrow::datatypes::TimeUnit::Millisecond),
            Overload::Timestamp => {
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None)
            }
        }
    }
}

impl RowKind for Extreme {
    fn name(&self) -> &'static str {
        if self.greatest { "greatest" } else { "least" }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let typed: Vec<&DataType> = args.iter().filter(|t| **t != DataType::Null).collect();
        if args.is_empty() {
            return plan_err!("Function '{}' does not accept parameters ().", self.name());
        }
        let ambiguous = || {
            plan_err!(
                "Function '{}' cannot be resolved due to ambiguous method parameters ({}).",
                self.name(),
                type_names(args)
            )
        };
        if typed.is_empty() {
            return ambiguous();
        }
        let exact: Vec<Overload> = OVERLOADS
            .into_iter()
            .filter(|o| typed.iter().all(|t| o.exactly(t)))
            .collect();
        let overload = match exact.as_slice() {
            [one] => *one,
            _ => {
                let candidates: Vec<Overload> = OVERLOADS
                    .into_iter()
                    .filter(|o| typed.iter().all(|t| o.accepts(t)))
                    .collect();
                match candidates.as_slice() {
                    [one] => *one,
                    [] => {
                        return plan_err!(
                            "Function '{}' does not accept parameters ({}).",
                            self.name(),
                            type_names(args)
                        );
                    }
                    _ => return ambiguous(),
                }
            }
        };
        Ok(vec![overload.parameter_type(&typed); args.len()])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Null))
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let want = if self.greatest {
            Ordering::Greater
        } else {
            Ordering::Less
        };
        Ok(args
            .iter()
            .filter(|v| !v.is_null())
            .cloned()
            .reduce(|best, v| {
                if v.partial_cmp(&best) == Some(want) {
                    v
                } else {
                    best
                }
            })
            .unwrap_or(ScalarValue::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREATEST: Extreme = Extreme { greatest: true };

    #[test]
    fn resolves_overloads_as_ksqldb() {
        assert_eq!(
            GREATEST.coerce(&[DataType::Int32, DataType::Null]).unwrap(),
            vec![DataType::Int32; 2]
        );
        // INT and BIGINT fit BIGINT, DECIMAL and DOUBLE alike: ambiguous.
        assert!(
            GREATEST
                .coerce(&[DataType::Int32, DataType::Int64])
                .is_err()
        );
        assert_eq!(
            GREATEST
                .coerce(&[DataType::Int32, DataType::Float64])
                .unwrap(),
            vec![DataType::Float64; 2]
        );
        assert_eq!(
            GREATEST
                .coerce(&[DataType::Decimal128(9, 2), DataType::Decimal128(7, 6)])
                .unwrap(),
            vec![DataType::Decimal128(13, 6); 2]
        );
        assert!(GREATEST.coerce(&[DataType::Utf8, DataType::Int32]).is_err());
        assert!(GREATEST.coerce(&[DataType::Null, DataType::Null]).is_err());
    }

    #[test]
    fn skips_nulls() {
        let out = GREATEST
            .call(
                &[
                    ScalarValue::Int32(None),
                    ScalarValue::Int32(Some(3)),
                    ScalarValue::Int32(Some(7)),
                ],
                &DataType::Int32,
            )
            .unwrap();
        assert_eq!(out, ScalarValue::Int32(Some(7)));
    }
}

//! `AS_VALUE(x)`: ksqlDB's way to copy a key column into the value. The
//! value is `x` itself; what matters is that the planner sees a function
//! call, not the key expression, so the copy becomes a value column.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsValue {
    signature: Signature,
}

impl Default for AsValue {
    fn default() -> Self {
        AsValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AsValue {
    fn name(&self) -> &str {
        "as_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => Ok(t.clone()),
            _ => plan_err!("AS_VALUE takes exactly one argument"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match <[ColumnarValue; 1]>::try_from(args.args) {
            Ok([value]) => Ok(value),
            Err(_) => plan_err!("AS_VALUE takes exactly one argument"),
        }
    }
}

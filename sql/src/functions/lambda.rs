//! ksqlDB's higher-order functions over arrays and maps: `TRANSFORM`,
//! `FILTER` and `REDUCE`, whose last arguments are lambdas
//! (`x => x + 1`, `(k, v) => v > 0`, `(state, x) => state + x`).
//!
//! The planner compiles each lambda body into a physical expression over a
//! small schema: the lambda's parameters, then the outer columns the body
//! uses (passed to the UDF as extra arguments). [`LambdaUdf`] evaluates the
//! body over each row's elements: a whole array at once for `TRANSFORM`
//! and `FILTER`, element by element for `REDUCE`.
//!
//! As in ksqlDB, arithmetic on a null inside a lambda is an error that
//! makes the whole call null for that row ([`strict_arithmetic`]); a null
//! array or map gives null (`REDUCE`: the initial state); a `TRANSFORM` of
//! a map that produces the same key twice is an error.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, MapArray, RecordBatch, RecordBatchOptions,
    StructArray, UInt32Array, new_empty_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{cast, concat, filter, take};
use datafusion::arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{HashSet, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, Case, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

use super::rowwise::{RowKind, RowUdf};

/// Which higher-order function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LambdaKind {
    Transform,
    Filter,
    Reduce,
}

impl LambdaKind {
    pub fn of(name: &str) -> Option<LambdaKind> {
        match name.to_uppercase().as_str() {
            "TRANSFORM" => Some(LambdaKind::Transform),
            "FILTER" => Some(LambdaKind::Filter),
            "REDUCE" => Some(LambdaKind::Reduce),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LambdaKind::Transform => "transform",
            LambdaKind::Filter => "filter",
            LambdaKind::Reduce => "reduce",
        }
    }
}

/// Numbers lambda parameter fields apart, nested lambdas included.
static NEXT_LAMBDA: AtomicUsize = AtomicUsize::new(0);

/// The field names of a new lambda's parameters, by position.
pub fn parameter_fields(count: usize) -> Vec<String> {
    let id = NEXT_LAMBDA.fetch_add(1, Ordering::Relaxed);
    (0..count)
        .map(|i| format!("KSQL_LAMBDA_{id}_{i}"))
        .collect()
}

/// A call of a higher-order function with its compiled lambda bodies.
#[derive(Debug)]
pub struct LambdaUdf {
    kind: LambdaKind,
    /// One body; two for `TRANSFORM` of a map (new key, new value).
    bodies: Vec<Arc<dyn PhysicalExpr>>,
    /// The parameters, then the captured outer columns.
    body_schema: SchemaRef,
    return_type: DataType,
    signature: Signature,
}

impl PartialEq for LambdaUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.body_schema == other.body_schema
            && self.return_type == other.return_type
            && self.bodies.len() == other.bodies.len()
            && self
                .bodies
                .iter()
                .zip(&other.bodies)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for LambdaUdf {}

impl Hash for LambdaUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.body_schema.hash(state);
        self.return_type.hash(state);
    }
}

impl LambdaUdf {
    pub fn new(
        kind: LambdaKind,
        bodies: Vec<Arc<dyn PhysicalExpr>>,
        body_schema: SchemaRef,
        return_type: DataType,
    ) -> Self {
        LambdaUdf {
            kind,
            bodies,
            body_schema,
            return_type,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// A batch of `rows` rows over the body schema: the parameter
    /// columns, then the captured values of input row `row`, repeated.
    fn body_batch(
        &self,
        params: Vec<ArrayRef>,
        captured: &[ArrayRef],
        row: usize,
        rows: usize,
    ) -> Result<RecordBatch> {
        let repeat = UInt32Array::from(vec![row as u32; rows]);
        let mut columns = Vec::with_capacity(self.body_schema.fields().len());
        for (array, field) in params.into_iter().zip(self.body_schema.fields()) {
            columns.push(if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type())?
            });
        }
        for c in captured {
            columns.push(take(c.as_ref(), &repeat, None)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.body_schema.clone(),
            columns,
            &options,
        )?)
    }

    fn eval(&self, body: usize, batch: &RecordBatch) -> Result<ArrayRef> {
        let Some(expr) = self.bodies.get(body) else {
            return exec_err!("{} lacks lambda {body}", self.kind.name());
        };
        expr.evaluate(batch)?.into_array(batch.num_rows())
    }

    /// The parameter columns of one row's elements: the array's items, or
    /// a map's keys and values.
    fn elements(collection: &ArrayRef, row: usize) -> Result<Vec<ArrayRef>> {
        match collection.data_type() {
            DataType::List(_) => Ok(vec![collection.as_list::<i32>().value(row)]),
            DataType::Map(_, _) => {
                let entries = collection.as_map().value(row);
                Ok(vec![entries.column(0).clone(), entries.column(1).clone()])
            }
            other => exec_err!("lambda functions take an array or a map, not {other}"),
        }
    }

    fn transform_or_filter(
        &self,
        collection: &ArrayRef,
        captured: &[ArrayRef],
    ) -> Result<ArrayRef> {
        let is_map = matches!(collection.data_type(), DataType::Map(_, _));
        let mut keys: Vec<ArrayRef> = Vec::new();
        let mut values: Vec<ArrayRef> = Vec::new();
        let mut lengths = Vec::with_capacity(collection.len());
        for row in 0..collection.len() {
            if collection.is_null(row) {
                lengths.push(0);
                continue;
            }
            let elements = Self::elements(collection, row)?;
            let count = elements[0].len();
            let batch = self.body_batch(elements.clone(), captured, row, count)?;
            match self.kind {
                LambdaKind::Filter => {
                    let keep = self.eval(0, &batch)?;
                    let Some(keep) = keep.as_any().downcast_ref::<BooleanArray>() else {
                        return exec_err!("FILTER's lambda must return a BOOLEAN");
                    };
                    // A null verdict drops the element.
                    let keep: BooleanArray = keep.iter().map(|b| Some(b == Some(true))).collect();
                    let kept = filter(elements[0].as_ref(), &keep)?;
                    lengths.push(kept.len());
                    if is_map {
                        values.push(filter(elements[1].as_ref(), &keep)?);
                    }
                    keys.push(kept);
                }
                _ => {
                    let first = self.eval(0, &batch)?;
                    if is_map {
                        let second = self.eval(1, &batch)?;
                        let mut seen: HashSet<ScalarValue> = HashSet::default();
                        for i in 0..first.len() {
                            if !seen.insert(ScalarValue::try_from_array(&first, i)?) {
                                return exec_err!("TRANSFORM produced a duplicate map key");
                            }
                        }
                        values.push(second);
                    }
                    lengths.push(first.len());
                    keys.push(first);
                }
            }
        }
        let nulls = collection.logical_nulls();
        let offsets = OffsetBuffer::from_lengths(lengths);
        match &self.return_type {
            DataType::List(item) => {
                let values = concat_or_empty(&keys, item.data_type())?;
                let values = cast(&values, item.data_type())?;
                Ok(Arc::new(ListArray::try_new(
                    item.clone(),
                    offsets,
                    values,
                    nulls,
                )?))
            }
            DataType::Map(entries, sorted) => {
                let DataType::Struct(fields) = entries.data_type() else {
                    return exec_err!("map entries are not a struct");
                };
                let (Some(key_field), Some(value_field)) = (fields.first(), fields.get(1)) else {
                    return exec_err!("map entries need a key and a value");
                };
                let key_values = cast(
                    &concat_or_empty(&keys, key_field.data_type())?,
                    key_field.data_type(),
                )?;
                let value_values = cast(
                    &concat_or_empty(&values, value_field.data_type())?,
                    value_field.data_type(),
                )?;
                if key_values.null_count() > 0 {
                    return exec_err!("TRANSFORM produced a null map key");
                }
                let entries_array = StructArray::try_new(
                    Fields::from(vec![
                        key_field.as_ref().clone(),
                        value_field.as_ref().clone(),
                    ]),
                    vec![key_values, value_values],
                    None,
                )?;
                Ok(Arc::new(MapArray::try_new(
                    entries.clone(),
                    offsets,
                    entries_array,
                    nulls.map(|n| NullBuffer::new(n.into_inner())),
                    *sorted,
                )?))
            }
            other => exec_err!("{} cannot return {other}", self.kind.name()),
        }
    }

    fn reduce(
        &self,
        collection: &ArrayRef,
        initial: &ArrayRef,
        captured: &[ArrayRef],
    ) -> Result<ArrayRef> {
        let mut results = Vec::with_capacity(collection.len());
        for row in 0..collection.len() {
            let mut state = ScalarValue::try_from_array(initial, row)?;
            if !collection.is_null(row) {
                let elements = Self::elements(collection, row)?;
                for i in 0..elements[0].len() {
                    let mut params = vec![state.to_array()?];
                    params.extend(elements.iter().map(|e| e.slice(i, 1)));
                    let batch = self.body_batch(params, captured, row, 1)?;
                    let next = self.eval(0, &batch)?;
                    state = ScalarValue::try_from_array(&next, 0)?.cast_to(&self.return_type)?;
                }
            }
            results.push(if state.is_null() {
                ScalarValue::try_new_null(&self.return_type)?
            } else {
                state.cast_to(&self.return_type)?
            });
        }
        if results.is_empty() {
            return Ok(new_empty_array(&self.return_type));
        }
        ScalarValue::iter_to_array(results)
    }
}

fn concat_or_empty(parts: &[ArrayRef], data_type: &DataType) -> Result<ArrayRef> {
    if parts.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(concat(&refs)?)
}

impl ScalarUDFImpl for LambdaUdf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(collection) = arrays.first() else {
            return exec_err!("{} takes an array or a map", self.kind.name());
        };
        let out = match self.kind {
            LambdaKind::Reduce => {
                let Some(initial) = arrays.get(1) else {
                    return exec_err!("REDUCE takes an initial state");
                };
                self.reduce(collection, initial, &arrays[2..])?
            }
            _ => self.transform_or_filter(collection, &arrays[1..])?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Makes arithmetic on a null an error, as it is in ksqlDB's lambdas:
/// `a + b` becomes `CASE WHEN a IS NULL OR b IS NULL THEN
/// null_operand(a + b) ELSE a + b END`; `AND`/`OR` short-circuit so
/// that such an error on their right side only counts when it is
/// evaluated.
pub fn strict_arithmetic(e: Expr) -> Result<Expr> {
    Ok(e.transform_up(|node| {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &node else {
            return Ok(Transformed::no(node));
        };
        // Java's && and || do not evaluate their right side when the left
        // decides: a failing right side must not fail the row then.
        if matches!(op, Operator::And | Operator::Or) {
            let decided = if *op == Operator::And {
                Expr::Not(left.clone())
            } else {
                (**left).clone()
            };
            let outcome = datafusion::logical_expr::lit(*op == Operator::Or);
            return Ok(Transformed::yes(Expr::Case(Case::new(
                None,
                vec![(Box::new(decided), Box::new(outcome))],
                Some(Box::new(node)),
            ))));
        }
        if !matches!(
            op,
            Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo
        ) {
            return Ok(Transformed::no(node));
        }
        let any_null = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(Expr::IsNull(left.clone())),
            Operator::Or,
            Box::new(Expr::IsNull(right.clone())),
        ));
        let fail = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::from(RowUdf::new(NullOperand))),
            vec![node.clone()],
        ));
        Ok(Transformed::yes(Expr::Case(Case::new(
            None,
            vec![(Box::new(any_null), Box::new(fail))],
            Some(Box::new(node)),
        ))))
    })?
    .data)
}

/// Fails the row: the error of arithmetic on a null inside a lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NullOperand;

impl RowKind for NullOperand {
    fn name(&self) -> &'static str {
        "null_operand"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(args.to_vec())
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Null))
    }

    fn call(&self, _args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        exec_err!("arithmetic on a null value in a lambda")
    }

    /// The error must fail the whole higher-order call.
    fn errors_are_null(&self) -> bool {
        false
    }
}

/// Compiles a lambda body over `schema`: coerced but not simplified, as
/// the simplifier would fold the short-circuit `CASE`s of
/// [`strict_arithmetic`] back into eager boolean logic.
pub fn compile_body(
    state: &datafusion::execution::SessionState,
    body: Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn PhysicalExpr>> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(state.config_options().clone())
        .build();
    let coerced = ExprSimplifier::new(context).coerce(body, schema)?;
    state.create_physical_expr(coerced, schema)
}

/// The result type of `TRANSFORM` over a map.
pub fn map_type(key: DataType, value: DataType) -> DataType {
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

//! Expressions: ksqlDB's SQL expressions to DataFusion logical [`Expr`]s.
//!
//! A [`Scope`] says which columns a clause can see (and under which source
//! alias); [`ExprPlanner`] resolves names against it and maps ksqlDB's
//! operators and functions onto DataFusion's. [`ksql_text`] renders an
//! expression as ksqlDB prints it in messages: `(F1 + F2)`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, InList, Like, ScalarFunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Case, Cast, Expr, ExprSchemable, Operator, ScalarUDF, lit,
};
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CastKind, DataType as SqlDataType, Expr as SqlExpr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, LambdaFunction, LambdaSyntax, OneOrManyWithParens,
    Subscript, TrimWhereField, UnaryOperator, Value,
};
use sluice_engine::format::decimal::parse_decimal;
use sluice_engine::schema::{ColumnKind, SqlType};

use crate::error::{Result, SqlError};
use crate::functions::FunctionRegistry;
use crate::functions::datetime::{UNIT_FUNCTIONS, parse_partial_timestamp, unit_millis};
use crate::functions::java_string::{JavaCast, JavaString};
use crate::functions::lambda::{
    LambdaKind, LambdaUdf, compile_body, map_type, parameter_fields, strict_arithmetic,
};
use crate::functions::rowwise::RowUdf;
use crate::functions::string::{EscapedPattern, rewrite_escape};
use crate::parser::normalize_ident;
use crate::parser::types::parse_type_str;
use crate::{not_supported, statement_err};

/// A column visible to expressions.
#[derive(Debug, Clone)]
pub struct ScopeColumn {
    /// The source alias it can be qualified with.
    pub qualifier: Option<String>,
    pub name: String,
    /// Its field name in the batch.
    pub field: String,
    pub kind: Option<ColumnKind>,
}

/// The columns one clause can reference, over one batch schema.
#[derive(Debug, Clone)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
    pub arrow: SchemaRef,
    pub df: DFSchema,
}

impl Scope {
    pub fn new(columns: Vec<ScopeColumn>, arrow: SchemaRef) -> Result<Self> {
        let df = DFSchema::try_from(arrow.as_ref().clone())?;
        Ok(Scope { columns, arrow, df })
    }

    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> Option<&ScopeColumn> {
        self.columns.iter().find(|c| {
            c.name == name && (qualifier.is_none() || c.qualifier.as_deref() == qualifier)
        })
    }

    pub fn by_field(&self, field: &str) -> Option<&ScopeColumn> {
        self.columns.iter().find(|c| c.field == field)
    }
}

/// Converts expressions of one clause.
pub struct ExprPlanner<'a> {
    pub scope: &'a Scope,
    pub functions: &'a FunctionRegistry,
    /// Names the clause in "cannot be resolved" messages (`SELECT`, `WHERE`).
    pub clause: &'static str,
    pub allow_aggregates: bool,
}

fn column(field: &str) -> Expr {
    Expr::Column(Column::from_name(field))
}

impl ExprPlanner<'_> {
    pub fn convert(&self, e: &SqlExpr) -> Result<Expr> {
        Ok(match e {
            SqlExpr::Identifier(ident) => {
                at_position(ident, self.column_ref(None, &normalize_ident(ident)))?
            }
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => at_position(
                &parts[0],
                self.column_ref(
                    Some(&normalize_ident(&parts[0])),
                    &normalize_ident(&parts[1]),
                ),
            )?,
            SqlExpr::Value(v) => literal(&v.value)?,
            SqlExpr::Nested(inner) => self.convert(inner)?,
            SqlExpr::UnaryOp { op, expr } => {
                let inner = self.convert(expr)?;
                match op {
                    UnaryOperator::Minus => match inner {
                        Expr::Literal(v, _) => Expr::Literal(negate(v)?, None),
                        other => Expr::Negative(Box::new(other)),
                    },
                    UnaryOperator::Plus => inner,
                    UnaryOperator::Not => Expr::Not(Box::new(inner)),
                    other => return not_supported!("operator {other}"),
                }
            }
            SqlExpr::BinaryOp { left, op, right } => self.binary(e, left, op, right)?,
            SqlExpr::IsNull(inner) => Expr::IsNull(Box::new(self.convert(inner)?)),
            SqlExpr::IsNotNull(inner) => Expr::IsNotNull(Box::new(self.convert(inner)?)),
            SqlExpr::IsTrue(inner) => Expr::IsTrue(Box::new(self.convert(inner)?)),
            SqlExpr::IsFalse(inner) => Expr::IsFalse(Box::new(self.convert(inner)?)),
            SqlExpr::IsDistinctFrom(a, b) => Expr::BinaryExpr(BinaryExpr::new(
                Box::new(self.convert(a)?),
                Operator::IsDistinctFrom,
                Box::new(self.convert(b)?),
            )),
            SqlExpr::IsNotDistinctFrom(a, b) => Expr::BinaryExpr(BinaryExpr::new(
                Box::new(self.convert(a)?),
                Operator::IsNotDistinctFrom,
                Box::new(self.convert(b)?),
            )),
            SqlExpr::Between {
                expr,
                negated,
                low,
                high,
            } => null_is_false(Expr::Between(Between::new(
                Box::new(self.convert(expr)?),
                *negated,
                Box::new(self.convert_compared(low, expr)?),
                Box::new(self.convert_compared(high, expr)?),
            ))),
            SqlExpr::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated)?,
            SqlExpr::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char,
            } => {
                let escape = match escape_char.as_ref().map(|v| &v.value) {
                    None => None,
                    Some(Value::SingleQuotedString(s)) if s.chars().count() == 1 => {
                        s.chars().next()
                    }
                    Some(other) => {
                        return statement_err!("ESCAPE must be a single character, got {other}");
                    }
                };
                let (pattern, escape) = match (&**pattern, escape) {
                    // DataFusion escapes with backslash only: rewrite a
                    // literal pattern's own escape character into it.
                    (SqlExpr::Value(v), Some(esc)) if esc != '\\' => match &v.value {
                        Value::SingleQuotedString(text) => (lit(rewrite_escape(text, esc)), None),
                        _ => (self.convert(pattern)?, Some(esc)),
                    },
                    // A computed pattern is rewritten row by row.
                    (_, Some(esc)) if esc != '\\' => (
                        Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::new(ScalarUDF::from(RowUdf::new(EscapedPattern(esc)))),
                            vec![self.convert(pattern)?],
                        )),
                        None,
                    ),
                    _ => (self.convert(pattern)?, escape),
                };
                null_is_false(Expr::Like(Like::new(
                    *negated,
                    Box::new(self.convert(expr)?),
                    Box::new(pattern),
                    escape,
                    false,
                )))
            }
            SqlExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case(Case::new(
                operand
                    .as_ref()
                    .map(|o| self.convert(o).map(Box::new))
                    .transpose()?,
                conditions
                    .iter()
                    .map(|w| {
                        Ok((
                            Box::new(self.convert(&w.condition)?),
                            Box::new(self.convert(&w.result)?),
                        ))
                    })
                    .collect::<Result<_>>()?,
                else_result
                    .as_ref()
                    .map(|x| self.convert(x).map(Box::new))
                    .transpose()?,
            )),
            SqlExpr::Cast {
                kind: CastKind::Cast,
                expr,
                data_type,
                ..
            } => {
                let target = match data_type {
                    SqlDataType::Custom(name, _) => {
                        parse_type_str(name.to_string().trim_matches('"'))?
                    }
                    other => parse_type_str(&other.to_string())?,
                };
                let value = self.convert(expr)?;
                let source = self.type_of(&value)?;
                let target_type = target.to_arrow();
                if matches!(
                    source,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) && target_type == DataType::Boolean
                {
                    // Java's Boolean.parseBoolean: "true" in any case, else
                    // false.
                    let lower = self.call_internal("lower", vec![value])?;
                    return Ok(lower.eq(lit("true")));
                }
                let java_text = source.is_nested()
                    || matches!(
                        source,
                        DataType::Float64 | DataType::Float32 | DataType::Timestamp(_, _)
                    );
                if java_text && target_type == DataType::Utf8 {
                    // Collections, doubles and timestamps render as ksqlDB's
                    // Java code writes them.
                    return Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(ScalarUDF::from(RowUdf::new(JavaString))),
                        vec![value],
                    )));
                }
                if target_type.is_nested()
                    && source != DataType::Null
                    && type_class(&source) != type_class(&target_type)
                {
                    return statement_err!(
                        "Cast of {} to {target} is not supported",
                        type_name(&source)
                    );
                }
                if source.is_nested() && target_type.is_nested() && source != target_type {
                    return Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(ScalarUDF::from(RowUdf::new(JavaCast(target_type)))),
                        vec![value],
                    )));
                }
                Expr::Cast(Cast::new(Box::new(value), target_type))
            }
            SqlExpr::Lambda(l) if l.syntax == LambdaSyntax::Arrow => {
                self.convert(&desugar_arrow(l)?)?
            }
            SqlExpr::Function(f) => self.function(e, f)?,
            SqlExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.convert(expr)?];
                args.extend(
                    substring_from
                        .iter()
                        .map(|x| self.convert(x))
                        .collect::<Result<Vec<_>>>()?,
                );
                args.extend(
                    substring_for
                        .iter()
                        .map(|x| self.convert(x))
                        .collect::<Result<Vec<_>>>()?,
                );
                self.call_scalar("SUBSTRING", args)?
            }
            SqlExpr::Ceil { expr, .. } => self.call_scalar("CEIL", vec![self.convert(expr)?])?,
            SqlExpr::Floor { expr, .. } => self.call_scalar("FLOOR", vec![self.convert(expr)?])?,
            SqlExpr::Trim {
                expr,
                trim_where,
                trim_what: None,
                trim_characters: None,
            } => {
                let name = match trim_where {
                    None | Some(TrimWhereField::Both) => "TRIM",
                    Some(TrimWhereField::Leading) => "LTRIM",
                    Some(TrimWhereField::Trailing) => "RTRIM",
                };
                self.call_scalar(name, vec![self.convert(expr)?])?
            }
            SqlExpr::CompoundFieldAccess { root, access_chain } => {
                let root = self.convert(root)?;
                self.access(root, access_chain)?
            }
            SqlExpr::Array(array) => {
                let items = array
                    .elem
                    .iter()
                    .map(|x| self.convert(x))
                    .collect::<Result<Vec<_>>>()?;
                let items = self.unify_structs(items)?;
                self.call_internal("make_array", items)?
            }
            other => return not_supported!("expression {other}"),
        })
    }

    fn column_ref(&self, qualifier: Option<&str>, name: &str) -> Result<Expr> {
        if qualifier.is_none() {
            let owners: Vec<&str> = self
                .scope
                .columns
                .iter()
                .filter(|c| c.name == name)
                .map(|c| c.qualifier.as_deref())
                .collect::<Option<Vec<&str>>>()
                .unwrap_or_default();
            if owners.len() > 1 {
                let list: Vec<String> = owners.iter().map(|q| format!("{q}.{name}")).collect();
                let (init, last) = list.split_at(list.len() - 1);
                return statement_err!(
                    "Column '{name}' is ambiguous. Could be {}{}{}.",
                    init.join(", "),
                    if init.is_empty() { "" } else { " or " },
                    last.join("")
                );
            }
        }
        match self.scope.resolve(qualifier, name) {
            Some(c) => Ok(column(&c.field)),
            None => {
                let shown = match qualifier {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                };
                if self.clause == "PARTITION BY" {
                    return statement_err!(
                        "PARTITION BY column '{shown}' cannot be resolved. '{shown}' must be a column in the source schema since PARTITION BY is applied on the input."
                    );
                }
                statement_err!("{} column '{shown}' cannot be resolved.", self.clause)
            }
        }
    }

    fn type_of(&self, e: &Expr) -> Result<DataType> {
        Ok(e.get_type(&self.scope.df)?)
    }

    /// A call of one of our functions by its ksqlDB name.
    fn call_scalar(&self, name: &str, args: Vec<Expr>) -> Result<Expr> {
        let f = self
            .functions
            .scalar(name)
            .ok_or_else(|| SqlError::Statement(format!("function {name} is missing")))?;
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            f.clone(),
            args,
        )))
    }

    fn call_internal(&self, name: &str, args: Vec<Expr>) -> Result<Expr> {
        let f = self
            .functions
            .internal(name)
            .ok_or_else(|| SqlError::Statement(format!("internal function {name} is missing")))?;
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            f.clone(),
            args,
        )))
    }

    /// Applies subscripts (`[i]`, `['k']`) and `.field`s to `current`.
    fn access(&self, mut current: Expr, chain: &[AccessExpr]) -> Result<Expr> {
        for access in chain {
            current = match access {
                AccessExpr::Subscript(Subscript::Index { index }) => {
                    let index = self.convert(index)?;
                    self.subscript(current, index)?
                }
                AccessExpr::Dot(SqlExpr::Identifier(field)) => {
                    self.field(current, &normalize_ident(field))?
                }
                other => return not_supported!("access {other}"),
            };
        }
        Ok(current)
    }

    fn field(&self, base: Expr, name: &str) -> Result<Expr> {
        let DataType::Struct(fields) = self.type_of(&base)? else {
            return statement_err!(
                "Expected STRUCT type for '->' but got {}",
                self.type_of(&base)?
            );
        };
        // Field names match exactly, then ignoring case, as JSON fields do.
        let actual = fields
            .iter()
            .find(|f| f.name() == name)
            .or_else(|| fields.iter().find(|f| f.name().eq_ignore_ascii_case(name)))
            .map(|f| f.name().clone())
            .ok_or_else(|| {
                SqlError::Statement(format!("Could not find field '{name}' in struct"))
            })?;
        self.call_internal("get_field", vec![base, lit(actual)])
    }

    fn subscript(&self, base: Expr, index: Expr) -> Result<Expr> {
        match self.type_of(&base)? {
            DataType::Map(_, _) => {
                let values = self.call_internal("map_extract", vec![base, index])?;
                self.call_internal("array_element", vec![values, lit(1i64)])
            }
            DataType::List(_) | DataType::LargeList(_) => {
                self.call_internal("array_element", vec![base, index])
            }
            other => statement_err!(
                "Cannot subscript a value of type {}",
                SqlType::from_arrow(&other)
                    .map(|t| t.to_string())
                    .unwrap_or(other.to_string())
            ),
        }
    }

    fn binary(
        &self,
        whole: &SqlExpr,
        left: &SqlExpr,
        op: &BinaryOperator,
        right: &SqlExpr,
    ) -> Result<Expr> {
        let is_null = |e: &SqlExpr| matches!(e, SqlExpr::Value(v) if v.value == Value::Null);
        let comparison = matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        if comparison && (is_null(left) || is_null(right)) {
            return statement_err!(
                "Comparison with NULL not supported: {}",
                ksql_text(whole).trim_matches(|c| c == '(' || c == ')')
            );
        }
        if *op == BinaryOperator::Arrow {
            let base = self.convert(left)?;
            return match right {
                SqlExpr::Identifier(field) => self.field(base, &normalize_ident(field)),
                // `a->c[1]`: the field, then its subscripts.
                SqlExpr::CompoundFieldAccess { root, access_chain } => match root.as_ref() {
                    SqlExpr::Identifier(field) => {
                        let value = self.field(base, &normalize_ident(field))?;
                        self.access(value, access_chain)
                    }
                    other => statement_err!("Expected a field name after '->', got {other}"),
                },
                other => statement_err!("Expected a field name after '->', got {other}"),
            };
        }
        let l = self.convert_compared(left, right)?;
        let r = self.convert_compared(right, left)?;
        let operator = match op {
            BinaryOperator::Plus => {
                let strings = [&l, &r].iter().any(|e| {
                    matches!(
                        self.type_of(e),
                        Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    )
                });
                if strings {
                    return self.call_internal("concat", vec![l, r]);
                }
                Operator::Plus
            }
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Multiply => Operator::Multiply,
            BinaryOperator::Divide => Operator::Divide,
            BinaryOperator::Modulo => Operator::Modulo,
            BinaryOperator::Eq => Operator::Eq,
            BinaryOperator::NotEq => Operator::NotEq,
            BinaryOperator::Lt => Operator::Lt,
            BinaryOperator::LtEq => Operator::LtEq,
            BinaryOperator::Gt => Operator::Gt,
            BinaryOperator::GtEq => Operator::GtEq,
            BinaryOperator::And => Operator::And,
            BinaryOperator::Or => Operator::Or,
            BinaryOperator::StringConcat => return self.call_internal("concat", vec![l, r]),
            other => return not_supported!("operator {other}"),
        };
        if comparison {
            self.check_comparable(&l, &r, left, right, op)?;
        }
        let result = Expr::BinaryExpr(BinaryExpr::new(Box::new(l), operator, Box::new(r)));
        Ok(if comparison {
            null_is_false(result)
        } else {
            result
        })
    }

    /// ksqlDB rejects comparisons between unrelated types instead of
    /// casting one side.
    /// Array items that are structs of different shapes become structs of
    /// one shape, as ksqlDB unifies them: every field any of them has, in
    /// order of appearance, null where an item lacks it.
    fn unify_structs(&self, items: Vec<Expr>) -> Result<Vec<Expr>> {
        let types = items
            .iter()
            .map(|e| self.type_of(e))
            .collect::<Result<Vec<_>>>()?;
        let shapes: Vec<&datafusion::arrow::datatypes::Fields> = types
            .iter()
            .filter_map(|t| match t {
                DataType::Struct(f) => Some(f),
                _ => None,
            })
            .collect();
        let all_structs = types
            .iter()
            .all(|t| matches!(t, DataType::Struct(_) | DataType::Null));
        if !all_structs || shapes.windows(2).all(|w| w[0] == w[1]) {
            return Ok(items);
        }
        let mut union: Vec<(String, DataType)> = Vec::new();
        for fields in &shapes {
            for f in fields.iter() {
                match union.iter_mut().find(|(n, _)| n == f.name()) {
                    Some((_, t)) if *t == DataType::Null => *t = f.data_type().clone(),
                    Some(_) => {}
                    None => union.push((f.name().clone(), f.data_type().clone())),
                }
            }
        }
        items
            .into_iter()
            .zip(types)
            .map(|(item, t)| {
                let DataType::Struct(fields) = t else {
                    return Ok(item);
                };
                let mut parts = Vec::new();
                for (name, field_type) in &union {
                    let value = if fields.iter().any(|f| f.name() == name) {
                        self.call_internal("get_field", vec![item.clone(), lit(name.clone())])?
                    } else {
                        Expr::Literal(ScalarValue::try_new_null(field_type)?, None)
                    };
                    parts.push(lit(name.clone()));
                    parts.push(Expr::Cast(Cast::new(Box::new(value), field_type.clone())));
                }
                self.call_internal("named_struct", parts)
            })
            .collect()
    }

    /// A `STRUCT(name := value, ...)` call as a value of struct type
    /// `fields`: missing fields are null, values cast to the field types;
    /// `None` when it names a field `fields` lacks.
    fn struct_as(
        &self,
        f: &datafusion::sql::sqlparser::ast::Function,
        fields: &datafusion::arrow::datatypes::Fields,
    ) -> Result<Option<Expr>> {
        let FunctionArguments::List(list) = &f.args else {
            return statement_err!("STRUCT takes name := value pairs");
        };
        let mut given: Vec<(String, &SqlExpr)> = Vec::new();
        for arg in &list.args {
            let FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(value),
                ..
            } = arg
            else {
                return statement_err!("STRUCT fields need names: STRUCT(NAME := value)");
            };
            given.push((normalize_ident(name), value));
        }
        if given
            .iter()
            .any(|(name, _)| !fields.iter().any(|f| f.name() == name))
        {
            return Ok(None);
        }
        let mut parts = Vec::new();
        for field in fields {
            let value = match given.iter().find(|(name, _)| name == field.name()) {
                Some((_, v)) => {
                    let value = self.convert(v)?;
                    let value_type = self.type_of(&value)?;
                    // Literals convert; other values must already be of
                    // the field's kind.
                    if !matches!(value, Expr::Literal(_, _))
                        && type_class(&value_type) != type_class(field.data_type())
                    {
                        let whole = SqlExpr::Function(f.clone());
                        let item_type = self.type_of(&self.convert(&whole)?)?;
                        return statement_err!(
                            "Invalid Predicate: operator does not exist: {} = {} ({})",
                            type_name(&DataType::Struct(fields.clone())),
                            type_name(&item_type),
                            ksql_text(&whole)
                        );
                    }
                    value
                }
                None => Expr::Literal(ScalarValue::try_new_null(field.data_type())?, None),
            };
            parts.push(lit(field.name().clone()));
            parts.push(Expr::Cast(Cast::new(
                Box::new(value),
                field.data_type().clone(),
            )));
        }
        Ok(Some(self.call_internal("named_struct", parts)?))
    }

    /// `MAP(key := value, ...)`: a quoted key is a string, an unquoted
    /// one a column.
    fn map_constructor(&self, f: &datafusion::sql::sqlparser::ast::Function) -> Result<Expr> {
        let FunctionArguments::List(list) = &f.args else {
            return statement_err!("MAP takes key := value pairs");
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for arg in &list.args {
            let FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(value),
                ..
            } = arg
            else {
                return statement_err!("MAP takes key := value pairs");
            };
            keys.push(match name.quote_style {
                Some('\'') => lit(name.value.clone()),
                _ => self.column_ref(None, &normalize_ident(name))?,
            });
            values.push(self.convert(value)?);
        }
        let keys = self.call_internal("make_array", keys)?;
        let values = self.call_internal("make_array", values)?;
        self.call_internal("map", vec![keys, values])
    }

    /// Converts `e`, compared with `other`: a string literal compared
    /// with `ROWTIME` or a window bound is a timestamp, possibly partial
    /// (`'2018'`, `'2019-01-01T00:00:00+0445'`), read as epoch millis.
    fn convert_compared(&self, e: &SqlExpr, other: &SqlExpr) -> Result<Expr> {
        let pseudo_time = match other {
            SqlExpr::Identifier(i) => Some(normalize_ident(i)),
            SqlExpr::CompoundIdentifier(parts) => parts.last().map(normalize_ident),
            _ => None,
        }
        .is_some_and(|n| matches!(n.as_str(), "ROWTIME" | "WINDOWSTART" | "WINDOWEND"));
        if pseudo_time
            && let SqlExpr::Value(v) = e
            && let Value::SingleQuotedString(text) = &v.value
        {
            return match parse_partial_timestamp(text) {
                Some(ms) => Ok(lit(ms)),
                None => statement_err!(
                    "Failed to parse timestamp '{text}': expected yyyy-MM-dd'T'HH:mm:ss.SSS with an optional time zone"
                ),
            };
        }
        // Compared with a TIMESTAMP, a string literal is a timestamp too,
        // read the same way.
        if let SqlExpr::Value(v) = e
            && let Value::SingleQuotedString(text) = &v.value
            && !matches!(other, SqlExpr::Value(_))
            && let Ok(DataType::Timestamp(_, _)) =
                self.convert(other).and_then(|o| self.type_of(&o))
            && let Some(ms) = parse_partial_timestamp(text)
        {
            return Ok(Expr::Literal(
                ScalarValue::TimestampMillisecond(Some(ms), None),
                None,
            ));
        }
        self.convert(e)
    }

    fn check_comparable(
        &self,
        l: &Expr,
        r: &Expr,
        left: &SqlExpr,
        right: &SqlExpr,
        op: &BinaryOperator,
    ) -> Result<()> {
        let (lt, rt) = (self.type_of(l)?, self.type_of(r)?);
        let string_literal = |e: &SqlExpr| matches!(e, SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
        let temporal_vs_text = (is_temporal(&lt) && string_literal(right))
            || (is_temporal(&rt) && string_literal(left));
        // Collections and structs only compare for (in)equality.
        let ordering = !matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq);
        let nested = lt.is_nested() || rt.is_nested();
        if !(ordering && nested) && type_class(&lt) == type_class(&rt)
            || temporal_vs_text
            || lt == DataType::Null
            || rt == DataType::Null
        {
            return Ok(());
        }
        let op_name = match op {
            BinaryOperator::Eq => "EQUAL",
            BinaryOperator::NotEq => "NOT_EQUAL",
            BinaryOperator::Lt => "LESS_THAN",
            BinaryOperator::LtEq => "LESS_THAN_OR_EQUAL",
            BinaryOperator::Gt => "GREATER_THAN",
            _ => "GREATER_THAN_OR_EQUAL",
        };
        statement_err!(
            "Error in {} expression: Cannot compare {} ({}) to {} ({}) with {op_name}.",
            self.clause,
            ksql_text(left),
            type_name(&lt),
            ksql_text(right),
            type_name(&rt)
        )
    }

    /// `x IN (...)`: string literals are read as the type of `x`, as
    /// ksqlDB does; other items must have a comparable type.
    fn in_list(&self, expr: &SqlExpr, list: &[SqlExpr], negated: bool) -> Result<Expr> {
        let subject = self.convert(expr)?;
        let subject_type = self.type_of(&subject)?;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            // A number or boolean literal compared with a string is its
            // text, as written.
            let as_text = match item {
                SqlExpr::Value(v) if type_class(&subject_type) == TypeClass::Text => {
                    match &v.value {
                        Value::Number(text, _) => Some(text.clone()),
                        Value::Boolean(b) => Some(b.to_string()),
                        _ => None,
                    }
                }
                _ => None,
            };
            // A STRUCT(...) item takes the subject's struct type, field by
            // field; one naming a field the subject lacks never matches.
            if let (DataType::Struct(fields), SqlExpr::Function(f)) = (&subject_type, item)
                && f.name.to_string().eq_ignore_ascii_case("STRUCT")
            {
                match self.struct_as(f, fields)? {
                    Some(e) => items.push(e),
                    None => continue,
                }
                continue;
            }
            let converted = match as_text {
                Some(text) => lit(text),
                None => self.convert(item)?,
            };
            let item_type = self.type_of(&converted)?;
            let converted = match (&converted, type_class(&subject_type)) {
                (Expr::Literal(ScalarValue::Utf8(Some(text)), _), class)
                    if class != type_class(&item_type) =>
                {
                    let as_number = || {
                        text.trim()
                            .parse::<f64>()
                            .ok()
                            .map(|f| ScalarValue::Float64(Some(f)))
                    };
                    let cast = ScalarValue::Utf8(Some(text.clone()))
                        .cast_to(&subject_type)
                        .ok()
                        .or_else(|| {
                            if type_class(&subject_type) == TypeClass::Numeric {
                                as_number()
                            } else {
                                None
                            }
                        })
                        .ok_or_else(|| {
                            SqlError::Statement(format!(
                                "Invalid Predicate: invalid input syntax for type {}: \"{text}\".",
                                type_name(&subject_type)
                            ))
                        })?;
                    Expr::Literal(cast, None)
                }
                _ if type_class(&item_type) != type_class(&subject_type)
                    && item_type != DataType::Null
                    && !(type_class(&subject_type) == TypeClass::Text
                        && matches!(converted, Expr::Literal(_, _))) =>
                {
                    return statement_err!(
                        "Invalid Predicate: operator does not exist: {} = {} ({})",
                        type_name(&subject_type),
                        type_name(&item_type),
                        ksql_text(item)
                    );
                }
                _ => converted,
            };
            items.push(converted);
        }
        Ok(null_is_false(Expr::InList(InList::new(
            Box::new(subject),
            items,
            negated,
        ))))
    }

    fn function(
        &self,
        whole: &SqlExpr,
        f: &datafusion::sql::sqlparser::ast::Function,
    ) -> Result<Expr> {
        let name = f.name.to_string().to_uppercase();
        let (args, star) = match &f.args {
            FunctionArguments::None => (vec![], false),
            FunctionArguments::List(list) => {
                let mut out = Vec::new();
                let mut star = false;
                for arg in &list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                            out.push((None, x.clone()))
                        }
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        FunctionArg::Named {
                            name,
                            arg: FunctionArgExpr::Expr(x),
                            ..
                        } => out.push((Some(normalize_ident(name)), x.clone())),
                        other => return not_supported!("function argument {other}"),
                    }
                }
                (out, star)
            }
            FunctionArguments::Subquery(_) => return not_supported!("subqueries"),
        };
        if let Some(kind) = LambdaKind::of(&name)
            && args.iter().any(
                |(_, a)| matches!(a, SqlExpr::Lambda(l) if l.syntax == LambdaSyntax::LambdaKeyword),
            )
        {
            return self.lambda_call(kind, &args);
        }
        if name == "STRUCT" {
            if args.is_empty() {
                return Ok(Expr::Literal(
                    ScalarValue::Struct(Arc::new(
                        datafusion::arrow::array::StructArray::new_empty_fields(1, None),
                    )),
                    None,
                ));
            }
            let mut parts = Vec::new();
            let mut seen = Vec::new();
            for (field, value) in &args {
                let Some(field) = field else {
                    return statement_err!("STRUCT fields need names: STRUCT(NAME := value)");
                };
                if seen.contains(field) {
                    return statement_err!("Duplicate field names found in STRUCT: {field}");
                }
                seen.push(field.clone());
                parts.push(lit(field.clone()));
                parts.push(self.convert(value)?);
            }
            return self.call_internal("named_struct", parts);
        }
        if name == "MAP" && !args.is_empty() && args.iter().all(|(k, _)| k.is_some()) {
            return self.map_constructor(f);
        }
        let converted = args
            .iter()
            .enumerate()
            .map(|(i, (_, x))| match x {
                // `DATEADD(DAYS, ...)`: the unit is a keyword, passed on
                // as its name.
                SqlExpr::Identifier(unit)
                    if i == 0
                        && UNIT_FUNCTIONS.contains(&name.as_str())
                        && unit_millis(&unit.value).is_some() =>
                {
                    Ok(lit(unit.value.to_uppercase()))
                }
                x => self.convert(x),
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(udaf) = self.functions.aggregate(&name) {
            if !self.allow_aggregates {
                return statement_err!(
                    "Aggregate functions can not be used in the {} clause: {}",
                    self.clause,
                    ksql_text(whole)
                );
            }
            if let Some(from) = self.functions.literal_parameters(&name, args.len())
                && let Some((i, (_, sql))) = args
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(i, _)| !matches!(converted[*i], Expr::Literal(_, _)))
            {
                return statement_err!(
                    "Parameter {} passed to function {name} must be a literal constant, but was expression: '{}'",
                    i + 1,
                    ksql_text(sql)
                );
            }
            let args = if name == "COUNT" && (star || converted.is_empty()) {
                vec![lit(1i64)]
            } else {
                converted
            };
            return Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                udaf.clone(),
                args,
                false,
                None,
                vec![],
                None,
            )));
        }
        if let Some(udf) = self.functions.scalar(&name) {
            if converted.is_empty() && name == "COALESCE" {
                return statement_err!("Function 'COALESCE' does not accept parameters ()");
            }
            return Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
                udf.clone(),
                converted,
            )));
        }
        statement_err!("Can't find any functions with the name '{name}'")
    }
}

impl ExprPlanner<'_> {
    /// `TRANSFORM`, `FILTER` or `REDUCE` with lambda arguments: compiles
    /// the lambda bodies into a [`LambdaUdf`] call.
    fn lambda_call(&self, kind: LambdaKind, args: &[(Option<String>, SqlExpr)]) -> Result<Expr> {
        let usage = || {
            statement_err!(
                "Function '{}' takes an array or a map{}, then lambdas",
                kind.name(),
                if kind == LambdaKind::Reduce {
                    " and an initial state"
                } else {
                    ""
                }
            )
        };
        let Some((_, collection_sql)) = args.first() else {
            return usage();
        };
        let collection = self.convert(collection_sql)?;
        let collection_type = self.type_of(&collection)?;
        let element_types: Vec<DataType> = match &collection_type {
            DataType::List(item) => vec![item.data_type().clone()],
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => {
                    kv.iter().map(|f| f.data_type().clone()).collect()
                }
                _ => return usage(),
            },
            other => {
                return statement_err!(
                    "Function '{}' does not accept parameters ({})",
                    kind.name(),
                    type_name(other)
                );
            }
        };
        let (initial, lambdas) = match kind {
            LambdaKind::Reduce => match args.get(1) {
                Some((_, init)) => (Some(self.convert(init)?), &args[2..]),
                None => return usage(),
            },
            _ => (None, &args[1..]),
        };
        let mut param_types = Vec::new();
        if let Some(init) = &initial {
            param_types.push(self.type_of(init)?);
        }
        param_types.extend(element_types.iter().cloned());
        let wanted_lambdas = match (kind, &collection_type) {
            (LambdaKind::Transform, DataType::Map(_, _)) => 2,
            _ => 1,
        };
        if lambdas.len() != wanted_lambdas {
            return usage();
        }
        let fields = parameter_fields(param_types.len());
        // The lambda sees its parameters first, then every outer column.
        let mut bodies = Vec::new();
        for (_, lambda) in lambdas {
            let SqlExpr::Lambda(l) = lambda else {
                return usage();
            };
            let names: Vec<String> = match &l.params {
                OneOrManyWithParens::One(p) => vec![normalize_ident(&p.name)],
                OneOrManyWithParens::Many(ps) => {
                    ps.iter().map(|p| normalize_ident(&p.name)).collect()
                }
            };
            if names.len() != param_types.len() {
                return statement_err!(
                    "Lambda of '{}' takes {} parameters, got {}",
                    kind.name(),
                    param_types.len(),
                    names.len()
                );
            }
            let mut columns: Vec<ScopeColumn> = names
                .iter()
                .zip(&fields)
                .map(|(name, field)| ScopeColumn {
                    qualifier: None,
                    name: name.clone(),
                    field: field.clone(),
                    kind: None,
                })
                .collect();
            columns.extend(self.scope.columns.iter().cloned());
            let mut arrow_fields: Vec<Field> = fields
                .iter()
                .zip(&param_types)
                .map(|(f, t)| Field::new(f, t.clone(), true))
                .collect();
            arrow_fields.extend(self.scope.arrow.fields().iter().map(|f| f.as_ref().clone()));
            let lambda_scope = Scope::new(columns, Arc::new(Schema::new(arrow_fields)))?;
            let planner = ExprPlanner {
                scope: &lambda_scope,
                functions: self.functions,
                clause: self.clause,
                allow_aggregates: false,
            };
            let body = strict_arithmetic(planner.convert(&l.body)?)?;
            let body_type = body.get_type(&lambda_scope.df)?;
            bodies.push((body, body_type));
        }
        // Outer columns the bodies use travel as extra arguments.
        let mut captured: Vec<String> = Vec::new();
        for (body, _) in &bodies {
            for c in body.column_refs() {
                if !fields.contains(&c.name) && !captured.contains(&c.name) {
                    captured.push(c.name.clone());
                }
            }
        }
        let mut schema_fields: Vec<Field> = fields
            .iter()
            .zip(&param_types)
            .map(|(f, t)| Field::new(f, t.clone(), true))
            .collect();
        for c in &captured {
            let field = self
                .scope
                .arrow
                .field_with_name(c)
                .map_err(|_| SqlError::Statement(format!("lambda uses unknown column {c}")))?;
            schema_fields.push(field.clone().with_nullable(true));
        }
        let body_schema = Arc::new(Schema::new(schema_fields));
        let body_df = DFSchema::try_from(body_schema.as_ref().clone())?;
        let return_type = match (kind, &collection_type) {
            (LambdaKind::Filter, t) => t.clone(),
            (LambdaKind::Reduce, _) => param_types[0].clone(),
            (LambdaKind::Transform, DataType::Map(_, _)) => {
                map_type(bodies[0].1.clone(), bodies[1].1.clone())
            }
            (LambdaKind::Transform, _) => DataType::new_list(bodies[0].1.clone(), true),
        };
        if kind == LambdaKind::Filter && bodies[0].1 != DataType::Boolean {
            return statement_err!(
                "FILTER's lambda must return a BOOLEAN, not {}",
                type_name(&bodies[0].1)
            );
        }
        let compiled = bodies
            .into_iter()
            .map(|(b, _)| compile_body(self.functions.session(), b, &body_df))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let udf = LambdaUdf::new(kind, compiled, body_schema, return_type);
        let mut call_args = vec![collection];
        call_args.extend(initial);
        call_args.extend(captured.iter().map(|c| column(c)));
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::from(udf)),
            call_args,
        )))
    }
}

fn negate(v: ScalarValue) -> Result<ScalarValue> {
    Ok(match v {
        ScalarValue::Int32(Some(x)) => ScalarValue::Int32(Some(-x)),
        ScalarValue::Int64(Some(x)) => ScalarValue::Int64(Some(-x)),
        ScalarValue::Float64(Some(x)) => ScalarValue::Float64(Some(-x)),
        ScalarValue::Decimal128(Some(x), p, s) => ScalarValue::Decimal128(Some(-x), p, s),
        other => return statement_err!("cannot negate {other}"),
    })
}

/// ksqlDB's literal typing: whole numbers are INT or BIGINT by size,
/// `1.5` is DECIMAL(2, 1), `1.5E0` is DOUBLE.
pub fn literal(v: &Value) -> Result<Expr> {
    Ok(match v {
        Value::Number(text, _) => {
            if text.contains(['e', 'E']) {
                let value = text
                    .parse::<f64>()
                    .map_err(|_| SqlError::Statement(format!("Invalid numeric literal: {text}")))?;
                if value.is_infinite() {
                    return statement_err!("Number overflows DOUBLE: {text}");
                }
                lit(value)
            } else if text.contains('.') {
                let (int_part, frac) = text.split_once('.').unwrap_or((text, ""));
                let int_digits = int_part.trim_start_matches('0').len();
                let scale = frac.len();
                let precision = (int_digits + scale).clamp(1, 38);
                let value = parse_decimal(text, precision as u8, scale as i8)?;
                Expr::Literal(
                    ScalarValue::Decimal128(Some(value), precision as u8, scale as i8),
                    None,
                )
            } else if let Ok(i) = text.parse::<i32>() {
                lit(i)
            } else if let Ok(i) = text.parse::<i64>() {
                lit(i)
            } else {
                return statement_err!("Invalid numeric literal: {text}");
            }
        }
        Value::SingleQuotedString(s) => lit(s.clone()),
        Value::Boolean(b) => lit(*b),
        Value::Null => Expr::Literal(ScalarValue::Null, None),
        other => return not_supported!("literal {other}"),
    })
}

/// Prefixes an unresolved-column error with where the column is written,
/// as ksqlDB does.
fn at_position(ident: &Ident, result: Result<Expr>) -> Result<Expr> {
    match result {
        Err(SqlError::Statement(m)) if ident.span.start.line > 0 => {
            Err(SqlError::Statement(format!(
                "Line: {}, Col: {}: {m}",
                ident.span.start.line, ident.span.start.column
            )))
        }
        other => other,
    }
}

/// Renders an expression the way ksqlDB prints it in messages.
pub fn ksql_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Lambda(l) if l.syntax == LambdaSyntax::Arrow => match desugar_arrow(l) {
            Ok(plain) => ksql_text(&plain),
            Err(_) => e.to_string(),
        },
        SqlExpr::Identifier(i) => normalize_ident(i),
        SqlExpr::CompoundIdentifier(parts) => parts
            .iter()
            .map(normalize_ident)
            .collect::<Vec<_>>()
            .join("."),
        SqlExpr::Nested(inner) => ksql_text(inner),
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Arrow,
            right,
        } => {
            format!("{}->{}", ksql_text(left), ksql_text(right))
        }
        SqlExpr::BinaryOp { left, op, right } => {
            format!("({} {} {})", ksql_text(left), op, ksql_text(right))
        }
        SqlExpr::UnaryOp { op, expr } => format!("{op}{}", ksql_text(expr)),
        SqlExpr::Value(v) => match &v.value {
            Value::Null => "NULL".into(),
            Value::Boolean(b) => b.to_string().to_uppercase(),
            other => other.to_string(),
        },
        SqlExpr::Function(f) => {
            let args = match &f.args {
                FunctionArguments::List(list) => list
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => ksql_text(x),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => String::new(),
            };
            format!("{}({args})", f.name.to_string().to_uppercase())
        }
        SqlExpr::Cast {
            expr, data_type, ..
        } => {
            format!(
                "CAST({} AS {})",
                ksql_text(expr),
                data_type.to_string().trim_matches('"')
            )
        }
        SqlExpr::IsNull(x) => format!("({} IS NULL)", ksql_text(x)),
        SqlExpr::IsNotNull(x) => format!("({} IS NOT NULL)", ksql_text(x)),
        other => other.to_string(),
    }
}

/// The struct column of a `s->*` select item.
pub fn struct_fields_of(e: &SqlExpr) -> Option<&SqlExpr> {
    match e {
        SqlExpr::CompoundFieldAccess { root, access_chain }
            if matches!(
                access_chain.as_slice(),
                [AccessExpr::Dot(SqlExpr::Wildcard(_))]
            ) =>
        {
            Some(root)
        }
        _ => None,
    }
}

/// `s->*` as one `s->field` item per field of struct column `s`.
pub fn expand_struct_fields(e: &SqlExpr, scope: &Scope) -> Result<Vec<(SqlExpr, Option<String>)>> {
    let Some(root) = struct_fields_of(e) else {
        return Ok(vec![]);
    };
    let SqlExpr::Identifier(ident) = root else {
        return not_supported!("'->*' after {root}");
    };
    let name = normalize_ident(ident);
    let field = scope
        .resolve(None, &name)
        .and_then(|c| scope.arrow.field_with_name(&c.field).ok())
        .ok_or_else(|| {
            SqlError::Statement(format!("SELECT column '{name}' cannot be resolved."))
        })?;
    let DataType::Struct(fields) = field.data_type() else {
        return statement_err!(
            "Expected STRUCT type for '->*' but got {}",
            type_name(field.data_type())
        );
    };
    Ok(fields
        .iter()
        .map(|f| {
            (
                SqlExpr::BinaryOp {
                    left: Box::new(root.clone()),
                    op: BinaryOperator::Arrow,
                    right: Box::new(SqlExpr::Identifier(
                        datafusion::sql::sqlparser::ast::Ident::with_quote('`', f.name().clone()),
                    )),
                },
                None,
            )
        })
        .collect())
}

/// The name ksqlDB gives an unaliased select expression, when it has one:
/// a column's own name, a struct field's name.
pub fn derived_name(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Lambda(l) if l.syntax == LambdaSyntax::Arrow => {
            desugar_arrow(l).ok().as_ref().and_then(derived_name)
        }
        SqlExpr::Identifier(i) => Some(normalize_ident(i)),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(normalize_ident),
        SqlExpr::BinaryOp {
            op: BinaryOperator::Arrow,
            right,
            ..
        } => derived_name(right),
        _ => None,
    }
}

/// ksqlDB compares with Java's semantics: a comparison involving null is
/// false, not unknown.
fn null_is_false(e: Expr) -> Expr {
    Expr::Case(Case::new(
        None,
        vec![(Box::new(e), Box::new(lit(true)))],
        Some(Box::new(lit(false))),
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum TypeClass {
    Numeric,
    Text,
    Boolean,
    Temporal,
    Other(String),
}

fn type_class(t: &DataType) -> TypeClass {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _) => TypeClass::Numeric,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => TypeClass::Text,
        DataType::Boolean => TypeClass::Boolean,
        DataType::Date32 | DataType::Time32(_) | DataType::Timestamp(_, _) => TypeClass::Temporal,
        // Nested types compare by kind; DataFusion reconciles their
        // element types.
        DataType::List(_) | DataType::LargeList(_) => TypeClass::Other("ARRAY".into()),
        DataType::Map(_, _) => TypeClass::Other("MAP".into()),
        DataType::Struct(_) => TypeClass::Other("STRUCT".into()),
        other => TypeClass::Other(format!("{other}")),
    }
}

fn is_temporal(t: &DataType) -> bool {
    type_class(t) == TypeClass::Temporal
}

fn type_name(t: &DataType) -> String {
    SqlType::from_arrow(t)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// sqlparser reads `a->b` as a lambda; in ksqlDB it is struct field
/// access (lambdas are written `x => ...`). Rebuilds the expression with
/// `->` binding tightest: `a->b + 1` is `(a->b) + 1`.
pub fn desugar_arrow(l: &LambdaFunction) -> Result<SqlExpr> {
    let OneOrManyWithParens::One(param) = &l.params else {
        return statement_err!("expected a field name before '->'");
    };
    attach_arrow(SqlExpr::Identifier(param.name.clone()), &l.body)
}

fn attach_arrow(base: SqlExpr, body: &SqlExpr) -> Result<SqlExpr> {
    let arrow = |left: SqlExpr, field: SqlExpr| SqlExpr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::Arrow,
        right: Box::new(field),
    };
    Ok(match body {
        SqlExpr::Identifier(_) => arrow(base, body.clone()),
        SqlExpr::Lambda(inner) if inner.syntax == LambdaSyntax::Arrow => {
            let OneOrManyWithParens::One(param) = &inner.params else {
                return statement_err!("expected a field name after '->'");
            };
            attach_arrow(
                arrow(base, SqlExpr::Identifier(param.name.clone())),
                &inner.body,
            )?
        }
        SqlExpr::BinaryOp { left, op, right } => SqlExpr::BinaryOp {
            left: Box::new(attach_arrow(base, left)?),
            op: op.clone(),
            right: right.clone(),
        },
        SqlExpr::CompoundFieldAccess { root, access_chain } => SqlExpr::CompoundFieldAccess {
            root: Box::new(attach_arrow(base, root)?),
            access_chain: access_chain.clone(),
        },
        SqlExpr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => SqlExpr::Like {
            negated: *negated,
            any: *any,
            expr: Box::new(attach_arrow(base, expr)?),
            pattern: pattern.clone(),
            escape_char: escape_char.clone(),
        },
        SqlExpr::InList {
            expr,
            list,
            negated,
        } => SqlExpr::InList {
            expr: Box::new(attach_arrow(base, expr)?),
            list: list.clone(),
            negated: *negated,
        },
        SqlExpr::Between {
            expr,
            negated,
            low,
            high,
        } => SqlExpr::Between {
            expr: Box::new(attach_arrow(base, expr)?),
            negated: *negated,
            low: low.clone(),
            high: high.clone(),
        },
        SqlExpr::IsNull(x) => SqlExpr::IsNull(Box::new(attach_arrow(base, x)?)),
        SqlExpr::IsNotNull(x) => SqlExpr::IsNotNull(Box::new(attach_arrow(base, x)?)),
        other => return not_supported!("'->' followed by {other}"),
    })
}

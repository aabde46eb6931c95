//! The fast path of pull queries: key lookups answered from a table's
//! [`KeyIndex`](crate::index::KeyIndex) instead of a DataFusion plan over
//! the whole snapshot.
//!
//! A query is a lookup when it reads one table and its `WHERE` is a
//! conjunction that binds every key column to a literal or a list of them
//! (`SELECT ... FROM t WHERE id = 42 AND score > 3`, `id IN (1, 2)`,
//! windowed tables with any bounds on `WINDOWSTART`/`WINDOWEND`). The rest of the query, with
//! the key conjuncts taken out, is planned by DataFusion once per distinct
//! text and kept in a [`LookupCache`] as physical expressions; a lookup
//! then evaluates them over the few rows of its key. Because the key
//! conjuncts select exactly the rows the index returns, the answer is the
//! one DataFusion would give over the whole table. Anything else (joins,
//! aggregates, `ORDER BY`, `LIMIT`, volatile functions, a literal whose
//! type is not the key's) goes the general way, as does a lookup whose
//! evaluation fails, so that errors read the same on both paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{concat, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{HashMap, ScalarValue, TableReference};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, ObjectNamePart, Query, SetExpr, Statement, TableFactor, UnaryOperator,
    Value,
};
use parking_lot::Mutex;
use sluice_engine::schema::SqlType;
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::SourceKind;

use crate::error::ServerError;
use crate::materialized::Snapshot;
use crate::pull::{self, OutputColumn, PullResult};
use crate::rows;

/// Distinct query shapes kept; the cache starts over when full.
const CACHE_CAPACITY: usize = 512;

/// Compiled lookups by the text of the query without its key conjuncts.
#[derive(Default)]
pub struct LookupCache {
    plans: Mutex<HashMap<String, Cached>>,
    answered: AtomicU64,
}

struct Cached {
    /// The source and rows the plan was compiled against.
    source: Arc<DataSource>,
    schema: SchemaRef,
    /// `None`: the shape is not a lookup the fast path can answer.
    plan: Option<Arc<LookupPlan>>,
}

/// The rest of a lookup query as expressions over the snapshot's rows.
struct LookupPlan {
    filter: Option<Arc<dyn PhysicalExpr>>,
    projection: Vec<Arc<dyn PhysicalExpr>>,
    columns: Vec<OutputColumn>,
}

impl LookupCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queries answered by the fast path so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn cached(&self, text: &str, source: &Arc<DataSource>, schema: &SchemaRef) -> CacheLookup {
        let plans = self.plans.lock();
        match plans.get(text) {
            Some(c) if Arc::ptr_eq(&c.source, source) && c.schema == *schema => {
                CacheLookup::Found(c.plan.clone())
            }
            _ => CacheLookup::Missing,
        }
    }

    fn store(&self, text: String, cached: Cached) {
        let mut plans = self.plans.lock();
        if plans.len() >= CACHE_CAPACITY {
            plans.clear();
        }
        plans.insert(text, cached);
    }
}

enum CacheLookup {
    Found(Option<Arc<LookupPlan>>),
    Missing,
}

/// Keys one lookup may ask for (`IN` lists multiply); more take the
/// general path.
const MAX_KEYS: usize = 1024;

/// A lookup query taken apart.
struct Shape {
    /// The keys asked for: one array per key column, row `i` of each the
    /// `i`th key (none when no literal can equal a key of its type).
    keys: Vec<ArrayRef>,
    /// The query without its key conjuncts.
    rest: Box<Query>,
}

/// Answers `query` from the index of its single table `snapshot`, or
/// `None` when it is not a lookup (the caller then plans it in full).
pub async fn try_lookup(
    ctx: &KsqlContext,
    cache: &LookupCache,
    query: &Query,
    source: &Arc<DataSource>,
    snapshot: &Snapshot,
) -> Option<PullResult> {
    if source.kind != SourceKind::Table {
        return None;
    }
    let index = snapshot.index()?;
    let shape = shape(query, source, &snapshot.schema)?;
    // In a cluster the index holds only this member's partitions: keys
    // elsewhere go the general way, which asks their owners.
    if !crate::scatter::holds_keys(snapshot, &shape.keys) {
        return None;
    }
    let text = shape.rest.to_string();
    let plan = match cache.cached(&text, source, &snapshot.schema) {
        CacheLookup::Found(plan) => plan?,
        CacheLookup::Missing => {
            let plan = compile(ctx, &shape.rest, source, &snapshot.schema)
                .await
                .map(Arc::new);
            cache.store(
                text,
                Cached {
                    source: source.clone(),
                    schema: snapshot.schema.clone(),
                    plan: plan.clone(),
                },
            );
            plan?
        }
    };
    let rows = index.lookup(&shape.keys).ok()?;
    let rows = evaluate(&plan, &rows).ok()?;
    cache.answered.fetch_add(1, Ordering::Relaxed);
    Some(PullResult {
        columns: plan.columns.clone(),
        rows,
        over_streams: false,
        limit: None,
    })
}

fn evaluate(plan: &LookupPlan, rows: &RecordBatch) -> Result<Vec<String>, ServerError> {
    let df = |e: datafusion::error::DataFusionError| ServerError::Internal(e.to_string());
    let selected = match &plan.filter {
        Some(filter) => {
            let mask = filter
                .evaluate(rows)
                .and_then(|v| v.into_array(rows.num_rows()))
                .map_err(df)?;
            let mask = mask
                .as_boolean_opt()
                .ok_or_else(|| ServerError::Internal("a WHERE that is not boolean".into()))?;
            filter_record_batch(rows, mask).map_err(|e| ServerError::Internal(e.to_string()))?
        }
        None => rows.clone(),
    };
    let columns: Vec<ArrayRef> = plan
        .projection
        .iter()
        .map(|e| {
            e.evaluate(&selected)
                .and_then(|v| v.into_array(selected.num_rows()))
        })
        .collect::<Result<_, _>>()
        .map_err(df)?;
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    rows::json_rows(&columns, None)
}

/// Splits `e` into its top-level `AND` operands.
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner, out)
        }
        other => out.push(other.clone()),
    }
}

/// The name `e` refers to when it is a column of the table called
/// `qualifiers` in the query.
fn column<'a>(e: &'a Expr, qualifiers: &[String]) -> Option<&'a str> {
    match e {
        Expr::Identifier(i) => Some(i.value.as_str()),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if qualifiers.contains(&q.value) => Some(c.value.as_str()),
            _ => None,
        },
        Expr::Nested(inner) => column(inner, qualifiers),
        _ => None,
    }
}

/// What a literal compared with a key of type `ty` selects: `Some(None)`
/// when no key of that type can equal it, `None` when the fast path does
/// not judge this pair (the general path then compares as DataFusion does).
fn key_value(e: &Expr, ty: &DataType) -> Option<Option<ArrayRef>> {
    let (text, negative) = match e {
        Expr::Nested(inner) => return key_value(inner, ty),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => (n.as_str(), false),
            Value::SingleQuotedString(s) => {
                return match ty {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        ScalarValue::Utf8(Some(s.clone()))
                            .cast_to(ty)
                            .and_then(|v| v.to_array())
                            .ok()
                            .map(Some)
                    }
                    _ => None,
                };
            }
            _ => return None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => (n.as_str(), true),
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    if !matches!(
        ty,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    ) {
        return None;
    }
    // Only plain integers: `1.0` or `1e3` compare as DataFusion coerces.
    let value: i64 = text.parse().ok()?;
    let value = if negative {
        value.checked_neg()?
    } else {
        value
    };
    Some(
        ScalarValue::Int64(Some(value))
            .cast_to(ty)
            .ok()
            .filter(|v| !v.is_null())
            .and_then(|v| {
                // A cast that changed the value means no key can equal it.
                let back = v.cast_to(&DataType::Int64).ok()?;
                (back == ScalarValue::Int64(Some(value))).then_some(v)
            })
            .and_then(|v| v.to_array().ok()),
    )
}

/// Takes `query` apart when it is a lookup of one key of `source`.
fn shape(query: &Query, source: &DataSource, schema: &SchemaRef) -> Option<Shape> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return None;
    };
    let table = name.0.last().and_then(ObjectNamePart::as_ident)?;
    if table.value != source.name {
        return None;
    }
    let mut qualifiers = vec![table.value.clone()];
    if let Some(alias) = alias {
        qualifiers.push(alias.name.value.clone());
    }
    let mut parts = Vec::new();
    conjuncts(select.selection.as_ref()?, &mut parts);
    let key_names: Vec<&str> = source
        .schema
        .key_columns()
        .map(|c| c.name.as_str())
        .collect();
    if key_names.is_empty() {
        return None;
    }
    // Per key column, the values it may take.
    let mut bound: Vec<Option<Vec<ArrayRef>>> = vec![None; key_names.len()];
    let mut rest = Vec::new();
    for part in parts {
        let mut peeled = &part;
        while let Expr::Nested(inner) = peeled {
            peeled = inner;
        }
        let taken = match peeled {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let pair = match (column(left, &qualifiers), column(right, &qualifiers)) {
                    (Some(c), None) => Some((c, right.as_ref())),
                    (None, Some(c)) => Some((c, left.as_ref())),
                    _ => None,
                };
                pair.and_then(|(c, literal)| {
                    bind(
                        &mut bound,
                        &key_names,
                        schema,
                        c,
                        std::slice::from_ref(literal),
                    )
                })
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } => column(expr, &qualifiers)
                .and_then(|c| bind(&mut bound, &key_names, schema, c, list)),
            _ => None,
        };
        if taken.is_none() {
            rest.push(part);
        }
    }
    let keys = combine(bound.into_iter().collect::<Option<_>>()?, schema)?;
    let mut query = Box::new(query.clone());
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.selection = rest.into_iter().reduce(|l, r| Expr::BinaryOp {
            left: Box::new(l),
            op: BinaryOperator::And,
            right: Box::new(r),
        });
    }
    Some(Shape { keys, rest: query })
}

/// Binds key column `column` to `literals` (an `=` or an `IN` list);
/// `None` when it is not a key column, is bound already or a literal is
/// not one the fast path judges.
fn bind(
    bound: &mut [Option<Vec<ArrayRef>>],
    key_names: &[&str],
    schema: &SchemaRef,
    column: &str,
    literals: &[Expr],
) -> Option<()> {
    let k = key_names.iter().position(|n| *n == column)?;
    if bound[k].is_some() {
        return None;
    }
    // Key columns come first in the snapshot's schema.
    let ty = schema.field(k).data_type();
    let mut values = Vec::with_capacity(literals.len());
    for literal in literals {
        // A literal no key of this type can equal selects nothing.
        if let Some(value) = key_value(literal, ty)? {
            values.push(value);
        }
    }
    bound[k] = Some(values);
    Some(())
}

/// Every combination of the key columns' values, as one array per column.
fn combine(bound: Vec<Vec<ArrayRef>>, schema: &SchemaRef) -> Option<Vec<ArrayRef>> {
    let mut combinations: Vec<Vec<ArrayRef>> = vec![Vec::new()];
    for values in &bound {
        combinations = combinations
            .iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
        if combinations.len() > MAX_KEYS {
            return None;
        }
    }
    (0..bound.len())
        .map(|k| {
            let column: Vec<&dyn Array> = combinations.iter().map(|c| c[k].as_ref()).collect();
            if column.is_empty() {
                Some(datafusion::arrow::array::new_empty_array(
                    schema.field(k).data_type(),
                ))
            } else {
                concat(&column).ok()
            }
        })
        .collect()
}

/// Plans `rest` over `source` with DataFusion and keeps its expressions,
/// when the plan is a projection of a filter of the table.
async fn compile(
    ctx: &KsqlContext,
    rest: &Query,
    source: &Arc<DataSource>,
    schema: &SchemaRef,
) -> Option<LookupPlan> {
    let mut query = Box::new(rest.clone());
    let keys = pull::rewrite(&mut query, std::slice::from_ref(source));
    pull::type_int_literals(&mut query);
    pull::sql_cast_types(&mut query);
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let session = SessionContext::new_with_config(config);
    let table = MemTable::try_new(schema.clone(), vec![vec![]]).ok()?;
    session
        .register_table(TableReference::bare(source.name.as_str()), Arc::new(table))
        .ok()?;
    pull::register_functions(ctx, &session, &mut query);
    let state = session.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(Statement::Query(query))))
        .await
        .ok()?;
    let LogicalPlan::Projection(projection) = &plan else {
        return None;
    };
    let (filter, input) = match projection.input.as_ref() {
        LogicalPlan::Filter(f) => (Some(&f.predicate), f.input.as_ref()),
        other => (None, other),
    };
    let scan = match input {
        LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
        other => other,
    };
    let LogicalPlan::TableScan(scan) = scan else {
        return None;
    };
    if scan.projection.is_some() || !scan.filters.is_empty() || scan.fetch.is_some() {
        return None;
    }
    let input_schema = input.schema();
    if input_schema.fields().len() != schema.fields().len() {
        return None;
    }
    let exprs = filter.into_iter().chain(projection.expr.iter());
    for e in exprs.clone() {
        if !fixed(e) {
            return None;
        }
    }
    let physical = |e: &LogicalExpr| state.create_physical_expr(e.clone(), input_schema).ok();
    let filter = match filter {
        Some(f) => Some(physical(f)?),
        None => None,
    };
    let projection_exprs = projection
        .expr
        .iter()
        .map(physical)
        .collect::<Option<Vec<_>>>()?;
    let columns = projection
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Some(OutputColumn {
                name: f.name().clone(),
                sql_type: SqlType::from_arrow(f.data_type()).ok()?,
                key: keys.get(i).copied().unwrap_or(false),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(LookupPlan {
        filter,
        projection: projection_exprs,
        columns,
    })
}

/// Whether `e` gives the same answer whenever it is evaluated on the same
/// rows, with nothing a full plan would do first (subqueries, aggregates,
/// functions folded at planning time such as `NOW()`).
fn fixed(e: &LogicalExpr) -> bool {
    !e.exists(|e| {
        Ok(match e {
            LogicalExpr::ScalarFunction(f) => {
                f.func.signature().volatility != Volatility::Immutable
            }
            LogicalExpr::ScalarSubquery(_)
            | LogicalExpr::InSubquery(_)
            | LogicalExpr::Exists(_)
            | LogicalExpr::SetComparison(_)
            | LogicalExpr::AggregateFunction(_)
            | LogicalExpr::WindowFunction(_)
            | LogicalExpr::Placeholder(_)
            | LogicalExpr::ScalarVariable(..)
            | LogicalExpr::Unnest(_)
            | LogicalExpr::GroupingSet(_)
            | LogicalExpr::OuterReferenceColumn(..) => true,
            _ => false,
        })
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests;

//! Pull queries: full DataFusion SQL over materialized projections.
//!
//! A pull query is any `SELECT` without `EMIT CHANGES`: key lookups, range
//! scans, any predicate, `ORDER BY`, `LIMIT`, aggregates, joins between
//! sources. Each query gets a fresh DataFusion `SessionContext` in which
//! every source it names is a `MemTable` over one consistent set of
//! [`Snapshot`]s; in a cluster, where each member materializes a share of
//! the partitions, a [`crate::scatter::ScatterTable`] that gathers them
//! all from their owners.
//!
//! ksqlDB's dialect is kept by rewriting the statement before DataFusion
//! plans it: unquoted identifiers are upper-cased (ksqlDB's names), `*`
//! expands to the key and value columns (with `WINDOWSTART`/`WINDOWEND`
//! after the keys of windowed sources) rather than the pseudo columns,
//! unnamed expressions are called `KSQL_COL_n`, and functions are looked up
//! under their ksqlDB names. DataFusion functions whose result grows with
//! an argument's value rather than the data ([`UNBOUNDED_FUNCTIONS`]) are
//! refused: one call could take all the server's memory.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, Ident, LambdaFunction, LambdaSyntax, ObjectName,
    ObjectNamePart, OneOrManyWithParens, Query, SelectItem, SetExpr, Statement, Subscript,
    TableFactor, Value, visit_expressions, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use sluice_engine::schema::SqlType;
use sluice_engine::window::{WINDOWEND, WINDOWSTART};
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::{KsqlDialect, SourceKind};

use crate::error::ServerError;
use crate::lookup::{self, LookupCache};
use crate::materialized::{Materializer, Snapshot};
use crate::rows;

/// How long a pull query waits for a source created a moment ago to be
/// materialized by the runtime.
const MATERIALIZE_WAIT: Duration = Duration::from_secs(10);

/// DataFusion functions that allocate as much as an argument asks
/// (`array_repeat(x, 2147483647)`), not offered in pull queries. ksqlDB's
/// functions of the same names (`GENERATE_SERIES`) are bounded and win.
const UNBOUNDED_FUNCTIONS: &[&str] = &[
    "array_repeat",
    "list_repeat",
    "array_resize",
    "list_resize",
    "range",
    "generate_series",
];

/// One output column of a query.
#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub name: String,
    pub sql_type: SqlType,
    /// A key column of the table queried, as ksqlDB marks it in headers.
    pub key: bool,
}

/// The answer to a pull query.
#[derive(Debug)]
pub struct PullResult {
    pub columns: Vec<OutputColumn>,
    /// One JSON array per row.
    pub rows: Vec<String>,
    /// True when every source was a stream: ksqlDB ends such answers with
    /// "Query Completed", or "Limit Reached" when the `LIMIT` cut it short.
    pub over_streams: bool,
    /// The query's `LIMIT`, when a literal.
    pub limit: Option<u64>,
}

impl PullResult {
    /// ksqlDB's closing message, for answers over streams.
    pub fn final_message(&self) -> Option<&'static str> {
        if !self.over_streams {
            return None;
        }
        match self.limit {
            Some(l) if self.rows.len() as u64 >= l => Some("Limit Reached"),
            _ => Some("Query Completed"),
        }
    }
}

/// `LIMIT n` of the outer query.
fn literal_limit(query: &Query) -> Option<u64> {
    use datafusion::sql::sqlparser::ast::{LimitClause, Value};
    match &query.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            ..
        }) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// ksqlDB's rendering of a result schema: `` `K` STRING KEY, `V` BIGINT``.
pub fn schema_text(columns: &[OutputColumn]) -> String {
    columns
        .iter()
        .map(|c| {
            let key = if c.key { " KEY" } else { "" };
            format!("`{}` {}{key}", c.name, c.sql_type)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `sql` as a pull query, with ksqlDB's identifier rules.
pub fn parse(sql: &str) -> Result<Box<Query>, ServerError> {
    let dialect = KsqlDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| statement(sql, e.to_string()))?;
    // ksqlDB upper-cases unquoted identifiers; keywords do not care.
    let tokens = tokens
        .into_iter()
        .map(|mut t| {
            if let Token::Word(w) = &mut t.token
                && w.quote_style.is_none()
            {
                w.value = w.value.to_uppercase();
            }
            t
        })
        .collect();
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| statement(sql, e.to_string()))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(mut q)), true) => {
            struct_dereference(&mut q);
            Ok(q)
        }
        _ => Err(statement(sql, "Expected a single SELECT statement.".into())),
    }
}

/// ksqlDB's struct dereference `s->field` (and `a.s->f->g`), which the
/// SQL parser reads as a lambda or a JSON arrow, becomes DataFusion's
/// field access `s['FIELD']`. ksqlDB's own lambdas are written with `=>`,
/// so no real lambda is touched.
fn struct_dereference(query: &mut Query) {
    fn field(name: &Ident) -> AccessExpr {
        AccessExpr::Subscript(Subscript::Index {
            index: Expr::Value(Value::SingleQuotedString(name.value.clone()).into()),
        })
    }
    /// `root->rest`, where `rest` is what the parser made of the right
    /// side. A lambda's body runs to the end of the expression
    /// (`s->f = 1 AND x` is `s -> (f = 1 AND x)`), so the field is the
    /// leftmost operand of `rest`, and the dereference goes there.
    fn access(root: Expr, rest: &Expr) -> Option<Expr> {
        match rest {
            Expr::Identifier(name) => Some(extend(root, vec![field(name)])),
            Expr::CompoundFieldAccess {
                root: inner,
                access_chain,
            } => {
                let Expr::Identifier(name) = inner.as_ref() else {
                    return None;
                };
                let mut chain = vec![field(name)];
                chain.extend(access_chain.iter().cloned());
                Some(extend(root, chain))
            }
            _ => {
                let mut out = rest.clone();
                let slot = leftmost_operand(&mut out)?;
                *slot = access(root, slot)?;
                Some(out)
            }
        }
    }
    /// The operand written first in `e`, for the operators a condition on
    /// a struct field uses.
    fn leftmost_operand(e: &mut Expr) -> Option<&mut Expr> {
        match e {
            Expr::BinaryOp { left, .. } => Some(left),
            Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsDistinctFrom(x, _)
            | Expr::IsNotDistinctFrom(x, _) => Some(x),
            Expr::InList { expr, .. }
            | Expr::Between { expr, .. }
            | Expr::Like { expr, .. }
            | Expr::ILike { expr, .. }
            | Expr::SimilarTo { expr, .. } => Some(expr),
            _ => None,
        }
    }
    fn extend(root: Expr, chain: Vec<AccessExpr>) -> Expr {
        match root {
            Expr::CompoundFieldAccess {
                root,
                mut access_chain,
            } => {
                access_chain.extend(chain);
                Expr::CompoundFieldAccess { root, access_chain }
            }
            root => Expr::CompoundFieldAccess {
                root: Box::new(root),
                access_chain: chain,
            },
        }
    }
    let _ = visit_expressions_mut(query, |e: &mut Expr| {
        let rewritten = match e {
            Expr::Lambda(LambdaFunction {
                params: OneOrManyWithParens::One(param),
                body,
                syntax: LambdaSyntax::Arrow,
            }) if param.data_type.is_none() => access(Expr::Identifier(param.name.clone()), body),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Arrow,
                right,
            } => access(left.as_ref().clone(), right),
            _ => None,
        };
        if let Some(rewritten) = rewritten {
            *e = rewritten;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn statement(sql: &str, message: String) -> ServerError {
    ServerError::Statement {
        statement: sql.to_string(),
        message,
    }
}

/// Runs a pull query over the current projections; key lookups of a
/// table take the fast path of [`crate::lookup`] when `lookups` is given.
pub async fn execute(
    ctx: &KsqlContext,
    materializer: &Materializer,
    lookups: Option<&LookupCache>,
    sql: &str,
) -> Result<PullResult, ServerError> {
    let mut query = parse(sql)?;
    refuse_unbounded(ctx, sql, &query)?;
    pseudo_time_literals(&mut query).map_err(|message| statement(sql, message))?;
    string_plus(&mut query);
    let names = source_names(&query);
    let mut sources = Vec::with_capacity(names.len());
    for name in &names {
        match ctx.source(name) {
            Some(s) => sources.push(s),
            None => return Err(statement(sql, format!("{name} does not exist."))),
        }
    }
    let snapshots: Vec<Arc<Snapshot>> = materializer
        .snapshots_waiting(&names, MATERIALIZE_WAIT)
        .await
        .into_iter()
        .zip(&names)
        .map(|(s, name)| {
            s.ok_or_else(|| {
                ServerError::Unavailable(format!("{name} is not materialized yet; retry shortly"))
            })
        })
        .collect::<Result<_, _>>()?;
    for s in &snapshots {
        if let Some(e) = &s.error {
            return Err(ServerError::Internal(format!(
                "{} could not be materialized: {e}",
                s.source.name
            )));
        }
    }
    if let (Some(cache), [source], [snapshot]) = (lookups, sources.as_slice(), snapshots.as_slice())
        && let Some(answer) = lookup::try_lookup(ctx, cache, &query, source, snapshot).await
    {
        return Ok(answer);
    }
    let keys = rewrite(&mut query, &sources);
    type_int_literals(&mut query);
    sql_cast_types(&mut query);
    let limit = literal_limit(&query);

    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let session = SessionContext::new_with_config(config);
    for s in &snapshots {
        let table: Arc<dyn datafusion::catalog::TableProvider> =
            match (materializer.scatter(), &s.split) {
                (Some(scatter), Some(_)) => scatter.table(s),
                _ => Arc::new(
                    MemTable::try_new(s.schema.clone(), vec![s.batches()?])
                        .map_err(|e| ServerError::Internal(e.to_string()))?,
                ),
            };
        session
            .register_table(TableReference::bare(s.source.name.as_str()), table)
            .map_err(|e| ServerError::Internal(e.to_string()))?;
    }
    register_functions(ctx, &session, &mut query);

    // Rows missing in a cluster (no owner, a member failing) are the
    // server's trouble, not the statement's.
    let fail = |e: datafusion::error::DataFusionError| match crate::scatter::scatter_error(&e) {
        Some(missing) => ServerError::Unavailable(missing.0),
        None => statement(sql, e.to_string()),
    };
    let plan = session
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(Statement::Query(query))))
        .await
        .map_err(fail)?;
    let frame = session.execute_logical_plan(plan).await.map_err(fail)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches: Vec<RecordBatch> = frame.collect().await.map_err(fail)?;

    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let sql_type = SqlType::from_arrow(f.data_type()).map_err(|e| {
                statement(
                    sql,
                    format!("Column `{}` has no ksqlDB type: {e}", f.name()),
                )
            })?;
            Ok(OutputColumn {
                name: f.name().clone(),
                sql_type,
                key: keys.get(i).copied().unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(rows::json_rows(batch.columns(), None)?);
    }
    Ok(PullResult {
        columns,
        rows: out,
        over_streams: !sources.is_empty() && sources.iter().all(|s| s.kind == SourceKind::Stream),
        limit,
    })
}

/// Names of the catalog sources a query reads, without its CTE names.
fn source_names(query: &Query) -> Vec<String> {
    let ctes: Vec<String> = query
        .with
        .iter()
        .flat_map(|w| w.cte_tables.iter())
        .map(|c| c.alias.name.value.clone())
        .collect();
    let mut names = Vec::new();
    let _ = visit_relations(query, |name: &ObjectName| {
        if let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident) {
            let n = last.value.clone();
            if !ctes.contains(&n) && !names.contains(&n) {
                names.push(n);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    names
}

/// The columns `*` stands for: keys, the window of windowed sources, values.
fn visible_columns(source: &DataSource) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = source
        .schema
        .key_columns()
        .map(|c| (c.name.clone(), true))
        .collect();
    if source.window.is_some() {
        out.push((WINDOWSTART.to_string(), true));
        out.push((WINDOWEND.to_string(), true));
    }
    out.extend(
        source
            .schema
            .value_columns()
            .map(|c| (c.name.clone(), false)),
    );
    out
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// Applies ksqlDB's naming to the outer SELECT; returns which output
/// columns are key columns of the (single, table) source.
pub(crate) fn rewrite(query: &mut Query, sources: &[Arc<DataSource>]) -> Vec<bool> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return vec![];
    };
    // (qualifier, source) in FROM order.
    let mut from: Vec<(String, Arc<DataSource>)> = Vec::new();
    for t in &select.from {
        let factors = std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation));
        for f in factors {
            if let TableFactor::Table { name, alias, .. } = f
                && let Some(last) = name.0.last().and_then(ObjectNamePart::as_ident)
                && let Some(s) = sources.iter().find(|s| s.name == last.value)
            {
                let qualifier = alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .unwrap_or_else(|| s.name.clone());
                from.push((qualifier, s.clone()));
            }
        }
    }
    let grouped = !matches!(
        &select.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty()
    ) || select.distinct.is_some();
    let single_table = from.len() == 1 && from[0].1.kind == SourceKind::Table && !grouped;
    let key_names: Vec<String> = if single_table {
        visible_columns(&from[0].1)
            .into_iter()
            .filter(|(_, k)| *k)
            .map(|(n, _)| n)
            .collect()
    } else {
        vec![]
    };
    let shared = |name: &str| {
        from.iter()
            .filter(|(_, s)| visible_columns(s).iter().any(|(n, _)| n == name))
            .count()
            > 1
    };

    let mut items = Vec::with_capacity(select.projection.len());
    let mut keys = Vec::new();
    let mut generated = 0;
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::Wildcard(_) if !from.is_empty() => {
                for (qualifier, source) in &from {
                    for (name, key) in visible_columns(source) {
                        if from.len() == 1 {
                            items.push(SelectItem::UnnamedExpr(Expr::Identifier(quoted(&name))));
                        } else {
                            let column =
                                Expr::CompoundIdentifier(vec![quoted(qualifier), quoted(&name)]);
                            let alias = if shared(&name) {
                                format!("{qualifier}_{name}")
                            } else {
                                name.clone()
                            };
                            items.push(SelectItem::ExprWithAlias {
                                expr: column,
                                alias: quoted(&alias),
                            });
                        }
                        keys.push(key && single_table);
                    }
                }
            }
            SelectItem::QualifiedWildcard(kind, options) => {
                let qualifier = kind.to_string();
                let found = from
                    .iter()
                    .find(|(q, _)| *q == qualifier || qualifier.trim_matches('"') == q);
                match found {
                    Some((q, source)) => {
                        for (name, key) in visible_columns(source) {
                            items.push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                                quoted(q),
                                quoted(&name),
                            ])));
                            keys.push(key && single_table);
                        }
                    }
                    None => {
                        items.push(SelectItem::QualifiedWildcard(kind, options));
                        keys.push(false);
                    }
                }
            }
            SelectItem::UnnamedExpr(e) => {
                let column = match &e {
                    Expr::Identifier(i) => Some(i.value.clone()),
                    Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
                    _ => None,
                };
                match column {
                    Some(name) => {
                        keys.push(key_names.contains(&name));
                        items.push(SelectItem::UnnamedExpr(e));
                    }
                    None => {
                        let alias = format!("KSQL_COL_{generated}");
                        generated += 1;
                        items.push(SelectItem::ExprWithAlias {
                            expr: e,
                            alias: quoted(&alias),
                        });
                        keys.push(false);
                    }
                }
            }
            other => {
                items.push(other);
                keys.push(false);
            }
        }
    }
    select.projection = items;
    keys
}

/// ksqlDB reads a string compared with `ROWTIME`, `WINDOWSTART` or
/// `WINDOWEND` as a timestamp, possibly partial (`'2020-02-23T23:45'`,
/// with an optional zone offset): such strings become their epoch millis.
fn pseudo_time_literals(query: &mut Query) -> Result<(), String> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value};
    let is_time = |e: &Expr| {
        let name = match e {
            Expr::Identifier(i) => Some(&i.value),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
            _ => None,
        };
        name.is_some_and(|n| matches!(n.as_str(), "ROWTIME" | WINDOWSTART | WINDOWEND))
    };
    let millis = |e: &mut Expr| -> Result<(), String> {
        if let Expr::Value(v) = e
            && let Value::SingleQuotedString(text) = &v.value
        {
            let ms = sluice_sql::functions::datetime::parse_partial_timestamp(text).ok_or_else(|| {
                format!(
                    "Failed to parse timestamp '{text}': expected yyyy-MM-dd'T'HH:mm:ss.SSS with an optional time zone"
                )
            })?;
            *e = Expr::value(Value::Number(ms.to_string(), false));
        }
        Ok(())
    };
    let mut failed = None;
    let _ = visit_expressions_mut(query, |e: &mut Expr| {
        let outcome = match e {
            Expr::BinaryOp {
                left,
                op:
                    BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq,
                right,
            } => {
                if is_time(left) {
                    millis(right)
                } else if is_time(right) {
                    millis(left)
                } else {
                    Ok(())
                }
            }
            Expr::Between {
                expr, low, high, ..
            } if is_time(expr) => millis(low).and_then(|()| millis(high)),
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(message) => {
                failed = Some(message);
                std::ops::ControlFlow::Break(())
            }
        }
    });
    failed.map_or(Ok(()), Err)
}

/// In ksqlDB `+` with a string concatenates (`ID + '-adj'`); DataFusion
/// has no `+` on strings, so a `+` with a string literal becomes `||`.
fn string_plus(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value};
    let text =
        |e: &Expr| matches!(e, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
    let _ = visit_expressions_mut(query, |e: &mut Expr| {
        if let Expr::BinaryOp { left, op, right } = e
            && *op == BinaryOperator::Plus
            && (text(left) || text(right))
        {
            *op = BinaryOperator::StringConcat;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// ksqlDB types an integer literal that fits 32 bits as `INT` (`score * 2`
/// stays `INTEGER`); DataFusion would make it `BIGINT`. Only the SELECT
/// body is rewritten: `LIMIT` and `ORDER BY 1` keep their literals.
pub(crate) fn type_int_literals(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::{CastKind, DataType, Value};
    let _ = visit_expressions_mut(query.body.as_mut(), |e: &mut Expr| {
        if let Expr::Value(v) = e
            && let Value::Number(text, _) = &v.value
            && text.parse::<i32>().is_ok()
        {
            *e = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(e.clone()),
                data_type: DataType::Int(None),
                array: false,
                format: None,
            };
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// ksqlDB's `CAST(x AS <ksqlDB type>)` parses to a custom type name;
/// DataFusion needs the SQL type. Nested types have no SQL spelling
/// DataFusion reads and stay as they are (DataFusion then rejects them).
pub(crate) fn sql_cast_types(query: &mut Query) {
    use datafusion::sql::sqlparser::ast::{DataType, ExactNumberInfo, TimezoneInfo};
    let _ = visit_expressions_mut(query, |e: &mut Expr| {
        if let Expr::Cast { data_type, .. } = e
            && let DataType::Custom(name, args) = data_type
            && args.is_empty()
            && let Ok(ty) = sluice_sql::parser::types::parse_type_str(&name.to_string())
        {
            let target = match ty {
                SqlType::Boolean => Some(DataType::Boolean),
                SqlType::Int => Some(DataType::Int(None)),
                SqlType::Bigint => Some(DataType::BigInt(None)),
                SqlType::Double => Some(DataType::Double(ExactNumberInfo::None)),
                SqlType::String => Some(DataType::Varchar(None)),
                SqlType::Bytes => Some(DataType::Bytea),
                SqlType::Date => Some(DataType::Date),
                SqlType::Decimal { precision, scale } => Some(DataType::Decimal(
                    ExactNumberInfo::PrecisionAndScale(u64::from(precision), i64::from(scale)),
                )),
                SqlType::Time => Some(DataType::Time(None, TimezoneInfo::None)),
                SqlType::Timestamp => Some(DataType::Timestamp(Some(3), TimezoneInfo::None)),
                _ => None,
            };
            if let Some(target) = target {
                *data_type = target;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Fails for a call of one of [`UNBOUNDED_FUNCTIONS`] that is not a ksqlDB
/// function.
fn refuse_unbounded(ctx: &KsqlContext, sql: &str, query: &Query) -> Result<(), ServerError> {
    let registry = ctx.functions();
    let mut refused = None;
    let _ = visit_expressions(query, |e: &Expr| {
        if let Expr::Function(f) = e
            && let Some(name) = f.name.0.last().and_then(ObjectNamePart::as_ident)
            && registry.scalar(&name.value).is_none()
            && UNBOUNDED_FUNCTIONS.contains(&name.value.to_lowercase().as_str())
        {
            refused = Some(name.value.clone());
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    match refused {
        Some(name) => Err(statement(
            sql,
            format!(
                "{name} is not available in pull queries: its result size is not bounded by the data"
            ),
        )),
        None => Ok(()),
    }
}

/// Points calls of ksqlDB functions at their implementations, registered
/// in `session` under their own names.
pub(crate) fn register_functions(ctx: &KsqlContext, session: &SessionContext, query: &mut Query) {
    let registry = ctx.functions();
    let _ = visit_expressions_mut(query, |e: &mut Expr| {
        if let Expr::Function(f) = e
            && let Some(name) = f.name.0.last().and_then(ObjectNamePart::as_ident)
        {
            let name = name.value.clone();
            let target = if let Some(udf) = registry.scalar(&name) {
                session.register_udf(udf.as_ref().clone());
                Some(udf.name().to_string())
            } else if let Some(udaf) = registry.aggregate(&name) {
                session.register_udaf(udaf.as_ref().clone());
                Some(udaf.name().to_string())
            } else {
                None
            };
            if let Some(target) = target {
                f.name = ObjectName::from(vec![quoted(&target)]);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

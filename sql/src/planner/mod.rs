//! Planning: a parsed [`Query`] becomes the operator chain of a persistent
//! query ([`PlannedQuery`]).
//!
//! The planner decides what ksqlDB decides: which columns form the result's
//! key, what unnamed columns are called (`KSQL_COL_0`), whether the result
//! is a stream or a table, and which statements to reject with which
//! message. Expressions are converted by [`expr`] and compiled to
//! DataFusion physical expressions; operators come from `sluice-engine`.

pub mod expr;
mod join;
mod repartition;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column as DfColumn, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, SelectItem};
use sluice_engine::operator::Operator;
use sluice_engine::operator::explode::Explode;
use sluice_engine::operator::filter::Filter;
use sluice_engine::operator::group_aggregate::GroupAggregate;
use sluice_engine::operator::projection::Projection;
use sluice_engine::operator::session_window_aggregate::SessionWindowAggregate;
use sluice_engine::operator::time_window_aggregate::{EmitMode, TimeWindowAggregate, WindowTiming};
use sluice_engine::schema::{
    Column, ColumnKind, LogicalSchema, PSEUDO_COLUMNS, ROWOFFSET, ROWPARTITION, ROWTIME, SqlType,
};
use sluice_engine::window::{DEFAULT_GRACE_MS, WINDOWEND, WINDOWSTART, WindowType};

use self::expr::{
    ExprPlanner, Scope, ScopeColumn, derived_name, expand_struct_fields, ksql_text,
    struct_fields_of,
};
use crate::catalog::{Catalog, DataSource};
use crate::error::{Result, SqlError};
use crate::functions::FunctionRegistry;
use crate::functions::table::TableFn;
use crate::parser::{Emit, Query, SourceKind, WindowKind, WindowSpec, normalize_ident};
use crate::{not_supported, statement_err};

/// One source of a planned query and what prepares its rows.
pub struct PlannedInput {
    pub source: Arc<DataSource>,
    pub operators: Vec<Box<dyn Operator>>,
}

/// The result of planning a query.
pub struct PlannedQuery {
    /// The first source (FROM): sinks inherit its formats and partitions.
    pub source: Arc<DataSource>,
    /// Every source, in FROM/JOIN order.
    pub inputs: Vec<PlannedInput>,
    /// One per JOIN, left-deep.
    pub joins: Vec<sluice_engine::query::JoinStage>,
    /// After the joins (or the only input), up to the sink.
    pub operators: Vec<Box<dyn Operator>>,
    /// Key and value columns of the result.
    pub schema: LogicalSchema,
    pub kind: SourceKind,
    /// Set when the result is windowed (its keys carry windows).
    pub window: Option<WindowType>,
    /// The key is computed by the query (PARTITION BY, joins), not passed
    /// on from the input records.
    pub computed_key: bool,
    /// No state of the query mixes records of different input partitions
    /// (it is stateless, or groups by the key its input is partitioned
    /// by), so each input partition can run on its own.
    pub partition_local: bool,
}

impl PlannedQuery {
    /// A plan of one input, `source`, read as it is and then through
    /// `operators` (no joins): a stable key and every partition on its own
    /// unless the caller says otherwise.
    fn of_one_source(
        source: Arc<DataSource>,
        operators: Vec<Box<dyn Operator>>,
        schema: LogicalSchema,
        kind: SourceKind,
    ) -> PlannedQuery {
        PlannedQuery {
            inputs: vec![PlannedInput {
                source: source.clone(),
                operators: vec![],
            }],
            joins: vec![],
            window: source.window,
            source,
            operators,
            schema,
            kind,
            computed_key: false,
            partition_local: true,
        }
    }
}

/// Whether `GROUP BY` names exactly the key columns of `source`: then each
/// group lives in one input partition (records are partitioned by key).
fn groups_by_source_key(group_by: &[SqlExpr], source: &DataSource) -> bool {
    let keys: Vec<&str> = source
        .schema
        .key_columns()
        .map(|c| c.name.as_str())
        .collect();
    let named: std::collections::BTreeSet<String> = group_by
        .iter()
        .filter_map(|g| match g {
            SqlExpr::Identifier(i) => Some(crate::parser::normalize_ident(i)),
            SqlExpr::CompoundIdentifier(parts) => parts.last().map(crate::parser::normalize_ident),
            _ => None,
        })
        .collect();
    !keys.is_empty()
        && group_by.len() == keys.len()
        && named.len() == keys.len()
        && keys.iter().all(|k| named.contains(*k))
}

/// What planning needs besides the query.
pub struct PlanContext<'a> {
    pub catalog: &'a Catalog,
    pub functions: &'a FunctionRegistry,
    pub state: &'a SessionState,
    /// `ksql.new.query.planner.enabled`: key columns follow projection
    /// order and may be left out of a stream's projection.
    pub new_planner: bool,
    /// `ksql.streams.commit.interval.ms`: how long windowed aggregates hold
    /// and coalesce updates; none emits after every input batch.
    pub flush_interval: Option<std::time::Duration>,
    /// Where source topics live (joins check co-partitioning).
    pub topics: Option<&'a dyn sluice_engine::topic::TopicBackend>,
    /// A push query: its result streams to a client and is never a
    /// source, so, unlike a persistent query, it may read a windowed table.
    pub transient: bool,
}

/// One output column being planned.
struct OutputColumn {
    name: String,
    expr: Expr,
    kind: ColumnKind,
}

/// Type-coerces and simplifies an expression the way DataFusion's
/// planner would before it becomes physical (some functions, such as
/// `coalesce`, exist only in simplified form at run time).
pub fn prepare_expr(
    state: &SessionState,
    e: Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(state.config_options().clone())
        .with_current_time()
        .build();
    let simplifier = ExprSimplifier::new(context);
    let coerced = simplifier.coerce(e, schema)?;
    Ok(simplifier.simplify(coerced)?)
}

/// Compiles a logical expression over `schema` into a physical one.
pub fn compile_expr(
    state: &SessionState,
    e: Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn PhysicalExpr>> {
    let prepared = prepare_expr(state, e, schema)?;
    Ok(state.create_physical_expr(prepared, schema)?)
}

impl PlanContext<'_> {
    fn physical(&self, e: Expr, scope: &Scope) -> Result<Arc<dyn PhysicalExpr>> {
        compile_expr(self.state, e, &scope.df)
    }

    /// Plans `query` whose result will be called `sink_name`.
    pub fn plan(&self, query: &Query, sink_name: &str) -> Result<PlannedQuery> {
        if !query.joins.is_empty() {
            return self.plan_join(query, sink_name);
        }
        let source = self
            .catalog
            .source(&query.from.name)
            .cloned()
            .ok_or_else(|| {
                SqlError::Statement(format!(
                    "Line: {}, Col: {}: {} does not exist.",
                    query.from.line, query.from.column, query.from.name
                ))
            })?;
        if let Some(spec) = &query.window {
            validate_window(spec)?;
        }
        if source.kind == SourceKind::Table && source.window.is_some() && !self.transient {
            return statement_err!("KSQL does not support persistent queries on windowed tables.");
        }
        let mut scope = source_scope(&source, query.from.alias.as_deref())?;
        if query.window.is_some() && source.window.is_none() {
            // The window bounds of a windowed aggregation are readable in its
            // SELECT; they come from the aggregate, not from the input.
            scope = with_window_bounds(scope, query.from.alias.as_deref().unwrap_or(&source.name))?;
        }
        let partition = self.partition_by(query, &scope, &source)?;
        let items = expand_select(&query.select, &source, &scope, partition.as_ref())?;

        let converted = self.convert_select(&items, &scope)?;

        let mut operators: Vec<Box<dyn Operator>> = Vec::new();
        let table_keys = (source.kind == SourceKind::Table).then(|| source.schema.key_count());
        if let Some(predicate) = &query.where_clause {
            let keys = table_keys.map(|n| (0..n).collect());
            operators.push(self.where_filter(predicate, &scope, keys)?);
        }

        let is_aggregate =
            !query.group_by.is_empty() || converted.iter().any(|(e, _, _)| contains_aggregate(e));
        if is_aggregate && partition.is_some() {
            return statement_err!("PARTITION BY and GROUP BY in the same query is not supported.");
        }
        if is_aggregate && converted.iter().any(|(e, _, _)| contains_table_function(e)) {
            return statement_err!("Table functions cannot be used with aggregations.");
        }
        if is_aggregate {
            let (ops, schema) =
                self.plan_aggregate(query, &scope, &source, converted, table_keys, sink_name)?;
            operators.extend(ops);
            let window = query.window.as_ref().map(window_type).or(source.window);
            let partition_local = groups_by_source_key(&query.group_by, &source);
            return Ok(PlannedQuery {
                window,
                partition_local,
                ..PlannedQuery::of_one_source(source, operators, schema, SourceKind::Table)
            });
        }
        if query.having.is_some() {
            return statement_err!("HAVING requires GROUP BY");
        }
        if query.window.is_some() {
            return statement_err!("WINDOW clause requires a GROUP BY clause.");
        }
        if query.emit == Some(Emit::Final) {
            return statement_err!("EMIT FINAL is only supported for windowed aggregations.");
        }
        let (converted, scope) = self.plan_table_functions(converted, scope, &mut operators)?;
        let (columns, _) =
            self.name_columns(&converted, &scope, &source, sink_name, partition.as_ref())?;
        let schema =
            self.finish_projection(columns, &scope, &mut operators, source.window.is_some())?;
        Ok(PlannedQuery {
            computed_key: partition.is_some(),
            ..PlannedQuery::of_one_source(source.clone(), operators, schema, source.kind)
        })
    }

    /// Replaces the table function calls of the select items with columns
    /// of an [`Explode`] operator added for them, returning the items and
    /// the scope after it. Without table functions nothing changes.
    fn plan_table_functions<'q>(
        &self,
        converted: Vec<SelectItemExpr<'q>>,
        scope: Scope,
        operators: &mut Vec<Box<dyn Operator>>,
    ) -> Result<(Vec<SelectItemExpr<'q>>, Scope)> {
        let mut generators: Vec<Expr> = Vec::new();
        let mut fields: Vec<Field> = Vec::new();
        let mut rewritten = Vec::with_capacity(converted.len());
        for (e, sql, alias) in converted {
            let e = e
                .transform_up(|node| {
                    let Expr::ScalarFunction(f) = &node else {
                        return Ok(Transformed::no(node));
                    };
                    let (Some(kind), [arg]) = (TableFn::of(&f.func), f.args.as_slice()) else {
                        return Ok(Transformed::no(node));
                    };
                    let name = format!("KSQL_TF_{}", generators.len());
                    fields.push(Field::new(&name, node.get_type(&scope.df)?, true));
                    generators.push(kind.generator(arg.clone()));
                    Ok(Transformed::yes(col(&name)))
                })?
                .data;
            rewritten.push((e, sql, alias));
        }
        if generators.is_empty() {
            return Ok((rewritten, scope));
        }
        let physical = generators
            .into_iter()
            .map(|g| self.physical(g, &scope))
            .collect::<Result<Vec<_>>>()?;
        let mut columns = scope.columns.clone();
        columns.extend(fields.iter().map(|f| ScopeColumn {
            qualifier: None,
            name: f.name().clone(),
            field: f.name().clone(),
            kind: None,
        }));
        let mut all_fields: Vec<Field> = scope
            .arrow
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        all_fields.extend(fields);
        let exploded = Scope::new(columns, Arc::new(Schema::new(all_fields)))?;
        operators.push(Box::new(Explode::new(physical, exploded.arrow.clone())));
        Ok((rewritten, exploded))
    }

    /// The WHERE filter over `scope`: over a stream it drops rows, over a
    /// table (keyed by `table_keys`, positions in the batch) it retracts.
    fn where_filter(
        &self,
        predicate: &SqlExpr,
        scope: &Scope,
        table_keys: Option<Vec<usize>>,
    ) -> Result<Box<dyn Operator>> {
        let planner = ExprPlanner {
            scope,
            functions: self.functions,
            clause: "WHERE",
            allow_aggregates: false,
        };
        let converted = planner.convert(predicate)?;
        if contains_table_function(&converted) {
            return statement_err!(
                "Table functions cannot be used in the WHERE clause: {}",
                ksql_text(predicate)
            );
        }
        let predicate_type = converted.get_type(&scope.df)?;
        if !matches!(predicate_type, DataType::Boolean | DataType::Null) {
            return statement_err!(
                "Type error in WHERE expression: Should evaluate to boolean but is {} ({}) instead.",
                ksql_text(predicate),
                SqlType::from_arrow(&predicate_type)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| predicate_type.to_string())
            );
        }
        let predicate = self.physical(converted, scope)?;
        Ok(match table_keys {
            Some(keys) => Box::new(Filter::for_table_keyed_by(
                predicate,
                scope.arrow.clone(),
                keys,
            )?),
            None => Box::new(Filter::for_stream(predicate, scope.arrow.clone())),
        })
    }

    /// Converts the (expanded) select items over `scope`.
    fn convert_select<'q>(
        &self,
        items: &'q [(SqlExpr, Option<String>)],
        scope: &Scope,
    ) -> Result<Vec<(Expr, &'q SqlExpr, Option<String>)>> {
        let planner = ExprPlanner {
            scope,
            functions: self.functions,
            clause: "SELECT",
            allow_aggregates: true,
        };
        items
            .iter()
            .map(|(e, alias)| Ok((planner.convert(e)?, e, alias.clone())))
            .collect()
    }

    /// Names the select items and decides which are key columns, for a
    /// query without aggregation.
    fn name_columns(
        &self,
        converted: &[(Expr, &SqlExpr, Option<String>)],
        scope: &Scope,
        source: &DataSource,
        sink_name: &str,
        partition: Option<&PartitionBy>,
    ) -> Result<(Vec<OutputColumn>, ())> {
        // Generated names (KSQL_COL_n) skip the source's column names too.
        let mut namer = ColumnNamer::new(
            converted
                .iter()
                .filter_map(|(_, e, a)| a.clone().or_else(|| derived_name(e)))
                .chain(source.schema.columns().iter().map(|c| c.name.clone())),
        );
        let mut keys_seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut columns = Vec::new();
        // A struct field's name (`a->b` is B) must not clash with a source
        // column or another item: it takes the first free B_1, B_2...
        let mut taken: Vec<String> = source
            .schema
            .columns()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        taken.extend(
            converted
                .iter()
                .filter(|(_, e, a)| a.is_some() || !is_dereference(e))
                .filter_map(|(_, e, a)| a.clone().or_else(|| derived_name(e))),
        );
        for (expr, sql, alias) in converted {
            let name = match (alias, derived_name(sql)) {
                (None, Some(base)) if is_dereference(sql) => {
                    let name = std::iter::once(base.clone())
                        .chain((1..).map(|n| format!("{base}_{n}")))
                        .find(|n| !taken.contains(n))
                        .unwrap_or(base);
                    taken.push(name.clone());
                    name
                }
                _ => alias
                    .clone()
                    .or_else(|| derived_name(sql))
                    .unwrap_or_else(|| namer.next()),
            };
            // The key a select item stands for: a PARTITION BY expression
            // when the query re-keys, else a key column of the source.
            let key_ref: Option<String> = match (partition, expr) {
                (Some(p), e) => p
                    .exprs
                    .iter()
                    .position(|k| k == e)
                    .map(|i| p.key_names[i].clone()),
                (None, Expr::Column(c)) => scope
                    .by_field(&c.name)
                    .filter(|sc| sc.kind == Some(ColumnKind::Key))
                    .map(|sc| sc.name.clone()),
                (None, _) => None,
            };
            if let Some(key) = &key_ref {
                keys_seen.entry(key.clone()).or_default().push(name.clone());
            }
            let kind = if key_ref.is_some() {
                ColumnKind::Key
            } else {
                ColumnKind::Value
            };
            if matches!(expr, Expr::Literal(ScalarValue::Null, _)) {
                return statement_err!(
                    "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
                );
            }
            columns.push(OutputColumn {
                name,
                expr: expr.clone(),
                kind,
            });
        }
        for (key, aliases) in &keys_seen {
            if aliases.len() > 1 {
                return statement_err!(
                    "The projection contains a key column (`{key}`) more than once, aliased as: {}.",
                    join_and(aliases)
                );
            }
        }
        let keyless_stream_allowed = self.new_planner && source.kind == SourceKind::Stream;
        if let Some(p) = partition {
            let missing: Vec<&String> = p
                .key_names
                .iter()
                .zip(&p.texts)
                .filter(|(name, _)| !keys_seen.contains_key(*name))
                .map(|(_, text)| text)
                .collect();
            if !missing.is_empty() && !keyless_stream_allowed {
                let texts: Vec<String> = missing.iter().map(|t| t.to_string()).collect();
                let noun = if texts.len() == 1 {
                    "expression"
                } else {
                    "expressions"
                };
                return statement_err!(
                    "The query used to build `{sink_name}` must include the partitioning {noun} {} in its projection (eg, SELECT {}...).",
                    join_and(&texts),
                    texts.join(", ")
                );
            }
            // Keys follow the PARTITION BY order.
            columns.sort_by_key(|c| match c.kind {
                ColumnKind::Key => p
                    .exprs
                    .iter()
                    .position(|k| *k == c.expr)
                    .unwrap_or(usize::MAX),
                ColumnKind::Value => usize::MAX,
            });
            return Ok((columns, ()));
        }
        let missing: Vec<String> = source
            .schema
            .key_columns()
            .filter(|k| !keys_seen.contains_key(&k.name))
            .map(|k| k.name.clone())
            .collect();
        if !missing.is_empty() && !keyless_stream_allowed {
            let (noun, eg) = if missing.len() == 1 {
                ("column", missing[0].clone())
            } else {
                ("columns", missing.join(", "))
            };
            return statement_err!(
                "The query used to build `{sink_name}` must include the key {noun} {} in its projection (eg, SELECT {eg}...).",
                join_and(&missing)
            );
        }
        if !self.new_planner {
            // The old planner keeps the source's key order.
            let order: Vec<&str> = source
                .schema
                .key_columns()
                .map(|k| k.name.as_str())
                .collect();
            columns.sort_by_key(|c| match c.kind {
                ColumnKind::Key => match &c.expr {
                    Expr::Column(col) => scope
                        .by_field(&col.name)
                        .and_then(|sc| order.iter().position(|k| *k == sc.name))
                        .unwrap_or(usize::MAX),
                    _ => usize::MAX,
                },
                ColumnKind::Value => usize::MAX,
            });
        }
        Ok((columns, ()))
    }

    /// Adds the final projection: keys, values, pseudo columns.
    fn finish_projection(
        &self,
        mut columns: Vec<OutputColumn>,
        scope: &Scope,
        operators: &mut Vec<Box<dyn Operator>>,
        windowed: bool,
    ) -> Result<LogicalSchema> {
        columns.sort_by_key(|c| c.kind == ColumnKind::Value);
        if !columns.iter().any(|c| c.kind == ColumnKind::Value) {
            return statement_err!("The projection contains no value columns.");
        }
        let mut logical = Vec::new();
        let mut seen: BTreeMap<String, ()> = BTreeMap::new();
        let mut exprs = Vec::new();
        for c in &columns {
            let data_type = c.expr.get_type(&scope.df)?;
            let sql_type = SqlType::from_arrow(&data_type)?;
            if RESERVED_NAMES.contains(&c.name.as_str()) && c.kind == ColumnKind::Value {
                return statement_err!(
                    "Reserved column name in select: `{}`. Please remove or alias the column.",
                    c.name
                );
            }
            if seen.insert(c.name.clone(), ()).is_some() {
                return statement_err!(
                    "Duplicate value columns found in schema: `{}` {}",
                    c.name,
                    sql_type
                );
            }
            logical.push(Column {
                name: c.name.clone(),
                sql_type,
                kind: c.kind,
            });
            exprs.push(self.physical(c.expr.clone(), scope)?);
        }
        let schema = LogicalSchema::new(logical);
        for pseudo in PSEUDO_COLUMNS {
            exprs.push(self.physical(Expr::Column(DfColumn::from_name(pseudo)), scope)?);
        }
        if windowed {
            for bound in [WINDOWSTART, WINDOWEND] {
                exprs.push(self.physical(Expr::Column(DfColumn::from_name(bound)), scope)?);
            }
        }
        operators.push(Box::new(Projection::new(
            exprs,
            schema.batch_schema(windowed),
        )));
        Ok(schema)
    }

    fn plan_aggregate(
        &self,
        query: &Query,
        scope: &Scope,
        source: &DataSource,
        converted: Vec<(Expr, &SqlExpr, Option<String>)>,
        table_keys: Option<usize>,
        sink_name: &str,
    ) -> Result<(Vec<Box<dyn Operator>>, LogicalSchema)> {
        if query.group_by.is_empty() {
            let offending: Vec<String> = converted
                .iter()
                .filter(|(e, _, _)| !contains_aggregate(e))
                .map(|(_, s, _)| ksql_text(s))
                .collect();
            if !offending.is_empty() {
                return statement_err!(
                    "Non-aggregate SELECT expression(s) not part of GROUP BY: {}",
                    offending.join(", ")
                );
            }
            return not_supported!("aggregation without GROUP BY");
        }
        let group_planner = ExprPlanner {
            scope,
            functions: self.functions,
            clause: "GROUP BY",
            allow_aggregates: false,
        };
        let group_exprs: Vec<Expr> = query
            .group_by
            .iter()
            .map(|g| group_planner.convert(g))
            .collect::<Result<_>>()?;
        if group_exprs.iter().any(contains_table_function) {
            return statement_err!("Table functions cannot be used in the GROUP BY clause.");
        }

        // Every distinct aggregate call in SELECT and HAVING.
        let having = match &query.having {
            Some(h) => {
                let planner = ExprPlanner {
                    scope,
                    functions: self.functions,
                    clause: "HAVING",
                    allow_aggregates: true,
                };
                Some((planner.convert(h)?, h))
            }
            None => None,
        };
        let mut aggregates: Vec<Expr> = Vec::new();
        for e in converted
            .iter()
            .map(|(e, _, _)| e)
            .chain(having.iter().map(|(h, _)| h))
        {
            e.apply(|node| {
                if matches!(node, Expr::AggregateFunction(_)) {
                    if !aggregates.contains(node) {
                        aggregates.push(node.clone());
                    }
                    return Ok(datafusion::common::tree_node::TreeNodeRecursion::Jump);
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            })?;
        }

        // The aggregate operator's output: KSQL_GB_i, KSQL_AGG_j, pseudo.
        let mut agg_fields = Vec::new();
        let mut agg_columns = Vec::new();
        for (i, g) in group_exprs.iter().enumerate() {
            let name = format!("KSQL_GB_{i}");
            agg_fields.push(Field::new(&name, g.get_type(&scope.df)?, true));
            agg_columns.push(ScopeColumn {
                qualifier: None,
                name: name.clone(),
                field: name,
                kind: Some(ColumnKind::Key),
            });
        }
        let mut physical_aggs: Vec<Arc<AggregateFunctionExpr>> = Vec::new();
        let mut agg_result_types = Vec::new();
        for (j, a) in aggregates.iter().enumerate() {
            // DataFusion's aggregates expect coerced arguments (SUM wants
            // BIGINT, not INT).
            let coerced = prepare_expr(self.state, a.clone(), &scope.df)?;
            let Expr::AggregateFunction(f) = &coerced else {
                continue;
            };
            let args = f
                .params
                .args
                .iter()
                .map(|x| self.physical(x.clone(), scope))
                .collect::<Result<Vec<_>>>()?;
            let name = format!("KSQL_AGG_{j}");
            let built = AggregateExprBuilder::new(f.func.clone(), args)
                .schema(scope.arrow.clone())
                .alias(&name)
                .build()?;
            let field = built.field();
            agg_fields.push(Field::new(&name, field.data_type().clone(), true));
            agg_columns.push(ScopeColumn {
                qualifier: None,
                name: name.clone(),
                field: name,
                kind: Some(ColumnKind::Value),
            });
            // ksqlDB's result type follows the argument as written, before
            // DataFusion widened it (SUM of INT stays INT).
            let input_type = match a {
                Expr::AggregateFunction(original) => original
                    .params
                    .args
                    .first()
                    .map(|x| x.get_type(&scope.df))
                    .transpose()?,
                _ => None,
            };
            agg_result_types.push(ksql_aggregate_type(
                f.func.name(),
                input_type.as_ref(),
                field.data_type(),
            )?);
            physical_aggs.push(Arc::new(built));
        }
        if source.value_format == sluice_engine::format::Format::Kafka {
            return statement_err!(
                "Source(s) {} are using the 'KAFKA' value format. This format does not yet support GROUP BY.",
                source.name
            );
        }
        // DELIMITED state stores hold primitives only: an aggregate whose
        // intermediate is a struct (several parts) or a collection cannot
        // be stored in it.
        if matches!(
            source.value_format,
            sluice_engine::format::Format::Delimited { .. }
        ) {
            for a in &physical_aggs {
                let state = a.state_fields()?;
                let nested = state.iter().any(|f| f.data_type().is_nested());
                if nested || state.len() > 1 {
                    return Err(SqlError::Statement(
                        "One of the functions used in the statement has an intermediate type that the value format can not handle. Please remove the function or change the format.".into(),
                    ));
                }
            }
        }
        if table_keys.is_some() {
            for a in &physical_aggs {
                let name = a.fun().name().to_uppercase();
                if matches!(name.as_str(), "MIN" | "MAX") {
                    return statement_err!(
                        "The aggregation functions MIN and MAX cannot be applied to a table source, only to a stream source."
                    );
                }
            }
        }
        agg_fields.push(Field::new(ROWTIME, DataType::Int64, false));
        agg_fields.push(Field::new(ROWPARTITION, DataType::Int32, false));
        agg_fields.push(Field::new(ROWOFFSET, DataType::Int64, false));
        let windowed = query.window.is_some();
        let mut pseudo_columns: Vec<&str> = PSEUDO_COLUMNS.to_vec();
        if windowed {
            agg_fields.push(Field::new(WINDOWSTART, DataType::Int64, false));
            agg_fields.push(Field::new(WINDOWEND, DataType::Int64, false));
            pseudo_columns.extend([WINDOWSTART, WINDOWEND]);
        }
        for pseudo in pseudo_columns {
            agg_columns.push(ScopeColumn {
                qualifier: None,
                name: pseudo.into(),
                field: pseudo.into(),
                kind: None,
            });
        }
        let agg_schema: SchemaRef = Arc::new(Schema::new(agg_fields));
        let agg_scope = Scope::new(agg_columns, agg_schema.clone())?;
        let group_physical = group_exprs
            .iter()
            .map(|g| self.physical(g.clone(), scope))
            .collect::<Result<Vec<_>>>()?;
        let aggregate: Box<dyn Operator> = match &query.window {
            None => {
                if query.emit == Some(Emit::Final) {
                    return statement_err!(
                        "EMIT FINAL is only supported for windowed aggregations."
                    );
                }
                Box::new(GroupAggregate::new(
                    group_physical,
                    physical_aggs,
                    &scope.arrow,
                    table_keys,
                    agg_schema.clone(),
                )?)
            }
            Some(spec) => {
                if table_keys.is_some() {
                    return statement_err!(
                        "KSQL does not support windowing of table aggregations."
                    );
                }
                let timing = window_timing(spec, query.emit, self.flush_interval)?;
                match window_type(spec) {
                    WindowType::Session => {
                        let WindowKind::Session { gap_ms } = spec.kind else {
                            return statement_err!("session window without gap");
                        };
                        Box::new(SessionWindowAggregate::new(
                            to_ms(gap_ms),
                            timing,
                            group_physical,
                            physical_aggs,
                            &scope.arrow,
                            agg_schema.clone(),
                        )?)
                    }
                    time => Box::new(TimeWindowAggregate::new(
                        time,
                        timing,
                        group_physical,
                        physical_aggs,
                        &scope.arrow,
                        agg_schema.clone(),
                    )?),
                }
            }
        };
        let mut operators: Vec<Box<dyn Operator>> = vec![aggregate];

        // Rewrites an expression over the source into one over the
        // aggregate output; fails if a bare source column is left.
        let rewrite = |e: &Expr| -> Result<Expr> {
            let rewritten = e
                .clone()
                .transform_down(|node| {
                    if let Some(i) = group_exprs.iter().position(|g| *g == node) {
                        return Ok(Transformed::new(
                            col(&format!("KSQL_GB_{i}")),
                            true,
                            datafusion::common::tree_node::TreeNodeRecursion::Jump,
                        ));
                    }
                    if let Some(j) = aggregates.iter().position(|a| *a == node) {
                        let value = Expr::Cast(Cast::new(
                            Box::new(col(&format!("KSQL_AGG_{j}"))),
                            agg_result_types[j].0.clone(),
                        ));
                        let value = if agg_result_types[j].1 {
                            coalesce_zero(self.functions, value, &agg_result_types[j].0).map_err(
                                |e| datafusion::error::DataFusionError::Plan(e.to_string()),
                            )?
                        } else {
                            value
                        };
                        return Ok(Transformed::new(
                            value,
                            true,
                            datafusion::common::tree_node::TreeNodeRecursion::Jump,
                        ));
                    }
                    Ok(Transformed::no(node))
                })?
                .data;
            Ok(rewritten)
        };
        let leftover = |e: &Expr| -> bool {
            e.column_refs().iter().any(|c| {
                !c.name.starts_with("KSQL_GB_")
                    && !c.name.starts_with("KSQL_AGG_")
                    && !(windowed && (c.name == WINDOWSTART || c.name == WINDOWEND))
            })
        };

        if let Some((h, sql)) = &having {
            let rewritten = rewrite(h)?;
            if leftover(&rewritten) {
                return statement_err!(
                    "Non-aggregate HAVING expression not part of GROUP BY: {}",
                    ksql_text(sql)
                );
            }
            let predicate = self.physical(rewritten, &agg_scope)?;
            operators.push(Box::new(Filter::for_table(
                predicate,
                agg_schema.clone(),
                group_exprs.len(),
            )?));
        }

        // Key columns: one per GROUP BY expression, named by the select
        // item that is that expression, else by the column it is.
        let mut names_in_use: Vec<String> = converted
            .iter()
            .filter_map(|(_, e, a)| a.clone().or_else(|| derived_name(e)))
            .collect();
        names_in_use.extend(query.group_by.iter().filter_map(derived_name));
        names_in_use.extend(source.schema.columns().iter().map(|c| c.name.clone()));
        let mut namer = ColumnNamer::new(names_in_use.into_iter());
        let mut key_names: Vec<Option<String>> = vec![None; group_exprs.len()];
        let mut value_columns = Vec::new();
        let mut offending = Vec::new();
        for (expr, sql, alias) in &converted {
            if let Some(i) = group_exprs.iter().position(|g| g == expr) {
                let name = alias
                    .clone()
                    .or_else(|| derived_name(sql))
                    .unwrap_or_else(|| namer.next());
                if let Some(first) = &key_names[i] {
                    return statement_err!(
                        "The projection contains a key column more than once: `{first}` and `{name}`."
                    );
                }
                key_names[i] = Some(name);
                continue;
            }
            let rewritten = rewrite(expr)?;
            if leftover(&rewritten) {
                offending.push(ksql_text(sql));
                continue;
            }
            let name = alias
                .clone()
                .or_else(|| derived_name(sql))
                .unwrap_or_else(|| namer.next());
            value_columns.push(OutputColumn {
                name,
                expr: rewritten,
                kind: ColumnKind::Value,
            });
        }
        if !offending.is_empty() {
            return statement_err!(
                "Non-aggregate SELECT expression(s) not part of GROUP BY: {}",
                offending.join(", ")
            );
        }
        let missing: Vec<String> = key_names
            .iter()
            .zip(&query.group_by)
            .filter(|(name, _)| name.is_none())
            .map(|(_, sql)| ksql_text(sql))
            .collect();
        if !missing.is_empty() {
            let noun = if missing.len() == 1 {
                "expression"
            } else {
                "expressions"
            };
            return statement_err!(
                "The query used to build `{sink_name}` must include the grouping {noun} {} in its projection (eg, SELECT {}...).",
                join_and(&missing),
                missing.join(", ")
            );
        }
        let mut columns = Vec::new();
        for (i, (name, sql)) in key_names.into_iter().zip(&query.group_by).enumerate() {
            let name = name
                .or_else(|| derived_name(sql))
                .unwrap_or_else(|| namer.next());
            columns.push(OutputColumn {
                name,
                expr: col(&format!("KSQL_GB_{i}")),
                kind: ColumnKind::Key,
            });
        }
        columns.extend(value_columns);
        let _ = source;
        let schema = self.finish_projection(columns, &agg_scope, &mut operators, windowed)?;
        Ok((operators, schema))
    }
}

/// A PARTITION BY clause, planned: the new key of every row.
pub(crate) struct PartitionBy {
    /// The key expressions over the source; empty for `PARTITION BY NULL`.
    exprs: Vec<Expr>,
    sql: Vec<SqlExpr>,
    /// How ksqlDB prints each expression in messages (`ABS(INPUT.ID)`).
    texts: Vec<String>,
    /// Identifies each key in duplicate-key messages.
    key_names: Vec<String>,
    /// Source columns that are themselves a partitioning expression.
    column_names: Vec<String>,
}

impl PlanContext<'_> {
    fn partition_by(
        &self,
        query: &Query,
        scope: &Scope,
        source: &DataSource,
    ) -> Result<Option<PartitionBy>> {
        if query.partition_by.is_empty() {
            return Ok(None);
        }
        if source.kind == SourceKind::Table {
            return statement_err!(
                "Invalid PARTITION BY on a TABLE: a table's key is its primary key. Re-key a table with GROUP BY."
            );
        }
        let is_null = |e: &SqlExpr| matches!(e, SqlExpr::Value(v) if v.value == datafusion::sql::sqlparser::ast::Value::Null);
        if query.partition_by.iter().any(is_null) {
            if query.partition_by.len() > 1 {
                return statement_err!("Cannot PARTITION BY multiple columns including NULL");
            }
            return Ok(Some(PartitionBy {
                exprs: vec![],
                sql: vec![],
                texts: vec![],
                key_names: vec![],
                column_names: vec![],
            }));
        }
        let planner = ExprPlanner {
            scope,
            functions: self.functions,
            clause: "PARTITION BY",
            allow_aggregates: false,
        };
        let qualifier = query.from.alias.as_deref().unwrap_or(&source.name);
        let mut partition = PartitionBy {
            exprs: vec![],
            sql: vec![],
            texts: vec![],
            key_names: vec![],
            column_names: vec![],
        };
        for e in &query.partition_by {
            if let SqlExpr::BinaryOp {
                op:
                    datafusion::sql::sqlparser::ast::BinaryOperator::And
                    | datafusion::sql::sqlparser::ast::BinaryOperator::Or,
                ..
            } = e
            {
                return statement_err!(
                    "Syntax Error: PARTITION BY takes value expressions, not conditions: {}",
                    ksql_text(e)
                );
            }
            let converted = planner.convert(e)?;
            let text = ksql_text(&qualify_columns(e, qualifier, scope));
            if let Expr::Column(c) = &converted
                && let Some(sc) = scope.by_field(&c.name)
            {
                partition.column_names.push(sc.name.clone());
            }
            partition
                .key_names
                .push(derived_name(e).unwrap_or_else(|| text.clone()));
            partition.exprs.push(converted);
            partition.sql.push(e.clone());
            partition.texts.push(text);
        }
        Ok(Some(partition))
    }
}

/// `e` with every column it names qualified by the source, as ksqlDB
/// prints expressions in messages.
fn qualify_columns(e: &SqlExpr, qualifier: &str, scope: &Scope) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::{Ident, visit_expressions_mut};
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |node| {
        if let SqlExpr::Identifier(ident) = node
            && scope.resolve(None, &normalize_ident(ident)).is_some()
        {
            *node =
                SqlExpr::CompoundIdentifier(vec![Ident::new(qualifier.to_string()), ident.clone()]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e
}

/// Pseudo columns: readable in queries, never the name of a result column.
const RESERVED_NAMES: [&str; 5] = [ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND];

fn col(name: &str) -> Expr {
    Expr::Column(DfColumn::from_name(name))
}

fn coalesce_zero(functions: &FunctionRegistry, e: Expr, data_type: &DataType) -> Result<Expr> {
    let zero = ScalarValue::new_zero(data_type)?;
    let f = functions
        .internal("coalesce")
        .ok_or_else(|| SqlError::Statement("internal function coalesce is missing".into()))?;
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        f.clone(),
        vec![e, lit(zero)],
    )))
}

/// ksqlDB's result type of a built-in aggregate, and whether it starts at
/// zero rather than null (ksqlDB's SUM does).
fn ksql_aggregate_type(
    name: &str,
    input: Option<&DataType>,
    datafusion_type: &DataType,
) -> Result<(DataType, bool)> {
    Ok(match (name.to_lowercase().as_str(), input) {
        (
            "sum",
            Some(
                t @ (DataType::Int32
                | DataType::Int64
                | DataType::Float64
                | DataType::Decimal128(_, _)),
            ),
        ) => (t.clone(), true),
        ("count", _) => (DataType::Int64, false),
        // ksqlDB's AVG of no values is 0.0, not null
        // (confluentinc/ksql#9752).
        ("avg", _) => (DataType::Float64, true),
        ("min" | "max", Some(t)) => (t.clone(), false),
        _ => (datafusion_type.clone(), false),
    })
}

/// A select item: its expression, as written and planned, and its alias.
type SelectItemExpr<'q> = (Expr, &'q SqlExpr, Option<String>);

/// Whether a select item is a struct field access (`a->b`).
fn is_dereference(e: &SqlExpr) -> bool {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, LambdaSyntax};
    matches!(e, SqlExpr::Lambda(l) if l.syntax == LambdaSyntax::Arrow)
        || matches!(
            e,
            SqlExpr::BinaryOp {
                op: BinaryOperator::Arrow,
                ..
            }
        )
}

fn contains_table_function(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|node| {
        if let Expr::ScalarFunction(f) = node
            && TableFn::of(&f.func).is_some()
        {
            found = true;
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|node| {
        if matches!(node, Expr::AggregateFunction(_)) {
            found = true;
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// The columns a query over `source` can reference: keys, values and
/// pseudo columns, qualified by the source name or its alias.
pub fn source_scope(source: &DataSource, alias: Option<&str>) -> Result<Scope> {
    let qualifier = alias.unwrap_or(&source.name).to_string();
    let mut columns: Vec<ScopeColumn> = source
        .schema
        .columns()
        .iter()
        .map(|c| ScopeColumn {
            qualifier: Some(qualifier.clone()),
            name: c.name.clone(),
            field: c.name.clone(),
            kind: Some(c.kind),
        })
        .collect();
    let mut pseudo: Vec<&str> = PSEUDO_COLUMNS.to_vec();
    if source.window.is_some() {
        pseudo.extend([WINDOWSTART, WINDOWEND]);
    }
    for name in pseudo {
        columns.push(ScopeColumn {
            qualifier: Some(qualifier.clone()),
            name: name.into(),
            field: name.into(),
            kind: None,
        });
    }
    Scope::new(columns, source.schema.batch_schema(source.window.is_some()))
}

/// Adds `WINDOWSTART` and `WINDOWEND` to a scope, after its columns so
/// that the positions of real input columns do not move.
fn with_window_bounds(scope: Scope, qualifier: &str) -> Result<Scope> {
    let mut columns = scope.columns;
    let mut fields: Vec<Field> = scope
        .arrow
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for bound in [WINDOWSTART, WINDOWEND] {
        columns.push(ScopeColumn {
            qualifier: Some(qualifier.to_string()),
            name: bound.into(),
            field: bound.into(),
            kind: None,
        });
        fields.push(Field::new(bound, DataType::Int64, false));
    }
    Scope::new(columns, Arc::new(Schema::new(fields)))
}

/// Expands `*` and `alias.*` into the source's key and value columns.
///
/// Under PARTITION BY, `*` is the re-keyed row: the partitioning
/// expressions, then the value columns, then the old key columns.
fn expand_select(
    items: &[SelectItem],
    source: &DataSource,
    scope: &Scope,
    partition: Option<&PartitionBy>,
) -> Result<Vec<(SqlExpr, Option<String>)>> {
    let mut out = Vec::new();
    let star = |out: &mut Vec<(SqlExpr, Option<String>)>| {
        let ident = |name: &str| {
            SqlExpr::Identifier(datafusion::sql::sqlparser::ast::Ident::with_quote(
                '`',
                name.to_string(),
            ))
        };
        match partition {
            None => {
                for c in source.schema.columns() {
                    out.push((ident(&c.name), None));
                }
            }
            Some(p) => {
                for e in &p.sql {
                    out.push((e.clone(), None));
                }
                let re_keyed = source
                    .schema
                    .value_columns()
                    .chain(source.schema.key_columns())
                    .filter(|c| !p.column_names.contains(&c.name));
                for c in re_keyed {
                    out.push((ident(&c.name), None));
                }
            }
        }
    };
    for item in items {
        match item {
            // `s->*`: one item per field of struct column `s`.
            SelectItem::UnnamedExpr(e) if struct_fields_of(e).is_some() => {
                out.extend(expand_struct_fields(e, scope)?);
            }
            SelectItem::UnnamedExpr(e) => out.push((e.clone(), None)),
            SelectItem::ExprWithAlias { expr, alias } => {
                out.push((expr.clone(), Some(normalize_ident(alias))))
            }
            SelectItem::Wildcard(_) => star(&mut out),
            SelectItem::ExprWithAliases { .. } => {
                return not_supported!("multiple aliases for one expression");
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let name = kind.to_string();
                let name = name.trim_end_matches(".*");
                let qualifier = if name.starts_with('`') || name.starts_with('"') {
                    name.trim_matches(|c| c == '`' || c == '"').to_string()
                } else {
                    name.to_uppercase()
                };
                if scope
                    .columns
                    .iter()
                    .all(|c| c.qualifier.as_deref() != Some(qualifier.as_str()))
                {
                    return statement_err!("Source '{qualifier}' not found in query");
                }
                star(&mut out)
            }
        }
    }
    Ok(out)
}

/// Hands out `KSQL_COL_n` names that clash with no other column.
struct ColumnNamer {
    taken: Vec<String>,
    next: usize,
}

impl ColumnNamer {
    fn new(taken: impl Iterator<Item = String>) -> Self {
        ColumnNamer {
            taken: taken.collect(),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        loop {
            let name = format!("KSQL_COL_{}", self.next);
            self.next += 1;
            if !self.taken.contains(&name) {
                self.taken.push(name.clone());
                return name;
            }
        }
    }
}

/// `A`, `A and B`, `A, B and C`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

fn to_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The engine's window type of a `WINDOW` clause.
pub fn window_type(spec: &WindowSpec) -> WindowType {
    match spec.kind {
        WindowKind::Tumbling { size_ms } => WindowType::Tumbling {
            size_ms: to_ms(size_ms),
        },
        WindowKind::Hopping {
            size_ms,
            advance_ms,
        } => WindowType::Hopping {
            size_ms: to_ms(size_ms),
            advance_ms: to_ms(advance_ms),
        },
        WindowKind::Session { .. } => WindowType::Session,
    }
}

/// Grace, retention and emission of a `WINDOW` clause, with ksqlDB's
/// defaults: 24 hours of grace (none under EMIT FINAL), and retention at
/// least long enough to cover the window and its grace. A retention given
/// without a grace period caps the default grace to fit in it.
fn window_timing(
    spec: &WindowSpec,
    emit: Option<Emit>,
    flush_interval: Option<std::time::Duration>,
) -> Result<WindowTiming> {
    let emit = if emit == Some(Emit::Final) {
        EmitMode::Final
    } else {
        EmitMode::Changes
    };
    let span = match spec.kind {
        WindowKind::Tumbling { size_ms } | WindowKind::Hopping { size_ms, .. } => to_ms(size_ms),
        WindowKind::Session { gap_ms } => to_ms(gap_ms),
    };
    let retention = spec.retention_ms.map(to_ms);
    let grace_ms = match (spec.grace_ms, retention) {
        (Some(g), _) => to_ms(g),
        (None, _) if emit == EmitMode::Final => 0,
        (None, Some(r)) => DEFAULT_GRACE_MS.min((r - span).max(0)),
        (None, None) => DEFAULT_GRACE_MS,
    };
    if let Some(r) = retention
        && r < span.saturating_add(grace_ms)
    {
        return statement_err!(
            "The retention period of a window must be no smaller than its size plus the grace period. Got size={span} ms, grace={grace_ms} ms, retention={r} ms."
        );
    }
    let retention_ms = retention.unwrap_or(0).max(span.saturating_add(grace_ms));
    Ok(WindowTiming {
        grace_ms,
        retention_ms,
        emit,
        flush_interval,
    })
}

fn validate_window(spec: &WindowSpec) -> Result<()> {
    match spec.kind {
        WindowKind::Tumbling { size_ms: 0 } | WindowKind::Hopping { size_ms: 0, .. } => {
            statement_err!("Window size must be greater than zero.")
        }
        WindowKind::Hopping { advance_ms: 0, .. } => {
            statement_err!("Window advance must be greater than zero.")
        }
        WindowKind::Hopping {
            size_ms,
            advance_ms,
        } if advance_ms > size_ms => statement_err!(
            "Window advance ({advance_ms} ms) must not be larger than the window size ({size_ms} ms)."
        ),
        WindowKind::Session { gap_ms: 0 } => {
            statement_err!("Session gap must be greater than zero.")
        }
        _ => Ok(()),
    }
}

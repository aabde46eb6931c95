//! Planning joins: `FROM a JOIN b ON ... [JOIN c ON ...]`.
//!
//! Joins chain left-deep, as in ksqlDB: each stage joins the result so far
//! with the next source. For every stage this module decides the join
//! operator (stream-stream, stream-table, table-table), validates what
//! ksqlDB validates (join order, key types, primary keys, windows), and
//! lays out the batches the engine's join operators expect (see
//! `sluice_engine::operator::join_rows`): each side is projected to its
//! join key, its columns and its time, partition and offset; the join's
//! output names every source column `ALIAS_COLUMN`, as ksqlDB's joined
//! schema does.
//!
//! A side joined on something other than its key is re-keyed by the join
//! expression inside the query (what ksqlDB does through a repartition
//! topic).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Column as DfColumn;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, visit_expressions};
use sluice_engine::operator::JoinOperator;
use sluice_engine::operator::Operator;
use sluice_engine::operator::foreign_key_join::ForeignKeyJoin;
use sluice_engine::operator::join_rows::JoinKind as EngineJoinKind;
use sluice_engine::operator::projection::Projection;
use sluice_engine::operator::stream_stream_join::{JoinWindow, StreamStreamJoin};
use sluice_engine::operator::stream_table_join::StreamTableJoin;
use sluice_engine::operator::table_table_join::TableTableJoin;
use sluice_engine::query::JoinStage;
use sluice_engine::schema::{
    ColumnKind, PSEUDO_COLUMNS, ROWOFFSET, ROWPARTITION, ROWTIME, SqlType,
};
use std::ops::ControlFlow;

use super::expr::{ExprPlanner, Scope, ScopeColumn, ksql_text};
use super::{PlanContext, PlannedInput, PlannedQuery, source_scope};
use crate::catalog::DataSource;
use crate::error::{Result, SqlError};
use crate::parser::{Emit, JoinKind, Query, Relation, SourceKind, normalize_ident};
use crate::{not_supported, statement_err};

/// The column every joined row is keyed by in a stage's output.
pub(crate) fn row_key_field(stage: usize) -> String {
    format!("__ROWKEY{stage}")
}

/// What the projection of a join must contain: one of the key
/// expressions, which becomes the result's only key column.
pub(crate) struct JoinKeys {
    /// Column references that hold the join key (ksqlDB lets any of them
    /// name the result's key); empty when the key is synthetic.
    pub candidates: Vec<Expr>,
    /// How each candidate is written in messages (`L.A`).
    pub texts: Vec<String>,
    /// The joined key itself (the `ROWKEY` of the result).
    pub key: Expr,
    pub synthetic: bool,
    /// Set for FULL OUTER joins, whose message explains the synthetic key.
    pub outer: bool,
    /// For a foreign-key join: the left table's primary key columns, all
    /// of which the projection must select as the result's key.
    pub foreign: Option<ForeignKeys>,
}

pub(crate) struct ForeignKeys {
    pub columns: Vec<Expr>,
    pub names: Vec<String>,
    pub table: String,
}

/// One source of a join.
struct JoinInput {
    source: Arc<DataSource>,
    alias: String,
    /// Columns over the source's own batches.
    base: Scope,
}

/// The result of the stages so far.
struct Joined {
    /// Columns over the last stage's output.
    scope: Scope,
    kind: SourceKind,
    /// The fields of the last output, to carry into the next stage.
    fields: Vec<Field>,
    keys: JoinKeys,
    /// Where the result's table key is in the output (for WHERE).
    key_columns: Vec<usize>,
}

impl PlanContext<'_> {
    pub(crate) fn plan_join(&self, query: &Query, sink_name: &str) -> Result<PlannedQuery> {
        if query.window.is_some() && query.group_by.is_empty() {
            return statement_err!("WINDOW clause requires a GROUP BY clause.");
        }
        let mut relations: Vec<&Relation> = vec![&query.from];
        relations.extend(query.joins.iter().map(|j| &j.relation));
        let mut inputs = Vec::new();
        for r in &relations {
            let source = self.catalog.source(&r.name).cloned().ok_or_else(|| {
                SqlError::Statement(format!(
                    "Line: {}, Col: {}: {} does not exist.",
                    r.line, r.column, r.name
                ))
            })?;
            let alias = r.alias.clone().unwrap_or_else(|| source.name.clone());
            let base = source_scope(&source, Some(&alias))?;
            inputs.push(JoinInput {
                source,
                alias,
                base,
            });
        }
        self.validate_sources(&inputs)?;

        let mut planned_inputs: Vec<PlannedInput> = Vec::new();
        let mut stages: Vec<JoinStage> = Vec::new();
        let mut joined: Option<Joined> = None;
        // Whether each input partition can be joined on its own: a stream
        // joined on its key with a table on its primary key, both keys
        // written alike, so that a key is in the same partition of both.
        let mut per_partition = query.joins.len() == 1;
        for (k, join) in query.joins.iter().enumerate() {
            let right = &inputs[k + 1];
            let left_aliases: Vec<&str> = inputs[..=k].iter().map(|i| i.alias.as_str()).collect();
            let (left_sql, right_sql) = split_condition(join, &inputs, k)?;
            let left_scope = match &joined {
                Some(j) => &j.scope,
                None => &inputs[0].base,
            };
            let on_planner = |scope| ExprPlanner {
                scope,
                functions: self.functions,
                clause: "JOIN ON",
                allow_aggregates: false,
            };
            let left_expr = on_planner(left_scope).convert(&left_sql)?;
            let right_expr = on_planner(&right.base).convert(&right_sql)?;
            let left_type = SqlType::from_arrow(&left_expr.get_type(&left_scope.df)?)?;
            let right_type = SqlType::from_arrow(&right_expr.get_type(&right.base.df)?)?;
            let left_text = qualified_text(&left_sql, &inputs[..=k]);
            let right_text = qualified_text(&right_sql, std::slice::from_ref(right));
            if left_type != right_type {
                return statement_err!(
                    "Invalid join condition: types don't match. Got {left_text}{{{left_type}}} = {right_text}{{{right_type}}}."
                );
            }
            let key_type = left_type.to_arrow();
            self.check_copartitioned(&left_sql, &right_sql, &inputs[..=k + 1])?;

            let left_kind = joined.as_ref().map_or(inputs[0].source.kind, |j| j.kind);
            let right_kind = right.source.kind;
            let left_name = if k == 0 {
                inputs[0].alias.clone()
            } else {
                left_aliases.join("_")
            };
            let kind = engine_kind(join.kind);
            let shown = format!("{left_name} {} JOIN {}", join_word(join.kind), right.alias);
            let mut foreign_key = false;
            let result_kind = match (left_kind, right_kind) {
                (SourceKind::Stream, SourceKind::Stream) => {
                    per_partition = false;
                    if join.within.is_none() {
                        return statement_err!(
                            "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how to specify a WITHIN clause with a stream-stream join, please visit: https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select"
                        );
                    }
                    SourceKind::Stream
                }
                (SourceKind::Stream, SourceKind::Table) => {
                    if join.within.is_some() {
                        return statement_err!(
                            "A window definition was provided for a Stream-Table join. These joins are not windowed. Please drop the window definition (ie. the WITHIN clause) and try to execute your join again."
                        );
                    }
                    match join.kind {
                        JoinKind::Inner | JoinKind::Left => {}
                        JoinKind::Full => {
                            return statement_err!(
                                "Invalid join type: full-outer join not supported for stream-table join. Got {shown}."
                            );
                        }
                        JoinKind::Right => {
                            return statement_err!(
                                "Invalid join type: right-outer join not supported for stream-table join. Got {shown}."
                            );
                        }
                    }
                    if !is_key_of(&right_expr, right) {
                        return statement_err!(
                            "Invalid join condition: stream-table joins require to join on the table's primary key. Got {left_text} = {right_text}."
                        );
                    }
                    per_partition &= joined.is_none()
                        && is_key_of(&left_expr, &inputs[0])
                        && inputs[0].source.key_format == right.source.key_format
                        && inputs[0].source.window.is_none();
                    SourceKind::Stream
                }
                (SourceKind::Table, SourceKind::Stream) => {
                    return statement_err!(
                        "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {shown}."
                    );
                }
                (SourceKind::Table, SourceKind::Table) => {
                    per_partition = false;
                    if join.within.is_some() {
                        return statement_err!(
                            "A window definition was provided for a Table-Table join. These joins are not windowed. Please drop the window definition (i.e. the WITHIN clause) and try to execute your Table-Table join again."
                        );
                    }
                    if !is_key_of(&right_expr, right) {
                        return statement_err!(
                            "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {left_text} = {right_text}."
                        );
                    }
                    let left_is_key = match &joined {
                        None => is_key_of(&left_expr, &inputs[0]),
                        Some(j) => j.keys.candidates.contains(&left_expr),
                    };
                    if !left_is_key {
                        if k > 0 {
                            return statement_err!(
                                "Invalid join condition: foreign-key table-table joins are not supported as part of n-way joins. Got {left_text} = {right_text}."
                            );
                        }
                        match join.kind {
                            JoinKind::Inner | JoinKind::Left => {}
                            JoinKind::Right => {
                                return statement_err!(
                                    "RIGHT OUTER JOIN on a foreign key is not supported"
                                );
                            }
                            JoinKind::Full => {
                                return statement_err!(
                                    "FULL OUTER JOIN on a foreign key is not supported"
                                );
                            }
                        }
                        foreign_key = true;
                    }
                    SourceKind::Table
                }
            };

            // The sides: join key first, then every column, then time,
            // partition and offset.
            let (left_ops, left_fields) = match &joined {
                None => {
                    let (op, fields) = self.side_projection(
                        &inputs[0],
                        left_expr.clone(),
                        &key_type,
                        &format!("__JK{k}_L"),
                    )?;
                    (vec![op], fields)
                }
                Some(j) => {
                    let (op, fields) = self.carry_projection(j, left_expr.clone(), &key_type, k)?;
                    (vec![op], fields)
                }
            };
            let (right_op, right_fields) =
                self.side_projection(right, right_expr.clone(), &key_type, &format!("__JK{k}_R"))?;
            let left_schema: SchemaRef = Arc::new(Schema::new(left_fields.clone()));
            let right_schema: SchemaRef = Arc::new(Schema::new(right_fields.clone()));
            let mut out_fields = vec![Field::new(row_key_field(k), key_type.clone(), true)];
            out_fields.extend(left_fields.iter().cloned());
            out_fields.extend(right_fields.iter().cloned());
            out_fields.push(Field::new(ROWTIME, DataType::Int64, false));
            out_fields.push(Field::new(ROWPARTITION, DataType::Int32, false));
            out_fields.push(Field::new(ROWOFFSET, DataType::Int64, false));
            let output: SchemaRef = Arc::new(Schema::new(out_fields.clone()));

            let left_key_count = inputs[0].source.schema.key_count();
            let operator: Box<dyn JoinOperator> = match (left_kind, right_kind) {
                _ if foreign_key => Box::new(ForeignKeyJoin::new(
                    kind,
                    left_schema,
                    (1..=left_key_count).collect(),
                    right_schema,
                    output.clone(),
                )?),
                (SourceKind::Stream, SourceKind::Stream) => {
                    let within = join.within.as_ref().ok_or_else(|| {
                        SqlError::Statement("Stream-Stream joins must have a WITHIN clause".into())
                    })?;
                    Box::new(StreamStreamJoin::new(
                        kind,
                        JoinWindow {
                            before_ms: to_ms(within.before_ms),
                            after_ms: to_ms(within.after_ms),
                            grace_ms: within.grace_ms.map(to_ms),
                        },
                        left_schema,
                        right_schema,
                        output.clone(),
                    )?)
                }
                (SourceKind::Stream, SourceKind::Table) => Box::new(StreamTableJoin::new(
                    kind,
                    left_schema,
                    right_schema,
                    output.clone(),
                )?),
                _ => Box::new(TableTableJoin::new(
                    kind,
                    left_schema,
                    right_schema,
                    output.clone(),
                )?),
            };

            // Where the left side's preparation runs: on input 0 for the
            // first stage, after the previous join for later ones.
            match stages.last_mut() {
                None => planned_inputs.push(PlannedInput {
                    source: inputs[0].source.clone(),
                    operators: left_ops,
                }),
                Some(previous) => previous.operators.extend(left_ops),
            }
            planned_inputs.push(PlannedInput {
                source: right.source.clone(),
                operators: vec![right_op],
            });
            stages.push(JoinStage {
                join: operator,
                operators: vec![],
            });

            // The scope over this stage's output.
            let mut columns = vec![];
            for pseudo in PSEUDO_COLUMNS {
                columns.push(ScopeColumn {
                    qualifier: None,
                    name: pseudo.into(),
                    field: pseudo.into(),
                    kind: None,
                });
            }
            for input in &inputs[..=k + 1] {
                columns.extend(input_columns(input));
            }
            let scope = Scope::new(columns.clone(), output.clone())?;

            // The key: column references on either side of the condition
            // (and those they were joined with before) can name it; FULL
            // OUTER joins and expressions get a synthetic ROWKEY.
            let mut candidates = Vec::new();
            let mut texts = Vec::new();
            let mut foreign = None;
            let mut key_columns = vec![0];
            if foreign_key {
                // Keyed by the left table's primary key.
                let first = &inputs[0];
                let pk: Vec<&sluice_engine::schema::Column> =
                    first.source.schema.key_columns().collect();
                let columns: Vec<Expr> = pk
                    .iter()
                    .map(|c| {
                        Expr::Column(DfColumn::from_name(format!("{}_{}", first.alias, c.name)))
                    })
                    .collect();
                if let [single] = columns.as_slice() {
                    candidates.push(single.clone());
                    texts.push(format!("{}.{}", first.alias, pk[0].name));
                }
                key_columns = (2..2 + pk.len()).collect();
                foreign = Some(ForeignKeys {
                    columns,
                    names: pk.iter().map(|c| c.name.clone()).collect(),
                    table: first.source.name.clone(),
                });
            } else if join.kind != JoinKind::Full {
                if let Some(j) = &joined
                    && j.keys.candidates.contains(&left_expr)
                {
                    candidates.extend(j.keys.candidates.iter().cloned());
                    texts.extend(j.keys.texts.iter().cloned());
                } else if let Some(c) =
                    as_joined_column(&left_expr, &left_scope_fields(&joined, &inputs[0]))
                {
                    candidates.push(c);
                    texts.push(left_text.clone());
                }
                if let Some(c) = as_joined_column(&right_expr, &input_field_map(right)) {
                    candidates.push(c);
                    texts.push(right_text.clone());
                }
            }
            let synthetic = candidates.is_empty() && foreign.is_none();
            let key = Expr::Column(DfColumn::from_name(row_key_field(k)));
            let mut scope = scope;
            if synthetic {
                let mut with_rowkey = vec![ScopeColumn {
                    qualifier: None,
                    name: "ROWKEY".into(),
                    field: row_key_field(k),
                    kind: None,
                }];
                with_rowkey.extend(columns);
                scope = Scope::new(with_rowkey, output.clone())?;
            }
            joined = Some(Joined {
                scope,
                kind: result_kind,
                fields: out_fields,
                keys: JoinKeys {
                    candidates,
                    texts,
                    key,
                    synthetic,
                    outer: join.kind == JoinKind::Full,
                    foreign,
                },
                key_columns,
            });
        }
        let Some(joined) = joined else {
            return statement_err!("a join needs at least two sources");
        };

        // WHERE, then aggregation or projection, over the joined rows.
        let scope = joined.scope;
        let mut operators: Vec<Box<dyn Operator>> = Vec::new();
        let table_keys = (joined.kind == SourceKind::Table).then_some(joined.key_columns.len());
        if let Some(predicate) = &query.where_clause {
            let keys = table_keys.map(|_| joined.key_columns.clone());
            operators.push(self.where_filter(predicate, &scope, keys)?);
        }
        let partition = self.join_partition(query, &scope, joined.kind)?;
        let items = expand_join_select(query, &inputs, &joined.keys, partition.as_deref())?;
        let converted = self.convert_select(&items, &scope)?;
        let first = inputs[0].source.clone();
        let is_aggregate = !query.group_by.is_empty()
            || converted
                .iter()
                .any(|(e, _, _)| super::contains_aggregate(e));
        if is_aggregate && partition.is_some() {
            return statement_err!("PARTITION BY and GROUP BY in the same query is not supported.");
        }
        if is_aggregate {
            let (ops, schema) =
                self.plan_aggregate(query, &scope, &first, converted, table_keys, sink_name)?;
            operators.extend(ops);
            let window = query.window.as_ref().map(super::window_type);
            return Ok(PlannedQuery {
                source: first,
                inputs: planned_inputs,
                joins: stages,
                operators,
                schema,
                kind: SourceKind::Table,
                window,
                computed_key: false,
                partition_local: false,
            });
        }
        if query.having.is_some() {
            return statement_err!("HAVING requires GROUP BY");
        }
        if query.emit == Some(Emit::Final) {
            return statement_err!("EMIT FINAL is only supported for windowed aggregations.");
        }
        let columns = match &partition {
            Some(p) => name_partitioned_columns(&converted, p, &inputs, sink_name)?,
            None => self.name_join_columns(&converted, &scope, &joined.keys, &inputs, sink_name)?,
        };
        let schema = self.finish_projection(columns, &scope, &mut operators, false)?;
        let _ = joined.fields;
        Ok(PlannedQuery {
            source: first,
            inputs: planned_inputs,
            joins: stages,
            operators,
            schema,
            kind: joined.kind,
            window: None,
            computed_key: true,
            // Stateless after the join (a PARTITION BY only re-keys).
            partition_local: per_partition,
        })
    }

    fn validate_sources(&self, inputs: &[JoinInput]) -> Result<()> {
        for (i, a) in inputs.iter().enumerate() {
            for b in &inputs[i + 1..] {
                if a.source.name == b.source.name {
                    if inputs.len() == 2 {
                        return statement_err!(
                            "Can not join '{}' to '{}': self joins are not yet supported.",
                            a.source.name,
                            b.source.name
                        );
                    }
                    return statement_err!(
                        "N-way joins do not support multiple occurrences of the same source. Source: '{}'",
                        b.source.name
                    );
                }
            }
        }
        let kafka: Vec<&str> = inputs
            .iter()
            .filter(|i| i.source.value_format == sluice_engine::format::Format::Kafka)
            .map(|i| i.source.name.as_str())
            .collect();
        if !kafka.is_empty() {
            return statement_err!(
                "Source(s) {} are using the 'KAFKA' value format. This format does not yet support JOIN.",
                kafka.join(", ")
            );
        }
        let windowed: Vec<&JoinInput> = inputs
            .iter()
            .filter(|i| i.source.window.is_some())
            .collect();
        if !windowed.is_empty() {
            return not_supported!("joins of windowed sources");
        }
        Ok(())
    }

    /// Sides joined on their own keys are read as they are partitioned,
    /// so their partition counts must agree (re-keyed sides are not).
    fn check_copartitioned(
        &self,
        left: &SqlExpr,
        right: &SqlExpr,
        inputs: &[JoinInput],
    ) -> Result<()> {
        let Some(topics) = self.topics else {
            return Ok(());
        };
        let keyed_source = |e: &SqlExpr| -> Option<&JoinInput> {
            let (alias, name) = match e {
                SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                    (Some(normalize_ident(&parts[0])), normalize_ident(&parts[1]))
                }
                SqlExpr::Identifier(ident) => (None, normalize_ident(ident)),
                _ => return None,
            };
            let input = match alias {
                Some(a) => inputs.iter().find(|i| i.alias == a)?,
                None => inputs
                    .iter()
                    .find(|i| i.source.schema.find(&name).is_some())?,
            };
            let keys: Vec<&str> = input
                .source
                .schema
                .key_columns()
                .map(|c| c.name.as_str())
                .collect();
            (keys == [name.as_str()]).then_some(input)
        };
        let (Some(l), Some(r)) = (keyed_source(left), keyed_source(right)) else {
            return Ok(());
        };
        if l.source.kind == SourceKind::Table && r.source.kind == SourceKind::Table {
            // Table-table joins read both tables whole.
            return Ok(());
        }
        let partitions =
            |i: &JoinInput| topics.describe_topic(&i.source.topic).map(|t| t.partitions);
        if let (Some(lp), Some(rp)) = (partitions(l), partitions(r))
            && lp != rp
        {
            return statement_err!(
                "Can't join `{}` with `{}` since the number of partitions don't match. `{}` partitions = {lp}; `{}` partitions = {rp}. Please repartition either one so that the number of partitions match.",
                l.source.name,
                r.source.name,
                l.source.name,
                r.source.name
            );
        }
        Ok(())
    }

    fn physical_expr(
        &self,
        e: Expr,
        scope: &Scope,
    ) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
        super::compile_expr(self.state, e, &scope.df)
    }

    /// Projects a source's batches to a join side: the key, every column
    /// as `ALIAS_COLUMN`, then `ALIAS_ROWTIME`, `ALIAS_ROWPARTITION`,
    /// `ALIAS_ROWOFFSET`.
    fn side_projection(
        &self,
        input: &JoinInput,
        key: Expr,
        key_type: &DataType,
        key_name: &str,
    ) -> Result<(Box<dyn Operator>, Vec<Field>)> {
        let mut exprs = vec![self.physical_expr(
            Expr::Cast(Cast::new(Box::new(key), key_type.clone())),
            &input.base,
        )?];
        let mut fields = vec![Field::new(key_name, key_type.clone(), true)];
        for c in input.source.schema.columns() {
            exprs
                .push(self.physical_expr(Expr::Column(DfColumn::from_name(&c.name)), &input.base)?);
            fields.push(Field::new(
                format!("{}_{}", input.alias, c.name),
                c.sql_type.to_arrow(),
                true,
            ));
        }
        for (pseudo, t) in [
            (ROWTIME, DataType::Int64),
            (ROWPARTITION, DataType::Int32),
            (ROWOFFSET, DataType::Int64),
        ] {
            exprs.push(self.physical_expr(Expr::Column(DfColumn::from_name(pseudo)), &input.base)?);
            fields.push(Field::new(format!("{}_{pseudo}", input.alias), t, true));
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields.clone()));
        Ok((Box::new(Projection::new(exprs, schema)), fields))
    }

    /// Projects the previous stage's output to the left side of the next:
    /// its new key, every column it has, then its time, partition and
    /// offset.
    fn carry_projection(
        &self,
        joined: &Joined,
        key: Expr,
        key_type: &DataType,
        stage: usize,
    ) -> Result<(Box<dyn Operator>, Vec<Field>)> {
        let scope = &joined.scope;
        let mut exprs = vec![self.physical_expr(
            Expr::Cast(Cast::new(Box::new(key), key_type.clone())),
            scope,
        )?];
        let mut fields = vec![Field::new(format!("__JK{stage}_L"), key_type.clone(), true)];
        let carried = joined.fields.len().saturating_sub(3);
        for f in &joined.fields[..carried] {
            exprs.push(self.physical_expr(Expr::Column(DfColumn::from_name(f.name())), scope)?);
            fields.push(f.as_ref_field());
        }
        for (pseudo, t, name) in [
            (ROWTIME, DataType::Int64, "__T"),
            (ROWPARTITION, DataType::Int32, "__P"),
            (ROWOFFSET, DataType::Int64, "__O"),
        ] {
            exprs.push(self.physical_expr(Expr::Column(DfColumn::from_name(pseudo)), scope)?);
            fields.push(Field::new(format!("{name}{stage}"), t, true));
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields.clone()));
        Ok((Box::new(Projection::new(exprs, schema)), fields))
    }

    /// Names the select items of a join and picks its key column.
    fn name_join_columns(
        &self,
        converted: &[(Expr, &SqlExpr, Option<String>)],
        scope: &Scope,
        keys: &JoinKeys,
        inputs: &[JoinInput],
        sink_name: &str,
    ) -> Result<Vec<super::OutputColumn>> {
        let mut namer = super::ColumnNamer::new(
            converted
                .iter()
                .filter_map(|(_, e, a)| a.clone().or_else(|| join_derived_name(e, inputs))),
        );
        if let Some(foreign) = &keys.foreign {
            return name_foreign_key_columns(converted, foreign, inputs);
        }
        // The key is the first join expression (left before right) that
        // the projection selects.
        let preferred: Option<&Expr> = if keys.synthetic {
            converted
                .iter()
                .map(|(e, _, _)| e)
                .find(|e| **e == keys.key)
        } else {
            keys.candidates
                .iter()
                .find(|c| converted.iter().any(|(e, _, _)| e == *c))
        };
        let mut columns = Vec::new();
        let mut key_item: Option<(Expr, String)> = None;
        let mut duplicates: Vec<String> = Vec::new();
        for (expr, sql, alias) in converted {
            let name = alias
                .clone()
                .or_else(|| join_derived_name(sql, inputs))
                .unwrap_or_else(|| namer.next());
            if matches!(
                expr,
                Expr::Literal(datafusion::common::ScalarValue::Null, _)
            ) {
                return statement_err!(
                    "Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR)."
                );
            }
            let is_key = Some(expr) == preferred;
            if is_key {
                match &key_item {
                    None => {
                        key_item = Some((expr.clone(), name.clone()));
                        let item_type = expr.get_type(&scope.df)?;
                        columns.push(super::OutputColumn {
                            name,
                            expr: Expr::Cast(Cast::new(Box::new(keys.key.clone()), item_type)),
                            kind: ColumnKind::Key,
                        });
                        continue;
                    }
                    Some((first, first_name)) if first == expr => {
                        if duplicates.is_empty() {
                            duplicates.push(first_name.clone());
                        }
                        duplicates.push(name.clone());
                        continue;
                    }
                    Some(_) => {}
                }
            }
            columns.push(super::OutputColumn {
                name,
                expr: expr.clone(),
                kind: ColumnKind::Value,
            });
        }
        if !duplicates.is_empty() {
            duplicates.sort();
            let key_name = match &key_item {
                Some((Expr::Column(c), _)) => scope
                    .by_field(&c.name)
                    .map(|sc| sc.field.clone())
                    .unwrap_or_else(|| c.name.clone()),
                _ => "ROWKEY".into(),
            };
            let key_name = if key_name.starts_with("__ROWKEY") {
                "ROWKEY".to_string()
            } else {
                key_name
            };
            return statement_err!(
                "The projection contains a key column (`{key_name}`) more than once, aliased as: {}.",
                super::join_and(&duplicates)
            );
        }
        if key_item.is_none() {
            if keys.synthetic {
                let why = if keys.outer {
                    "ROWKEY was added as a synthetic key column because FULL OUTER joins can produce rows whose key matches neither source's key column. This expression must be included in the projection and may be aliased."
                } else {
                    "ROWKEY was added as a synthetic key column because the join criteria did not match any source column. This expression must be included in the projection and may be aliased."
                };
                let prefix = if keys.outer {
                    String::new()
                } else {
                    "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
                        .into()
                };
                return statement_err!(
                    "{prefix}The query used to build `{sink_name}` must include the join expression ROWKEY in its projection (eg, SELECT ROWKEY...).\n{why}"
                );
            }
            let (noun, list) = if keys.texts.len() == 1 {
                ("expression", keys.texts[0].clone())
            } else {
                ("expressions", join_or(&keys.texts))
            };
            return statement_err!(
                "The query used to build `{sink_name}` must include the join {noun} {list} in its projection (eg, SELECT {}...).",
                keys.texts[0]
            );
        }
        Ok(columns)
    }
}

/// The new key of a joined stream re-keyed by PARTITION BY.
struct JoinPartition {
    exprs: Vec<Expr>,
    sql: Vec<SqlExpr>,
    texts: Vec<String>,
}

impl PlanContext<'_> {
    fn join_partition(
        &self,
        query: &Query,
        scope: &Scope,
        kind: SourceKind,
    ) -> Result<Option<Box<JoinPartition>>> {
        if query.partition_by.is_empty() {
            return Ok(None);
        }
        if kind == SourceKind::Table {
            return statement_err!(
                "Invalid PARTITION BY on a TABLE: a table's key is its primary key. Re-key a table with GROUP BY."
            );
        }
        let planner = ExprPlanner {
            scope,
            functions: self.functions,
            clause: "PARTITION BY",
            allow_aggregates: false,
        };
        let mut p = JoinPartition {
            exprs: vec![],
            sql: vec![],
            texts: vec![],
        };
        for e in &query.partition_by {
            if matches!(e, SqlExpr::Value(v) if v.value == datafusion::sql::sqlparser::ast::Value::Null)
            {
                return not_supported!("PARTITION BY NULL on a join");
            }
            p.exprs.push(planner.convert(e)?);
            p.texts.push(ksql_text(e));
            p.sql.push(e.clone());
        }
        Ok(Some(Box::new(p)))
    }
}

/// Names the select items of a join whose key columns are `keys`: the
/// first item that is a key expression becomes that key column; every
/// name a key was selected under is returned (by key) for the callers'
/// checks.
fn assign_key_columns(
    converted: &[(Expr, &SqlExpr, Option<String>)],
    keys: &[Expr],
    inputs: &[JoinInput],
) -> (Vec<super::OutputColumn>, Vec<Vec<String>>) {
    let mut namer = super::ColumnNamer::new(
        converted
            .iter()
            .filter_map(|(_, e, a)| a.clone().or_else(|| join_derived_name(e, inputs))),
    );
    let mut seen: Vec<Vec<String>> = vec![vec![]; keys.len()];
    let mut columns = Vec::new();
    for (expr, sql, alias) in converted {
        let name = alias
            .clone()
            .or_else(|| join_derived_name(sql, inputs))
            .unwrap_or_else(|| namer.next());
        let kind = match keys.iter().position(|k| k == expr) {
            Some(i) => {
                seen[i].push(name.clone());
                if seen[i].len() > 1 {
                    continue;
                }
                ColumnKind::Key
            }
            None => ColumnKind::Value,
        };
        columns.push(super::OutputColumn {
            name,
            expr: expr.clone(),
            kind,
        });
    }
    (columns, seen)
}

/// ksqlDB's message for a key selected under several names.
fn duplicate_key_error(key: &str, names: &[String]) -> SqlError {
    let mut names = names.to_vec();
    names.sort();
    SqlError::Statement(format!(
        "The projection contains a key column (`{key}`) more than once, aliased as: {}.",
        super::join_and(&names)
    ))
}

/// Names the select items of a re-keyed join: the PARTITION BY
/// expressions are the key, each selected exactly once.
fn name_partitioned_columns(
    converted: &[(Expr, &SqlExpr, Option<String>)],
    partition: &JoinPartition,
    inputs: &[JoinInput],
    sink_name: &str,
) -> Result<Vec<super::OutputColumn>> {
    let (mut columns, seen) = assign_key_columns(converted, &partition.exprs, inputs);
    if let Some(names) = seen.iter().find(|names| names.len() > 1) {
        return Err(duplicate_key_error(&names[0], names));
    }
    let missing: Vec<String> = seen
        .iter()
        .zip(&partition.texts)
        .filter(|(s, _)| s.is_empty())
        .map(|(_, t)| t.clone())
        .collect();
    if !missing.is_empty() {
        let noun = if missing.len() == 1 {
            "expression"
        } else {
            "expressions"
        };
        return statement_err!(
            "The query used to build `{sink_name}` must include the partitioning {noun} {} in its projection (eg, SELECT {}...).",
            super::join_and(&missing),
            missing.join(", ")
        );
    }
    columns.sort_by_key(|c| match c.kind {
        ColumnKind::Key => partition
            .exprs
            .iter()
            .position(|k| *k == c.expr)
            .unwrap_or(usize::MAX),
        ColumnKind::Value => usize::MAX,
    });
    Ok(columns)
}

/// Names the select items of a foreign-key join: the left table's
/// primary key columns are the key, each selected exactly once.
fn name_foreign_key_columns(
    converted: &[(Expr, &SqlExpr, Option<String>)],
    foreign: &ForeignKeys,
    inputs: &[JoinInput],
) -> Result<Vec<super::OutputColumn>> {
    let (columns, seen) = assign_key_columns(converted, &foreign.columns, inputs);
    for (i, names) in seen.iter().enumerate() {
        if names.len() > 1 {
            let field = match &foreign.columns[i] {
                Expr::Column(c) => c.name.clone(),
                other => other.to_string(),
            };
            return Err(duplicate_key_error(&field, names));
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .zip(&foreign.names)
        .filter(|(s, _)| s.is_empty())
        .map(|(_, n)| format!("`{n}`"))
        .collect();
    if !missing.is_empty() {
        let what = if missing.len() == 1 {
            "column"
        } else {
            "columns"
        };
        return statement_err!(
            "Primary key {what} missing in projection. For foreign-key table-table joins, the projection must include all primary key columns from the left input table (`{}`). Missing {what}: {}.",
            foreign.table,
            missing.join(", ")
        );
    }
    Ok(columns)
}

trait AsRefField {
    fn as_ref_field(&self) -> Field;
}

impl AsRefField for Field {
    fn as_ref_field(&self) -> Field {
        self.clone()
    }
}

fn to_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn engine_kind(kind: JoinKind) -> EngineJoinKind {
    match kind {
        JoinKind::Inner => EngineJoinKind::Inner,
        JoinKind::Left => EngineJoinKind::Left,
        JoinKind::Right => EngineJoinKind::Right,
        JoinKind::Full => EngineJoinKind::Outer,
    }
}

fn join_word(kind: JoinKind) -> &'static str {
    match kind {
        JoinKind::Inner => "[INNER]",
        JoinKind::Left => "LEFT [OUTER]",
        JoinKind::Right => "RIGHT [OUTER]",
        JoinKind::Full => "[FULL] OUTER",
    }
}

/// `A, B or C`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// The columns of one join input over a joined batch: `ALIAS.COL` is the
/// field `ALIAS_COL`.
fn input_columns(input: &JoinInput) -> Vec<ScopeColumn> {
    let mut columns: Vec<ScopeColumn> = input
        .source
        .schema
        .columns()
        .iter()
        .map(|c| ScopeColumn {
            qualifier: Some(input.alias.clone()),
            name: c.name.clone(),
            field: format!("{}_{}", input.alias, c.name),
            kind: Some(c.kind),
        })
        .collect();
    for pseudo in PSEUDO_COLUMNS {
        columns.push(ScopeColumn {
            qualifier: Some(input.alias.clone()),
            name: pseudo.into(),
            field: format!("{}_{pseudo}", input.alias),
            kind: None,
        });
    }
    columns
}

/// Source field name -> joined field name, for one input.
fn input_field_map(input: &JoinInput) -> Vec<(String, String)> {
    input
        .source
        .schema
        .columns()
        .iter()
        .map(|c| (c.name.clone(), format!("{}_{}", input.alias, c.name)))
        .collect()
}

fn left_scope_fields(joined: &Option<Joined>, first: &JoinInput) -> Vec<(String, String)> {
    match joined {
        // Later stages already see joined field names.
        Some(j) => j
            .scope
            .columns
            .iter()
            .filter(|c| c.qualifier.is_some() && c.kind.is_some())
            .map(|c| (c.field.clone(), c.field.clone()))
            .collect(),
        None => input_field_map(first),
    }
}

/// The joined column a side's join expression is, if it is a plain
/// column reference.
fn as_joined_column(e: &Expr, fields: &[(String, String)]) -> Option<Expr> {
    match e {
        Expr::Column(c) => fields
            .iter()
            .find(|(from, _)| *from == c.name)
            .map(|(_, to)| Expr::Column(DfColumn::from_name(to))),
        _ => None,
    }
}

/// Whether `e` (over the input's own batches) is its only key column.
fn is_key_of(e: &Expr, input: &JoinInput) -> bool {
    let keys: Vec<&str> = input
        .source
        .schema
        .key_columns()
        .map(|c| c.name.as_str())
        .collect();
    matches!(e, Expr::Column(c) if keys == [c.name.as_str()])
}

/// The sources an expression of the ON clause references, by alias.
fn referenced(e: &SqlExpr, inputs: &[JoinInput]) -> Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    let mut error = None;
    let _ = visit_expressions(e, |node| {
        match node {
            SqlExpr::Identifier(ident) => {
                let name = normalize_ident(ident);
                let owners: Vec<&JoinInput> = inputs
                    .iter()
                    .filter(|i| {
                        i.source.schema.find(&name).is_some()
                            || PSEUDO_COLUMNS.contains(&name.as_str())
                    })
                    .collect();
                match owners.as_slice() {
                    [one] => found.push(one.alias.clone()),
                    [] => {
                        error = Some(format!("JOIN ON column '{name}' cannot be resolved."));
                    }
                    many => {
                        let list: Vec<String> =
                            many.iter().map(|i| format!("{}.{name}", i.alias)).collect();
                        error = Some(format!(
                            "Column '{name}' is ambiguous. Could be {}.",
                            join_or(&list)
                        ));
                    }
                }
            }
            SqlExpr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let alias = normalize_ident(&parts[0]);
                if inputs.iter().any(|i| i.alias == alias) {
                    found.push(alias);
                } else {
                    error = Some(format!(
                        "'{alias}' is not a valid stream/table name or alias."
                    ));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    if let Some(e) = error {
        return Err(SqlError::Statement(e));
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Splits `left = right` of stage `k`: the operand that references the
/// new source (input `k + 1`) is the right one.
fn split_condition(
    join: &crate::parser::Join,
    inputs: &[JoinInput],
    k: usize,
) -> Result<(SqlExpr, SqlExpr)> {
    let mut on = &join.on;
    while let SqlExpr::Nested(inner) = on {
        on = inner;
    }
    let SqlExpr::BinaryOp { left, op, right } = on else {
        return statement_err!(
            "Unsupported join expression: {}. Only equality joins are supported.",
            ksql_text(on)
        );
    };
    match op {
        BinaryOperator::Eq => {}
        BinaryOperator::And | BinaryOperator::Or => {
            return statement_err!(
                "Invalid join condition: joins on multiple conditions are not yet supported. Got {}.",
                ksql_text(on)
            );
        }
        _ => {
            return statement_err!(
                "Unsupported join expression: {}. Only equality joins are supported.",
                ksql_text(on)
            );
        }
    }
    let visible = &inputs[..=k + 1];
    let written = ksql_text(&qualify_all(on, visible));
    let l = referenced(left, visible)?;
    let r = referenced(right, visible)?;
    for (side, refs) in [(left, &l), (right, &r)] {
        if refs.is_empty() {
            return statement_err!(
                "Invalid comparison expression '{}' in join '{written}'. Each side of the join comparision must contain references from exactly one source.",
                ksql_text(side)
            );
        }
    }
    if l.len() > 1 || r.len() > 1 || l == r {
        return statement_err!(
            "Each side of the join must reference exactly one source and not the same source. Left side references `{}` and right references `{}`",
            l.join(", "),
            r.join(", ")
        );
    }
    let new = &inputs[k + 1].alias;
    if r.contains(new) {
        Ok(((**left).clone(), (**right).clone()))
    } else if l.contains(new) {
        Ok(((**right).clone(), (**left).clone()))
    } else {
        statement_err!(
            "A join criteria is expected to reference the source (`{new}`) in the FROM clause, instead the right source references `{}` and the left source references `{}`",
            r.join(", "),
            l.join(", ")
        )
    }
}

/// `e` with every unqualified column qualified by its source alias.
fn qualify_all(e: &SqlExpr, inputs: &[JoinInput]) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::{Ident, visit_expressions_mut};
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |node| {
        if let SqlExpr::Identifier(ident) = node {
            let name = normalize_ident(ident);
            if let Some(owner) = inputs
                .iter()
                .find(|i| i.source.schema.find(&name).is_some())
            {
                *node = SqlExpr::CompoundIdentifier(vec![
                    Ident::new(owner.alias.clone()),
                    Ident::new(name),
                ]);
            }
        } else if let SqlExpr::CompoundIdentifier(parts) = node {
            for p in parts.iter_mut() {
                *p = Ident::new(normalize_ident(p));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    e
}

fn qualified_text(e: &SqlExpr, inputs: &[JoinInput]) -> String {
    ksql_text(&qualify_all(e, inputs))
}

/// ksqlDB names a qualified column of a join after the column when no
/// other source has a column of that name, else `ALIAS_COLUMN`.
fn join_derived_name(e: &SqlExpr, inputs: &[JoinInput]) -> Option<String> {
    match e {
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let column = normalize_ident(&parts[1]);
            let owners = if PSEUDO_COLUMNS.contains(&column.as_str()) {
                inputs.len()
            } else {
                inputs
                    .iter()
                    .filter(|i| i.source.schema.find(&column).is_some())
                    .count()
            };
            if owners > 1 {
                Some(format!("{}_{column}", normalize_ident(&parts[0])))
            } else {
                Some(column)
            }
        }
        other => super::expr::derived_name(other),
    }
}

/// Expands `*` (every source, and the synthetic key) and `ALIAS.*`.
fn expand_join_select(
    query: &Query,
    inputs: &[JoinInput],
    keys: &JoinKeys,
    partition: Option<&JoinPartition>,
) -> Result<Vec<(SqlExpr, Option<String>)>> {
    use datafusion::sql::sqlparser::ast::{Ident, SelectItem};
    let columns_of = |input: &JoinInput| -> Vec<(SqlExpr, Option<String>)> {
        input
            .source
            .schema
            .columns()
            .iter()
            .map(|c| {
                (
                    SqlExpr::CompoundIdentifier(vec![
                        Ident::with_quote('`', input.alias.clone()),
                        Ident::with_quote('`', c.name.clone()),
                    ]),
                    Some(format!("{}_{}", input.alias, c.name)),
                )
            })
            .collect()
    };
    let mut out = Vec::new();
    for item in &query.select {
        match item {
            SelectItem::UnnamedExpr(e) => out.push((e.clone(), None)),
            SelectItem::ExprWithAlias { expr, alias } => {
                out.push((expr.clone(), Some(normalize_ident(alias))))
            }
            SelectItem::Wildcard(_) if partition.is_some() => {
                // Re-keyed, `*` is the whole joined row: per source its
                // values, its system columns, then its old keys.
                let Some(p) = partition else { continue };
                for e in &p.sql {
                    // A re-keying column keeps its joined name.
                    let name = match e {
                        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => Some(format!(
                            "{}_{}",
                            normalize_ident(&parts[0]),
                            normalize_ident(&parts[1])
                        )),
                        SqlExpr::Identifier(i) => {
                            let column = normalize_ident(i);
                            inputs
                                .iter()
                                .find(|x| x.source.schema.find(&column).is_some())
                                .map(|x| format!("{}_{column}", x.alias))
                        }
                        _ => None,
                    };
                    out.push((e.clone(), name));
                }
                for input in inputs {
                    let is_partition_column = |name: &str| {
                        p.sql.iter().any(|e| match e {
                            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                                normalize_ident(&parts[0]) == input.alias
                                    && normalize_ident(&parts[1]) == name
                            }
                            SqlExpr::Identifier(i) => {
                                normalize_ident(i) == name
                                    && input.source.schema.find(name).is_some()
                            }
                            _ => false,
                        })
                    };
                    let qualified = |name: &str| {
                        (
                            SqlExpr::CompoundIdentifier(vec![
                                Ident::with_quote('`', input.alias.clone()),
                                Ident::with_quote('`', name.to_string()),
                            ]),
                            Some(format!("{}_{name}", input.alias)),
                        )
                    };
                    for c in input.source.schema.value_columns() {
                        if !is_partition_column(&c.name) {
                            out.push(qualified(&c.name));
                        }
                    }
                    for pseudo in PSEUDO_COLUMNS {
                        out.push(qualified(pseudo));
                    }
                    for c in input.source.schema.key_columns() {
                        if !is_partition_column(&c.name) {
                            out.push(qualified(&c.name));
                        }
                    }
                }
            }
            SelectItem::Wildcard(_) => {
                if keys.synthetic {
                    out.push((SqlExpr::Identifier(Ident::new("ROWKEY")), None));
                }
                for input in inputs {
                    out.extend(columns_of(input));
                }
            }
            SelectItem::QualifiedWildcard(kind, _) => {
                let name = kind.to_string();
                let name = name.trim_end_matches(".*");
                let qualifier = if name.starts_with('`') || name.starts_with('"') {
                    name.trim_matches(|c| c == '`' || c == '"').to_string()
                } else {
                    name.to_uppercase()
                };
                let Some(input) = inputs.iter().find(|i| i.alias == qualifier) else {
                    return statement_err!("Source '{qualifier}' not found in query");
                };
                out.extend(columns_of(input));
            }
            SelectItem::ExprWithAliases { .. } => {
                return not_supported!("multiple aliases for one expression");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::execution::session_state::SessionStateBuilder;
    use sluice_connectors::embedded::EmbeddedTopics;

    use crate::catalog::Catalog;
    use crate::context::KsqlContext;
    use crate::functions::FunctionRegistry;
    use crate::parser::{Statement, parse_statements};
    use crate::planner::PlanContext;

    #[test]
    fn a_stream_table_join_on_both_keys_alike_runs_per_partition() {
        let context = KsqlContext::with_backend(Arc::new(EmbeddedTopics::new()), 64);
        context
            .execute(
                "CREATE STREAM plays (player STRING KEY, team STRING, points INT)
                   WITH (kafka_topic='plays', value_format='JSON', partitions=3);
                 CREATE TABLE players (player STRING PRIMARY KEY, country STRING)
                   WITH (kafka_topic='players', value_format='JSON', partitions=3);
                 CREATE TABLE teams (team STRING PRIMARY KEY, city STRING)
                   WITH (kafka_topic='teams', value_format='JSON', partitions=3);
                 CREATE TABLE jplayers (player STRING PRIMARY KEY, country STRING)
                   WITH (kafka_topic='jplayers', format='JSON', partitions=3);",
            )
            .expect("sources");
        let mut catalog = Catalog::default();
        for source in context.sources() {
            catalog.put_source(source.as_ref().clone());
        }
        let state = SessionStateBuilder::new().with_default_features().build();
        let functions = FunctionRegistry::new(&state);
        let planner = PlanContext {
            catalog: &catalog,
            functions: &functions,
            state: &state,
            new_planner: false,
            flush_interval: None,
            topics: Some(context.backend().as_ref()),
            transient: false,
        };
        let per_partition = |sql: &str| {
            let parsed = parse_statements(sql).expect("parse");
            let Statement::CreateAsSelect(c) = &parsed[0].statement else {
                panic!("not a CSAS");
            };
            planner.plan(&c.query, "X").expect("plan").partition_local
        };
        assert!(per_partition(
            "CREATE STREAM x AS SELECT p.player, p.points, c.country
             FROM plays p JOIN players c ON p.player = c.player;"
        ));
        // The stream side is re-keyed by the join: its rows move.
        assert!(!per_partition(
            "CREATE STREAM x AS SELECT p.team, p.points, t.city
             FROM plays p JOIN teams t ON p.team = t.team;"
        ));
        // Keys written differently (KAFKA and JSON) land apart.
        assert!(!per_partition(
            "CREATE STREAM x AS SELECT p.player, p.points, c.country
             FROM plays p JOIN jplayers c ON p.player = c.player;"
        ));
        // An aggregate over the join keeps its state whole.
        assert!(!per_partition(
            "CREATE TABLE x AS SELECT p.player, COUNT(*) AS n
             FROM plays p JOIN players c ON p.player = c.player GROUP BY p.player;"
        ));
    }
}

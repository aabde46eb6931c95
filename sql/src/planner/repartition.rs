//! The re-keying stage of an aggregate that groups a stream by something
//! other than its key, for a cluster.
//!
//! Such an aggregate's groups are spread over every input partition, so no
//! member can compute one from its partitions alone. Run in two stages, as
//! Kafka Streams does, it spreads anyway: the first, stateless and run per
//! input partition, applies the WHERE filter and writes each record to a
//! repartition topic keyed by its GROUP BY values; the second is the
//! unchanged aggregate reading that topic, where each group now lives in
//! one partition. This module plans the first stage; the context starts
//! both ([`crate::context`]).
//!
//! A repartition record keeps its source record's value (in the source's
//! format) and event time, and carries the source key, partition and offset
//! in headers (see `sluice_engine::query::sink::RepartitionSink`): the
//! second stage reads it as the source record itself, so ROWTIME, a
//! TIMESTAMP column, ROWPARTITION and ROWOFFSET mean what they meant. Its
//! key is the GROUP BY values encoded as the result's key is, so the group
//! lands on the partition its result row is written to (when the result is
//! unwindowed and has as many partitions as the input).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::ExprSchemable;
use sluice_engine::operator::Operator;
use sluice_engine::operator::projection::Projection;
use sluice_engine::schema::{Column, ColumnKind, LogicalSchema, PSEUDO_COLUMNS, SqlType};

use super::expr::ExprPlanner;
use super::{PlanContext, PlannedQuery, col, source_scope};
use crate::error::{Result, SqlError};
use crate::parser::{Query, SourceKind};
use crate::statement_err;

impl PlanContext<'_> {
    /// Whether `query`, planned as `planned`, is an aggregate that two
    /// stages would spread: it groups a stream by something other than the
    /// key its partitions follow. Tables are left whole: an update of a
    /// table row must retract its old value from a group that may live in
    /// another partition. So are windowed sources and joins.
    pub fn can_repartition(query: &Query, planned: &PlannedQuery) -> bool {
        query.joins.is_empty()
            && !query.group_by.is_empty()
            && planned.kind == SourceKind::Table
            && !planned.partition_local
            && planned.source.kind == SourceKind::Stream
            && planned.source.window.is_none()
            && planned.schema.key_count() == query.group_by.len()
    }

    /// Plans the re-keying stage of `query`, whose result has the key
    /// columns of `result`: the WHERE filter, then rows of the result's key
    /// (the GROUP BY values), the source's value columns and the source's
    /// key columns, then the pseudo columns. The plan's schema is what the
    /// repartition records hold: that key and the source's values.
    pub fn plan_repartition(&self, query: &Query, result: &LogicalSchema) -> Result<PlannedQuery> {
        let source = self
            .catalog
            .source(&query.from.name)
            .cloned()
            .ok_or_else(|| SqlError::Statement(format!("{} does not exist.", query.from.name)))?;
        let scope = source_scope(&source, query.from.alias.as_deref())?;
        let mut operators: Vec<Box<dyn Operator>> = Vec::new();
        if let Some(predicate) = &query.where_clause {
            operators.push(self.where_filter(predicate, &scope, None)?);
        }
        let keys: Vec<&Column> = result.key_columns().collect();
        if keys.len() != query.group_by.len() {
            return statement_err!(
                "cannot repartition: {} GROUP BY expressions make {} key columns",
                query.group_by.len(),
                keys.len()
            );
        }
        let planner = ExprPlanner {
            scope: &scope,
            functions: self.functions,
            clause: "GROUP BY",
            allow_aggregates: false,
        };
        let mut exprs = Vec::new();
        let mut fields = Vec::new();
        for (i, (group, key)) in query.group_by.iter().zip(&keys).enumerate() {
            let converted = planner.convert(group)?;
            // The key column's type is the expression's: checked, since the
            // key bytes must be those the result's rows are written with.
            let data_type = key.sql_type.to_arrow();
            let planned_type = SqlType::from_arrow(&converted.get_type(&scope.df)?)?;
            if planned_type != key.sql_type {
                return statement_err!(
                    "cannot repartition: GROUP BY expression {i} is {planned_type}, its key column {}",
                    key.sql_type
                );
            }
            exprs.push(self.physical(converted, &scope)?);
            fields.push(Field::new(format!("KSQL_GB_{i}"), data_type, true));
        }
        let source_columns = source
            .schema
            .value_columns()
            .chain(source.schema.key_columns());
        for c in source_columns {
            exprs.push(self.physical(col(&c.name), &scope)?);
            fields.push(Field::new(&c.name, c.sql_type.to_arrow(), true));
        }
        for pseudo in PSEUDO_COLUMNS {
            exprs.push(self.physical(col(pseudo), &scope)?);
            let data_type = scope
                .arrow
                .field_with_name(pseudo)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Int64);
            fields.push(Field::new(pseudo, data_type, false));
        }
        operators.push(Box::new(Projection::new(
            exprs,
            Arc::new(Schema::new(fields)),
        )));
        let mut columns: Vec<Column> = keys.into_iter().cloned().collect();
        columns.extend(source.schema.value_columns().cloned().map(|c| Column {
            kind: ColumnKind::Value,
            ..c
        }));
        let schema = LogicalSchema::new(columns);
        Ok(PlannedQuery {
            window: None,
            // A multi-column key of nulls is still written: its group's
            // rows are dropped (and logged) by the aggregate, as without
            // repartitioning.
            computed_key: true,
            ..PlannedQuery::of_one_source(source, operators, schema, SourceKind::Stream)
        })
    }
}

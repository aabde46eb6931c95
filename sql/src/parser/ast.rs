//! The statements of ksqlDB's dialect, as parsed.
//!
//! Expressions stay sqlparser [`Expr`]s; names are already normalized
//! (unquoted identifiers upper-cased, as ksqlDB does).

use std::collections::BTreeMap;
use std::fmt;

use datafusion::sql::sqlparser::ast::{Expr, SelectItem};
use sluice_engine::schema::SqlType;

/// A statement with the exact text it was parsed from.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    pub text: String,
    pub statement: Statement,
    /// 1-based line and column where the statement starts.
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Stream,
    Table,
}

impl SourceKind {
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        }
    }

    pub fn lower(&self) -> &'static str {
        match self {
            SourceKind::Stream => "stream",
            SourceKind::Table => "table",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A literal in a `WITH (...)` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    String(String),
    Number(String),
    Boolean(bool),
}

impl PropertyValue {
    pub fn as_text(&self) -> String {
        match self {
            PropertyValue::String(s) | PropertyValue::Number(s) => s.clone(),
            PropertyValue::Boolean(b) => b.to_string(),
        }
    }
}

/// `WITH (KAFKA_TOPIC='t', ...)`, names upper-cased.
pub type WithProperties = BTreeMap<String, PropertyValue>;

/// How a column of a `CREATE STREAM|TABLE` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnConstraint {
    None,
    Key,
    PrimaryKey,
    Headers,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDefinition {
    pub name: String,
    pub sql_type: SqlType,
    pub constraint: ColumnConstraint,
}

/// `CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] name (...) WITH (...)`
#[derive(Debug, Clone)]
pub struct CreateSource {
    pub kind: SourceKind,
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub read_only: bool,
    pub columns: Vec<ColumnDefinition>,
    pub properties: WithProperties,
}

/// `CREATE STREAM|TABLE name [WITH (...)] AS SELECT ...`
#[derive(Debug, Clone)]
pub struct CreateAsSelect {
    pub kind: SourceKind,
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub properties: WithProperties,
    pub query: Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// A source in FROM or JOIN, with its alias.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub alias: Option<String>,
    /// Where the name starts, for error messages.
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone)]
pub struct Join {
    pub kind: JoinKind,
    pub relation: Relation,
    pub within: Option<Within>,
    pub on: Expr,
}

/// `WITHIN n unit` or `WITHIN (before, after)`, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Within {
    pub before_ms: u64,
    pub after_ms: u64,
    pub grace_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    Tumbling { size_ms: u64 },
    Hopping { size_ms: u64, advance_ms: u64 },
    Session { gap_ms: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub retention_ms: Option<u64>,
    pub grace_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Changes,
    Final,
}

/// A ksqlDB SELECT.
#[derive(Debug, Clone)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: Relation,
    pub joins: Vec<Join>,
    pub window: Option<WindowSpec>,
    pub where_clause: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub partition_by: Vec<Expr>,
    pub emit: Option<Emit>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowKind {
    Streams,
    Tables,
    Queries,
    Topics,
    Functions,
    Properties,
}

#[derive(Debug, Clone)]
pub enum Statement {
    CreateSource(CreateSource),
    CreateAsSelect(CreateAsSelect),
    InsertInto {
        target: String,
        properties: WithProperties,
        query: Query,
        line: u64,
        column: u64,
    },
    InsertValues {
        target: String,
        target_quoted: bool,
        columns: Option<Vec<String>>,
        values: Vec<Expr>,
    },
    Drop {
        kind: SourceKind,
        name: String,
        if_exists: bool,
        delete_topic: bool,
    },
    Show {
        kind: ShowKind,
        extended: bool,
    },
    Describe {
        name: String,
        extended: bool,
    },
    DescribeFunction {
        name: String,
    },
    Terminate {
        query_id: Option<String>,
    },
    /// `EXPLAIN <query id>`: a running query's plan and counters.
    Explain {
        query_id: String,
    },
    /// A transient query (push or pull).
    Select(Query),
    SetProperty {
        name: String,
        value: String,
    },
    UnsetProperty {
        name: String,
    },
}

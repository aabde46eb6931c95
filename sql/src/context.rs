//! [`KsqlContext`]: executes ksqlDB statements.
//!
//! It owns the [`Catalog`], plans queries, creates topics through the
//! engine's [`TopicBackend`] and hands persistent queries to the engine's
//! [`Runtime`]. Statements are all-or-nothing: a rejected statement leaves
//! the catalog, topics and queries as they were. The catalog-changing ones
//! are kept in a log: a file under a state directory, or, for a member of
//! a cluster, the command topic all members apply in order
//! ([`crate::command_topic`]; the runner is in `context/commands.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use parking_lot::Mutex;
use sluice_engine::format::Format;
use sluice_engine::format::protobuf::Nullable;
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::query::{
    PersistentQuery, QueryInput, QueryPlan, QueryState, SinkSpec, SourceSpec, TimestampParser,
    TimestampSource,
};
use sluice_engine::runtime::Runtime;
use sluice_engine::schema::{Column, ColumnKind, LogicalSchema, SqlType};
use sluice_engine::topic::{
    Partitioning, Record, TopicBackend, TopicDescription, TransactionSupport,
};

use crate::catalog::{Catalog, DataSource, QueryInfo};
use crate::error::{Result, SqlError};
use crate::functions::datetime::{Pattern, parse_millis};
use crate::functions::{FunctionKind, FunctionRegistry};
use crate::parser::{
    ColumnConstraint, CreateAsSelect, CreateSource, ParsedStatement, PropertyValue, Query,
    ShowKind, SourceKind, Statement, WithProperties, parse_statements,
};
use crate::planner::PlanContext;
use crate::planner::expr::{ExprPlanner, Scope};
use crate::statement_log::{LoggedStatement, StatementLog};
use crate::{not_supported, statement_err};

mod commands;
pub use commands::APPLY_TIMEOUT;
use commands::{Commands, Outcome};
mod release;
pub use release::{GRACE, RELEASE_TIMEOUT, ReleaseGate};
pub mod repartition;

/// Property switching on ksqlDB's newer planner rules for key columns.
pub const NEW_QUERY_PLANNER: &str = "ksql.new.query.planner.enabled";

/// Property setting how long windowed aggregates coalesce updates before
/// emitting them (ksqlDB's record cache flushes on each commit).
pub const COMMIT_INTERVAL: &str = "ksql.streams.commit.interval.ms";

/// What a successful statement reports.
#[derive(Debug, Clone)]
pub enum StatementResult {
    /// DDL and other status messages: "Stream created".
    Status {
        message: String,
    },
    /// A persistent query was started.
    QueryStarted {
        query_id: String,
        sink: String,
        message: String,
    },
    Streams(Vec<Arc<DataSource>>),
    Tables(Vec<Arc<DataSource>>),
    Queries(Vec<QueryDescription>),
    Topics(Vec<TopicDescription>),
    Description(SourceDescription),
    Functions(Vec<(String, FunctionKind)>),
    /// `DESCRIBE FUNCTION`: one function and its documentation.
    FunctionDescription {
        name: String,
        kind: FunctionKind,
        doc: &'static crate::functions::docs::FunctionDoc,
    },
    Properties(BTreeMap<String, String>),
    /// `EXPLAIN`: a running query and its plan.
    Explanation(Box<QueryExplanation>),
}

/// What `EXPLAIN <query id>` shows.
#[derive(Debug, Clone)]
pub struct QueryExplanation {
    pub info: QueryInfo,
    pub state: String,
    pub plan: sluice_engine::runtime::QueryExplanation,
}

#[derive(Debug, Clone)]
pub struct QueryDescription {
    pub info: QueryInfo,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct SourceDescription {
    pub source: Arc<DataSource>,
    pub readers: Vec<String>,
    pub writers: Vec<String>,
    pub partitions: Option<u32>,
    /// `DESCRIBE ... EXTENDED` only: the delivery guarantee in force for
    /// what the queries writing this source produce.
    pub delivery: Option<String>,
}

/// A running push query: its result rows are written to `sink.topic`
/// (key format KAFKA or JSON, value format JSON), which only the caller
/// reads.
#[derive(Debug, Clone)]
pub struct TransientQuery {
    pub id: String,
    /// The result's schema, internal topic, formats and window.
    pub sink: DataSource,
    /// `LIMIT n`: the caller ends the query after n rows.
    pub limit: Option<u64>,
}

/// A statement that failed, with where it starts.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StatementError {
    pub statement: String,
    pub line: u64,
    pub column: u64,
    pub error: SqlError,
}

/// The statement executor of one Sluice engine.
pub struct KsqlContext {
    catalog: Mutex<Catalog>,
    runtime: Arc<Runtime>,
    state: SessionState,
    functions: FunctionRegistry,
    properties: Mutex<BTreeMap<String, String>>,
    /// Where executed statements are persisted, once a state directory
    /// is open.
    statement_log: Mutex<Option<StatementLog>>,
    /// Set while the statement log is replayed, or a command another
    /// server sent is applied: statements are not logged again and leave
    /// topics alone where they would delete them.
    replaying: AtomicBool,
    /// The cluster's command topic, once open: catalog-changing statements
    /// go through it (see [`commands`]).
    commands: OnceLock<Arc<Commands>>,
    /// Tells a cluster member when the others stopped using a topic it
    /// is to delete (see [`release`]).
    release_gate: OnceLock<Arc<dyn ReleaseGate>>,
    /// Topics the command being applied left for this member to delete.
    unreleased: Mutex<Vec<String>>,
}

/// The statement log's file inside a state directory.
pub const CATALOG_FILE: &str = "catalog";

impl KsqlContext {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let state = SessionStateBuilder::new().with_default_features().build();
        let functions = FunctionRegistry::new(&state);
        KsqlContext {
            catalog: Mutex::new(Catalog::default()),
            runtime,
            state,
            functions,
            properties: Mutex::new(BTreeMap::new()),
            statement_log: Mutex::new(None),
            replaying: AtomicBool::new(false),
            commands: OnceLock::new(),
            release_gate: OnceLock::new(),
            unreleased: Mutex::new(Vec::new()),
        }
    }

    /// Makes this context durable in `dir`: persistent queries checkpoint
    /// under it every `checkpoint_interval`, and the statements that were
    /// executed there before (its `catalog` file) are replayed, so streams,
    /// tables and queries come back with their query ids and each query
    /// resumes from its newest checkpoint. Statements executed from now on
    /// are appended to the log. Returns how many statements were replayed.
    ///
    /// Call it on a fresh context, before executing anything else.
    pub fn open_state_dir(&self, dir: &Path, checkpoint_interval: Duration) -> Result<usize> {
        std::fs::create_dir_all(dir).map_err(|e| {
            SqlError::Statement(format!("creating state directory {}: {e}", dir.display()))
        })?;
        self.runtime
            .enable_checkpoints(sluice_engine::checkpoint::CheckpointConfig {
                dir: dir.to_path_buf(),
                interval: checkpoint_interval,
            });
        let (log, statements) = StatementLog::open(&dir.join(CATALOG_FILE))?;
        self.replaying.store(true, Ordering::SeqCst);
        let replayed = self.replay(&statements);
        self.replaying.store(false, Ordering::SeqCst);
        *self.statement_log.lock() = Some(log);
        replayed
    }

    fn replay(&self, statements: &[LoggedStatement]) -> Result<usize> {
        for (n, logged) in statements.iter().enumerate() {
            // Query ids count all queries ever started: give the replayed
            // statement the number it had, so it finds its checkpoints.
            if let Some(number) = logged
                .query_id
                .as_deref()
                .and_then(|id| id.rsplit_once('_'))
                .and_then(|(_, n)| n.parse::<u64>().ok())
            {
                self.catalog.lock().set_next_query_number(number);
            }
            let outcome = self.apply_logged(logged).map_err(|e| {
                SqlError::Statement(format!(
                    "replaying statement {} of the catalog ({}): {e}",
                    n + 1,
                    logged.sql
                ))
            })?;
            if let (
                Outcome::Applied(StatementResult::QueryStarted { query_id, .. }),
                Some(expected),
            ) = (&outcome, &logged.query_id)
                && query_id != expected
            {
                return statement_err!(
                    "replaying the catalog: '{}' started query {query_id}, not {expected}",
                    logged.sql
                );
            }
        }
        Ok(statements.len())
    }

    /// Applies a statement of a log (the file's or the command topic's)
    /// without logging it again; an "if absent" one is skipped when the
    /// catalog holds its effect.
    fn apply_logged(&self, logged: &LoggedStatement) -> Result<Outcome> {
        let mut outcome = Outcome::Skipped;
        for statement in &parse_statements(&logged.sql)? {
            if logged.if_absent && self.already_applied(statement) {
                continue;
            }
            outcome = Outcome::Applied(self.apply_statement(statement)?);
        }
        Ok(outcome)
    }

    /// Whether the catalog holds the effect of `parsed` already: a source
    /// it creates exists, or a query identical to the `INSERT INTO` runs.
    fn already_applied(&self, parsed: &ParsedStatement) -> bool {
        let catalog = self.catalog.lock();
        match &parsed.statement {
            Statement::CreateSource(c) => catalog.source(&c.name).is_some(),
            Statement::CreateAsSelect(c) => catalog.source(&c.name).is_some(),
            Statement::InsertInto { .. } => catalog
                .queries()
                .any(|q| q.sql.trim() == parsed.text.trim()),
            _ => false,
        }
    }

    /// Whether a statement changes what a restart must rebuild.
    fn is_persisted(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::CreateSource(_)
                | Statement::CreateAsSelect(_)
                | Statement::InsertInto { .. }
                | Statement::Drop { .. }
                | Statement::Terminate { .. }
                | Statement::SetProperty { .. }
                | Statement::UnsetProperty { .. }
        )
    }

    /// Appends an executed statement to the log, if one is open.
    fn persist(&self, parsed: &ParsedStatement, result: &StatementResult) -> Result<()> {
        if self.replaying.load(Ordering::SeqCst) || !Self::is_persisted(&parsed.statement) {
            return Ok(());
        }
        let log = self.statement_log.lock();
        let Some(log) = log.as_ref() else {
            return Ok(());
        };
        let query_id = match result {
            StatementResult::QueryStarted { query_id, .. } => Some(query_id.clone()),
            _ => None,
        };
        log.append(&LoggedStatement {
            sql: parsed.text.clone(),
            query_id,
            ..LoggedStatement::default()
        })
        .map_err(|e| {
            SqlError::Statement(format!(
                "the statement took effect but could not be persisted, so a restart would lose it: {e}"
            ))
        })
    }

    /// Executes a script like [`Self::execute`], skipping the statements
    /// whose effect the catalog already holds: a `CREATE` of a source that
    /// exists, an `INSERT INTO ... SELECT` identical to a running query's.
    /// For scripts run at every start (`serve --queries`) on top of a
    /// replayed catalog. Returns the results and how many were skipped.
    ///
    /// With a command topic open, each catalog-changing statement is sent
    /// through it marked "apply only if absent", and the check is made
    /// where it is applied, in the topic's order: members loading the same
    /// script at once end up with one copy of each statement's effect.
    pub fn execute_new(&self, sql: &str) -> Result<(Vec<StatementResult>, usize), StatementError> {
        let statements = parse_script(sql)?;
        let mut results = Vec::new();
        let mut skipped = 0;
        for parsed in statements {
            let at = |error| StatementError {
                statement: parsed.text.clone(),
                line: parsed.line,
                column: parsed.column,
                error,
            };
            if let Some(commands) = self.commands.get()
                && Self::is_persisted(&parsed.statement)
            {
                match self.submit(commands, &parsed, true).map_err(at)? {
                    (Outcome::Applied(result), _) => results.push(result),
                    (Outcome::Skipped, _) => skipped += 1,
                }
                continue;
            }
            if self.already_applied(&parsed) {
                skipped += 1;
                continue;
            }
            let result = self.execute_statement(&parsed).map_err(at)?;
            results.push(result);
        }
        Ok((results, skipped))
    }

    /// A context on `backend` with a fresh runtime whose queries poll
    /// `batch_size` records at a time.
    pub fn with_backend(backend: Arc<dyn TopicBackend>, batch_size: usize) -> Self {
        let runtime = Arc::new(Runtime::new(
            backend,
            Arc::new(ProcessingLog::default()),
            batch_size,
        ));
        KsqlContext::new(runtime)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn backend(&self) -> &Arc<dyn TopicBackend> {
        self.runtime.backend()
    }

    pub fn functions(&self) -> &FunctionRegistry {
        &self.functions
    }

    pub fn set_property(&self, name: &str, value: &str) {
        self.functions.set_property(name, Some(value));
        self.properties
            .lock()
            .insert(name.to_string(), value.to_string());
    }

    /// `ksql.persistence.default.format.value`: the value format of
    /// sources that name none.
    fn default_value_format(&self) -> Option<String> {
        self.properties
            .lock()
            .get("ksql.persistence.default.format.value")
            .cloned()
    }

    /// `ksql.persistence.wrap.single.values`: whether single value
    /// columns are wrapped when `WRAP_SINGLE_VALUE` is not given.
    fn wrap_by_default(&self) -> bool {
        self.properties
            .lock()
            .get("ksql.persistence.wrap.single.values")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"))
    }

    pub fn source(&self, name: &str) -> Option<Arc<DataSource>> {
        self.catalog.lock().source(name).cloned()
    }

    pub fn sources(&self) -> Vec<Arc<DataSource>> {
        self.catalog.lock().sources().cloned().collect()
    }

    /// Parses and executes a script; stops at the first failing statement
    /// (the ones before it stay executed, as in ksqlDB).
    pub fn execute(&self, sql: &str) -> Result<Vec<StatementResult>, StatementError> {
        let statements = parse_script(sql)?;
        let mut results = Vec::with_capacity(statements.len());
        for parsed in statements {
            let result = self
                .execute_statement(&parsed)
                .map_err(|error| StatementError {
                    statement: parsed.text.clone(),
                    line: parsed.line,
                    column: parsed.column,
                    error,
                })?;
            results.push(result);
        }
        Ok(results)
    }

    pub fn execute_statement(&self, parsed: &ParsedStatement) -> Result<StatementResult> {
        self.execute_statement_sequenced(parsed)
            .map(|(result, _)| result)
    }

    /// Executes a statement like [`Self::execute_statement`]; also returns
    /// its offset in the command topic when it went through one (ksqlDB's
    /// `commandSequenceNumber`).
    pub fn execute_statement_sequenced(
        &self,
        parsed: &ParsedStatement,
    ) -> Result<(StatementResult, Option<i64>)> {
        if let Some(commands) = self.commands.get()
            && Self::is_persisted(&parsed.statement)
        {
            return match self.submit(commands, parsed, false)? {
                (Outcome::Applied(result), offset) => Ok((result, offset)),
                // Only "if absent" commands are skipped.
                (Outcome::Skipped, offset) => Ok((
                    StatementResult::Status {
                        message: "Skipped: already applied".into(),
                    },
                    offset,
                )),
            };
        }
        let result = self.apply_statement(parsed)?;
        self.persist(parsed, &result)?;
        Ok((result, None))
    }

    fn apply_statement(&self, parsed: &ParsedStatement) -> Result<StatementResult> {
        match &parsed.statement {
            Statement::CreateSource(create) => self.create_source(create, &parsed.text),
            Statement::CreateAsSelect(create) => self.create_as_select(create, &parsed.text),
            Statement::InsertInto {
                target,
                properties: _,
                query,
                line,
                column,
            } => self.insert_into(target, query, &parsed.text, *line, *column),
            Statement::InsertValues {
                target,
                target_quoted,
                columns,
                values,
            } => self.insert_values(target, *target_quoted, columns.as_deref(), values),
            Statement::Drop {
                kind,
                name,
                if_exists,
                delete_topic,
            } => self.drop_source(*kind, name, *if_exists, *delete_topic),
            Statement::Show { kind, extended: _ } => self.show(*kind),
            Statement::Describe { name, extended } => self.describe(name, *extended),
            Statement::DescribeFunction { name } => {
                let found = self.functions.names().into_iter().find(|(n, _)| n == name);
                match (found, crate::functions::docs::function_doc(name)) {
                    (Some((name, kind)), Some(doc)) => {
                        Ok(StatementResult::FunctionDescription { name, kind, doc })
                    }
                    (Some(f), None) => Ok(StatementResult::Functions(vec![f])),
                    (None, _) => {
                        statement_err!("Can't find any functions with the name '{name}'")
                    }
                }
            }
            Statement::Terminate { query_id } => self.terminate(query_id.as_deref()),
            Statement::Explain { query_id } => self.explain(query_id),
            Statement::Select(_) => {
                not_supported!("transient queries (SELECT without CREATE or INSERT)")
            }
            Statement::SetProperty { name, value } => {
                self.set_property(name, value);
                Ok(StatementResult::Status {
                    message: format!("Property {name} set to {value}"),
                })
            }
            Statement::UnsetProperty { name } => {
                self.properties.lock().remove(name);
                self.functions.set_property(name, None);
                Ok(StatementResult::Status {
                    message: format!("Property {name} unset"),
                })
            }
        }
    }

    fn create_source(&self, create: &CreateSource, sql: &str) -> Result<StatementResult> {
        let mut catalog = self.catalog.lock();
        if let Some(existing) = catalog.source(&create.name) {
            if create.if_not_exists {
                return Ok(StatementResult::Status {
                    message: format!(
                        "Cannot add {} {}: already exists",
                        create.kind.lower(),
                        create.name
                    ),
                });
            }
            if !create.or_replace {
                return Err(already_exists(create.kind, &create.name, existing.kind));
            }
        }
        let mut columns = Vec::new();
        for c in &create.columns {
            if matches!(
                c.name.as_str(),
                "ROWTIME" | "ROWPARTITION" | "ROWOFFSET" | "WINDOWSTART" | "WINDOWEND"
            ) {
                return statement_err!(
                    "'{}' is a reserved column name. You cannot use it as a name for a column.",
                    c.name
                );
            }
            let kind = match (c.constraint, create.kind) {
                (ColumnConstraint::None, _) => ColumnKind::Value,
                (ColumnConstraint::Key, SourceKind::Stream)
                | (ColumnConstraint::PrimaryKey, SourceKind::Table) => ColumnKind::Key,
                (ColumnConstraint::PrimaryKey, SourceKind::Stream) => {
                    return statement_err!(
                        "Column `{}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.",
                        c.name
                    );
                }
                (ColumnConstraint::Key, SourceKind::Table) => {
                    return statement_err!(
                        "Column `{}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.",
                        c.name
                    );
                }
                (ColumnConstraint::Headers, _) => return not_supported!("HEADER columns"),
            };
            if columns.iter().any(|x: &Column| x.name == c.name) {
                return statement_err!("Duplicate column names: {}", c.name);
            }
            columns.push(Column {
                name: c.name.clone(),
                sql_type: c.sql_type.clone(),
                kind,
            });
        }
        if columns.is_empty() {
            return statement_err!("The statement does not define any columns.");
        }
        if create.kind == SourceKind::Table && !columns.iter().any(|c| c.kind == ColumnKind::Key) {
            return statement_err!("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.");
        }
        let schema = LogicalSchema::new(columns);
        let props = &create.properties;
        let Some(topic) = props.get("KAFKA_TOPIC").map(PropertyValue::as_text) else {
            return statement_err!(
                "Missing required property \"KAFKA_TOPIC\" which has no default value."
            );
        };
        let (key_format, value_format) = formats(props, None, self.default_value_format())?;
        check_formats(&schema, &key_format, &value_format)?;
        let (timestamp_column, timestamp_format) = timestamp_column(props, &schema)?.unzip();
        let timestamp_format = timestamp_format.flatten();
        let wrap_single_value =
            wrap_single_value(props, &schema, &value_format, self.wrap_by_default())?;
        let window = declared_window(props)?;
        if window.is_some() && schema.key_count() == 0 {
            return statement_err!("Windowed sources require a key column.");
        }

        let backend = self.runtime.backend();
        if backend.describe_topic(&topic).is_none() {
            match props.get("PARTITIONS") {
                Some(p) => {
                    let partitions = parse_count(p, "PARTITIONS")?;
                    let replicas = props
                        .get("REPLICAS")
                        .map(|r| parse_count(r, "REPLICAS"))
                        .transpose()?
                        .unwrap_or(1);
                    create_topic_once(backend.as_ref(), &topic, partitions, replicas as u16)?;
                }
                None => {
                    return statement_err!(
                        "Topic '{topic}' does not exist. If you want to create a new topic for the {} please re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS').",
                        create.kind.lower()
                    );
                }
            }
        }
        catalog.put_source(DataSource {
            name: create.name.clone(),
            kind: create.kind,
            schema,
            topic,
            key_format,
            value_format,
            wrap_single_value,
            timestamp_column,
            timestamp_format,
            window,
            read_only: create.read_only,
            sql: sql.to_string(),
        });
        let noun = match create.kind {
            SourceKind::Stream => "Stream",
            SourceKind::Table => "Table",
        };
        Ok(StatementResult::Status {
            message: format!("{noun} created"),
        })
    }

    fn plan_context<'a>(&'a self, catalog: &'a Catalog) -> PlanContext<'a> {
        let properties = self.properties.lock();
        let new_planner = properties
            .get(NEW_QUERY_PLANNER)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let flush_interval = properties
            .get(COMMIT_INTERVAL)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis);
        PlanContext {
            catalog,
            functions: &self.functions,
            state: &self.state,
            new_planner,
            flush_interval,
            topics: Some(self.runtime.backend().as_ref()),
            transient: false,
        }
    }

    fn create_as_select(&self, create: &CreateAsSelect, sql: &str) -> Result<StatementResult> {
        let mut catalog = self.catalog.lock();
        if let Some(existing) = catalog.source(&create.name) {
            if create.if_not_exists {
                return Ok(StatementResult::Status {
                    message: format!(
                        "Cannot add {} {}: already exists",
                        create.kind.lower(),
                        create.name
                    ),
                });
            }
            if create.or_replace {
                return not_supported!("CREATE OR REPLACE of a query's result");
            }
            return Err(already_exists(create.kind, &create.name, existing.kind));
        }
        let planned = self
            .plan_context(&catalog)
            .plan(&create.query, &create.name)?;
        result_kind_matches(create.kind, planned.kind)?;
        let props = &create.properties;
        let source = planned.source.clone();
        let topic = props
            .get("KAFKA_TOPIC")
            .map(PropertyValue::as_text)
            .unwrap_or_else(|| create.name.clone());
        let (mut key_format, value_format) = formats(
            props,
            Some((&source.key_format, &source.value_format)),
            None,
        )?;
        let explicit_key_format = props.contains_key("KEY_FORMAT") || props.contains_key("FORMAT");
        if key_format == Format::None && planned.schema.key_count() > 0 && !explicit_key_format {
            key_format = Format::Kafka;
        }
        if planned.schema.key_count() == 0 {
            if explicit_key_format && key_format != Format::None {
                return statement_err!("Key format specified for stream without key columns.");
            }
            key_format = Format::None;
        }
        check_formats(&planned.schema, &key_format, &value_format)?;
        let wrap_single_value = wrap_single_value(
            props,
            &planned.schema,
            &value_format,
            self.wrap_by_default(),
        )?;
        let backend = self.runtime.backend();
        if backend.describe_topic(&topic).is_none() {
            let source_partitions = backend
                .describe_topic(&source.topic)
                .map(|t| t.partitions)
                .unwrap_or(1);
            let partitions = props
                .get("PARTITIONS")
                .map(|p| parse_count(p, "PARTITIONS"))
                .transpose()?
                .unwrap_or(source_partitions);
            let replicas = props
                .get("REPLICAS")
                .map(|r| parse_count(r, "REPLICAS"))
                .transpose()?
                .unwrap_or(1);
            create_topic_once(backend.as_ref(), &topic, partitions, replicas as u16)?;
        }
        let (timestamp_column, timestamp_format) =
            timestamp_column(props, &planned.schema)?.unzip();
        let sink = DataSource {
            name: create.name.clone(),
            kind: create.kind,
            schema: planned.schema.clone(),
            topic,
            key_format,
            value_format,
            wrap_single_value,
            timestamp_column,
            timestamp_format: timestamp_format.flatten(),
            window: planned.window,
            read_only: false,
            sql: sql.to_string(),
        };
        let prefix = match create.kind {
            SourceKind::Stream => format!("CSAS_{}", create.name),
            SourceKind::Table => format!("CTAS_{}", create.name),
        };
        let query_id = catalog.next_query_id(&prefix);
        let sources = planned
            .inputs
            .iter()
            .map(|i| i.source.name.clone())
            .collect();
        self.start_query(&query_id, planned, &sink, &create.query, &create.name)?;
        catalog.put_query(QueryInfo {
            id: query_id.clone(),
            sql: sql.to_string(),
            sink: sink.name.clone(),
            sources,
        });
        let sink_name = sink.name.clone();
        catalog.put_source(sink);
        Ok(StatementResult::QueryStarted {
            message: format!("Created query with ID {query_id}"),
            query_id,
            sink: sink_name,
        })
    }

    /// Starts the persistent query `query` planned as `planned`: on this
    /// server alone, or, in a cluster, as this server's share of it.
    fn start_query(
        &self,
        query_id: &str,
        planned: crate::planner::PlannedQuery,
        sink: &DataSource,
        query: &Query,
        sink_name: &str,
    ) -> Result<()> {
        if let Some(config) = self.runtime.cluster_config() {
            if self.start_repartitioned(query_id, &planned, sink, query, sink_name, &config)? {
                return Ok(());
            }
            let partition_local = planned.partition_local;
            let factory = self.plan_factory(query_id, &planned, sink, query, sink_name);
            self.runtime.add_distributed(factory, partition_local)?;
            return Ok(());
        }
        let query = self.attach_query(query_id, planned, sink)?;
        self.runtime.add_persistent(query)?;
        Ok(())
    }

    /// Plans `query` again on every call, as it was planned now: a cluster
    /// member runs one instance per input partition it owns, and plans
    /// hold their operators' state.
    fn plan_factory(
        &self,
        query_id: &str,
        planned: &crate::planner::PlannedQuery,
        sink: &DataSource,
        query: &Query,
        sink_name: &str,
    ) -> sluice_engine::query::distributed::PlanFactory {
        let query = query.clone();
        let sink = sink.clone();
        let sink_name = sink_name.to_string();
        let query_id = query_id.to_string();
        let sources = planned.inputs.iter().map(|i| i.source.as_ref().clone());
        self.factory_over(sources, move |context| {
            let planned = context.plan(&query, &sink_name).map_err(plan_error)?;
            query_plan(&query_id, planned, &sink).map_err(plan_error)
        })
    }

    /// A factory of plans built by `build` over a catalog holding only
    /// `sources`, as they are now (so later DDL cannot change the plan),
    /// with the planner settings of now.
    fn factory_over(
        &self,
        sources: impl IntoIterator<Item = DataSource>,
        build: impl Fn(&PlanContext) -> sluice_engine::Result<sluice_engine::query::QueryPlan>
        + Send
        + Sync
        + 'static,
    ) -> sluice_engine::query::distributed::PlanFactory {
        let mut catalog = Catalog::default();
        for source in sources {
            catalog.put_source(source);
        }
        let (new_planner, flush_interval) = {
            let now = self.plan_context(&catalog);
            (now.new_planner, now.flush_interval)
        };
        let functions = self.functions.clone();
        let state = self.state.clone();
        let backend = self.runtime.backend().clone();
        Arc::new(move || {
            let context = PlanContext {
                catalog: &catalog,
                functions: &functions,
                state: &state,
                new_planner,
                flush_interval,
                topics: Some(backend.as_ref()),
                transient: false,
            };
            build(&context)
        })
    }

    /// Starts a push query (`SELECT ... EMIT CHANGES`): planned like a
    /// persistent query, but outside the catalog, writing to an internal
    /// topic that the caller reads and, through [`Self::stop_transient`],
    /// deletes. `from_latest` skips what the sources hold already.
    pub fn start_transient(
        &self,
        query_id: &str,
        query: &Query,
        from_latest: bool,
    ) -> Result<TransientQuery> {
        let catalog = self.catalog.lock();
        let mut plan_context = self.plan_context(&catalog);
        // Push queries may leave a stream's key out of the projection, as
        // ksqlDB's newer planner allows: their result is not a source.
        plan_context.new_planner = true;
        plan_context.transient = true;
        let planned = plan_context.plan(query, query_id)?;
        drop(catalog);
        let key_format = if planned.schema.key_count() == 0 {
            Format::None
        } else if check_formats(&planned.schema, &Format::Kafka, &Format::Json).is_ok() {
            Format::Kafka
        } else {
            Format::Json
        };
        check_formats(&planned.schema, &key_format, &Format::Json)?;
        let topic = format!("_sluice_transient_{query_id}");
        let backend = self.runtime.backend();
        if backend.describe_topic(&topic).is_some() {
            backend.delete_topic(&topic)?;
        }
        backend.create_topic(&topic, 1, 1)?;
        let sink = DataSource {
            name: query_id.to_string(),
            kind: planned.kind,
            schema: planned.schema.clone(),
            topic: topic.clone(),
            key_format,
            value_format: Format::Json,
            wrap_single_value: true,
            timestamp_column: None,
            timestamp_format: None,
            window: planned.window,
            read_only: true,
            sql: String::new(),
        };
        let started = self
            .attach_query(query_id, planned, &sink)
            .and_then(|mut q| {
                if from_latest {
                    q.skip_to_end()?;
                }
                Ok(q)
            });
        match started {
            Ok(q) => self.runtime.add(q),
            Err(e) => {
                let _ = backend.delete_topic(&topic);
                return Err(e);
            }
        }
        Ok(TransientQuery {
            id: query_id.to_string(),
            sink,
            limit: query.limit,
        })
    }

    /// Stops a push query and deletes its internal topic.
    pub fn stop_transient(&self, query: &TransientQuery) {
        self.runtime.remove(&query.id);
        let _ = self.runtime.backend().delete_topic(&query.sink.topic);
    }

    /// A planned query attached to its topics, not running yet.
    fn attach_query(
        &self,
        query_id: &str,
        planned: crate::planner::PlannedQuery,
        sink: &DataSource,
    ) -> Result<PersistentQuery> {
        let plan = query_plan(query_id, planned, sink)?;
        Ok(PersistentQuery::start(
            plan,
            self.runtime.backend().clone(),
            self.runtime.processing_log().clone(),
        )?)
    }

    fn insert_into(
        &self,
        target: &str,
        query: &Query,
        sql: &str,
        line: u64,
        column: u64,
    ) -> Result<StatementResult> {
        let mut catalog = self.catalog.lock();
        let Some(sink) = catalog.source(target).cloned() else {
            return statement_err!(
                "Line: {line}, Col: {column}: Source `{target}` does not exist."
            );
        };
        if sink.kind == SourceKind::Table {
            return statement_err!(
                "INSERT INTO can only be used to insert into a stream. {target} is a table."
            );
        }
        if sink.read_only {
            return statement_err!("Cannot insert into read-only stream: {target}");
        }
        let planned = self.plan_context(&catalog).plan(query, target)?;
        if planned.kind != SourceKind::Stream {
            return statement_err!(
                "INSERT INTO can only be used to insert into a stream from a stream query."
            );
        }
        if planned.schema != sink.schema {
            return statement_err!(
                "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
                planned.schema,
                sink.schema
            );
        }
        let query_id = catalog.next_query_id("INSERTQUERY");
        let sources = planned
            .inputs
            .iter()
            .map(|i| i.source.name.clone())
            .collect();
        self.start_query(&query_id, planned, &sink, query, target)?;
        catalog.put_query(QueryInfo {
            id: query_id.clone(),
            sql: sql.to_string(),
            sink: sink.name.clone(),
            sources,
        });
        Ok(StatementResult::QueryStarted {
            message: format!("Created query with ID {query_id}"),
            query_id,
            sink: sink.name.clone(),
        })
    }

    fn insert_values(
        &self,
        target: &str,
        quoted: bool,
        columns: Option<&[String]>,
        values: &[datafusion::sql::sqlparser::ast::Expr],
    ) -> Result<StatementResult> {
        let catalog = self.catalog.lock();
        let Some(sink) = catalog.source(target).cloned() else {
            let hint = match catalog.source_ignoring_case(target) {
                Some(other) if quoted => format!(
                    "\nDid you mean {}? Hint: try removing double quotes from the source name.",
                    other.name
                ),
                Some(other) => format!(
                    "\nDid you mean \"{}\"? Hint: wrap the source name in double quotes to make it case-sensitive.",
                    other.name
                ),
                None => String::new(),
            };
            return statement_err!(
                "Cannot insert values into an unknown stream/table: `{target}`{hint}"
            );
        };
        drop(catalog);
        if sink.read_only {
            return statement_err!(
                "Cannot insert values into read-only {}: {target}",
                sink.kind.lower()
            );
        }
        let names: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => sink
                .schema
                .columns()
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        };
        if names.len() != values.len() {
            return statement_err!(
                "Expected number columns and values to match: {}, {}",
                names.len(),
                values.len()
            );
        }
        let empty = Scope::new(vec![], Arc::new(Schema::empty()))?;
        let planner = ExprPlanner {
            scope: &empty,
            functions: &self.functions,
            clause: "VALUES",
            allow_aggregates: false,
        };
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let mut provided: BTreeMap<String, ArrayRef> = BTreeMap::new();
        for (name, value) in names.iter().zip(values) {
            let expr = planner.convert(value)?;
            let physical = crate::planner::compile_expr(&self.state, expr, &empty.df)?;
            let array = physical.evaluate(&one_row)?.into_array(1)?;
            provided.insert(name.clone(), array);
        }
        let mut timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if let Some(rowtime) = provided.remove("ROWTIME") {
            let rowtime = datafusion::arrow::compute::cast(
                &rowtime,
                &datafusion::arrow::datatypes::DataType::Int64,
            )?;
            if let Some(ts) = rowtime
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                && ts.is_valid(0)
            {
                timestamp = ts.value(0);
            }
        }
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for c in sink.schema.columns() {
            let target_type = c.sql_type.to_arrow();
            let array = match provided.remove(&c.name) {
                Some(a) => datafusion::arrow::compute::cast(&a, &target_type)
                    .map_err(|e| SqlError::Statement(format!("Failed to insert values into '{target}'. Expected type {} for column {}: {e}", c.sql_type, c.name)))?,
                None => datafusion::arrow::array::new_null_array(&target_type, 1),
            };
            arrays.push(array);
        }
        if let Some(unknown) = provided.keys().next() {
            return statement_err!("Column name `{unknown}` does not exist.");
        }
        let codec = sink.codec();
        let key_count = sink.schema.key_count();
        let key = codec.encode_key(&arrays[..key_count], 0)?;
        let value = codec.encode_value(&arrays[key_count..], 0)?;
        let record = Record {
            key: key.map(bytes::Bytes::from),
            value: value.map(bytes::Bytes::from),
            timestamp,
            headers: vec![],
        };
        self.runtime
            .backend()
            .produce(&sink.topic, vec![(Partitioning::ByKey, record)])?;
        Ok(StatementResult::Status {
            message: "Inserted".into(),
        })
    }

    fn drop_source(
        &self,
        kind: SourceKind,
        name: &str,
        if_exists: bool,
        delete_topic: bool,
    ) -> Result<StatementResult> {
        let mut catalog = self.catalog.lock();
        let Some(source) = catalog.source(name).cloned() else {
            if if_exists {
                return Ok(StatementResult::Status {
                    message: format!("Source `{name}` does not exist."),
                });
            }
            return statement_err!(
                "{} {name} does not exist.",
                if kind == SourceKind::Stream {
                    "Stream"
                } else {
                    "Table"
                }
            );
        };
        if source.kind != kind {
            return statement_err!(
                "Incompatible data source type is {}, but statement was DROP {}",
                source.kind,
                kind
            );
        }
        let (readers, writers) = catalog.queries_using(name);
        if !readers.is_empty() || !writers.is_empty() {
            return statement_err!(
                "Cannot drop {name}.\nThe following queries read from this source: [{}].\nThe following queries write into this source: [{}].\nYou need to terminate them before dropping {name}.",
                readers.join(", "),
                writers.join(", ")
            );
        }
        catalog.remove_source(name);
        if delete_topic {
            // Push queries over the source end with it: their consumers
            // must leave the topic before it is deleted (librdkafka does
            // not survive a topic deleted under a reader on Tansu), and
            // they would read nothing more anyway.
            for id in self.runtime.local_readers(&source.topic) {
                if catalog.query(&id).is_none() {
                    self.runtime.remove_keeping_topics(&id);
                    tracing::info!(query = %id, "stopped: its source {name} was dropped");
                }
            }
        }
        drop(catalog);
        if delete_topic {
            self.release_topics(vec![source.topic.clone()])?;
        }
        Ok(StatementResult::Status {
            message: format!("Source `{name}` (topic: {}) was dropped.", source.topic),
        })
    }

    fn show(&self, kind: ShowKind) -> Result<StatementResult> {
        let catalog = self.catalog.lock();
        Ok(match kind {
            ShowKind::Streams => StatementResult::Streams(
                catalog
                    .sources()
                    .filter(|s| s.kind == SourceKind::Stream)
                    .cloned()
                    .collect(),
            ),
            ShowKind::Tables => StatementResult::Tables(
                catalog
                    .sources()
                    .filter(|s| s.kind == SourceKind::Table)
                    .cloned()
                    .collect(),
            ),
            ShowKind::Queries => {
                let states: BTreeMap<String, QueryState> =
                    self.runtime.states().into_iter().collect();
                StatementResult::Queries(
                    catalog
                        .queries()
                        .map(|q| QueryDescription {
                            info: q.clone(),
                            state: match states.get(&q.id) {
                                Some(QueryState::Running) => "RUNNING".into(),
                                Some(QueryState::Error(_)) => "ERROR".into(),
                                None => "UNKNOWN".into(),
                            },
                        })
                        .collect(),
                )
            }
            ShowKind::Topics => StatementResult::Topics(self.runtime.backend().list_topics()),
            ShowKind::Functions => StatementResult::Functions(self.functions.names()),
            ShowKind::Properties => StatementResult::Properties(self.properties.lock().clone()),
        })
    }

    fn describe(&self, name: &str, extended: bool) -> Result<StatementResult> {
        let catalog = self.catalog.lock();
        let Some(source) = catalog.source(name).cloned() else {
            return statement_err!("Could not find STREAM/TABLE '{name}' in the Metastore");
        };
        let (readers, writers) = catalog.queries_using(name);
        let partitions = self
            .runtime
            .backend()
            .describe_topic(&source.topic)
            .map(|t| t.partitions);
        let delivery = extended.then(|| self.delivery_guarantee(&source, &writers));
        Ok(StatementResult::Description(SourceDescription {
            source,
            readers,
            writers,
            partitions,
            delivery,
        }))
    }

    /// What a crash does to the output of the queries writing `source`.
    fn delivery_guarantee(&self, source: &DataSource, writers: &[String]) -> String {
        if writers.is_empty() {
            return format!(
                "no query writes {}: it holds what producers write to topic '{}'",
                source.name, source.topic
            );
        }
        match self.runtime.checkpoint_config() {
            Some(config) => format!(
                "projection: exactly-once (operator state and source offsets are checkpointed together every {} ms and restored after a crash; re-emitted rows are identical and replace themselves); topic '{}': at-least-once ({}: rows emitted after the last checkpoint are written again after a crash)",
                config.interval.as_millis(),
                source.topic,
                match self.runtime.backend().transaction_support() {
                    TransactionSupport::Supported => "the broker supports Kafka transactions, but Sluice does not write in them yet".to_string(),
                    TransactionSupport::Unsupported(why) => format!("no Kafka transactions: {why}"),
                    TransactionSupport::Unknown(why) => format!("no Kafka transactions: {why}"),
                }
            ),
            None => format!(
                "projection and topic '{}': no recovery (no state directory: a restart loses the catalog, and queries re-created by hand reprocess their input from the beginning)",
                source.topic
            ),
        }
    }

    fn explain(&self, query_id: &str) -> Result<StatementResult> {
        let id = query_id.to_uppercase();
        let Some(info) = self.catalog.lock().query(&id).cloned() else {
            return statement_err!("Query with id:{id} does not exist");
        };
        let Some(plan) = self.runtime.explain(&id) else {
            return statement_err!("Query {id} is not running");
        };
        let state = self
            .runtime
            .states()
            .into_iter()
            .find(|(q, _)| *q == id)
            .map_or_else(
                || "UNKNOWN".to_string(),
                |(_, s)| match s {
                    QueryState::Running => "RUNNING".to_string(),
                    QueryState::Error(_) => "ERROR".to_string(),
                },
            );
        Ok(StatementResult::Explanation(Box::new(QueryExplanation {
            info,
            state,
            plan,
        })))
    }

    fn terminate(&self, query_id: Option<&str>) -> Result<StatementResult> {
        let mut catalog = self.catalog.lock();
        let ids: Vec<String> = match query_id {
            Some(id) => {
                let id = id.to_uppercase();
                if catalog.query(&id).is_none() {
                    return statement_err!("Unknown queryId: {id}");
                }
                vec![id]
            }
            None => catalog.queries().map(|q| q.id.clone()).collect(),
        };
        let mut unused = Vec::new();
        for id in &ids {
            unused.extend(self.runtime.remove_keeping_topics(id).unwrap_or_default());
            catalog.remove_query(id);
        }
        drop(catalog);
        // The query is gone either way; a topic left over is only untidy.
        if let Err(e) = self.release_topics(unused) {
            tracing::warn!("deleting the internal topics of {}: {e}", ids.join(", "));
        }
        Ok(StatementResult::Status {
            message: format!("Terminated: {}", ids.join(", ")),
        })
    }
}

/// How a query reads `source`.
pub fn source_spec(source: &DataSource) -> Result<SourceSpec> {
    let position = source
        .timestamp_column
        .as_ref()
        .map(|name| {
            source
                .schema
                .columns()
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| {
                    SqlError::Statement(format!(
                        "The TIMESTAMP column set in the WITH clause does not exist in the schema: '{name}'"
                    ))
                })
        })
        .transpose()?;
    Ok(SourceSpec {
        topic: source.topic.clone(),
        schema: source.schema.clone(),
        codec: source.codec(),
        is_table: source.kind == SourceKind::Table,
        timestamp: timestamp_source(position, source.timestamp_format.as_deref())?,
        window: source.window,
        repartitioned: false,
    })
}

fn parse_count(value: &PropertyValue, name: &str) -> Result<u32> {
    value
        .as_text()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            SqlError::Statement(format!("Invalid value for {name}: {}", value.as_text()))
        })
}

/// The key and value formats from `FORMAT`, `KEY_FORMAT`, `VALUE_FORMAT`;
/// a query's result inherits its source's where none is given.
fn formats(
    props: &WithProperties,
    inherited: Option<(&Format, &Format)>,
    default_value: Option<String>,
) -> Result<(Format, Format)> {
    let text = |k: &str| props.get(k).map(PropertyValue::as_text);
    let delimiter_of = |property: &str| -> Result<Option<char>> {
        Ok(match text(property) {
            None => None,
            Some(d) => Some(match d.to_uppercase().as_str() {
                "TAB" => '\t',
                "SPACE" => ' ',
                _ if d.chars().count() == 1 => d.chars().next().unwrap_or(','),
                _ => {
                    return statement_err!(
                        "Invalid delimiter '{d}': a delimiter is a single character, TAB or SPACE"
                    );
                }
            }),
        })
    };
    let delimiter = delimiter_of("VALUE_DELIMITER")?;
    let key_delimiter = delimiter_of("KEY_DELIMITER")?;
    let parse_with = |name: &str, delimiter: Option<char>| -> Result<Format> {
        match Format::from_name(name, delimiter) {
            Ok(f) => Ok(f),
            Err(_) => match name.to_uppercase().as_str() {
                "AVRO" | "PROTOBUF" | "JSON_SR" => {
                    not_supported!("format {} (Schema Registry)", name.to_uppercase())
                }
                other => statement_err!("Unknown format: {other}"),
            },
        }
    };
    let parse = |name: &str| parse_with(name, delimiter);
    let format = text("FORMAT");
    if format.is_some() && (text("KEY_FORMAT").is_some() || text("VALUE_FORMAT").is_some()) {
        return statement_err!(
            "Cannot supply both 'KEY_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both key and value formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
        );
    }
    let key = match text("KEY_FORMAT").or(format.clone()) {
        Some(k) => parse_with(&k, key_delimiter)?,
        None => inherited.map(|(k, _)| k.clone()).unwrap_or(Format::Kafka),
    };
    let value = match text("VALUE_FORMAT").or(format).or(default_value) {
        Some(v) => parse(&v)?,
        None => match inherited {
            Some((_, v)) => match (v, delimiter) {
                (Format::Delimited { .. }, Some(d)) => Format::Delimited { delimiter: d },
                _ => v.clone(),
            },
            None => {
                return statement_err!(
                    "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either provide one or set a default via the 'ksql.persistence.default.format.value' config."
                );
            }
        },
    };
    let nullable = |format: Format, property: &str| -> Result<Format> {
        match (format, text(property)) {
            (Format::Protobuf { .. }, Some(r)) => match Nullable::from_name(&r) {
                Some(nullable) => Ok(Format::Protobuf { nullable }),
                None => statement_err!("Invalid value for {property}: {r}"),
            },
            (f, _) => Ok(f),
        }
    };
    let key = nullable(key, "KEY_PROTOBUF_NULLABLE_REPRESENTATION")?;
    let value = nullable(value, "VALUE_PROTOBUF_NULLABLE_REPRESENTATION")?;
    // Avro schema names mean nothing to the formats Sluice has.
    for (format, property) in [
        (&key, "KEY_AVRO_SCHEMA_FULL_NAME"),
        (&value, "VALUE_AVRO_SCHEMA_FULL_NAME"),
    ] {
        if props.contains_key(property) {
            return statement_err!(
                "{} does not support the following configs: [fullSchemaName]",
                format.name()
            );
        }
    }
    Ok((key, value))
}

fn check_formats(schema: &LogicalSchema, key: &Format, value: &Format) -> Result<()> {
    let keys: Vec<&Column> = schema.key_columns().collect();
    if let Some(k) = keys.iter().find(|k| contains_map(&k.sql_type)) {
        // Map entries have no canonical order, so equal keys could
        // serialise differently and land in different partitions.
        return statement_err!(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{}`. Column type: {}. See https://github.com/confluentinc/ksql/issues/6621 for more.",
            k.name,
            k.sql_type
        );
    }
    let values: Vec<&Column> = schema.value_columns().collect();
    key.validate(&keys, ColumnKind::Key).map_err(|e| {
        SqlError::Statement(format!(
            "Key format does not support schema.\nformat: {key}\nschema: {}\nreason: {}",
            schema_of(&keys),
            engine_message(e)
        ))
    })?;
    value.validate(&values, ColumnKind::Value).map_err(|e| {
        SqlError::Statement(format!(
            "Value format does not support schema.\nformat: {value}\nschema: {}\nreason: {}",
            schema_of(&values),
            engine_message(e)
        ))
    })?;
    Ok(())
}

fn contains_map(t: &SqlType) -> bool {
    match t {
        SqlType::Map(_, _) => true,
        SqlType::Array(e) => contains_map(e),
        SqlType::Struct(fields) => fields.iter().any(|(_, t)| contains_map(t)),
        _ => false,
    }
}

fn engine_message(e: sluice_engine::EngineError) -> String {
    match e {
        sluice_engine::EngineError::Unsupported(m) => m,
        other => other.to_string(),
    }
}

fn schema_of(columns: &[&Column]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|c| format!("`{}` {}", c.name, c.sql_type))
        .collect();
    format!("Persistence{{columns=[{}]}}", parts.join(", "))
}

/// Where a query's rows get their time: a column at `position` (read
/// by the `format` pattern when given), else the record time.
fn timestamp_source(position: Option<usize>, format: Option<&str>) -> Result<TimestampSource> {
    Ok(match (position, format) {
        (None, _) => TimestampSource::RecordTime,
        (Some(i), None) => TimestampSource::Column(i),
        (Some(i), Some(format)) => {
            let pattern = Pattern::parse(format)
                .map_err(|e| SqlError::Statement(format!("Invalid TIMESTAMP_FORMAT: {e}")))?;
            TimestampSource::Parsed(
                i,
                TimestampParser(Arc::new(move |text| {
                    parse_millis(text, &pattern, None).ok()
                })),
            )
        }
    })
}

/// The `TIMESTAMP` column of a WITH clause and its `TIMESTAMP_FORMAT`.
fn timestamp_column(
    props: &WithProperties,
    schema: &LogicalSchema,
) -> Result<Option<(String, Option<String>)>> {
    let Some(name) = props.get("TIMESTAMP").map(PropertyValue::as_text) else {
        return Ok(None);
    };
    let name = name.trim_matches('`').to_uppercase();
    let Some(column) = schema.find(&name) else {
        return statement_err!(
            "The TIMESTAMP column set in the WITH clause does not exist in the schema: '{name}'"
        );
    };
    let format = props.get("TIMESTAMP_FORMAT").map(PropertyValue::as_text);
    match column.sql_type {
        SqlType::Bigint | SqlType::Timestamp => Ok(Some((name, None))),
        SqlType::String if format.is_some() => {
            let format = format.unwrap_or_default();
            Pattern::parse(&format)
                .map_err(|e| SqlError::Statement(format!("Invalid TIMESTAMP_FORMAT: {e}")))?;
            Ok(Some((name, Some(format))))
        }
        _ => statement_err!(
            "Timestamp column, `{name}`, should be LONG(INT64), TIMESTAMP, or a String with a timestamp_format specified."
        ),
    }
}

fn wrap_single_value(
    props: &WithProperties,
    schema: &LogicalSchema,
    value: &Format,
    by_default: bool,
) -> Result<bool> {
    match props.get("WRAP_SINGLE_VALUE") {
        // The configured default applies where wrapping means something.
        None => Ok(by_default
            || schema.value_columns().count() != 1
            || !matches!(value, Format::Json | Format::Protobuf { .. })),
        Some(PropertyValue::Boolean(true)) if matches!(value, Format::Delimited { .. }) => {
            statement_err!("Format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
        }
        Some(PropertyValue::Boolean(wrap)) => {
            if schema.value_columns().count() != 1 {
                return statement_err!(
                    "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"
                );
            }
            if matches!(value, Format::Kafka) && *wrap {
                return statement_err!(
                    "'WRAP_SINGLE_VALUE' is not supported by the 'KAFKA' format"
                );
            }
            Ok(*wrap)
        }
        Some(other) => statement_err!("Invalid value for WRAP_SINGLE_VALUE: {}", other.as_text()),
    }
}

/// `WINDOW_TYPE` / `WINDOW_SIZE` of a source whose keys carry windows.
fn declared_window(props: &WithProperties) -> Result<Option<sluice_engine::window::WindowType>> {
    use sluice_engine::window::WindowType;
    let Some(kind) = props.get("WINDOW_TYPE").map(PropertyValue::as_text) else {
        if props.contains_key("WINDOW_SIZE") {
            return statement_err!("'WINDOW_SIZE' requires 'WINDOW_TYPE'.");
        }
        return Ok(None);
    };
    let size = props.get("WINDOW_SIZE").map(PropertyValue::as_text);
    let size_ms = match &size {
        None => None,
        Some(text) => Some(parse_window_size(text)?),
    };
    match (kind.to_uppercase().as_str(), size_ms) {
        ("SESSION", None) => Ok(Some(WindowType::Session)),
        ("SESSION", Some(_)) => {
            statement_err!("'WINDOW_SIZE' should not be set for SESSION windows.")
        }
        ("TUMBLING", Some(size_ms)) => Ok(Some(WindowType::Tumbling { size_ms })),
        ("HOPPING", Some(size_ms)) => Ok(Some(WindowType::Hopping {
            size_ms,
            advance_ms: size_ms,
        })),
        ("TUMBLING" | "HOPPING", None) => {
            statement_err!(
                "{kind} windows require 'WINDOW_SIZE' to be provided in the WITH clause."
            )
        }
        _ => statement_err!("Unknown WINDOW_TYPE '{kind}': expected SESSION, HOPPING or TUMBLING."),
    }
}

/// `'30 seconds'` in milliseconds.
fn parse_window_size(text: &str) -> Result<i64> {
    let invalid = || {
        SqlError::Statement(format!(
            "Invalid WINDOW_SIZE property : '{text}'. WINDOW_SIZE should be in the format '<number> <time unit>'."
        ))
    };
    let mut parts = text.split_whitespace();
    let (Some(amount), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let amount: i64 = amount.parse().map_err(|_| invalid())?;
    let factor = match unit.to_uppercase().trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return Err(invalid()),
    };
    amount.checked_mul(factor).ok_or_else(invalid)
}

/// The statements of a script; a syntax error becomes a
/// [`StatementError`] with its position.
fn parse_script(sql: &str) -> Result<Vec<ParsedStatement>, StatementError> {
    parse_statements(sql).map_err(|error| {
        let (line, column) = match &error {
            SqlError::Syntax { line, column, .. } => (*line, *column),
            _ => (0, 0),
        };
        StatementError {
            statement: sql.trim().to_string(),
            line,
            column,
            error,
        }
    })
}

/// ksqlDB's error for a `CREATE` of `kind` named `name` when a source of
/// kind `existing` holds the name.
fn already_exists(kind: SourceKind, name: &str, existing: SourceKind) -> SqlError {
    SqlError::Statement(format!(
        "Cannot add {} '{name}': A {} with the same name already exists",
        kind.lower(),
        existing.lower()
    ))
}

/// ksqlDB's error when a `CREATE {wanted} AS SELECT`'s query produces the
/// other kind of source.
fn result_kind_matches(wanted: SourceKind, produced: SourceKind) -> Result<()> {
    if wanted == produced {
        return Ok(());
    }
    let (produces, use_instead) = match produced {
        SourceKind::Table => ("TABLE", "CREATE TABLE AS SELECT"),
        SourceKind::Stream => ("STREAM", "CREATE STREAM AS SELECT"),
    };
    statement_err!(
        "Invalid result type. Your SELECT query produces a {produces}. Please use {use_instead} statement instead."
    )
}

/// A planning error where the engine asks for a plan.
fn plan_error(e: SqlError) -> sluice_engine::EngineError {
    sluice_engine::EngineError::Plan(e.to_string())
}

/// The engine's plan of a planned query writing to `sink`.
fn query_plan(
    query_id: &str,
    planned: crate::planner::PlannedQuery,
    sink: &DataSource,
) -> Result<QueryPlan> {
    let mut inputs = Vec::new();
    for input in planned.inputs {
        inputs.push(QueryInput {
            source: source_spec(&input.source)?,
            operators: input.operators,
        });
    }
    // Output rows are keys then values.
    let sink_position = sink.timestamp_column.as_ref().and_then(|name| {
        let keys: Vec<_> = sink.schema.key_columns().collect();
        keys.iter().position(|c| &c.name == name).or_else(|| {
            sink.schema
                .value_columns()
                .position(|c| &c.name == name)
                .map(|p| keys.len() + p)
        })
    });
    let sink_timestamp = timestamp_source(sink_position, sink.timestamp_format.as_deref())?;
    let plan = QueryPlan {
        id: query_id.to_string(),
        inputs,
        joins: planned.joins,
        operators: planned.operators,
        sink: SinkSpec {
            topic: sink.topic.clone(),
            schema: sink.schema.clone(),
            codec: sink.codec(),
            window: sink.window,
            timestamp: sink_timestamp,
            computed_key: planned.computed_key,
            repartition: None,
        },
    };
    Ok(plan)
}

/// Creates a topic unless it exists: the members of a cluster execute the
/// same statements at once, and one of them creates it first.
fn create_topic_once(
    backend: &dyn TopicBackend,
    topic: &str,
    partitions: u32,
    replicas: u16,
) -> Result<()> {
    match backend.create_topic(topic, partitions, replicas) {
        Err(sluice_engine::EngineError::TopicExists(_)) => Ok(()),
        created => Ok(created?),
    }
}

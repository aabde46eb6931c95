//! Push queries (`SELECT ... EMIT CHANGES`): transient queries whose rows
//! stream to one client.
//!
//! [`PushQueries`] starts each query on the engine's runtime
//! ([`KsqlContext::start_transient`]), which writes the results to an
//! internal topic. As a [`StepObserver`] it reads those topics after every
//! runtime pass and hands rows to each client through a bounded channel,
//! never waiting: a client whose buffer is full is cut off with an error
//! (the engine is never held up by a slow reader), a `LIMIT` ends the query
//! with "Limit Reached". A [`Subscription`] dropped by its client (the
//! connection closed) or closed through `/close-query` stops the query and
//! deletes its topic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use datafusion::arrow::array::ArrayRef;
use datafusion::common::HashMap;
use parking_lot::Mutex;
use sluice_engine::operator::OperatorContext;
use sluice_engine::query::{QueryState, SourceSpec, source};
use sluice_engine::runtime::StepObserver;
use sluice_engine::schema::{ColumnKind, SqlType};
use sluice_engine::topic::TopicConsumer;
use sluice_engine::window::{WINDOWEND, WINDOWSTART};
use sluice_sql::parser::{Query, SourceKind};
use sluice_sql::planner::expr::derived_name;
use sluice_sql::{KsqlContext, TransientQuery};
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::pull::OutputColumn;
use crate::rows;

/// Limits on push queries.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// Push queries running at once; more are refused.
    pub max_queries: usize,
    /// Rows buffered per client; a client this far behind is cut off.
    pub buffer_rows: usize,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_queries: 100,
            buffer_rows: 10_000,
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct PushRow {
    /// The selected columns as a JSON array.
    pub columns: String,
    /// A deletion of its key (tables only): value columns are null.
    pub tombstone: bool,
}

/// Why a push query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEnd {
    /// The `LIMIT` was reached.
    LimitReached,
    /// The client fell too far behind.
    Overflow(String),
    /// The query failed in the engine.
    Failed(String),
    /// Closed by `/close-query` or the client.
    Closed,
}

/// Where a push query's client is, see [`PushQueries::backlog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub id: String,
    pub delivered: u64,
    pub waiting: usize,
}

/// A client's end of a push query.
pub struct Subscription {
    pub id: String,
    pub columns: Vec<OutputColumn>,
    pub rows: mpsc::Receiver<PushRow>,
    end: Arc<Mutex<Option<PushEnd>>>,
    registry: Weak<PushQueries>,
}

impl Subscription {
    /// How the query ended, once it has.
    pub fn end(&self) -> Option<PushEnd> {
        self.end.lock().clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.close(&self.id);
        }
    }
}

/// A running push query, as the observer sees it.
struct Active {
    query: TransientQuery,
    spec: SourceSpec,
    consumer: Box<dyn TopicConsumer>,
    /// Columns of the decoded result batch to send, in output order.
    selection: Vec<usize>,
    rows: mpsc::Sender<PushRow>,
    end: Arc<Mutex<Option<PushEnd>>>,
    sent: u64,
}

/// The push queries of one server.
pub struct PushQueries {
    ctx: Weak<KsqlContext>,
    limits: PushLimits,
    active: Mutex<HashMap<String, Active>>,
    /// Push queries started or starting: taken before a query starts so
    /// concurrent requests cannot exceed the limit together.
    slots: AtomicUsize,
    next_id: AtomicU64,
}

impl PushQueries {
    /// A registry of push queries on `ctx`, observing its runtime.
    pub fn attach(ctx: &Arc<KsqlContext>, limits: PushLimits) -> Arc<Self> {
        let registry = Arc::new(PushQueries {
            ctx: Arc::downgrade(ctx),
            limits: PushLimits {
                max_queries: limits.max_queries,
                buffer_rows: limits.buffer_rows.max(1),
            },
            active: Mutex::new(HashMap::new()),
            slots: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        ctx.runtime().observe(registry.clone());
        registry
    }

    pub fn running(&self) -> usize {
        self.active.lock().len()
    }

    /// How far each running push query's client is: rows handed to its
    /// buffer so far, and rows in the buffer still waiting to be sent.
    pub fn backlog(&self) -> Vec<Backlog> {
        self.active
            .lock()
            .iter()
            .map(|(id, a)| Backlog {
                id: id.clone(),
                delivered: a.sent,
                waiting: a.rows.max_capacity() - a.rows.capacity(),
            })
            .collect()
    }

    /// [`Self::start`] from an async handler: starting a query creates
    /// its internal topic, which on Kafka blocks on the admin client, and
    /// blocking is not allowed on the server's runtime threads.
    pub async fn start_blocking(
        self: &Arc<Self>,
        query: Query,
        from_latest: bool,
    ) -> Result<Subscription, ServerError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.start(&query, from_latest))
            .await
            .map_err(|e| ServerError::Internal(format!("starting the push query: {e}")))?
    }

    /// Starts `query`; `from_latest` skips what its sources hold already.
    pub fn start(
        self: &Arc<Self>,
        query: &Query,
        from_latest: bool,
    ) -> Result<Subscription, ServerError> {
        let ctx = self
            .ctx
            .upgrade()
            .ok_or_else(|| ServerError::Internal("the engine has stopped".into()))?;
        if self.slots.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queries {
            self.release();
            return Err(ServerError::TooManyRequests(format!(
                "Too many push queries: {} are running, the limit is {}.",
                self.running(),
                self.limits.max_queries
            )));
        }
        let started = self.start_reserved(&ctx, query, from_latest);
        if started.is_err() {
            self.release();
        }
        started
    }

    fn release(&self) {
        self.slots.fetch_sub(1, Ordering::SeqCst);
    }

    /// [`Self::start`] once a slot is taken; the slot is released when the
    /// query ends without being registered.
    fn start_reserved(
        self: &Arc<Self>,
        ctx: &Arc<KsqlContext>,
        query: &Query,
        from_latest: bool,
    ) -> Result<Subscription, ServerError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("transient_{}_{n}", query.from.name);
        let started =
            ctx.start_transient(&id, query, from_latest)
                .map_err(|e| ServerError::Statement {
                    statement: String::new(),
                    message: e.to_string(),
                })?;
        let prepared = (|| {
            let spec = sluice_sql::context::source_spec(&started.sink).map_err(|e| internal(&e))?;
            let consumer = ctx
                .backend()
                .consumer(&started.sink.topic)
                .map_err(|e| internal(&e))?;
            Ok::<_, ServerError>((spec, consumer))
        })();
        let (spec, consumer) = match prepared {
            Ok(p) => p,
            Err(e) => {
                ctx.stop_transient(&started);
                return Err(e);
            }
        };
        let (selection, columns) = output_columns(query, &spec);
        let (tx, rx) = mpsc::channel(self.limits.buffer_rows);
        let end = Arc::new(Mutex::new(None));
        if started.limit == Some(0) {
            *end.lock() = Some(PushEnd::LimitReached);
            ctx.stop_transient(&started);
            self.release();
        } else {
            self.active.lock().insert(
                id.clone(),
                Active {
                    query: started,
                    spec,
                    consumer,
                    selection,
                    rows: tx,
                    end: end.clone(),
                    sent: 0,
                },
            );
        }
        Ok(Subscription {
            id,
            columns,
            rows: rx,
            end,
            registry: Arc::downgrade(self),
        })
    }

    /// Stops a push query; false if none runs under that id.
    pub fn close(&self, id: &str) -> bool {
        let removed = self.active.lock().remove(id);
        match removed {
            Some(active) => {
                self.release();
                active.end.lock().get_or_insert(PushEnd::Closed);
                if let Some(ctx) = self.ctx.upgrade() {
                    ctx.stop_transient(&active.query);
                }
                true
            }
            None => false,
        }
    }

    fn step(&self, ctx: &KsqlContext) -> usize {
        let mut active = self.active.lock();
        if active.is_empty() {
            return 0;
        }
        let states = ctx.runtime().states();
        let mut failed: HashMap<String, String> = states
            .iter()
            .filter_map(|(id, state)| match state {
                QueryState::Error(e) if active.contains_key(id) => Some((id.clone(), e.clone())),
                _ => None,
            })
            .collect();
        // Stopped by the engine: a DROP of its source stops the push
        // queries reading it.
        let known: std::collections::HashSet<&str> =
            states.iter().map(|(id, _)| id.as_str()).collect();
        for id in active.keys() {
            if !known.contains(id.as_str()) {
                failed.insert(
                    id.clone(),
                    "The query was stopped: a source it reads was dropped.".to_string(),
                );
            }
        }
        let log = ctx.runtime().processing_log().clone();
        let mut consumed = 0;
        let mut ended = Vec::new();
        for (id, a) in active.iter_mut() {
            let op_ctx = OperatorContext {
                query_id: id,
                log: &log,
            };
            let outcome = deliver(a, &op_ctx);
            consumed += outcome.as_ref().map_or(0, |n| *n);
            let end = match outcome {
                Err(e) => Some(PushEnd::Failed(e.to_string())),
                Ok(_) if a.end.lock().is_some() => None,
                Ok(_) => failed.get(id).map(|e| PushEnd::Failed(e.clone())),
            };
            if let Some(end) = end {
                a.end.lock().get_or_insert(end);
            }
            if a.end.lock().is_some() {
                ended.push(id.clone());
            }
        }
        for id in ended {
            if let Some(a) = active.remove(&id) {
                self.release();
                // Its consumer leaves the result topic before the topic is
                // deleted: librdkafka does not survive a topic deleted
                // under its reader on Tansu.
                let query = a.query.clone();
                drop(a);
                ctx.stop_transient(&query);
            }
        }
        consumed
    }
}

/// Sends what the query's topic holds to its client, without waiting;
/// records the end when the limit is reached or the client is gone or
/// too slow. Returns the records read.
fn deliver(a: &mut Active, op_ctx: &OperatorContext) -> Result<usize, ServerError> {
    let mut consumed = 0;
    loop {
        let records = a.consumer.poll(1024).map_err(|e| internal(&e))?;
        if records.is_empty() {
            return Ok(consumed);
        }
        consumed += records.len();
        let change = source::decode(&a.spec, &records, op_ctx).map_err(|e| internal(&e))?;
        let columns: Vec<ArrayRef> = a
            .selection
            .iter()
            .map(|i| change.data.column(*i).clone())
            .collect();
        let stream = a.query.sink.kind == SourceKind::Stream;
        for row in 0..change.num_rows() {
            // A stream record without value is invalid for a push query
            // (ksqlDB skips it); for tables it is the deletion of its key.
            if stream && change.is_tombstone(row) {
                continue;
            }
            let message = PushRow {
                columns: rows::json_row(&columns, row)?,
                tombstone: change.is_tombstone(row),
            };
            match a.rows.try_send(message) {
                Ok(()) => a.sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    a.end.lock().get_or_insert(PushEnd::Overflow(format!(
                        "The client did not keep up: more than {} rows were waiting to be sent. The push query was stopped.",
                        a.rows.max_capacity()
                    )));
                    return Ok(consumed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    a.end.lock().get_or_insert(PushEnd::Closed);
                    return Ok(consumed);
                }
            }
            if a.query.limit.is_some_and(|l| a.sent >= l) {
                a.end.lock().get_or_insert(PushEnd::LimitReached);
                return Ok(consumed);
            }
        }
    }
}

impl StepObserver for PushQueries {
    fn after_step(&self) -> usize {
        match self.ctx.upgrade() {
            Some(ctx) => self.step(&ctx),
            None => 0,
        }
    }
}

/// The columns a push query sends, in projection order, and their
/// positions in the decoded result batch. `*` stands for the key columns,
/// the window bounds of windowed results, then the value columns; columns
/// the planner kept but the projection does not name (a key left out of
/// the projection) are not sent.
fn output_columns(query: &Query, spec: &SourceSpec) -> (Vec<usize>, Vec<OutputColumn>) {
    use datafusion::sql::sqlparser::ast::SelectItem;
    let columns = spec.schema.columns();
    let width = columns.len();
    // (name, type, position in the batch) in `*` order.
    let mut visible: Vec<(String, SqlType, usize)> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if c.kind == ColumnKind::Key {
            visible.push((c.name.clone(), c.sql_type.clone(), i));
        }
    }
    if spec.window.is_some() && !columns.iter().any(|c| c.name == WINDOWSTART) {
        // After the three pseudo columns of the decoded batch.
        visible.push((WINDOWSTART.into(), SqlType::Bigint, width + 3));
        visible.push((WINDOWEND.into(), SqlType::Bigint, width + 4));
    }
    for (i, c) in columns.iter().enumerate() {
        if c.kind == ColumnKind::Value {
            visible.push((c.name.clone(), c.sql_type.clone(), i));
        }
    }
    enum Item {
        All,
        Named(String),
        Generated,
    }
    let items: Vec<Item> = query
        .select
        .iter()
        .map(|item| match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Item::All,
            SelectItem::ExprWithAlias { alias, .. } => {
                Item::Named(sluice_sql::parser::normalize_ident(alias))
            }
            SelectItem::UnnamedExpr(e) => derived_name(e).map_or(Item::Generated, Item::Named),
            SelectItem::ExprWithAliases { .. } => Item::Generated,
        })
        .collect();
    let named: Vec<&String> = items
        .iter()
        .filter_map(|i| match i {
            Item::Named(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut used = vec![false; visible.len()];
    let mut order: Vec<usize> = Vec::new();
    for item in &items {
        match item {
            Item::All => {
                for (v, (name, _, _)) in visible.iter().enumerate() {
                    if !used[v] && !named.contains(&name) {
                        used[v] = true;
                        order.push(v);
                    }
                }
            }
            Item::Named(name) => {
                if let Some(v) = (0..visible.len()).find(|v| !used[*v] && &visible[*v].0 == name) {
                    used[v] = true;
                    order.push(v);
                }
            }
            Item::Generated => {
                if let Some(v) =
                    (0..visible.len()).find(|v| !used[*v] && visible[*v].0.starts_with("KSQL_COL_"))
                {
                    used[v] = true;
                    order.push(v);
                }
            }
        }
    }
    order
        .into_iter()
        .map(|v| {
            let (name, sql_type, position) = visible[v].clone();
            (
                position,
                OutputColumn {
                    name,
                    sql_type,
                    key: false,
                },
            )
        })
        .unzip()
}

fn internal(e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Internal(e.to_string())
}

//! Pull queries over a cluster whose members each materialize only a share
//! of every source's partitions (see [`crate::materialized`]).
//!
//! The member a pull query reaches is its coordinator. It plans the whole
//! query in DataFusion as it would alone, but each source is a
//! [`ScatterTable`]: when DataFusion scans it, the table finds, for every
//! partition the scan needs, a live member whose share of that partition
//! is ready (this member first), takes its own partitions from its
//! snapshot and asks the others for theirs through
//! `POST /internal/scan` ([`internal_scan`]), which answers Arrow IPC. The
//! scan passes on what DataFusion gives a table provider: the columns it
//! reads, its filters (as SQL text) and, when it has no filters, its
//! `LIMIT`; so members send only the rows the query can use. Filters are
//! pushed down inexactly: the coordinator applies them again, which lets
//! a member skip one it cannot plan without changing the answer.
//!
//! Aggregates, joins, `ORDER BY` and the rest run at the coordinator over
//! the union of the scans; members never compute partial aggregates (that
//! would need plans sent between servers). A scan whose filters pin every
//! key column of a table to literals asks only for the partitions those
//! keys live in, computed as the sink's [`Partitioning::ByKey`] does
//! (Kafka's murmur2 of the serialized key), which assumes, as ksqlDB
//! does, that the topic is partitioned by its key.
//!
//! A partition with no ready owner makes the scan wait up to
//! [`OWNER_WAIT`] (a rebalance or a restore under way), then fail naming
//! the source and the partition; a member that errors or does not answer
//! within [`REMOTE_TIMEOUT`] fails the query too. An answer is always
//! whole or an error.
//!
//! Members call each other over plain HTTP with this server's own
//! credentials (every member is configured alike); TLS between members is
//! not supported yet.
//!
//! [`Partitioning::ByKey`]: sluice_engine::topic::Partitioning::ByKey

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Field, Int32Type, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, ScalarValue, TableReference};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};
use sluice_engine::topic::partition_for_key;
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::SourceKind;

use crate::AppState;
use crate::cluster::{ALIVE_FOR, Members};
use crate::error::ServerError;
use crate::materialized::{Materializer, Snapshot};

/// How long a scan waits for every partition it needs to have a ready
/// owner (a rebalance, a restore) before it fails.
pub const OWNER_WAIT: Duration = Duration::from_secs(5);
/// How long a member has to answer a scan.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two attempts to find owners.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// Largest scan answer accepted from a member.
const MAX_ANSWER_BYTES: u64 = 1 << 30;
/// Key combinations a scan routes by; more scan every partition.
const MAX_PINNED_KEYS: usize = 1024;
/// The media type of Arrow's IPC stream format.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// What the coordinator asks a member for: rows of one source's
/// partitions, as `POST /internal/scan` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRequest {
    pub source: String,
    pub partitions: Vec<i32>,
    /// Columns to send, in order; all of them when absent.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// SQL conditions over the source's unqualified columns; rows failing
    /// one need not be sent (the coordinator applies them again).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Rows enough, when the scan has no filters.
    #[serde(default)]
    pub limit: Option<usize>,
    /// When the filters pin a table's key: the keys, as an Arrow IPC
    /// stream of the key columns in base64, so a member looks them up in
    /// its index instead of scanning.
    #[serde(default)]
    pub keys: Option<String>,
}

/// Why a scan could not gather its rows; pull queries answer it as
/// "service unavailable": retrying later may work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScatterError(pub String);

/// Where one partition's rows come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Local,
    Remote(String),
}

/// How a coordinator reaches the other members.
pub struct Scatter {
    members: Arc<Members>,
    materializer: Weak<Materializer>,
    /// The `Authorization` header this server's own clients must send.
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl Scatter {
    pub fn new(
        members: Arc<Members>,
        materializer: Weak<Materializer>,
        auth: Option<&crate::auth::Auth>,
    ) -> Self {
        let authorization = auth.map(|a| match a {
            crate::auth::Auth::Basic { user, password } => format!(
                "Basic {}",
                sluice_engine::format::json::base64_encode(format!("{user}:{password}").as_bytes())
            ),
            crate::auth::Auth::Bearer { token } => format!("Bearer {token}"),
        });
        let agent = ureq::Agent::config_builder()
            // Members talk directly, whatever proxy the environment sets.
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(REMOTE_TIMEOUT))
            .build()
            .into();
        Scatter {
            members,
            materializer,
            authorization,
            agent,
        }
    }

    /// `snapshot`'s source as a table whose scans gather every partition.
    pub fn table(self: &Arc<Self>, snapshot: &Snapshot) -> Arc<dyn TableProvider> {
        Arc::new(ScatterTable {
            scatter: self.clone(),
            source: snapshot.source.clone(),
            schema: snapshot.schema.clone(),
            partitions: snapshot.split.as_ref().map_or(1, |s| s.partitions),
        })
    }

    /// Every row of `snapshot`'s source, from the owners of its
    /// partitions (what a scan without columns, filters or limit gets).
    pub async fn all_rows(&self, snapshot: &Snapshot) -> Result<Vec<RecordBatch>, ScatterError> {
        let partitions = snapshot.split.as_ref().map_or(1, |s| s.partitions);
        let needed: Vec<i32> = (0..partitions as i32).collect();
        let request = ScanRequest {
            source: snapshot.source.name.clone(),
            partitions: Vec::new(),
            columns: None,
            filters: Vec::new(),
            limit: None,
            keys: None,
        };
        self.gather(&snapshot.source, &needed, request).await
    }

    /// Who holds each of `needed` ready now: this member first, then the
    /// live members by their last heartbeat. `Err` names a partition
    /// nobody holds ready.
    fn owners(
        &self,
        source: &str,
        local: Option<&Snapshot>,
        needed: &[i32],
    ) -> Result<BTreeMap<Owner, Vec<i32>>, i32> {
        let local_ready = local
            .and_then(|s| s.split.as_ref())
            .map(|s| s.ready())
            .unwrap_or_default();
        let now = crate::cluster::now_ms();
        let others: Vec<_> = self
            .members
            .others()
            .into_iter()
            .filter(|h| now - h.sent_ms <= ALIVE_FOR.as_millis() as i64)
            .collect();
        let mut plan: BTreeMap<Owner, Vec<i32>> = BTreeMap::new();
        for p in needed {
            let owner = if local_ready.contains(p) {
                Some(Owner::Local)
            } else {
                others
                    .iter()
                    .find(|h| {
                        h.materialized.iter().any(|m| {
                            m.source == source
                                && m.partitions.contains(p)
                                && !m.restoring.contains(p)
                        })
                    })
                    .map(|h| Owner::Remote(h.url.clone()))
            };
            match owner {
                Some(o) => plan.entry(o).or_default().push(*p),
                None => return Err(*p),
            }
        }
        Ok(plan)
    }

    /// Rows of `needed` partitions of `source`, narrowed by `request`'s
    /// columns (filters and limit are for the members; local rows are
    /// filtered by the coordinator's plan).
    async fn gather(
        &self,
        source: &DataSource,
        needed: &[i32],
        request: ScanRequest,
    ) -> Result<Vec<RecordBatch>, ScatterError> {
        let deadline = Instant::now() + OWNER_WAIT;
        loop {
            let materializer = self
                .materializer
                .upgrade()
                .ok_or_else(|| ScatterError("the server is stopping".into()))?;
            let local = materializer
                .snapshots(std::slice::from_ref(&source.name))
                .remove(0);
            let plan = match self.owners(&source.name, local.as_deref(), needed) {
                Ok(plan) => plan,
                Err(partition) => {
                    if Instant::now() < deadline {
                        tokio::time::sleep(RETRY_EVERY).await;
                        continue;
                    }
                    return Err(ScatterError(format!(
                        "Unable to execute pull query: partition {partition} of {} (topic {}) \
                         has no live server that has materialized it up to date \
                         (waited {} s for a rebalance or restore). Retry shortly.",
                        source.name,
                        source.topic,
                        OWNER_WAIT.as_secs()
                    )));
                }
            };
            let mut fetches = Vec::new();
            for (owner, partitions) in plan {
                let mut request = request.clone();
                request.partitions = partitions;
                match owner {
                    Owner::Local => {
                        let snapshot = local.clone();
                        fetches.push(tokio::task::spawn_blocking(move || {
                            let Some(snapshot) = snapshot else {
                                return Err(Attempt::Retry("not materialized here".into()));
                            };
                            local_rows(&snapshot, &request).map_err(|e| match e {
                                ServerError::Unavailable(m) => Attempt::Retry(m),
                                other => Attempt::Fail(other.to_string()),
                            })
                        }));
                    }
                    Owner::Remote(url) => {
                        let agent = self.agent.clone();
                        let authorization = self.authorization.clone();
                        fetches.push(tokio::task::spawn_blocking(move || {
                            let partitions = format!("partitions {:?}", request.partitions);
                            fetch_remote(&agent, &url, authorization.as_deref(), &request).map_err(
                                |e| match e {
                                    Attempt::Retry(m) => {
                                        Attempt::Retry(format!("{partitions}: {m}"))
                                    }
                                    Attempt::Fail(m) => Attempt::Fail(format!("{partitions}: {m}")),
                                },
                            )
                        }));
                    }
                }
            }
            let mut batches = Vec::new();
            let mut retry = None;
            for fetch in futures::future::join_all(fetches).await {
                match fetch {
                    Ok(Ok(mut b)) => batches.append(&mut b),
                    Ok(Err(Attempt::Retry(m))) => retry = Some(m),
                    Ok(Err(Attempt::Fail(m))) => {
                        return Err(ScatterError(format!(
                            "Unable to execute pull query on {}: {m}",
                            source.name
                        )));
                    }
                    Err(join) => return Err(ScatterError(join.to_string())),
                }
            }
            match retry {
                None => return Ok(batches),
                Some(m) if Instant::now() >= deadline => {
                    return Err(ScatterError(format!(
                        "Unable to execute pull query on {}: {m}. Retry shortly.",
                        source.name
                    )));
                }
                Some(_) => tokio::time::sleep(RETRY_EVERY).await,
            }
        }
    }
}

/// Why a fetch failed: `Retry` when the member is not (or no longer) the
/// ready owner, as after a rebalance; `Fail` otherwise.
enum Attempt {
    Retry(String),
    Fail(String),
}

/// Asks the member at `url` for `request`'s rows.
fn fetch_remote(
    agent: &ureq::Agent,
    url: &str,
    authorization: Option<&str>,
    request: &ScanRequest,
) -> Result<Vec<RecordBatch>, Attempt> {
    let body = serde_json::to_string(request).map_err(|e| Attempt::Fail(e.to_string()))?;
    let mut call = agent
        .post(format!("{}/internal/scan", url.trim_end_matches('/')))
        .header("Content-Type", "application/json")
        .header("Accept", ARROW_STREAM);
    if let Some(a) = authorization {
        call = call.header("Authorization", a);
    }
    let mut response = call.send(body).map_err(|e| match e {
        ureq::Error::Timeout(_) => Attempt::Fail(format!(
            "{url} did not answer within {} s",
            REMOTE_TIMEOUT.as_secs()
        )),
        // Refused: the member died a moment ago and still looks alive;
        // its partitions move to another within the wait.
        other => Attempt::Retry(format!("{url} cannot be reached: {other}")),
    })?;
    let status = response.status();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| Attempt::Fail(format!("reading the answer of {url}: {e}")))?;
    // Not ready there, or the source not materialized there yet (just
    // created): both may change within the wait.
    if status == StatusCode::SERVICE_UNAVAILABLE.as_u16()
        || status == StatusCode::NOT_FOUND.as_u16()
    {
        return Err(Attempt::Retry(error_message(&bytes)));
    }
    if !status.is_success() {
        return Err(Attempt::Fail(format!(
            "{url} answered HTTP {status}: {}",
            error_message(&bytes)
        )));
    }
    decode_ipc(&bytes).map_err(|e| Attempt::Fail(format!("the answer of {url}: {e}")))
}

/// The `message` of ksqlDB's error JSON, or the body as text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// Batches as an Arrow IPC stream.
pub fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ServerError> {
    let ipc = |e: datafusion::arrow::error::ArrowError| ServerError::Internal(e.to_string());
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema).map_err(ipc)?;
    for b in batches {
        writer.write(b).map_err(ipc)?;
    }
    writer.finish().map_err(ipc)?;
    drop(writer);
    Ok(out)
}

/// The batches of an Arrow IPC stream.
pub fn decode_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, ServerError> {
    let ipc = |e: datafusion::arrow::error::ArrowError| ServerError::Internal(e.to_string());
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(ipc)?;
    reader.map(|b| b.map_err(ipc)).collect()
}

/// `snapshot`'s rows of `request.partitions`, with its columns: fails
/// (as unavailable) unless this member holds each of them ready.
pub fn local_rows(
    snapshot: &Snapshot,
    request: &ScanRequest,
) -> Result<Vec<RecordBatch>, ServerError> {
    let split = snapshot.split.as_ref();
    let ready = split.map(|s| s.ready()).unwrap_or_default();
    if let Some(p) = request.partitions.iter().find(|p| !ready.contains(p)) {
        return Err(ServerError::Unavailable(format!(
            "partition {p} of {} is not materialized up to date on this server",
            snapshot.source.name
        )));
    }
    let everything = split.is_some_and(|s| s.owned.iter().all(|p| request.partitions.contains(p)));
    let partition = snapshot
        .schema
        .index_of("ROWPARTITION")
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let columns = match &request.columns {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    snapshot.schema.index_of(n).map_err(|_| {
                        ServerError::BadRequest(format!(
                            "{} has no column {n}",
                            snapshot.source.name
                        ))
                    })
                })
                .collect::<Result<Vec<usize>, _>>()?,
        ),
    };
    let keyed = match (&request.keys, snapshot.index()) {
        (Some(keys), Some(index)) => {
            let keys = decode_keys(keys)?;
            Some(vec![index.lookup(&keys)?])
        }
        _ => None,
    };
    let everything = everything && keyed.is_none();
    let mut out = Vec::new();
    let batches = match keyed {
        Some(rows) => rows,
        None => snapshot.batches()?,
    };
    for batch in batches {
        let batch = if everything {
            batch
        } else {
            let p = batch
                .column(partition)
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| ServerError::Internal("ROWPARTITION is not an INT column".into()))?;
            let keep: BooleanArray = p
                .iter()
                .map(|v| Some(v.is_some_and(|v| request.partitions.contains(&v))))
                .collect();
            filter_record_batch(&batch, &keep).map_err(|e| ServerError::Internal(e.to_string()))?
        };
        let batch = match &columns {
            None => batch,
            Some(indices) => project(&batch, indices)?,
        };
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// `batch` with only the columns at `indices` (none keeps the row count).
fn project(batch: &RecordBatch, indices: &[usize]) -> Result<RecordBatch, ServerError> {
    let schema = Arc::new(
        batch
            .schema()
            .project(indices)
            .map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let columns: Vec<ArrayRef> = indices.iter().map(|i| batch.column(*i).clone()).collect();
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| ServerError::Internal(e.to_string()))
}

/// Applies `request`'s filters and limit to `rows` (this member's answer);
/// filters that do not plan here are left to the coordinator.
async fn narrow(
    ctx: &KsqlContext,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
    request: &ScanRequest,
) -> Result<Vec<RecordBatch>, ServerError> {
    let mut rows = rows;
    if !request.filters.is_empty() && !rows.is_empty() {
        match filtered(ctx, schema, rows.clone(), &request.filters).await {
            Ok(kept) => rows = kept,
            Err(e) => tracing::debug!("scan filters left to the coordinator: {e}"),
        }
    }
    if let Some(limit) = request.limit {
        let mut left = limit;
        let mut out = Vec::new();
        for b in rows {
            if left == 0 {
                break;
            }
            let n = b.num_rows().min(left);
            left -= n;
            out.push(b.slice(0, n));
        }
        rows = out;
    }
    Ok(rows)
}

async fn filtered(
    ctx: &KsqlContext,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
    filters: &[String],
) -> Result<Vec<RecordBatch>, String> {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let session = SessionContext::new_with_config(config);
    let table = MemTable::try_new(schema, vec![rows]).map_err(|e| e.to_string())?;
    session
        .register_table(TableReference::bare("__scan"), Arc::new(table))
        .map_err(|e| e.to_string())?;
    let conditions: Vec<String> = filters.iter().map(|f| format!("({f})")).collect();
    let sql = format!(
        "SELECT * FROM \"__scan\" WHERE {}",
        conditions.join(" AND ")
    );
    let mut statements = Parser::parse_sql(&GenericDialect {}, &sql).map_err(|e| e.to_string())?;
    let Some(Statement::Query(mut query)) = statements.pop() else {
        return Err("not a query".into());
    };
    crate::pull::register_functions(ctx, &session, &mut query);
    let plan = session
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            Statement::Query(query),
        )))
        .await
        .map_err(|e| e.to_string())?;
    let frame = session
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?;
    frame.collect().await.map_err(|e| e.to_string())
}

/// `POST /internal/scan`: this member's rows of some partitions of a
/// source, as an Arrow IPC stream, for a coordinator's pull query.
/// Answers 503 when it does not hold every partition asked for ready, 404
/// when it does not materialize the source, 400 outside a cluster.
pub async fn internal_scan(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let request: ScanRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ServerError::BadRequest(format!("Invalid scan request: {e}")).into_response();
        }
    };
    match scan_here(&state, &request).await {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, ARROW_STREAM)],
            bytes,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn scan_here(state: &AppState, request: &ScanRequest) -> Result<Vec<u8>, ServerError> {
    if state.cluster.is_none() {
        return Err(ServerError::BadRequest(
            "This server is not a member of a cluster: it holds no share of a source to scan."
                .into(),
        ));
    }
    let snapshot = state
        .materializer
        .snapshots(std::slice::from_ref(&request.source))
        .remove(0)
        .ok_or_else(|| {
            ServerError::Missing(format!(
                "{} is not materialized on this server",
                request.source
            ))
        })?;
    if let Some(e) = &snapshot.error {
        return Err(ServerError::Internal(format!(
            "{} could not be materialized: {e}",
            request.source
        )));
    }
    let all = ScanRequest {
        columns: None,
        ..request.clone()
    };
    let snap = snapshot.clone();
    let rows = tokio::task::spawn_blocking(move || local_rows(&snap, &all))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))??;
    let rows = narrow(&state.ctx, snapshot.schema.clone(), rows, request).await?;
    let indices: Vec<usize> = match &request.columns {
        None => (0..snapshot.schema.fields().len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                snapshot.schema.index_of(n).map_err(|_| {
                    ServerError::BadRequest(format!("{} has no column {n}", request.source))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let schema = Arc::new(
        snapshot
            .schema
            .project(&indices)
            .map_err(|e| ServerError::Internal(e.to_string()))?,
    );
    let rows = rows
        .iter()
        .map(|b| project(b, &indices))
        .collect::<Result<Vec<_>, _>>()?;
    encode_ipc(&schema, &rows)
}

/// One source of a pull query in a cluster: scans gather the rows of its
/// partitions from their owners.
pub struct ScatterTable {
    scatter: Arc<Scatter>,
    source: Arc<DataSource>,
    schema: SchemaRef,
    partitions: u32,
}

impl fmt::Debug for ScatterTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScatterTable")
            .field("source", &self.source.name)
            .finish()
    }
}

#[async_trait::async_trait]
impl TableProvider for ScatterTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let pinned = pinned_keys(&self.source, &self.schema, filters);
        let needed = match &pinned {
            Some(keys) => key_partitions(&self.source, keys, self.partitions)
                .unwrap_or_else(|| (0..self.partitions as i32).collect()),
            None => (0..self.partitions as i32).collect(),
        };
        let keys = match &pinned {
            Some(keys) => Some(
                encode_keys(&self.source, keys)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            ),
            None => None,
        };
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let request = ScanRequest {
            source: self.source.name.clone(),
            partitions: Vec::new(),
            columns: projection.map(|p| {
                p.iter()
                    .map(|i| self.schema.field(*i).name().clone())
                    .collect()
            }),
            filters: filters.iter().filter_map(filter_sql).collect(),
            limit: if filters.is_empty() { limit } else { None },
            keys,
        };
        let batches = self
            .scatter
            .gather(&self.source, &needed, request)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // Members answer with their own schema objects; the plan wants
        // this one (same fields).
        let batches = batches
            .into_iter()
            .map(|b| {
                RecordBatch::try_new_with_options(
                    schema.clone(),
                    b.columns().to_vec(),
                    &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], schema, None)?;
        Ok(exec)
    }
}

/// A filter as SQL over unqualified columns, for a member; `None` when it
/// has no SQL form (the coordinator still applies it).
fn filter_sql(filter: &Expr) -> Option<String> {
    let unqualified = filter
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    datafusion::sql::unparser::expr_to_sql(&unqualified)
        .ok()
        .map(|e| e.to_string())
}

/// The literal values `filters` bind column `name` to (`c = v`,
/// `c IN (v, ...)`), if any filter does.
fn bound_values(filters: &[Expr], name: &str) -> Option<Vec<ScalarValue>> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == name);
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) => Some(v.clone()),
        _ => None,
    };
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if is_column(left)
                    && let Some(v) = literal(right)
                {
                    return Some(vec![v]);
                }
                if is_column(right)
                    && let Some(v) = literal(left)
                {
                    return Some(vec![v]);
                }
            }
            Expr::InList(list) if !list.negated && is_column(&list.expr) => {
                let values: Option<Vec<ScalarValue>> = list.list.iter().map(literal).collect();
                if let Some(values) = values {
                    return Some(values);
                }
            }
            _ => {}
        }
    }
    None
}

/// The partitions holding the rows `filters` can match, when they pin
/// every key column of a (non-windowed) table to literals; `None` when
/// every partition must be scanned.
pub fn pinned_partitions(
    source: &DataSource,
    schema: &SchemaRef,
    filters: &[Expr],
    partitions: u32,
) -> Option<Vec<i32>> {
    key_partitions(source, &pinned_keys(source, schema, filters)?, partitions)
}

/// The keys `filters` pin a (non-windowed) table's key columns to, one
/// array per key column, each combination a row; `None` when they do
/// not pin every key column to literals.
pub fn pinned_keys(
    source: &DataSource,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Option<Vec<ArrayRef>> {
    if source.kind != SourceKind::Table || source.window.is_some() {
        return None;
    }
    let keys: Vec<&str> = source
        .schema
        .key_columns()
        .map(|c| c.name.as_str())
        .collect();
    if keys.is_empty() {
        return None;
    }
    // The values of each key column, typed as the column.
    let mut per_key: Vec<Vec<ScalarValue>> = Vec::with_capacity(keys.len());
    let mut types = Vec::with_capacity(keys.len());
    for name in &keys {
        let field = schema.field_with_name(name).ok()?;
        types.push(field.data_type().clone());
        let values = bound_values(filters, name)?;
        let mut typed = Vec::with_capacity(values.len());
        for v in values {
            if v.is_null() {
                // `k = NULL` matches nothing; IN lists ignore nulls.
                continue;
            }
            let cast = v.cast_to(field.data_type()).ok()?;
            // A value the cast changed (1.5 for an INT key): not routed
            // by the changed value, every partition is scanned.
            if cast.cast_to(&v.data_type()).ok()? != v {
                return None;
            }
            typed.push(cast);
        }
        per_key.push(typed);
    }
    let combinations = per_key.iter().map(Vec::len).product::<usize>();
    if combinations > MAX_PINNED_KEYS {
        return None;
    }
    // Every combination of the keys' values.
    let mut rows: Vec<Vec<ScalarValue>> = vec![Vec::new()];
    for values in &per_key {
        let mut next = Vec::with_capacity(rows.len() * values.len());
        for row in &rows {
            for v in values {
                let mut r = row.clone();
                r.push(v.clone());
                next.push(r);
            }
        }
        rows = next;
    }
    (0..keys.len())
        .map(|k| {
            if rows.is_empty() {
                Ok(datafusion::arrow::array::new_empty_array(&types[k]))
            } else {
                ScalarValue::iter_to_array(rows.iter().map(|r| r[k].clone()))
            }
        })
        .collect::<Result<_, _>>()
        .ok()
}

/// The partitions `keys` (one array per key column) live in, as the
/// sink's `ByKey` partitioning puts them; `None` when a key cannot be
/// serialized.
pub fn key_partitions(source: &DataSource, keys: &[ArrayRef], partitions: u32) -> Option<Vec<i32>> {
    let codec = source.codec();
    let rows = keys.first().map_or(0, |k| k.len());
    let mut out = Vec::new();
    for row in 0..rows {
        let key = codec.encode_key(keys, row).ok()??;
        let p = partition_for_key(&key, partitions);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort_unstable();
    Some(out)
}

/// `keys` as [`ScanRequest::keys`] carries them.
fn encode_keys(source: &DataSource, keys: &[ArrayRef]) -> Result<String, ScatterError> {
    let fields: Vec<Field> = source
        .schema
        .key_columns()
        .zip(keys)
        .map(|(c, k)| Field::new(c.name.clone(), k.data_type().clone(), true))
        .collect();
    let key_schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(key_schema.clone(), keys.to_vec())
        .map_err(|e| ScatterError(e.to_string()))?;
    let bytes = encode_ipc(&key_schema, &[batch]).map_err(|e| ScatterError(e.to_string()))?;
    Ok(sluice_engine::format::json::base64_encode(&bytes))
}

/// The key columns of [`ScanRequest::keys`].
fn decode_keys(text: &str) -> Result<Vec<ArrayRef>, ServerError> {
    let bytes = sluice_engine::format::json::base64_decode(text)
        .map_err(|e| ServerError::BadRequest(format!("Invalid scan keys: {e}")))?;
    let batches = decode_ipc(&bytes)
        .map_err(|e| ServerError::BadRequest(format!("Invalid scan keys: {e}")))?;
    match batches.as_slice() {
        [batch] => Ok(batch.columns().to_vec()),
        _ => Err(ServerError::BadRequest(
            "Invalid scan keys: expected one batch".into(),
        )),
    }
}

/// A pull query's DataFusion error as the scatter error inside it, if any.
pub fn scatter_error(e: &DataFusionError) -> Option<ScatterError> {
    match e.find_root() {
        DataFusionError::External(inner) => inner.downcast_ref::<ScatterError>().cloned(),
        _ => None,
    }
}

/// Whether `snapshot` holds ready every partition the keys in `keys`
/// (one array per key column) live in: then a lookup may use its index.
pub fn holds_keys(snapshot: &Snapshot, keys: &[ArrayRef]) -> bool {
    let Some(split) = &snapshot.split else {
        return true;
    };
    if snapshot.source.window.is_some() {
        return false;
    }
    let ready = split.ready();
    key_partitions(&snapshot.source, keys, split.partitions)
        .is_some_and(|partitions| partitions.iter().all(|p| ready.contains(p)))
}

#[cfg(test)]
mod tests;

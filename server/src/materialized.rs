//! Materialized projections: the current rows of every stream and table,
//! as Arrow, for pull queries.
//!
//! A [`Materializer`] is a [`StepObserver`] of the engine's runtime: after
//! each pass over the persistent queries it consumes the topics of all
//! catalog sources through the [`TopicBackend`] and
//! [`source::decode`](sluice_engine::query::source::decode). Tables keep
//! the latest row per key (per key and window when windowed) in a
//! [`KeyIndex`], which pull queries also use for key lookups; tombstones
//! delete. Streams keep their rows in topic order, up to a row limit, the
//! oldest dropped first. Because it runs between passes, it never sees half
//! of a query's output batch; readers take [`Snapshot`]s, which are
//! immutable and published for all sources at once.
//!
//! In a cluster (the runtime has a [`ClusterConfig`]) a member does not
//! hold whole topics: each source's view joins the consumer group
//! `<group prefix>-materialize-<SOURCE>` over the source's topic (one group
//! per source because a [`GroupMembership`] follows one topic), so Kafka
//! splits the partitions among the members and hands a dead member's to
//! the living. A partition gained is read from its beginning and reported
//! restoring until the view has caught up with it; the rows of a partition
//! lost are dropped (by their `ROWPARTITION`) and the others stay, read on
//! from where they were. Each [`Snapshot`] says which partitions it holds and
//! which of them are ready ([`Split`]); [`crate::scatter`] answers pull
//! queries for the whole table from the members' shares.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Int32Type;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;
use parking_lot::{Mutex, RwLock};
use sluice_engine::batch::ChangeBatch;
use sluice_engine::operator::OperatorContext;
use sluice_engine::query::SourceSpec;
use sluice_engine::query::distributed::ClusterConfig;
use sluice_engine::query::source;
use sluice_engine::runtime::StepObserver;
use sluice_engine::topic::{GroupChange, GroupMembership, TopicConsumer};
use sluice_engine::window::{WINDOWEND, WINDOWSTART};
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::SourceKind;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::index::{IndexSnapshot, KeyIndex};

/// Rows kept per stream unless configured otherwise.
pub const DEFAULT_STREAM_ROW_LIMIT: usize = 1_000_000;

/// Records decoded into one Arrow batch.
const RECORDS_PER_POLL: usize = 4096;

/// The rows of one source at one point of the engine's progress.
#[derive(Debug)]
pub struct Snapshot {
    pub source: Arc<DataSource>,
    /// Key and value columns, then `ROWTIME`, `ROWPARTITION`, `ROWOFFSET`
    /// and, when windowed, `WINDOWSTART` and `WINDOWEND`.
    pub schema: SchemaRef,
    rows: SnapshotRows,
    /// Set when the source could not be materialized.
    pub error: Option<String>,
    /// In a cluster: the partitions of the topic these rows cover.
    pub split: Option<Split>,
}

/// The partitions of its topic a cluster member's snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The topic's partition count.
    pub partitions: u32,
    /// Partitions the group gives this member (empty during a rebalance).
    pub owned: Vec<i32>,
    /// Owned partitions still being read up to their end: their rows are
    /// incomplete.
    pub restoring: Vec<i32>,
}

impl Split {
    /// Owned partitions whose rows are complete.
    pub fn ready(&self) -> Vec<i32> {
        self.owned
            .iter()
            .copied()
            .filter(|p| !self.restoring.contains(p))
            .collect()
    }
}

#[derive(Debug)]
enum SnapshotRows {
    /// A table's index, and its rows as one batch once a query asked.
    Table {
        index: IndexSnapshot,
        all: OnceLock<RecordBatch>,
    },
    Stream(Vec<RecordBatch>),
}

impl Snapshot {
    pub fn num_rows(&self) -> usize {
        match &self.rows {
            SnapshotRows::Table { index, .. } => index.len(),
            SnapshotRows::Stream(batches) => batches.iter().map(RecordBatch::num_rows).sum(),
        }
    }

    /// Every row: a table's in key order (windows in time order), a
    /// stream's in topic order. A table's rows are gathered from its index
    /// on first use and kept with the snapshot.
    pub fn batches(&self) -> Result<Vec<RecordBatch>, ServerError> {
        match &self.rows {
            SnapshotRows::Table { index, all } => {
                if let Some(batch) = all.get() {
                    return Ok(vec![batch.clone()]);
                }
                let batch = index.all()?;
                Ok(vec![all.get_or_init(|| batch).clone()])
            }
            SnapshotRows::Stream(batches) => Ok(batches.clone()),
        }
    }

    /// A table's key index; `None` for streams.
    pub fn index(&self) -> Option<&IndexSnapshot> {
        match &self.rows {
            SnapshotRows::Table { index, .. } => Some(index),
            SnapshotRows::Stream(_) => None,
        }
    }
}

/// Rows of a stream in topic order, the newest `limit` kept.
struct StreamRows {
    batches: VecDeque<RecordBatch>,
    rows: usize,
    limit: usize,
}

impl StreamRows {
    fn apply(&mut self, change: &ChangeBatch) {
        self.rows += change.num_rows();
        self.batches.push_back(change.data.clone());
        while self.rows > self.limit {
            let Some(front) = self.batches.pop_front() else {
                break;
            };
            let excess = self.rows - self.limit;
            if front.num_rows() > excess {
                self.batches
                    .push_front(front.slice(excess, front.num_rows() - excess));
                self.rows -= excess;
            } else {
                self.rows -= front.num_rows();
            }
        }
    }
}

enum Rows {
    Table(KeyIndex),
    Stream(StreamRows),
}

/// One source being materialized.
struct View {
    source: Arc<DataSource>,
    spec: SourceSpec,
    schema: SchemaRef,
    /// `None` in a cluster while the group gives this member nothing.
    consumer: Option<Box<dyn TopicConsumer>>,
    rows: Rows,
    error: Option<String>,
    /// Set after a read: the broker's count of what is left may be short
    /// (see [`View::catch_up`]).
    tail_unsure: bool,
    stream_limit: usize,
    /// In a cluster: the group and the partitions held.
    group: Option<Group>,
}

/// A view's membership of its materialization group.
struct Group {
    membership: Box<dyn GroupMembership>,
    partitions: u32,
    /// Partitions whose rows the view holds and reads.
    held: Vec<i32>,
    /// Held partitions not read up to their end yet.
    restoring: Vec<i32>,
    /// Between a revocation and the next assignment: nothing is owned.
    revoked: bool,
}

impl Group {
    fn split(&self) -> Split {
        Split {
            partitions: self.partitions,
            owned: if self.revoked {
                Vec::new()
            } else {
                self.held.clone()
            },
            restoring: self.restoring.clone(),
        }
    }
}

impl View {
    fn open(
        ctx: &KsqlContext,
        source: &Arc<DataSource>,
        stream_limit: usize,
        cluster: Option<&ClusterConfig>,
    ) -> Result<Self, ServerError> {
        let spec = sluice_sql::context::source_spec(source).map_err(internal)?;
        let schema = spec.schema.batch_schema(spec.window.is_some());
        let (consumer, group) = match cluster {
            None => (
                Some(ctx.backend().consumer(&source.topic).map_err(internal)?),
                None,
            ),
            Some(config) => {
                let partitions = ctx
                    .backend()
                    .describe_topic(&source.topic)
                    .ok_or_else(|| internal(format!("topic {} does not exist", source.topic)))?
                    .partitions;
                let name = format!("{}-materialize-{}", config.group_prefix, source.name);
                let membership = ctx
                    .backend()
                    .join_group(&name, &source.topic)
                    .map_err(internal)?;
                let group = Group {
                    membership,
                    partitions,
                    held: Vec::new(),
                    restoring: Vec::new(),
                    revoked: false,
                };
                (None, Some(group))
            }
        };
        let rows = Self::empty_rows(source, &spec, &schema, stream_limit)?;
        Ok(View {
            source: source.clone(),
            spec,
            schema,
            consumer,
            rows,
            error: None,
            tail_unsure: false,
            stream_limit,
            group,
        })
    }

    fn empty_rows(
        source: &DataSource,
        spec: &SourceSpec,
        schema: &SchemaRef,
        stream_limit: usize,
    ) -> Result<Rows, ServerError> {
        Ok(match source.kind {
            SourceKind::Table => {
                let mut window = Vec::new();
                if spec.window.is_some() {
                    for name in [WINDOWSTART, WINDOWEND] {
                        window.push(schema.index_of(name).map_err(internal)?);
                    }
                }
                Rows::Table(KeyIndex::new(schema, spec.schema.key_count(), &window)?)
            }
            SourceKind::Stream => Rows::Stream(StreamRows {
                batches: VecDeque::new(),
                rows: 0,
                limit: stream_limit,
            }),
        })
    }

    /// Handles what the materialization group decided since the last
    /// pass; returns whether the partitions held or owned changed.
    fn follow_group(&mut self, ctx: &KsqlContext, rejoin: bool) -> Result<bool, ServerError> {
        let mut changed = false;
        if rejoin && let Some(group) = &mut self.group {
            group.membership.rejoin().map_err(internal)?;
        }
        loop {
            let change = match &mut self.group {
                Some(group) => group.membership.poll().map_err(internal)?,
                None => None,
            };
            let Some(change) = change else {
                return Ok(changed);
            };
            changed = true;
            let outcome = match change {
                // Rows are kept: an eager rebalance revokes everything
                // and usually hands most of it back.
                GroupChange::Revoked(_) | GroupChange::Lost(_) => {
                    if let Some(group) = &mut self.group {
                        group.revoked = true;
                    }
                    Ok(())
                }
                GroupChange::Assigned(partitions) => self.take(ctx, &partitions),
            };
            // Confirmed also on failure: holding the rebalance would
            // stall every other member.
            if let Some(group) = &mut self.group {
                group.membership.confirm().map_err(internal)?;
            }
            outcome?;
        }
    }

    /// Holds exactly `partitions`: new ones are read from their start
    /// (restoring), the rows of those given up are dropped, the others go
    /// on from where they were.
    fn take(&mut self, ctx: &KsqlContext, partitions: &[i32]) -> Result<(), ServerError> {
        let Some(group) = &mut self.group else {
            return Ok(());
        };
        group.revoked = false;
        let mut wanted = partitions.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted == group.held {
            return Ok(());
        }
        let held = std::mem::replace(&mut group.held, wanted.clone());
        group.restoring.retain(|p| wanted.contains(p));
        group
            .restoring
            .extend(wanted.iter().filter(|p| !held.contains(p)));
        group.restoring.sort_unstable();
        let positions: Vec<(i32, i64)> = self
            .consumer
            .as_ref()
            .map(|c| c.positions())
            .unwrap_or_default()
            .into_iter()
            .filter(|(p, _)| held.contains(p) && wanted.contains(p))
            .collect();
        if held.iter().any(|p| !wanted.contains(p)) {
            self.retain_partitions(&wanted)?;
        }
        self.consumer = None;
        self.tail_unsure = false;
        if wanted.is_empty() {
            return Ok(());
        }
        let mut consumer = ctx
            .backend()
            .partition_consumer(&self.source.topic, &wanted)
            .map_err(internal)?;
        for (p, offset) in positions {
            consumer.seek(p, offset).map_err(internal)?;
        }
        tracing::info!(source = %self.source.name, partitions = ?wanted, "materializing these partitions");
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Drops the rows of every partition but `keep`.
    fn retain_partitions(&mut self, keep: &[i32]) -> Result<(), ServerError> {
        let batches: Vec<RecordBatch> = match &mut self.rows {
            Rows::Table(t) => {
                t.flush()?;
                vec![t.snapshot().all()?]
            }
            Rows::Stream(s) => s.batches.iter().cloned().collect(),
        };
        let column = self.schema.index_of("ROWPARTITION").map_err(internal)?;
        let mut rows = Self::empty_rows(&self.source, &self.spec, &self.schema, self.stream_limit)?;
        for batch in batches {
            let partitions = batch
                .column(column)
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| internal("ROWPARTITION is not an INT column"))?;
            let mask: BooleanArray = partitions
                .iter()
                .map(|p| Some(p.is_some_and(|p| keep.contains(&p))))
                .collect();
            let kept = filter_record_batch(&batch, &mask).map_err(internal)?;
            if kept.num_rows() == 0 {
                continue;
            }
            let change = ChangeBatch::new(kept);
            match &mut rows {
                Rows::Table(t) => t.apply(change),
                Rows::Stream(s) => s.apply(&change),
            }
        }
        self.rows = rows;
        Ok(())
    }

    /// Consumes what the topic has; returns the records read.
    fn catch_up(&mut self, ctx: &KsqlContext) -> Result<usize, ServerError> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(0);
        };
        let log = ctx.runtime().processing_log().clone();
        let query_id = format!("_materialize_{}", self.source.name);
        let op_ctx = OperatorContext {
            query_id: &query_id,
            log: &log,
        };
        // Everything available now, not a budget: the runtime's queries
        // are between passes, so this ends on a whole batch of theirs.
        // (Records produced meanwhile by other threads are single inserts.)
        //
        // The lag is the one of the consumer's latest fetch: asking the
        // broker on every pass was most of what a cluster member waited
        // on (a round trip per partition and view). It may trail what has
        // arrived, and a broker may report less than it has (Tansu's high
        // watermark is the last batch's first offset + 1), so every pass
        // also reads a batch more, until a poll comes back empty: a poll
        // of what has arrived costs no round trip.
        let budget = consumer.recent_lag() as usize + RECORDS_PER_POLL;
        let mut consumed = 0;
        while consumed < budget {
            let records = consumer
                .poll(RECORDS_PER_POLL.min(budget - consumed))
                .map_err(internal)?;
            if records.is_empty() {
                self.tail_unsure = false;
                break;
            }
            self.tail_unsure = true;
            consumed += records.len();
            let change = source::decode(&self.spec, &records, &op_ctx).map_err(internal)?;
            match &mut self.rows {
                Rows::Table(t) => t.apply(change),
                Rows::Stream(s) => s.apply(&change),
            }
        }
        Ok(consumed)
    }

    /// Ends the restoring of held partitions once the consumer has read
    /// everything; returns whether it did.
    fn restored(&mut self) -> bool {
        let Some(group) = &mut self.group else {
            return false;
        };
        if group.restoring.is_empty() || self.tail_unsure {
            return false;
        }
        let caught_up = self.consumer.as_ref().is_none_or(|c| c.lag() == 0);
        if caught_up {
            tracing::info!(source = %self.source.name, partitions = ?group.restoring, "restored");
            group.restoring.clear();
        }
        caught_up
    }

    fn snapshot(&mut self) -> Result<Snapshot, ServerError> {
        let rows = match &mut self.rows {
            Rows::Table(t) => {
                t.flush()?;
                SnapshotRows::Table {
                    index: t.snapshot(),
                    all: OnceLock::new(),
                }
            }
            Rows::Stream(s) => SnapshotRows::Stream(s.batches.iter().cloned().collect()),
        };
        Ok(Snapshot {
            source: self.source.clone(),
            schema: self.schema.clone(),
            rows,
            error: self.error.clone(),
            split: self.group.as_ref().map(Group::split),
        })
    }
}

/// Keeps every source of a [`KsqlContext`] materialized.
pub struct Materializer {
    ctx: Weak<KsqlContext>,
    stream_row_limit: usize,
    views: Mutex<BTreeMap<String, View>>,
    snapshots: RwLock<HashMap<String, Arc<Snapshot>>>,
    /// Bumped after each publication, for readers waiting on a source.
    published: watch::Sender<u64>,
    /// Set by the cluster when a dead member's partitions need a
    /// rebalance the broker does not start (see [`Self::rejoin_groups`]).
    rejoin: AtomicBool,
    /// In a cluster: how pull queries reach the other members.
    scatter: OnceLock<Arc<crate::scatter::Scatter>>,
}

impl Materializer {
    /// A materializer of `ctx`'s sources, registered on its runtime.
    pub fn attach(ctx: &Arc<KsqlContext>, stream_row_limit: usize) -> Arc<Self> {
        let (published, _) = watch::channel(0);
        let m = Arc::new(Materializer {
            ctx: Arc::downgrade(ctx),
            stream_row_limit: stream_row_limit.max(1),
            views: Mutex::new(BTreeMap::new()),
            snapshots: RwLock::new(HashMap::new()),
            published,
            rejoin: AtomicBool::new(false),
            scatter: OnceLock::new(),
        });
        ctx.runtime().observe(m.clone());
        m
    }

    /// Snapshots of `names`, all from the same publication.
    pub fn snapshots(&self, names: &[String]) -> Vec<Option<Arc<Snapshot>>> {
        let snapshots = self.snapshots.read();
        names.iter().map(|n| snapshots.get(n).cloned()).collect()
    }

    /// Like [`Self::snapshots`], but waits up to `timeout` for sources that
    /// exist in the catalog yet have not been materialized (just created).
    pub async fn snapshots_waiting(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> Vec<Option<Arc<Snapshot>>> {
        let mut updates = self.published.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.snapshots(names);
            if found.iter().all(Option::is_some) {
                return found;
            }
            if tokio::time::timeout_at(deadline, updates.changed())
                .await
                .is_err()
            {
                return found;
            }
        }
    }

    /// Names of the sources materialized now.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshots.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Makes every view's group rebalance at the next pass: a member died
    /// and the broker has not reassigned its partitions.
    pub fn rejoin_groups(&self) {
        self.rejoin.store(true, Ordering::SeqCst);
    }

    /// Makes pull queries gather rows from the members of a cluster.
    pub fn set_scatter(&self, scatter: Arc<crate::scatter::Scatter>) {
        let _ = self.scatter.set(scatter);
    }

    /// How pull queries reach the other members, in a cluster.
    pub fn scatter(&self) -> Option<&Arc<crate::scatter::Scatter>> {
        self.scatter.get()
    }

    /// Whether a view still reads `topic` (a dropped source's view goes
    /// at the next pass).
    pub fn reads(&self, topic: &str) -> bool {
        self.views
            .lock()
            .values()
            .any(|v| v.source.topic == topic && v.consumer.is_some())
    }

    /// What this member materializes of each source, in a cluster.
    pub fn shares(&self) -> Vec<(String, String, Split)> {
        let snapshots = self.snapshots.read();
        let mut out: Vec<(String, String, Split)> = snapshots
            .values()
            .filter_map(|s| {
                s.split
                    .clone()
                    .map(|split| (s.source.name.clone(), s.source.topic.clone(), split))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn step(&self, ctx: &KsqlContext) -> usize {
        let sources = ctx.sources();
        let cluster = ctx.runtime().cluster_config();
        let rejoin = self.rejoin.swap(false, Ordering::SeqCst);
        let mut views = self.views.lock();
        let before = views.len();
        // Dropped or replaced sources lose their view.
        views.retain(|name, v| {
            sources
                .iter()
                .any(|s| &s.name == name && Arc::ptr_eq(s, &v.source))
        });
        let mut changed: Vec<String> = Vec::new();
        let removed = views.len() != before;
        for s in &sources {
            if views.contains_key(&s.name) {
                continue;
            }
            match View::open(ctx, s, self.stream_row_limit, cluster.as_ref()) {
                Ok(view) => {
                    views.insert(s.name.clone(), view);
                    changed.push(s.name.clone());
                }
                Err(e) => tracing::debug!(source = %s.name, "not materialized: {e}"),
            }
        }
        let mut consumed = 0;
        for (name, view) in views.iter_mut() {
            if view.error.is_some() {
                continue;
            }
            match view.follow_group(ctx, rejoin) {
                Ok(false) => {}
                Ok(true) => {
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, "following the materialization group failed: {e}");
                    view.error = Some(e.to_string());
                    changed.push(name.clone());
                    continue;
                }
            }
            let caught = view.catch_up(ctx);
            if view.restored() && !changed.contains(name) {
                changed.push(name.clone());
            }
            match caught {
                Ok(0) => {}
                Ok(n) => {
                    consumed += n;
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, "materialization failed: {e}");
                    view.error = Some(e.to_string());
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
            }
        }
        let mut fresh = Vec::with_capacity(changed.len());
        for name in &changed {
            if let Some(view) = views.get_mut(name) {
                match view.snapshot() {
                    Ok(s) => fresh.push((name.clone(), Arc::new(s))),
                    Err(e) => view.error = Some(e.to_string()),
                }
            }
        }
        if fresh.is_empty() && !removed {
            return consumed;
        }
        {
            let mut snapshots = self.snapshots.write();
            snapshots.retain(|name, _| views.contains_key(name));
            for (name, s) in fresh {
                snapshots.insert(name, s);
            }
        }
        self.published.send_modify(|g| *g += 1);
        consumed
    }
}

impl StepObserver for Materializer {
    fn after_step(&self) -> usize {
        match self.ctx.upgrade() {
            Some(ctx) => self.step(&ctx),
            None => 0,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ArrayRef;
    use sluice_engine::processing_log::ProcessingLog;
    use sluice_engine::runtime::Runtime;

    fn context() -> Arc<KsqlContext> {
        let backend = Arc::new(sluice_connectors::EmbeddedTopics::new());
        let runtime = Arc::new(Runtime::new(
            backend,
            Arc::new(ProcessingLog::default()),
            16,
        ));
        Arc::new(KsqlContext::new(runtime))
    }

    fn column_i64(s: &Snapshot, name: &str) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for b in &s.batches().expect("batches") {
            let c = b.column_by_name(name).expect("column");
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64)
                    .expect("cast");
            let a = c
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .expect("int64");
            out.extend(a.iter());
        }
        out
    }

    #[test]
    fn tables_keep_the_latest_row_per_key_and_tombstones_delete() {
        let ctx = context();
        let m = Materializer::attach(&ctx, DEFAULT_STREAM_ROW_LIMIT);
        ctx.execute(
            "CREATE TABLE t (k INT PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', partitions=2);
             INSERT INTO t (k, v) VALUES (1, 10);
             INSERT INTO t (k, v) VALUES (2, 20);
             INSERT INTO t (k, v) VALUES (1, 11);",
        )
        .expect("statements");
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["T".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "K"), vec![Some(1), Some(2)]);
        assert_eq!(column_i64(&snap, "V"), vec![Some(11), Some(20)]);
        // A tombstone on the key's partition deletes it.
        let key = {
            let codec = snap.source.codec();
            let keys: Vec<ArrayRef> =
                vec![Arc::new(datafusion::arrow::array::Int32Array::from(vec![
                    1,
                ]))];
            codec.encode_key(&keys, 0).expect("key").map(bytes_of)
        };
        ctx.backend()
            .produce(
                "t",
                vec![(
                    sluice_engine::topic::Partitioning::ByKey,
                    sluice_engine::topic::Record {
                        key,
                        value: None,
                        timestamp: 5,
                        headers: vec![],
                    },
                )],
            )
            .expect("produce");
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["T".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "K"), vec![Some(2)]);
    }

    fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from(v)
    }

    #[test]
    fn giving_up_partitions_keeps_the_rows_of_the_others() {
        let ctx = context();
        ctx.execute(
            "CREATE TABLE t (k INT PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', partitions=3);
             CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=3);",
        )
        .expect("create");
        for i in 0..30 {
            ctx.execute(&format!(
                "INSERT INTO t (k, v) VALUES ({i}, {i}); INSERT INTO s (k, v) VALUES ({i}, {i});"
            ))
            .expect("insert");
        }
        for name in ["T", "S"] {
            let source = ctx.source(name).expect("source");
            let mut view = View::open(&ctx, &source, 100, None).expect("view");
            view.catch_up(&ctx).expect("catch up");
            let before = view.snapshot().expect("snapshot");
            assert_eq!(before.num_rows(), 30);
            let partitions = |s: &Snapshot| {
                let mut out = column_i64(s, "ROWPARTITION");
                out.sort_unstable();
                out.dedup();
                out
            };
            assert_eq!(partitions(&before), vec![Some(0), Some(1), Some(2)]);
            view.retain_partitions(&[0, 2]).expect("retain");
            let after = view.snapshot().expect("snapshot");
            assert_eq!(partitions(&after), vec![Some(0), Some(2)], "{name}");
            let in_one = column_i64(&before, "ROWPARTITION")
                .iter()
                .filter(|p| **p == Some(1))
                .count();
            assert_eq!(after.num_rows(), 30 - in_one, "{name}");
            assert!(in_one > 0);
        }
    }

    #[test]
    fn streams_keep_the_newest_rows_up_to_the_limit() {
        let ctx = context();
        let m = Materializer::attach(&ctx, 3);
        ctx.execute("CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);")
            .expect("create");
        for i in 0..5 {
            ctx.execute(&format!("INSERT INTO s (k, v) VALUES ({i}, {i});"))
                .expect("insert");
        }
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["S".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "V"), vec![Some(2), Some(3), Some(4)]);
        // Dropping the source drops its projection.
        ctx.execute("DROP STREAM s;").expect("drop");
        ctx.runtime().run_until_idle();
        assert!(m.snapshots(&["S".into()])[0].is_none());
    }
}

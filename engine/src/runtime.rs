//! [`Runtime`]: the set of running persistent queries and what drives them.
//!
//! Two drivers share one loop body: [`Runtime::run_until_idle`] runs every
//! query in creation order until none has input left, which is
//! deterministic and what tests and the conformance runner use;
//! [`Runtime::spawn`] runs the same loop on a thread for servers.
//! [`StepObserver`]s run after every pass on the same thread, so what they
//! read from topics is never half of a query's output batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::checkpoint::{CheckpointConfig, CheckpointStore};
use crate::error::Result;
use crate::processing_log::ProcessingLog;
use crate::query::distributed::{ClusterConfig, DistributedQuery, PlanFactory, Unit};
use crate::query::{PersistentQuery, QueryState};
use crate::topic::TopicBackend;

/// Work that follows every pass over the queries, on the driving thread:
/// readers of query output (materialized views, push queries) consume
/// topics there, between passes, so they only see whole batches.
pub trait StepObserver: Send + Sync {
    /// Catches up; returns how much it consumed (0 when idle), so
    /// [`Runtime::run_until_idle`] also runs observers to completion.
    fn after_step(&self) -> usize;
}

/// One query's counters at one moment ([`Runtime::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMetrics {
    pub id: String,
    /// The topic the query writes.
    pub sink: String,
    pub running: bool,
    /// Records read from the source topics since start.
    pub records_in: u64,
    /// Records written to the sink topic since start.
    pub records_out: u64,
    pub state_rows: u64,
    /// Records dropped for arriving after their window closed.
    pub late_records: u64,
    /// Records of the source topics not read yet.
    pub lag: u64,
}

/// A running query's plan as operator names, for `EXPLAIN`
/// ([`Runtime::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryExplanation {
    /// Each input's source topic and the operators that run on it alone.
    pub inputs: Vec<(String, Vec<&'static str>)>,
    /// Each join and the operators that run on its result.
    pub joins: Vec<(&'static str, Vec<&'static str>)>,
    /// The operators after the joins, before the sink.
    pub operators: Vec<&'static str>,
    pub metrics: QueryMetrics,
    /// The stages that run before this one and feed it through internal
    /// topics (a repartitioned aggregate's re-keying), in order.
    pub stages: Vec<QueryExplanation>,
}

fn query_metrics(q: &PersistentQuery) -> QueryMetrics {
    let stats = q.stats();
    QueryMetrics {
        id: q.id().to_string(),
        sink: q.plan().sink.topic.clone(),
        running: *q.state() == QueryState::Running,
        records_in: stats.records_in.load(Ordering::Relaxed),
        records_out: stats.records_out.load(Ordering::Relaxed),
        state_rows: q.state_rows() as u64,
        late_records: q.late_records(),
        lag: q.lag(),
    }
}

/// Owns the running queries of one engine.
pub struct Runtime {
    backend: Arc<dyn TopicBackend>,
    log: Arc<ProcessingLog>,
    queries: Mutex<Vec<PersistentQuery>>,
    /// Records per poll: 1 gives ksqlDB's per-record semantics between
    /// chained queries; larger values batch for throughput.
    batch_size: usize,
    stopping: AtomicBool,
    observers: Mutex<Vec<Arc<dyn StepObserver>>>,
    /// Set when persistent queries are durable.
    checkpoints: Mutex<Option<CheckpointConfig>>,
    /// Set when this server is a member of a cluster: persistent queries
    /// are shared with the other members.
    cluster: Mutex<Option<ClusterConfig>>,
    distributed: Mutex<Vec<DistributedQuery>>,
    /// The stages and internal topics of distributed queries that run in
    /// several stages, by the id of the query they make up.
    staged: Mutex<BTreeMap<String, Stages>>,
}

/// What a query run in stages owns besides its last stage (which has the
/// query's id): the ids of the stages before it and the internal topics
/// between them, deleted with the query.
#[derive(Debug, Clone, Default)]
struct Stages {
    upstream: Vec<String>,
    topics: Vec<String>,
}

/// This server's share of one distributed query ([`Runtime::cluster_shares`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterShare {
    pub query_id: String,
    /// The input topic whose partitions the members split.
    pub topic: String,
    /// Partitions the consumer group gives this server.
    pub partitions: Vec<i32>,
    /// Whether each partition runs on its own (otherwise the owner of
    /// partition 0 runs the whole query).
    pub partition_local: bool,
    /// Records of the owned partitions not processed yet.
    pub lag: u64,
}

/// A distributed query's counters: its running units' summed.
fn distributed_metrics(q: &DistributedQuery) -> QueryMetrics {
    let mut metrics = QueryMetrics {
        id: q.id().to_string(),
        sink: String::new(),
        running: q.state() == QueryState::Running,
        records_in: 0,
        records_out: 0,
        state_rows: 0,
        late_records: 0,
        lag: 0,
    };
    for (_, unit) in q.instances() {
        let m = query_metrics(unit);
        metrics.sink = m.sink;
        metrics.records_in += m.records_in;
        metrics.records_out += m.records_out;
        metrics.state_rows += m.state_rows;
        metrics.late_records += m.late_records;
        metrics.lag += m.lag;
    }
    metrics
}

impl Runtime {
    pub fn new(backend: Arc<dyn TopicBackend>, log: Arc<ProcessingLog>, batch_size: usize) -> Self {
        Runtime {
            backend,
            log,
            queries: Mutex::new(Vec::new()),
            batch_size: batch_size.max(1),
            stopping: AtomicBool::new(false),
            observers: Mutex::new(Vec::new()),
            checkpoints: Mutex::new(None),
            cluster: Mutex::new(None),
            distributed: Mutex::new(Vec::new()),
            staged: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes this runtime a cluster member: persistent queries added with
    /// [`Runtime::add_distributed`] share their partitions with the other
    /// members and checkpoint under `config.shared_dir`.
    pub fn enable_cluster(&self, config: ClusterConfig) {
        *self.cluster.lock() = Some(config);
    }

    pub fn cluster_config(&self) -> Option<ClusterConfig> {
        self.cluster.lock().clone()
    }

    /// Adds a persistent query shared with the cluster (see
    /// [`DistributedQuery`]); fails when this runtime is no member.
    pub fn add_distributed(&self, factory: PlanFactory, partition_local: bool) -> Result<()> {
        let Some(config) = self.cluster_config() else {
            return Err(crate::EngineError::Execution(
                "this server is not a cluster member".into(),
            ));
        };
        let query = DistributedQuery::start(
            factory,
            partition_local,
            &config,
            self.backend.clone(),
            self.log.clone(),
        )?;
        self.distributed.lock().push(query);
        Ok(())
    }

    /// Adds a distributed query that runs in stages connected by internal
    /// `topics` (which the caller created): each of `upstream` feeds the
    /// next, the last feeds `last`, whose plan has the query's id. Removing
    /// the query removes every stage and deletes the topics. Nothing is
    /// added when a stage fails to start.
    pub fn add_distributed_stages(
        &self,
        upstream: Vec<(PlanFactory, bool)>,
        last: (PlanFactory, bool),
        topics: Vec<String>,
    ) -> Result<()> {
        let Some(config) = self.cluster_config() else {
            return Err(crate::EngineError::Execution(
                "this server is not a cluster member".into(),
            ));
        };
        let mut started = Vec::with_capacity(upstream.len() + 1);
        for (factory, partition_local) in upstream.into_iter().chain(std::iter::once(last)) {
            // Dropping the stages started so far leaves their groups.
            started.push(DistributedQuery::start(
                factory,
                partition_local,
                &config,
                self.backend.clone(),
                self.log.clone(),
            )?);
        }
        let Some(query) = started.last() else {
            return Ok(());
        };
        let stages = Stages {
            upstream: started[..started.len() - 1]
                .iter()
                .map(|s| s.id().to_string())
                .collect(),
            topics,
        };
        self.staged.lock().insert(query.id().to_string(), stages);
        self.distributed.lock().extend(started);
        Ok(())
    }

    /// What this server runs of each distributed query.
    pub fn cluster_shares(&self) -> Vec<ClusterShare> {
        self.distributed
            .lock()
            .iter()
            .map(|q| ClusterShare {
                query_id: q.id().to_string(),
                topic: q.topic().to_string(),
                partitions: q.owned_partitions(),
                partition_local: q.partition_local(),
                lag: q.instances().map(|(_, unit)| unit.lag()).sum(),
            })
            .collect()
    }

    /// The topics the queries run here alone read (in a cluster, the
    /// push queries of this member's clients), each once.
    pub fn local_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .queries
            .lock()
            .iter()
            .flat_map(|q| {
                q.plan()
                    .sources()
                    .map(|s| s.topic.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The queries run on this server alone (push queries; outside a
    /// cluster, persistent ones too) that read `topic`.
    pub fn local_readers(&self, topic: &str) -> Vec<String> {
        self.queries
            .lock()
            .iter()
            .filter(|q| q.plan().sources().any(|s| s.topic == topic))
            .map(|q| q.id().to_string())
            .collect()
    }

    /// Makes every distributed query rebalance its group: a member died
    /// and the broker has not reassigned its partitions.
    pub fn rejoin_groups(&self) {
        for q in self.distributed.lock().iter_mut() {
            if let Err(e) = q.rejoin() {
                tracing::warn!(query = %q.id(), "rejoining its consumer group: {e}");
            }
        }
    }

    /// The units of each distributed query running here.
    pub fn cluster_units(&self) -> Vec<(String, Vec<Unit>)> {
        self.distributed
            .lock()
            .iter()
            .map(|q| (q.id().to_string(), q.units()))
            .collect()
    }

    /// Makes persistent queries added from now on durable: each restores
    /// its newest checkpoint under `config.dir` and writes new ones every
    /// `config.interval` (and when the runtime stops).
    pub fn enable_checkpoints(&self, config: CheckpointConfig) {
        *self.checkpoints.lock() = Some(config);
    }

    pub fn checkpoint_config(&self) -> Option<CheckpointConfig> {
        self.checkpoints.lock().clone()
    }

    /// Adds a persistent query: with checkpoints enabled it first resumes
    /// from its newest checkpoint, and fails if that checkpoint cannot be
    /// restored (starting over would count its input twice).
    pub fn add_persistent(&self, mut query: PersistentQuery) -> Result<()> {
        if let Some(config) = self.checkpoint_config() {
            let store = CheckpointStore::open(&config.dir, query.id())?;
            if query.enable_checkpoints(store, config.interval)? {
                tracing::info!(query = %query.id(), "resumed from its checkpoint");
            }
        }
        self.add(query);
        Ok(())
    }

    /// Checkpoints every durable query now (on a clean shutdown).
    pub fn checkpoint_all(&self) {
        for q in self.queries.lock().iter_mut() {
            if let Err(e) = q.write_checkpoint() {
                tracing::error!(query = %q.id(), "checkpoint failed: {e}");
            }
        }
        for q in self.distributed.lock().iter_mut() {
            q.checkpoint_all();
        }
    }

    /// Waits until every query's output is in its sink topic (sinks
    /// pipeline their writes); a query whose output cannot be delivered
    /// stops with an error.
    pub fn flush(&self) {
        for q in self.queries.lock().iter_mut() {
            // A failure is logged and recorded in the query's state.
            let _ = q.flush();
        }
    }

    pub fn backend(&self) -> &Arc<dyn TopicBackend> {
        &self.backend
    }

    pub fn processing_log(&self) -> &Arc<ProcessingLog> {
        &self.log
    }

    pub fn add(&self, query: PersistentQuery) {
        self.queries.lock().push(query);
    }

    /// Stops and removes a query, forgetting its checkpoints (it will not
    /// resume), and deletes the internal topics it ran through; false if
    /// there was none with that id.
    pub fn remove(&self, id: &str) -> bool {
        let Some(topics) = self.remove_keeping_topics(id) else {
            return false;
        };
        // Nothing here reads or writes them any more.
        for topic in &topics {
            if self.backend.describe_topic(topic).is_some()
                && let Err(e) = self.backend.delete_topic(topic)
            {
                tracing::warn!(query = %id, "deleting internal topic {topic}: {e}");
            }
        }
        true
    }

    /// Stops and removes a query, forgetting its checkpoints, and returns
    /// the internal topics it ran through, which nothing here uses any
    /// more, for the caller to delete when no one else uses them either
    /// (other cluster members may still run the query); `None` if there
    /// was no query with that id.
    pub fn remove_keeping_topics(&self, id: &str) -> Option<Vec<String>> {
        let stages = self.staged.lock().remove(id).unwrap_or_default();
        let removed: Vec<DistributedQuery> = {
            let mut distributed = self.distributed.lock();
            let (gone, kept) = std::mem::take(&mut *distributed)
                .into_iter()
                .partition(|q| q.id() == id || stages.upstream.iter().any(|s| s == q.id()));
            *distributed = kept;
            gone
        };
        let found = !removed.is_empty();
        // Dropped here, so their consumers have left the topics when this
        // returns.
        for q in removed {
            q.delete_checkpoints();
        }
        if found {
            return Some(stages.topics);
        }
        let mut queries = self.queries.lock();
        let at = queries.iter().position(|q| q.id() == id)?;
        let query = queries.remove(at);
        if let Some(store) = query.checkpoint_store()
            && let Err(e) = store.delete()
        {
            tracing::warn!(query = %id, "deleting its checkpoints: {e}");
        }
        Some(stages.topics)
    }

    /// The state of every query, by id.
    pub fn states(&self) -> Vec<(String, QueryState)> {
        let mut states: Vec<(String, QueryState)> = self
            .queries
            .lock()
            .iter()
            .map(|q| (q.id().to_string(), q.state().clone()))
            .collect();
        let distributed: Vec<(String, QueryState)> = self
            .distributed
            .lock()
            .iter()
            .map(|q| (q.id().to_string(), q.state()))
            .collect();
        // A query run in stages is as healthy as its sickest stage.
        let staged = self.staged.lock();
        for (id, state) in &distributed {
            let failed_upstream = staged.get(id).and_then(|s| {
                distributed
                    .iter()
                    .find(|(other, st)| s.upstream.contains(other) && *st != QueryState::Running)
                    .map(|(_, st)| st.clone())
            });
            states.push((id.clone(), failed_upstream.unwrap_or_else(|| state.clone())));
        }
        states
    }

    /// Rows of operator state held by each query, by id.
    pub fn state_rows(&self) -> Vec<(String, usize)> {
        let mut rows: Vec<(String, usize)> = self
            .queries
            .lock()
            .iter()
            .map(|q| (q.id().to_string(), q.state_rows()))
            .collect();
        rows.extend(self.distributed.lock().iter().map(|q| {
            let units = q.instances().map(|(_, unit)| unit.state_rows()).sum();
            (q.id().to_string(), units)
        }));
        rows
    }

    /// A snapshot of every query's counters, for monitoring; a distributed
    /// query's are this server's share.
    pub fn metrics(&self) -> Vec<QueryMetrics> {
        let mut metrics: Vec<QueryMetrics> =
            self.queries.lock().iter().map(query_metrics).collect();
        metrics.extend(self.distributed.lock().iter().map(distributed_metrics));
        metrics
    }

    /// The plan and counters of the query `id`, if it runs, with the
    /// stages before it when it runs in several.
    pub fn explain(&self, id: &str) -> Option<QueryExplanation> {
        let upstream = self
            .staged
            .lock()
            .get(id)
            .map(|s| s.upstream.clone())
            .unwrap_or_default();
        let queries = self.queries.lock();
        let distributed = self.distributed.lock();
        let mut explanation = Self::explain_one(&queries, &distributed, id)?;
        explanation.stages = upstream
            .iter()
            .filter_map(|stage| Self::explain_one(&queries, &distributed, stage))
            .collect();
        Some(explanation)
    }

    fn explain_one(
        queries: &[PersistentQuery],
        distributed: &[DistributedQuery],
        id: &str,
    ) -> Option<QueryExplanation> {
        let (q, metrics) = match queries.iter().find(|q| q.id() == id) {
            Some(q) => (q, query_metrics(q)),
            None => {
                // A distributed query is explained by one of its units
                // running here, with the counters of all of them.
                let d = distributed.iter().find(|q| q.id() == id)?;
                let (_, unit) = d.instances().next()?;
                (unit, distributed_metrics(d))
            }
        };
        let plan = q.plan();
        let names = |ops: &[Box<dyn crate::operator::Operator>]| -> Vec<&'static str> {
            ops.iter().map(|op| op.name()).collect()
        };
        Some(QueryExplanation {
            inputs: plan
                .inputs
                .iter()
                .map(|i| (i.source.topic.clone(), names(&i.operators)))
                .collect(),
            joins: plan
                .joins
                .iter()
                .map(|j| (j.join.name(), names(&j.operators)))
                .collect(),
            operators: names(&plan.operators),
            metrics,
            stages: Vec::new(),
        })
    }

    /// Registers work to run after every pass (see [`StepObserver`]).
    pub fn observe(&self, observer: Arc<dyn StepObserver>) {
        self.observers.lock().push(observer);
    }

    /// One pass over all queries, then the observers; returns the records
    /// consumed.
    pub fn step(&self) -> usize {
        let mut total = 0;
        {
            let mut queries = self.queries.lock();
            for q in queries.iter_mut() {
                // Everything a query logs while it runs names it.
                let _span = tracing::info_span!("query", id = %q.id()).entered();
                total += q.poll_once(self.batch_size);
                // Between polls state, offsets and output agree.
                if q.checkpoint_due()
                    && let Err(e) = q.write_checkpoint()
                {
                    tracing::error!(query = %q.id(), "checkpoint failed: {e}");
                }
            }
        }
        for q in self.distributed.lock().iter_mut() {
            let _span = tracing::info_span!("query", id = %q.id()).entered();
            total += q.poll_once(self.batch_size);
        }
        // Cloned so an observer may add queries (a push query starting)
        // without deadlocking on either lock.
        let observers: Vec<Arc<dyn StepObserver>> = self.observers.lock().clone();
        for o in observers {
            total += o.after_step();
        }
        total
    }

    /// Runs until no query has anything left to read.
    pub fn run_until_idle(&self) {
        while self.step() > 0 {}
    }

    /// Runs the queries on a background thread until [`Runtime::stop`].
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        let runtime = self.clone();
        std::thread::Builder::new()
            .name("sluice-runtime".into())
            .spawn(move || {
                while !runtime.stopping.load(Ordering::Relaxed) {
                    if runtime.step() == 0 {
                        runtime.backend.wait_for_data(Duration::from_millis(50));
                    }
                }
                runtime.flush();
                runtime.checkpoint_all();
                // Leaving the groups after the checkpoint lets the other
                // members take over from it at once.
                runtime.distributed.lock().clear();
            })
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

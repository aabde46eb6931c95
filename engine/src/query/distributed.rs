//! [`DistributedQuery`]: one persistent query run by every server of a
//! cluster, each processing the input partitions the consumer group gives
//! it.
//!
//! The query is cut into units whose state never depends on another's
//! input. A partition-local query (stateless, or aggregating by the key its
//! input is partitioned by) has one unit per input partition, each a
//! [`PersistentQuery`] of its own plan reading that partition only (the
//! planner also counts a stream-table join on both keys, and each stage of
//! a repartitioned aggregate). Any other query is one unit reading
//! everything, run by the member that owns partition 0: exact, but not
//! spread.
//!
//! Each unit checkpoints under `<shared dir>/<query id>/<unit>`, a
//! directory every server reaches. When the group revokes partitions the
//! member checkpoints their units before confirming, so their next owner
//! restores exactly what was processed; when a member dies the next owner
//! restores the unit's last periodic checkpoint and reprocesses the input
//! after it (writing the same results again, which a table absorbs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CheckpointStore;
use crate::error::{EngineError, Result};
use crate::processing_log::ProcessingLog;
use crate::query::{PersistentQuery, QueryPlan, QueryState};
use crate::topic::{GroupChange, GroupMembership, TopicBackend};

/// Builds a fresh plan of a query, one per unit: plans hold their state.
pub type PlanFactory = Arc<dyn Fn() -> Result<QueryPlan> + Send + Sync>;

/// How the servers of a cluster share persistent queries.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Checkpoints of every unit, reachable by every server.
    pub shared_dir: PathBuf,
    pub interval: Duration,
    /// Prefixes the consumer group of each query (ksqlDB's service id).
    pub group_prefix: String,
}

/// What one instance of a distributed query processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// One partition of every input.
    Partition(i32),
    /// Every partition: queries that are not partition-local.
    Whole,
}

impl Unit {
    /// Its checkpoint directory's name.
    fn name(&self) -> String {
        match self {
            Unit::Partition(p) => format!("p{p}"),
            Unit::Whole => "all".to_string(),
        }
    }
}

/// One unit a member holds: running, or given back at the last
/// revocation with the number of the checkpoint written then.
struct Parked {
    query: PersistentQuery,
    checkpoint: Option<u64>,
}

/// This server's share of a persistent query of the cluster.
pub struct DistributedQuery {
    id: String,
    factory: PlanFactory,
    partition_local: bool,
    membership: Box<dyn GroupMembership>,
    running: BTreeMap<Unit, PersistentQuery>,
    /// Units revoked, kept in case the group hands them back (an eager
    /// rebalance revokes everything first).
    parked: BTreeMap<Unit, Parked>,
    backend: Arc<dyn TopicBackend>,
    log: Arc<ProcessingLog>,
    dir: PathBuf,
    interval: Duration,
    /// Set when the query cannot go on (a unit failed to restore).
    error: Option<String>,
    /// The first input's topic: the group splits its partitions.
    topic: String,
}

impl DistributedQuery {
    /// Joins the query's consumer group; units start as the group assigns
    /// partitions. `factory` is called once now, to check the plan.
    pub fn start(
        factory: PlanFactory,
        partition_local: bool,
        config: &ClusterConfig,
        backend: Arc<dyn TopicBackend>,
        log: Arc<ProcessingLog>,
    ) -> Result<Self> {
        let plan = factory()?;
        let id = plan.id.clone();
        let Some(first) = plan.inputs.first() else {
            return Err(EngineError::Plan(format!("query {id} reads nothing")));
        };
        let topic = first.source.topic.clone();
        if partition_local {
            let count = |t: &str| backend.describe_topic(t).map(|d| d.partitions);
            let expected = count(&topic);
            if let Some(other) = plan
                .inputs
                .iter()
                .find(|i| count(&i.source.topic) != expected)
            {
                return Err(EngineError::Plan(format!(
                    "query {id}: '{}' and '{topic}' differ in partitions; it cannot run per partition",
                    other.source.topic
                )));
            }
        }
        let group = format!("{}query_{id}", config.group_prefix);
        let membership = backend.join_group(&group, &topic)?;
        let dir = config
            .shared_dir
            .join(crate::checkpoint::directory_name(&id));
        Ok(DistributedQuery {
            id,
            factory,
            partition_local,
            membership,
            running: BTreeMap::new(),
            parked: BTreeMap::new(),
            backend,
            log,
            dir,
            interval: config.interval,
            error: None,
            topic,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The topic whose partitions the group splits.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether each input partition is a unit of its own.
    pub fn partition_local(&self) -> bool {
        self.partition_local
    }

    /// The units this server runs now.
    pub fn units(&self) -> Vec<Unit> {
        self.running.keys().copied().collect()
    }

    /// The partitions the group gives this server.
    pub fn owned_partitions(&self) -> Vec<i32> {
        self.membership.owned()
    }

    /// The running units' instances.
    pub fn instances(&self) -> impl Iterator<Item = (&Unit, &PersistentQuery)> {
        self.running.iter()
    }

    /// Healthy when every unit is.
    pub fn state(&self) -> QueryState {
        if let Some(e) = &self.error {
            return QueryState::Error(e.clone());
        }
        self.running
            .values()
            .find_map(|q| match q.state() {
                QueryState::Running => None,
                failed => Some(failed.clone()),
            })
            .unwrap_or(QueryState::Running)
    }

    /// Follows the group, then processes up to `max_records` of each
    /// running unit's inputs; returns the records consumed.
    pub fn poll_once(&mut self, max_records: usize) -> usize {
        if let Err(e) = self.follow_group() {
            tracing::error!(query = %self.id, "following the consumer group failed: {e}");
            self.error = Some(e.to_string());
        }
        let mut total = 0;
        for query in self.running.values_mut() {
            total += query.poll_once(max_records);
            if query.checkpoint_due()
                && let Err(e) = query.write_checkpoint()
            {
                tracing::error!(query = %self.id, "checkpoint failed: {e}");
            }
        }
        total
    }

    /// Forces a rebalance of the query's group (see
    /// [`GroupMembership::rejoin`]).
    pub fn rejoin(&mut self) -> Result<()> {
        self.membership.rejoin()
    }

    /// Checkpoints every running unit now (a clean shutdown).
    pub fn checkpoint_all(&mut self) {
        for query in self.running.values_mut() {
            if let Err(e) = query.write_checkpoint() {
                tracing::error!(query = %self.id, "checkpoint failed: {e}");
            }
        }
    }

    /// Handles the group's pending change, if any.
    fn follow_group(&mut self) -> Result<()> {
        while let Some(change) = self.membership.poll()? {
            match change {
                GroupChange::Revoked(partitions) => self.revoke(&partitions, true),
                GroupChange::Lost(partitions) => self.revoke(&partitions, false),
                GroupChange::Assigned(partitions) => {
                    let assigned = self.assign(&partitions);
                    // Confirmed also on failure: holding the group's
                    // rebalance would stall every other member.
                    self.membership.confirm()?;
                    assigned?;
                    continue;
                }
            }
            self.membership.confirm()?;
        }
        Ok(())
    }

    /// The units that partitions of the first input make.
    fn units_of(&self, partitions: &[i32]) -> Vec<Unit> {
        if self.partition_local {
            partitions.iter().map(|p| Unit::Partition(*p)).collect()
        } else if partitions.contains(&0) {
            vec![Unit::Whole]
        } else {
            Vec::new()
        }
    }

    /// Stops the units of `partitions`; `handover` checkpoints them first
    /// (their next owner restores that), otherwise they are dropped.
    fn revoke(&mut self, partitions: &[i32], handover: bool) {
        for unit in self.units_of(partitions) {
            let Some(mut query) = self.running.remove(&unit) else {
                continue;
            };
            if !handover {
                tracing::warn!(query = %self.id, unit = %unit.name(), "lost without a handover");
                continue;
            }
            let checkpoint = match query.write_checkpoint() {
                Ok(number) => number,
                Err(e) => {
                    // The next owner restores an older checkpoint and
                    // reprocesses more; nothing is lost.
                    tracing::error!(query = %self.id, unit = %unit.name(), "checkpoint at handover failed: {e}");
                    None
                }
            };
            tracing::info!(query = %self.id, unit = %unit.name(), "handed back to the group");
            self.parked.insert(unit, Parked { query, checkpoint });
        }
    }

    /// Runs the units of `partitions`: those parked here whose checkpoint
    /// is still the newest go on from memory, the others restore theirs.
    fn assign(&mut self, partitions: &[i32]) -> Result<()> {
        let parked = std::mem::take(&mut self.parked);
        let mut parked = parked;
        for unit in self.units_of(partitions) {
            if self.running.contains_key(&unit) {
                continue;
            }
            let store = CheckpointStore::open(&self.dir, &unit.name())?;
            let reusable = match parked.remove(&unit) {
                Some(p) if p.checkpoint.is_some() && store.latest_number()? == p.checkpoint => {
                    Some(p.query)
                }
                _ => None,
            };
            let query = match reusable {
                Some(q) => q,
                None => self.start_unit(unit, store)?,
            };
            tracing::info!(query = %self.id, unit = %unit.name(), "running here");
            self.running.insert(unit, query);
        }
        Ok(())
    }

    /// A fresh instance of `unit`, restored from its newest checkpoint.
    fn start_unit(&self, unit: Unit, store: CheckpointStore) -> Result<PersistentQuery> {
        let plan = (self.factory)()?;
        let only = match unit {
            Unit::Partition(p) => Some(vec![p]),
            Unit::Whole => None,
        };
        let mut query = PersistentQuery::start_on(
            plan,
            self.backend.clone(),
            self.log.clone(),
            only.as_deref(),
        )?;
        if query.enable_checkpoints(store, self.interval)? {
            tracing::info!(query = %self.id, unit = %unit.name(), "unit restored from its checkpoint");
        }
        Ok(query)
    }

    /// Forgets every unit's checkpoints (the query was terminated).
    pub fn delete_checkpoints(&self) {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(query = %self.id, "deleting its checkpoints: {e}"),
        }
    }
}

//! The members of a cluster as this server sees them, and
//! `GET /clusterStatus`.
//!
//! Every member publishes a heartbeat every second to the one-partition
//! topic `_sluice-<service id>-cluster`: its URL and, per distributed
//! query, the input partitions it owns and how far behind it is; and, per
//! source, the partitions it materializes for pull queries and which of
//! them it is still restoring ([`crate::scatter`] routes by these). Every
//! member reads that topic, so each knows all of them; a member whose last
//! heartbeat is older than [`ALIVE_FOR`] is reported dead.
//!
//! The answer keeps the outline of ksqlDB's `ClusterStatusResponse`
//! (`clusterStatus` by `host:port`, with `hostAlive`,
//! `lastStatusUpdateMs`, `activeStandbyPerQuery`, `hostStoreLags`),
//! simplified: no standbys, and one total lag per query instead of lags
//! per state store.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::{Partitioning, Record, TopicBackend, TopicConsumer};
use sluice_sql::KsqlContext;
use sluice_sql::context::ReleaseGate;

use crate::AppState;
use crate::error::ServerError;
use crate::materialized::Materializer;

/// How often a member publishes its heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A member silent for longer is reported dead.
pub const ALIVE_FOR: Duration = Duration::from_secs(5);
/// A dead member's partitions are the group's to reassign within the
/// consumer session timeout (6 s); if it has not by then, members rejoin
/// to make it.
const TAKEOVER_AFTER: Duration = Duration::from_secs(6);
/// Partitions of a group may lack a live owner this long (a rebalance
/// takes a few seconds on Tansu) before members rejoin to reassign them.
const UNCOVERED_FOR: Duration = Duration::from_secs(15);
/// Heartbeats read back at start: enough to see every recent member.
const RECENT_HEARTBEATS: u64 = 1_000;

/// One member's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub url: String,
    pub sent_ms: i64,
    pub queries: Vec<QueryShare>,
    /// What the member materializes for pull queries.
    #[serde(default)]
    pub materialized: Vec<MaterializedShare>,
    /// The offset of the last command of the command topic the member has
    /// applied (none yet, or a member from before it was published).
    #[serde(default)]
    pub last_command: Option<i64>,
    /// Topics read by the queries the member runs alone (its clients'
    /// push queries).
    #[serde(default)]
    pub local_topics: Vec<String>,
}

/// The partitions of one source's topic a member materializes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaterializedShare {
    pub source: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// Partitions still being read up to their end: not used yet.
    pub restoring: Vec<i32>,
}

/// What a member runs of one distributed query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryShare {
    pub query_id: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    pub lag: u64,
}

/// The members seen, by URL.
pub struct Members {
    url: String,
    topic: String,
    backend: Arc<dyn TopicBackend>,
    runtime: Arc<Runtime>,
    consumer: Mutex<Box<dyn TopicConsumer>>,
    seen: Mutex<BTreeMap<String, Heartbeat>>,
    /// The last heartbeats of dead members this one rejoined the groups
    /// for, by URL: once per death.
    mourned: Mutex<BTreeMap<String, i64>>,
    /// The pull-query projections whose shares heartbeats publish.
    materializer: OnceLock<Weak<Materializer>>,
    /// The catalog whose applied commands heartbeats publish.
    commands: OnceLock<Weak<KsqlContext>>,
    /// Since when each group (`query:<id>`, `source:<name>`) has had
    /// partitions no live member reports owning.
    gaps: Mutex<BTreeMap<String, i64>>,
    /// Partition counts of the topics the groups split, asked once.
    partition_counts: Mutex<BTreeMap<String, u32>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The cluster topic of a service id.
pub fn cluster_topic(service_id: &str) -> String {
    format!("_sluice-{service_id}-cluster")
}

impl Members {
    /// Starts publishing this member's heartbeats (as `url`) and reading
    /// everyone's, on a thread of its own.
    pub fn start(
        runtime: Arc<Runtime>,
        service_id: &str,
        url: &str,
    ) -> Result<Arc<Self>, ServerError> {
        let backend = runtime.backend().clone();
        let topic = cluster_topic(service_id);
        if backend.describe_topic(&topic).is_none() {
            match backend.create_topic(&topic, 1, 1) {
                Ok(()) | Err(sluice_engine::EngineError::TopicExists(_)) => {}
                Err(e) => {
                    return Err(ServerError::Internal(format!(
                        "creating the cluster topic {topic}: {e}"
                    )));
                }
            }
        }
        let mut consumer = backend
            .consumer(&topic)
            .map_err(|e| ServerError::Internal(format!("reading {topic}: {e}")))?;
        // Old heartbeats are of members long gone: start near the end.
        let end = consumer.lag();
        if end > RECENT_HEARTBEATS {
            let from = i64::try_from(end - RECENT_HEARTBEATS).unwrap_or(0);
            consumer
                .seek(0, from)
                .map_err(|e| ServerError::Internal(format!("reading {topic}: {e}")))?;
        }
        let members = Arc::new(Members {
            url: url.to_string(),
            topic,
            backend,
            runtime,
            consumer: Mutex::new(consumer),
            seen: Mutex::new(BTreeMap::new()),
            mourned: Mutex::new(BTreeMap::new()),
            materializer: OnceLock::new(),
            commands: OnceLock::new(),
            gaps: Mutex::new(BTreeMap::new()),
            partition_counts: Mutex::new(BTreeMap::new()),
        });
        let weak = Arc::downgrade(&members);
        std::thread::Builder::new()
            .name("sluice-cluster".into())
            .spawn(move || {
                while let Some(members) = weak.upgrade() {
                    members.beat();
                    members.take_over_the_dead();
                    members.rebalance_uncovered();
                    drop(members);
                    std::thread::sleep(HEARTBEAT_EVERY);
                }
            })
            .map_err(|e| ServerError::Internal(format!("starting the heartbeat: {e}")))?;
        Ok(members)
    }

    /// Publishes `materializer`'s shares in the heartbeats and rebalances
    /// its groups with the queries'.
    pub fn watch_materializer(&self, materializer: &Arc<Materializer>) {
        let _ = self.materializer.set(Arc::downgrade(materializer));
    }

    /// Publishes in the heartbeats how far `ctx` has applied the command
    /// topic, so a member deleting a topic knows when the others are done
    /// with it ([`Self::released`]).
    pub fn watch_commands(&self, ctx: &Arc<KsqlContext>) {
        let _ = self.commands.set(Arc::downgrade(ctx));
    }

    /// Whether every live member, this one included, has applied command
    /// `offset` and reports none of `topics` in use: no query share read
    /// from them, no materialized share of them, no push query over them. A member that does not
    /// publish its commands (an older one) never releases a topic.
    pub fn released(&self, offset: i64, topics: &[String]) -> bool {
        released_by(&self.heartbeats(), now_ms(), offset, topics)
    }

    fn materializer(&self) -> Option<Arc<Materializer>> {
        self.materializer.get().and_then(Weak::upgrade)
    }

    /// This member as it is now.
    fn own(&self) -> Heartbeat {
        Heartbeat {
            url: self.url.clone(),
            sent_ms: now_ms(),
            queries: self
                .runtime
                .cluster_shares()
                .into_iter()
                .map(|s| QueryShare {
                    query_id: s.query_id,
                    topic: s.topic,
                    partitions: s.partitions,
                    lag: s.lag,
                })
                .collect(),
            materialized: self
                .materializer()
                .map(|m| m.shares())
                .unwrap_or_default()
                .into_iter()
                .map(|(source, topic, split)| MaterializedShare {
                    source,
                    topic,
                    partitions: split.owned,
                    restoring: split.restoring,
                })
                .collect(),
            last_command: self
                .commands
                .get()
                .and_then(Weak::upgrade)
                .and_then(|ctx| ctx.last_applied_command()),
            local_topics: self.runtime.local_topics(),
        }
    }

    /// Publishes this member's heartbeat and reads the others'.
    fn beat(&self) {
        let own = self.own();
        match serde_json::to_vec(&own) {
            Ok(value) => {
                let record = Record {
                    key: Some(Bytes::from(own.url.clone())),
                    value: Some(Bytes::from(value)),
                    timestamp: own.sent_ms,
                    headers: Vec::new(),
                };
                if let Err(e) = self
                    .backend
                    .produce(&self.topic, vec![(Partitioning::Explicit(0), record)])
                {
                    tracing::warn!("publishing the cluster heartbeat: {e}");
                }
            }
            Err(e) => tracing::warn!("encoding the cluster heartbeat: {e}"),
        }
        self.seen.lock().insert(own.url.clone(), own);
        let mut consumer = self.consumer.lock();
        loop {
            let records = match consumer.poll(1_000) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("reading the cluster topic: {e}");
                    break;
                }
            };
            if records.is_empty() {
                break;
            }
            let mut seen = self.seen.lock();
            for r in records {
                let Some(value) = r.record.value else {
                    continue;
                };
                match serde_json::from_slice::<Heartbeat>(&value) {
                    Ok(beat) if beat.url != self.url => {
                        let newer = seen
                            .get(&beat.url)
                            .is_none_or(|old| old.sent_ms <= beat.sent_ms);
                        if newer {
                            seen.insert(beat.url.clone(), beat);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("skipping a cluster heartbeat: {e}"),
                }
            }
        }
    }

    /// Rebalances the groups when a member died owning partitions and the
    /// broker did not hand them to the living within the session timeout:
    /// Kafka does, Tansu never notices a silent member.
    fn take_over_the_dead(&self) {
        let now = now_ms();
        let limit = (ALIVE_FOR + TAKEOVER_AFTER).as_millis() as i64;
        let own = self.own();
        let mut rejoin = false;
        let mut rematerialize = false;
        {
            let seen = self.seen.lock();
            // Partitions of each source some live member materializes.
            let mut held: Vec<(&str, i32)> = Vec::new();
            for beat in seen
                .values()
                .filter(|b| b.url != self.url && now - b.sent_ms <= ALIVE_FOR.as_millis() as i64)
                .chain(std::iter::once(&own))
            {
                for m in &beat.materialized {
                    held.extend(m.partitions.iter().map(|p| (m.source.as_str(), *p)));
                }
            }
            let mut mourned = self.mourned.lock();
            for beat in seen.values() {
                if beat.url == self.url || now - beat.sent_ms <= limit {
                    continue;
                }
                if mourned.get(&beat.url) == Some(&beat.sent_ms) {
                    continue;
                }
                // Still listed as an owner by the group: what it owned is
                // owned by nobody alive.
                let orphaned = beat.queries.iter().any(|q| {
                    !q.partitions.is_empty()
                        && own
                            .queries
                            .iter()
                            .find(|o| o.query_id == q.query_id)
                            .is_some_and(|o| q.partitions.iter().any(|p| !o.partitions.contains(p)))
                });
                let unmaterialized = beat.materialized.iter().any(|m| {
                    m.partitions
                        .iter()
                        .any(|p| !held.contains(&(m.source.as_str(), *p)))
                });
                mourned.insert(beat.url.clone(), beat.sent_ms);
                if orphaned {
                    tracing::warn!(member = %beat.url, "a member died owning partitions; rebalancing");
                    rejoin = true;
                }
                if unmaterialized {
                    tracing::warn!(member = %beat.url, "a member died materializing partitions; rebalancing");
                    rematerialize = true;
                }
            }
        }
        if rejoin {
            self.runtime.rejoin_groups();
        }
        if rematerialize && let Some(m) = self.materializer() {
            m.rejoin_groups();
        }
    }

    /// Rebalances the groups that have left partitions without a live
    /// owner for longer than a rebalance takes. The heartbeat watch above
    /// catches a member that went silent; this catches what it cannot: a
    /// member killed and started again at the same URL before it was
    /// missed, whose old incarnation Tansu keeps in the group holding
    /// partitions nobody processes.
    fn rebalance_uncovered(&self) {
        let now = now_ms();
        let alive_for = ALIVE_FOR.as_millis() as i64;
        let own = self.own();
        let others = self.others();
        let live: Vec<&Heartbeat> = others
            .iter()
            .filter(|b| now - b.sent_ms <= alive_for)
            .chain(std::iter::once(&own))
            .collect();
        // Every group a live member reports, with its topic and the
        // partitions owned.
        let mut groups: BTreeMap<String, (bool, String, Vec<i32>)> = BTreeMap::new();
        for beat in &live {
            for q in &beat.queries {
                let entry = groups
                    .entry(format!("query:{}", q.query_id))
                    .or_insert_with(|| (true, q.topic.clone(), Vec::new()));
                entry.2.extend(&q.partitions);
            }
            for m in &beat.materialized {
                let entry = groups
                    .entry(format!("source:{}", m.source))
                    .or_insert_with(|| (false, m.topic.clone(), Vec::new()));
                entry.2.extend(&m.partitions);
            }
        }
        let (mut rejoin, mut rematerialize) = (false, false);
        {
            let mut gaps = self.gaps.lock();
            let mut counts = self.partition_counts.lock();
            gaps.retain(|group, _| groups.contains_key(group));
            for (group, (is_query, topic, owned)) in &groups {
                let count = match counts.get(topic) {
                    Some(n) => *n,
                    None => match self.backend.describe_topic(topic) {
                        Some(d) => {
                            counts.insert(topic.clone(), d.partitions);
                            d.partitions
                        }
                        None => continue,
                    },
                };
                let covered = (0..count as i32).all(|p| owned.contains(&p));
                if covered {
                    gaps.remove(group);
                    continue;
                }
                let since = *gaps.entry(group.clone()).or_insert(now);
                if now - since >= UNCOVERED_FOR.as_millis() as i64 {
                    tracing::warn!(
                        group = %group,
                        "partitions without a live owner for {} s; rebalancing",
                        UNCOVERED_FOR.as_secs()
                    );
                    // Measured again from the rebalance.
                    gaps.insert(group.clone(), now);
                    if *is_query {
                        rejoin = true;
                    } else {
                        rematerialize = true;
                    }
                }
            }
        }
        if rejoin {
            self.runtime.rejoin_groups();
        }
        if rematerialize && let Some(m) = self.materializer() {
            m.rejoin_groups();
        }
    }

    /// Every member seen, this one with its state now.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        let mut seen = self.seen.lock().clone();
        let own = self.own();
        seen.insert(own.url.clone(), own);
        seen.into_values().collect()
    }

    /// The last heartbeat of every other member seen, alive or not.
    pub fn others(&self) -> Vec<Heartbeat> {
        self.seen
            .lock()
            .values()
            .filter(|h| h.url != self.url)
            .cloned()
            .collect()
    }

    /// The URLs of the members alive now, this one included.
    pub fn alive(&self) -> Vec<String> {
        let now = now_ms();
        self.heartbeats()
            .into_iter()
            .filter(|h| now - h.sent_ms <= ALIVE_FOR.as_millis() as i64)
            .map(|h| h.url)
            .collect()
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl ReleaseGate for Members {
    fn released(&self, offset: i64, topics: &[String]) -> bool {
        Members::released(self, offset, topics)
    }
}

/// Whether `heartbeats` show, at `now_ms`, every live member having
/// applied command `offset` and using none of `topics`.
fn released_by(heartbeats: &[Heartbeat], now_ms: i64, offset: i64, topics: &[String]) -> bool {
    heartbeats
        .iter()
        .filter(|h| now_ms - h.sent_ms <= ALIVE_FOR.as_millis() as i64)
        .all(|h| {
            h.last_command.is_some_and(|c| c >= offset)
                && !h.queries.iter().any(|q| topics.contains(&q.topic))
                && !h.materialized.iter().any(|m| topics.contains(&m.topic))
                && !h.local_topics.iter().any(|t| topics.contains(t))
        })
}

/// `host:port` of a URL, ksqlDB's key of a host.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// ksqlDB's cluster status of `heartbeats` at `now_ms`.
pub fn status_json(heartbeats: &[Heartbeat], now_ms: i64) -> Value {
    let mut hosts = serde_json::Map::new();
    for beat in heartbeats {
        let mut per_query = serde_json::Map::new();
        let mut lags = serde_json::Map::new();
        for q in &beat.queries {
            let partitions: Vec<Value> = q
                .partitions
                .iter()
                .map(|p| json!({"topic": q.topic, "partition": p}))
                .collect();
            per_query.insert(
                q.query_id.clone(),
                json!({
                    "activeStores": [q.query_id],
                    "activePartitions": partitions,
                    "standByStores": [],
                    "standByPartitions": [],
                }),
            );
            lags.insert(q.query_id.clone(), json!({"totalLag": q.lag}));
        }
        let mut materialized = serde_json::Map::new();
        for m in &beat.materialized {
            materialized.insert(
                m.source.clone(),
                json!({
                    "topic": m.topic,
                    "partitions": m.partitions,
                    "restoring": m.restoring,
                }),
            );
        }
        hosts.insert(
            host_port(&beat.url).to_string(),
            json!({
                "hostAlive": now_ms - beat.sent_ms <= ALIVE_FOR.as_millis() as i64,
                "lastStatusUpdateMs": beat.sent_ms,
                "url": beat.url,
                "activeStandbyPerQuery": per_query,
                "hostStoreLags": {"stateStoreLags": lags, "updateTimeMs": beat.sent_ms},
                "materialized": materialized,
            }),
        );
    }
    json!({ "clusterStatus": hosts })
}

/// `GET /clusterStatus`: every member, its partitions and lag. A server
/// outside a cluster reports itself alone, owning nothing.
pub async fn cluster_status(State(state): State<AppState>) -> Response {
    let members = state.cluster.clone();
    let now = now_ms();
    let answer = tokio::task::spawn_blocking(move || match members {
        Some(members) => status_json(&members.heartbeats(), now),
        None => status_json(&[], now),
    })
    .await;
    match answer {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => ServerError::Internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_hosts_and_marks_silent_ones_dead() {
        let beats = vec![
            Heartbeat {
                url: "http://127.0.0.1:8088".into(),
                sent_ms: 10_000,
                queries: vec![QueryShare {
                    query_id: "CTAS_T_1".into(),
                    topic: "plays".into(),
                    partitions: vec![0, 2],
                    lag: 7,
                }],
                materialized: vec![MaterializedShare {
                    source: "T".into(),
                    topic: "t".into(),
                    partitions: vec![1, 3],
                    restoring: vec![3],
                }],
                last_command: Some(4),
                local_topics: vec![],
            },
            Heartbeat {
                url: "http://127.0.0.1:8089".into(),
                sent_ms: 1_000,
                queries: vec![],
                materialized: vec![],
                last_command: None,
                local_topics: vec![],
            },
        ];
        let status = status_json(&beats, 11_000);
        let live = &status["clusterStatus"]["127.0.0.1:8088"];
        assert_eq!(live["hostAlive"], true);
        assert_eq!(
            live["activeStandbyPerQuery"]["CTAS_T_1"]["activePartitions"][1]["partition"],
            2
        );
        assert_eq!(
            live["hostStoreLags"]["stateStoreLags"]["CTAS_T_1"]["totalLag"],
            7
        );
        assert_eq!(
            status["clusterStatus"]["127.0.0.1:8089"]["hostAlive"],
            false
        );
        let t = &live["materialized"]["T"];
        assert_eq!(t["partitions"], json!([1, 3]));
        assert_eq!(t["restoring"], json!([3]));
    }

    #[test]
    fn a_topic_is_released_once_every_live_member_applied_the_command_and_let_go() {
        let beat = |url: &str, sent_ms: i64, last_command: Option<i64>, topic: &str| Heartbeat {
            url: url.into(),
            sent_ms,
            queries: vec![QueryShare {
                query_id: "Q".into(),
                topic: "input".into(),
                partitions: vec![0],
                lag: 0,
            }],
            materialized: vec![MaterializedShare {
                source: "S".into(),
                topic: topic.into(),
                partitions: vec![0],
                restoring: vec![],
            }],
            last_command,
            local_topics: vec!["input".into()],
        };
        let gone = ["t".to_string()];
        let now = 10_000;
        // b has not applied command 5 yet.
        let beats = vec![
            beat("a", now, Some(5), "other"),
            beat("b", now, Some(4), "other"),
        ];
        assert!(!released_by(&beats, now, 5, &gone));
        // b applied it but still materializes the topic.
        let beats = vec![
            beat("a", now, Some(5), "other"),
            beat("b", now, Some(6), "t"),
        ];
        assert!(!released_by(&beats, now, 5, &gone));
        // A member that does not say what it applied holds it.
        let beats = vec![
            beat("a", now, Some(5), "other"),
            beat("b", now, None, "other"),
        ];
        assert!(!released_by(&beats, now, 5, &gone));
        // A query stage still reading it holds it.
        let mut reading = beat("b", now, Some(5), "other");
        reading.queries[0].topic = "t".into();
        assert!(!released_by(
            &[beat("a", now, Some(5), "other"), reading],
            now,
            5,
            &gone
        ));
        // A push query over it holds it.
        let mut pushing = beat("b", now, Some(5), "other");
        pushing.local_topics.push("t".into());
        assert!(!released_by(
            &[beat("a", now, Some(5), "other"), pushing],
            now,
            5,
            &gone
        ));
        // Done everywhere; a dead member does not count.
        let beats = vec![
            beat("a", now, Some(5), "other"),
            beat("b", now, Some(7), "other"),
            beat("dead", 1_000, Some(1), "t"),
        ];
        assert!(released_by(&beats, now, 5, &gone));
        // An old member's heartbeat, without the field, reads as none.
        let old = r#"{"url":"c","sent_ms":1,"queries":[],"materialized":[]}"#;
        let old: Heartbeat = serde_json::from_str(old).expect("an old heartbeat");
        assert_eq!(old.last_command, None);
    }
}

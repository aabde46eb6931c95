//! Starting an aggregate over a repartition topic in a cluster: the
//! re-keying stage and the aggregate stage (see
//! [`crate::planner::PlanContext::plan_repartition`]), each a distributed
//! query of its own, and the internal topic between them.
//!
//! The re-keying stage writes at least once: a member that takes over one
//! of its partitions after a crash writes again what followed the last
//! checkpoint. The aggregate stage's first operator, a
//! [`ReplayFilter`], drops those records by the source partition and
//! offset each carries, and is checkpointed with the aggregate, so the
//! counts stay exact without Kafka transactions.

use sluice_engine::EngineError;
use sluice_engine::operator::replay_filter::ReplayFilter;
use sluice_engine::query::distributed::{ClusterConfig, PlanFactory};
use sluice_engine::query::sink::RepartitionSink;

use super::{KsqlContext, plan_error, query_plan};
use crate::catalog::DataSource;
use crate::error::Result;
use crate::parser::{Query, SourceKind};
use crate::planner::{PlanContext, PlannedQuery};

/// The repartition topic of query `query_id` in the cluster whose groups
/// are prefixed `group_prefix` (`_sluice-<service id>`), after ksqlDB's
/// `_confluent-ksql-<service id>query_<id>-Aggregate-GroupBy-repartition`.
pub fn repartition_topic(group_prefix: &str, query_id: &str) -> String {
    format!("{group_prefix}query_{query_id}-Aggregate-GroupBy-repartition")
}

/// The id of the re-keying stage of query `query_id`.
pub fn repartition_stage_id(query_id: &str) -> String {
    format!("{query_id}-repartition")
}

impl KsqlContext {
    /// Starts `query` (planned as `planned`, writing `sink`) as a
    /// re-keying stage and an aggregate stage when it is an aggregate two
    /// stages spread ([`PlanContext::can_repartition`]); false, starting
    /// nothing, when it is not.
    pub(super) fn start_repartitioned(
        &self,
        query_id: &str,
        planned: &PlannedQuery,
        sink: &DataSource,
        query: &Query,
        sink_name: &str,
        config: &ClusterConfig,
    ) -> Result<bool> {
        if !PlanContext::can_repartition(query, planned) {
            return Ok(false);
        }
        let backend = self.runtime.backend().clone();
        let source = planned.source.as_ref().clone();
        let Some(partitions) = backend.describe_topic(&source.topic).map(|t| t.partitions) else {
            return Ok(false);
        };
        let topic = repartition_topic(&config.group_prefix, query_id);
        let rekey = self.rekey_factory(query_id, &source, &topic, sink, query);
        // Checked before anything is created; a query the re-keying stage
        // cannot plan runs whole, as before.
        if let Err(e) = rekey() {
            tracing::warn!(query = %query_id, "not repartitioned: {e}");
            return Ok(false);
        }
        let aggregate = self.aggregate_factory(query_id, &source, &topic, sink, query, sink_name);
        // Every member starts the query; the first creates the topic.
        let created = match backend.create_topic(&topic, partitions, 1) {
            Ok(()) => true,
            Err(EngineError::TopicExists(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let started = self.runtime.add_distributed_stages(
            vec![(rekey, true)],
            (aggregate, true),
            vec![topic.clone()],
        );
        if let Err(e) = started {
            if created {
                let _ = backend.delete_topic(&topic);
            }
            return Err(e.into());
        }
        tracing::info!(query = %query_id, "runs in two stages through {topic}");
        Ok(true)
    }

    /// Plans of the re-keying stage: `source` to `topic`.
    fn rekey_factory(
        &self,
        query_id: &str,
        source: &DataSource,
        topic: &str,
        sink: &DataSource,
        query: &Query,
    ) -> PlanFactory {
        let stage_id = repartition_stage_id(query_id);
        let query = query.clone();
        let result = sink.schema.clone();
        let key_format = sink.key_format.clone();
        let topic = topic.to_string();
        let source_codec = source.codec();
        self.factory_over([source.clone()], move |context| {
            let planned = context
                .plan_repartition(&query, &result)
                .map_err(plan_error)?;
            let source = planned.source.clone();
            let records = DataSource {
                name: stage_id.clone(),
                kind: SourceKind::Stream,
                schema: planned.schema.clone(),
                topic: topic.clone(),
                key_format: key_format.clone(),
                value_format: source.value_format.clone(),
                wrap_single_value: source.wrap_single_value,
                timestamp_column: None,
                timestamp_format: None,
                window: None,
                read_only: true,
                sql: String::new(),
            };
            let mut plan = query_plan(&stage_id, planned, &records).map_err(plan_error)?;
            plan.sink.repartition = Some(RepartitionSink {
                source_key: source_codec.clone(),
            });
            Ok(plan)
        })
    }

    /// Plans of the aggregate stage: `query` over `source` as the records
    /// of `topic` hold it, each read once.
    fn aggregate_factory(
        &self,
        query_id: &str,
        source: &DataSource,
        topic: &str,
        sink: &DataSource,
        query: &Query,
        sink_name: &str,
    ) -> PlanFactory {
        let repartitioned = DataSource {
            topic: topic.to_string(),
            ..source.clone()
        };
        let query_id = query_id.to_string();
        let query = query.clone();
        let sink = sink.clone();
        let sink_name = sink_name.to_string();
        self.factory_over([repartitioned], move |context| {
            let planned = context.plan(&query, &sink_name).map_err(plan_error)?;
            let mut plan = query_plan(&query_id, planned, &sink).map_err(plan_error)?;
            let Some(input) = plan.inputs.first_mut() else {
                return Err(EngineError::Plan(format!("query {query_id} reads nothing")));
            };
            input.source.repartitioned = true;
            let schema = input.source.schema.batch_schema(false);
            input
                .operators
                .insert(0, Box::new(ReplayFilter::new(schema)?));
            Ok(plan)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use sluice_connectors::embedded::EmbeddedTopics;
    use sluice_engine::processing_log::ProcessingLog;
    use sluice_engine::query::PersistentQuery;
    use sluice_engine::topic::{Partitioning, Record, TopicBackend};

    use super::*;
    use crate::parser::{Statement, parse_statements};

    const PLAYERS: u64 = 13;
    const TEAMS: u64 = 4;

    /// Events keyed by player, grouped by team; `ts` is the event time.
    fn produce(backend: &dyn TopicBackend, events: u64) {
        let records = (0..events)
            .map(|i| {
                let player = format!("p{}", i % PLAYERS);
                let team = format!("t{}", (i * 7) % TEAMS);
                let points = (i * 31) % 10;
                // Out of order now and then.
                let ts = 10_000 + 1_000 * i - if i % 5 == 0 { 3_000 } else { 0 };
                (
                    Partitioning::ByKey,
                    Record {
                        key: Some(Bytes::from(player)),
                        value: Some(Bytes::from(format!(
                            r#"{{"TEAM":"{team}","POINTS":{points},"TS":{ts}}}"#
                        ))),
                        // Not the event time: TIMESTAMP='ts' is.
                        timestamp: 42,
                        headers: vec![],
                    },
                )
            })
            .collect();
        backend.produce("events", records).expect("produce");
    }

    /// The last record of each key in `topic`, with its timestamp.
    fn table(backend: &dyn TopicBackend, topic: &str) -> BTreeMap<Vec<u8>, (Option<Bytes>, i64)> {
        let mut consumer = backend.consumer(topic).expect("consumer");
        let mut latest = BTreeMap::new();
        loop {
            let records = consumer.poll(10_000).expect("poll");
            if records.is_empty() {
                break;
            }
            for r in records {
                let key = r.record.key.map(|k| k.to_vec()).unwrap_or_default();
                latest.insert(key, (r.record.value, r.record.timestamp));
            }
        }
        latest
    }

    fn run(queries: &mut [PersistentQuery]) {
        loop {
            let consumed: usize = queries.iter_mut().map(|q| q.poll_once(64)).sum();
            if consumed == 0 {
                break;
            }
        }
        for q in queries.iter() {
            assert_eq!(*q.state(), sluice_engine::query::QueryState::Running);
        }
    }

    /// Runs `select` (`AS SELECT ...`) as a table the usual way, then as the two stages a
    /// cluster runs, with the re-keying stage writing everything twice (a
    /// replay after a failover); both tables must be the same.
    fn same_result_in_two_stages(select: &str) {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let context = KsqlContext::with_backend(backend.clone(), 64);
        context
            .execute(
                "CREATE STREAM events (player STRING KEY, team STRING, points INT, ts BIGINT)
                 WITH (kafka_topic='events', value_format='JSON', partitions=3, timestamp='ts');",
            )
            .expect("stream");
        produce(backend.as_ref(), 200);
        let create = format!("CREATE TABLE totals {select}");
        context.execute(&create).expect("table");
        context.runtime().run_until_idle();

        let parsed = parse_statements(&create).expect("parse");
        let Statement::CreateAsSelect(c) = &parsed[0].statement else {
            panic!("not a CTAS");
        };
        let sink = context.source("TOTALS").expect("sink");
        let planned = {
            let catalog = context.catalog.lock();
            context
                .plan_context(&catalog)
                .plan(&c.query, "TOTALS")
                .expect("plan")
        };
        assert!(PlanContext::can_repartition(&c.query, &planned));
        let source = planned.source.as_ref().clone();
        backend.create_topic("R", 3, 1).expect("repartition topic");
        backend.create_topic("TOTALS2", 3, 1).expect("second sink");
        let sink2 = DataSource {
            topic: "TOTALS2".into(),
            ..sink.as_ref().clone()
        };
        let rekey = context.rekey_factory("Q", &source, "R", &sink2, &c.query);
        let aggregate = context.aggregate_factory("Q", &source, "R", &sink2, &c.query, "TOTALS");
        let log = Arc::new(ProcessingLog::default());
        let start = |f: &PlanFactory, partitions: Option<&[i32]>| {
            PersistentQuery::start_on(f().expect("plan"), backend.clone(), log.clone(), partitions)
                .expect("start")
        };
        // The re-keying stage per source partition, then the aggregate per
        // repartition partition (as a cluster runs them: a replay filter
        // guards one partition), then a replay of everything the re-keying
        // wrote, then the aggregates again.
        let rekeying = |_| {
            (0..3)
                .map(|p| start(&rekey, Some(&[p])))
                .collect::<Vec<_>>()
        };
        run(&mut rekeying(()));
        let mut second: Vec<PersistentQuery> =
            (0..3).map(|p| start(&aggregate, Some(&[p]))).collect();
        run(&mut second);
        run(&mut rekeying(()));
        run(&mut second);
        let repartitioned = backend.describe_topic("R").expect("R");
        assert_eq!(repartitioned.partitions, 3);

        let want = table(backend.as_ref(), "TOTALS");
        let got = table(backend.as_ref(), "TOTALS2");
        assert!(!want.is_empty());
        assert_eq!(got, want, "{select}");
        if sink.window.is_none() {
            // Keyed as the result: each group's records are on the
            // partition its result row is written to.
            let keys: std::collections::BTreeSet<Vec<u8>> =
                table(backend.as_ref(), "R").into_keys().collect();
            assert_eq!(keys, want.keys().cloned().collect());
        }
        assert!(log.entries().is_empty(), "{:?}", log.entries());
    }

    #[test]
    fn a_regrouped_aggregate_in_two_stages_counts_each_record_once() {
        same_result_in_two_stages(
            "AS SELECT team, COUNT(*) AS n, SUM(points) AS total, COUNT(player) AS players
             FROM events WHERE points > 2 GROUP BY team;",
        );
    }

    /// The grace period covers the disorder: which records are late
    /// depends on how partitions interleave, which differs between runs.
    #[test]
    fn windows_and_event_time_survive_the_repartition_topic() {
        same_result_in_two_stages(
            "WITH (key_format='JSON') AS
             SELECT team, points % 2 AS parity, COUNT(*) AS n, MAX(ROWTIME) AS latest, MIN(ts) AS earliest
             FROM events WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 HOUR)
             GROUP BY team, points % 2 EMIT CHANGES;",
        );
    }

    #[test]
    fn only_regrouped_stream_aggregates_are_split() {
        let context = KsqlContext::with_backend(Arc::new(EmbeddedTopics::new()), 64);
        context
            .execute(
                "CREATE STREAM events (player STRING KEY, team STRING, points INT)
                 WITH (kafka_topic='events', value_format='JSON', partitions=3);
                 CREATE TABLE players (player STRING PRIMARY KEY, team STRING)
                 WITH (kafka_topic='players', value_format='JSON', partitions=3);",
            )
            .expect("sources");
        let splits = |sql: &str| {
            let parsed = parse_statements(sql).expect("parse");
            let Statement::CreateAsSelect(c) = &parsed[0].statement else {
                panic!("not a CTAS");
            };
            let catalog = context.catalog.lock();
            let planned = context
                .plan_context(&catalog)
                .plan(&c.query, "X")
                .expect("plan");
            PlanContext::can_repartition(&c.query, &planned)
        };
        assert!(splits(
            "CREATE TABLE x AS SELECT team, COUNT(*) FROM events GROUP BY team;"
        ));
        // Grouped by the key: already one unit per partition.
        assert!(!splits(
            "CREATE TABLE x AS SELECT player, COUNT(*) FROM events GROUP BY player;"
        ));
        // A table's updates retract from groups in other partitions.
        assert!(!splits(
            "CREATE TABLE x AS SELECT team, COUNT(*) FROM players GROUP BY team;"
        ));
        // Not an aggregate.
        assert!(!splits(
            "CREATE STREAM x AS SELECT * FROM events WHERE points > 1;"
        ));
    }
}

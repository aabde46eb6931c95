//! Scale-out of an aggregate grouped by a column that is not its input's
//! key, on a real broker. Events are keyed by player and counted per team,
//! so each team's events are spread over all six input partitions: the
//! query runs in two stages, re-keying through an internal repartition
//! topic, and two `sluice serve` processes share both stages. One is
//! killed with SIGKILL while events keep arriving; the survivor takes over
//! both stages' partitions from their checkpoints. The re-keying stage then
//! writes again what followed its last checkpoint, and the table must still
//! end exactly as this test computes it from the events: nothing lost,
//! nothing counted twice. Terminating the query deletes the internal topic.
//!
//! Two more tests delete topics both members use, through the command
//! topic: `TERMINATE` (the internal topic) and `DROP TABLE ... DELETE
//! TOPIC` (a table both materialize); both members must stay up after.
//!
//! `SLUICE_SCALE_EVENTS` sets another event count (default 200,000).
//!
//! An ignored test measures end-to-end throughput with one and with two
//! servers: `SLUICE_BIN=<release sluice> cargo test --workspace --test
//! scale_out_repartition -- --ignored --nocapture`
//! (`SLUICE_SCALE_BENCH_EVENTS`, default 1,000,000).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{
    self, Throughput, active_partitions, assert_table, difference, live_members, logs,
    produce_range, pull_totals, records_in, scale_events, settle, spawn_producer, start_member,
    start_two, wait_for,
};
use common::{KillOnDrop, free_port, get, healthy, work_dir_with_queries};
use serde_json::Value;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

const PARTITIONS: u32 = 6;
const PLAYERS: u64 = 500;
const TEAMS: u64 = 60;
const QUERY: &str = "CTAS_TEAMS_0";
const STAGE: &str = "CTAS_TEAMS_0-repartition";
const SERVICE: &str = "regroup_";

/// One test at a time: each runs a broker and two servers on a small
/// machine, and the failover test's timing should not suffer from the other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keyed by player, grouped by team.
const QUERIES: &str = "
CREATE STREAM plays (player STRING KEY, team STRING, points INT)
  WITH (kafka_topic='plays', value_format='JSON');
CREATE TABLE teams AS
  SELECT team, COUNT(*) AS games, SUM(points) AS points
  FROM plays WHERE points > 4 GROUP BY team;
";

/// The internal topic between the stages.
fn repartition_topic() -> String {
    format!("_sluice-{SERVICE}query_{QUERY}-Aggregate-GroupBy-repartition")
}

fn event(i: u64) -> (String, String, i64) {
    let player = format!("p{}", i.wrapping_mul(7_919) % PLAYERS);
    // Not a function of the player: every team plays on every partition.
    let team = format!("t{}", (i.wrapping_mul(2_246_822_519) >> 5) % TEAMS);
    let points = ((i.wrapping_mul(2_654_435_761) >> 7) % 100) as i64;
    (player, team, points)
}

fn record(i: u64) -> (Partitioning, Record) {
    let (player, team, points) = event(i);
    (
        Partitioning::ByKey,
        Record {
            key: Some(Bytes::from(player)),
            value: Some(Bytes::from(format!(
                r#"{{"TEAM":"{team}","POINTS":{points}}}"#
            ))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: vec![],
        },
    )
}

/// (games, points) per team after events `0..n`, as the query filters.
fn expected(n: u64) -> BTreeMap<String, (i64, i64)> {
    let mut totals = BTreeMap::new();
    for i in 0..n {
        let (_, team, points) = event(i);
        if points > 4 {
            let t: &mut (i64, i64) = totals.entry(team).or_default();
            t.0 += 1;
            t.1 += points;
        }
    }
    totals
}

fn start(bootstrap: &str, work: &Path, name: &str, port: u16) -> KillOnDrop {
    let extra = [
        // Long enough that b has written after its last checkpoint when it
        // dies, so that a writes some records again.
        "--checkpoint-interval".as_ref(),
        "2000".as_ref(),
    ];
    start_member(bootstrap, work, name, port, SERVICE, &extra)
}

fn work_dir() -> PathBuf {
    work_dir_with_queries("regroup", "plays.sql", QUERIES)
}

/// The whole table through a pull query on `port`, or why not.
fn pull(port: u16) -> Result<BTreeMap<String, (i64, i64)>, String> {
    pull_totals(port, "SELECT TEAM, GAMES, POINTS FROM TEAMS;")
}

/// The partitions of `stage` the member `host` owns, as `port` sees.
fn owned(port: u16, host: &str, stage: &str) -> Vec<i64> {
    live_members(port)
        .get(host)
        .and_then(|member| active_partitions(member).remove(stage))
        .unwrap_or_default()
}

/// How many partitions of `stage` the member `host` owns, as `port` sees.
fn owns(port: u16, host: &str, stage: &str) -> usize {
    owned(port, host, stage).len()
}

/// Waits until a pull on `port` returns `want`; the last table otherwise.
fn settle_on(
    port: u16,
    want: &BTreeMap<String, (i64, i64)>,
    limit: Duration,
) -> BTreeMap<String, (i64, i64)> {
    settle(limit, want, || pull(port)).unwrap_or_else(|e| panic!("pull on {port}: {e}"))
}

/// Records the re-keying stage has read on the server on `port`.
fn stage_records_in(port: u16) -> u64 {
    records_in(&[port], STAGE)
}

/// Records the newest checkpoints of the re-keying stage's `units` cover.
fn checkpointed_records_in(shared: &Path, units: &[i64]) -> u64 {
    units
        .iter()
        .filter_map(|p| {
            let manifest = shared
                .join(STAGE)
                .join(format!("p{p}"))
                .join("manifest.json");
            let manifest: Value = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
            manifest["checkpoints"].as_array()?.last()?["sink"]["records_in"].as_u64()
        })
        .sum()
}

/// The records of `topic`, read until there are at least `expected` and
/// no more arrive.
fn count_records(topics: &KafkaTopics, topic: &str, expected: u64) -> u64 {
    let mut consumer = topics.consumer(topic).expect("consumer");
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let batch = consumer.poll(10_000).expect("poll");
        n += batch.len() as u64;
        if batch.is_empty() && n >= expected && consumer.lag() == 0 {
            break;
        }
    }
    n
}

/// The `ksql` statement's answer on `port`, or why there is none as a
/// string.
fn ksql(port: u16, statement: &str) -> Value {
    cluster::ksql(port, statement).unwrap_or_else(Value::String)
}

#[test]
fn two_servers_share_both_stages_of_a_regrouping_aggregate_and_a_sigkill_loses_and_doubles_nothing()
{
    let _serial = serial();
    let events = scale_events();
    let half = events / 2;
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics =
        Arc::new(KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected"));
    topics.create_topic("plays", PARTITIONS, 1).expect("input");
    let work = work_dir();

    let (a, mut b, port_a, port_b) =
        start_two(&work, |name, port| start(&bootstrap, &work, name, port));

    // The internal topic exists, partitioned as the input.
    let internal = topics
        .describe_topic(&repartition_topic())
        .unwrap_or_else(|| panic!("no repartition topic\n{}", logs(&work)));
    assert_eq!(internal.partitions, PARTITIONS);

    // Both members own half of the partitions of each stage, and both
    // know it.
    let host_a = format!("127.0.0.1:{port_a}");
    let host_b = format!("127.0.0.1:{port_b}");
    wait_for(
        "the partitions of both stages to be split",
        &work,
        Duration::from_secs(60),
        || {
            [port_a, port_b].iter().all(|port| {
                [&host_a, &host_b]
                    .iter()
                    .all(|h| owns(*port, h, QUERY) == 3 && owns(*port, h, STAGE) == 3)
            })
        },
    );

    // EXPLAIN shows both stages and the topic between them.
    let explained = ksql(port_a, &format!("EXPLAIN {QUERY};"));
    let plan = explained[0]["queryDescription"]["executionPlan"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        plan.contains(STAGE) && plan.contains(&repartition_topic()),
        "EXPLAIN: {explained}"
    );

    // Phase 1: both servers count; a pull on either sees the exact table.
    produce_range(&topics, "plays", 0..half, 20_000, Duration::ZERO, record);
    let first = expected(half);
    for port in [port_a, port_b] {
        let table = settle_on(port, &first, Duration::from_secs(90));
        assert_table(&first, &table, &format!("the whole table on {port}"), &work);
    }

    // Phase 2: events keep coming; b dies mid-stream.
    let producer = spawn_producer(
        topics.clone(),
        "plays",
        half..events,
        5_000,
        Duration::from_millis(50),
        record,
    );
    // Killed while its re-keying stage has written records its last
    // checkpoint does not cover, so that a writes them again.
    let b_units: Vec<i64> = owned(port_b, &host_b, STAGE);
    let shared = work.join("shared");
    wait_for(
        "b to re-key past its last checkpoint",
        &work,
        Duration::from_secs(30),
        || stage_records_in(port_b) > checkpointed_records_in(&shared, &b_units) + 1_000,
    );
    assert_eq!(owns(port_b, &host_b, STAGE), 3);
    assert_eq!(owns(port_b, &host_b, QUERY), 3);
    b.0.kill().expect("SIGKILL server b");
    let _ = b.0.wait();
    producer.join().expect("producer");

    // The survivor takes over every partition of both stages and finishes
    // exactly.
    wait_for(
        "a to own every partition of both stages",
        &work,
        Duration::from_secs(60),
        || {
            owns(port_a, &host_a, QUERY) == PARTITIONS as usize
                && owns(port_a, &host_a, STAGE) == PARTITIONS as usize
        },
    );
    let all = expected(events);
    let table = settle_on(port_a, &all, Duration::from_secs(120));
    assert_table(&all, &table, "the survivor's table", &work);
    let a_log = std::fs::read_to_string(work.join("a.log")).unwrap_or_default();
    assert!(
        a_log.contains("unit restored from its checkpoint"),
        "the survivor restored nothing\n{}",
        logs(&work)
    );
    // Every passing event went through the repartition topic, some twice
    // (what b's re-keying wrote after its last checkpoint, written again by
    // a): the exact table shows the replay filter kept those out.
    let passing = (0..events).filter(|i| event(*i).2 > 4).count() as u64;
    let written = count_records(&topics, &repartition_topic(), passing);
    assert!(
        written >= passing,
        "{written} repartition records for {passing} events"
    );
    let dropped = a_log
        .lines()
        .filter(|l| l.contains("replayed records dropped"))
        .count();
    eprintln!(
        "repartition topic: {written} records for {passing} passing events ({} written twice); {dropped} batches with replays dropped on the survivor",
        written - passing
    );

    // Terminating the query deletes the internal topic.
    let terminated = ksql(port_a, &format!("TERMINATE {QUERY};"));
    assert_eq!(
        terminated[0]["commandStatus"]["status"], "SUCCESS",
        "{terminated}"
    );
    wait_for(
        "the repartition topic to be deleted",
        &work,
        Duration::from_secs(30),
        || topics.describe_topic(&repartition_topic()).is_none(),
    );
    drop(a);
    let _ = std::fs::remove_dir_all(&work);
}

/// How long members must stay up after a topic they used is deleted:
/// long enough for their Kafka clients to ask the broker about it again.
const SURVIVE: Duration = Duration::from_secs(25);

/// Two members running both stages of the query over 20,000 events.
struct Pair {
    _broker: TansuBroker,
    topics: KafkaTopics,
    work: PathBuf,
    a: KillOnDrop,
    b: KillOnDrop,
    port_a: u16,
    port_b: u16,
}

impl Pair {
    fn start(name: &str) -> Pair {
        let broker = TansuBroker::start().expect("a Tansu broker");
        let bootstrap = broker.bootstrap_servers();
        let topics = KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected");
        topics.create_topic("plays", PARTITIONS, 1).expect("input");
        let work = work_dir_with_queries(name, "plays.sql", QUERIES);
        let (port_a, port_b) = (free_port(), free_port());
        let a = start(&bootstrap, &work, "a", port_a);
        let b = start(&bootstrap, &work, "b", port_b);
        for port in [port_a, port_b] {
            wait_for("a server", &work, Duration::from_secs(60), || healthy(port));
        }
        let host_b = format!("127.0.0.1:{port_b}");
        wait_for(
            "b to run both stages",
            &work,
            Duration::from_secs(60),
            || owns(port_a, &host_b, QUERY) == 3 && owns(port_a, &host_b, STAGE) == 3,
        );
        topics
            .produce("plays", (0..20_000).map(record).collect())
            .expect("produce");
        let want = expected(20_000);
        for port in [port_a, port_b] {
            let table = settle_on(port, &want, Duration::from_secs(60));
            assert_eq!(
                difference(&want, &table),
                Vec::<String>::new(),
                "{}",
                logs(&work)
            );
        }
        Pair {
            _broker: broker,
            topics,
            work,
            a,
            b,
            port_a,
            port_b,
        }
    }

    /// Fails unless both servers are running.
    fn both_up(&mut self, when: &str) {
        for (name, server) in [("a", &mut self.a), ("b", &mut self.b)] {
            assert!(
                matches!(server.0.try_wait(), Ok(None)),
                "server {name} died {when}: {:?}\n{}",
                server.0.try_wait(),
                logs(&self.work)
            );
        }
    }

    /// Checks both servers stay up for [`SURVIVE`].
    fn both_stay_up(&mut self, after: &str) {
        let until = Instant::now() + SURVIVE;
        while Instant::now() < until {
            self.both_up(after);
            std::thread::sleep(Duration::from_millis(500));
        }
        self.both_up(after);
        for port in [self.port_a, self.port_b] {
            assert!(
                healthy(port),
                "{port} unhealthy {after}\n{}",
                logs(&self.work)
            );
        }
    }

    /// TERMINATE sent to a: applied by both; a deletes the internal topic.
    fn terminate(&mut self) {
        let terminated = ksql(self.port_a, &format!("TERMINATE {QUERY};"));
        assert_eq!(
            terminated[0]["commandStatus"]["status"],
            "SUCCESS",
            "TERMINATE: {terminated}\n{}",
            logs(&self.work)
        );
        let port_b = self.port_b;
        wait_for(
            "b to terminate the query too",
            &self.work,
            Duration::from_secs(30),
            || get(port_b, "/clusterStatus").is_some_and(|s| !s.contains(&format!("\"{QUERY}\""))),
        );
        let topics = &self.topics;
        wait_for(
            "the repartition topic to be deleted",
            &self.work,
            Duration::from_secs(30),
            || topics.describe_topic(&repartition_topic()).is_none(),
        );
        self.both_up("after the repartition topic was deleted");
        assert!(
            std::fs::read_to_string(self.work.join("a.log"))
                .unwrap_or_default()
                .contains("every member having let go of it"),
            "a did not delete the topic itself\n{}",
            logs(&self.work)
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// The partitions of `source` each live member materializes, by host.
fn materialized(port: u16, source: &str) -> BTreeMap<String, Vec<i64>> {
    cluster::materialized(port, source)
        .into_iter()
        .map(|(host, (partitions, _))| (host, partitions))
        .collect()
}

/// TERMINATE reaches every member through the command topic. Only the
/// member it was sent to deletes the internal topic, and only once the
/// other has stopped its stages: a Kafka client reading a topic deleted
/// under it crashes (librdkafka 2.12.1, on Tansu's metadata for a deleted
/// topic), which is how this test failed before.
#[test]
fn terminating_on_one_member_deletes_the_repartition_topic_once_both_let_go_and_both_stay_up() {
    let _serial = serial();
    let mut pair = Pair::start("regroup-terminate");
    pair.terminate();
    pair.both_stay_up("after the repartition topic was deleted");
    for port in [pair.port_a, pair.port_b] {
        let status = get(port, "/clusterStatus").unwrap_or_default();
        assert!(
            !status.contains(STAGE) && !status.contains(&format!("\"{QUERY}\"")),
            "{port} still runs the query: {status}"
        );
    }
    assert!(pair.topics.describe_topic(&repartition_topic()).is_none());
}

/// `DROP TABLE ... DELETE TOPIC` of a table both members materialize for
/// pull queries, sent to the member that does not hold its partition 0:
/// the table goes on both, the topic once neither reads it, and both stay
/// up.
#[test]
fn dropping_a_table_both_members_materialize_deletes_its_topic_once_both_let_go() {
    let _serial = serial();
    let mut pair = Pair::start("regroup-drop");
    let (port_a, port_b) = (pair.port_a, pair.port_b);
    let (host_a, host_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    wait_for(
        "both members to materialize a share of TEAMS",
        &pair.work,
        Duration::from_secs(60),
        || {
            let held = materialized(port_a, "TEAMS");
            [&host_a, &host_b]
                .iter()
                .all(|h| held.get(*h).is_some_and(|p| !p.is_empty()))
        },
    );
    let held = materialized(port_a, "TEAMS");
    let sender = if held.get(&host_a).is_some_and(|p| p.contains(&0)) {
        port_b
    } else {
        port_a
    };
    pair.terminate();
    assert!(pair.topics.describe_topic("TEAMS").is_some());
    let dropped = ksql(sender, "DROP TABLE TEAMS DELETE TOPIC;");
    assert_eq!(
        dropped[0]["commandStatus"]["status"],
        "SUCCESS",
        "DROP: {dropped}\n{}",
        logs(&pair.work)
    );
    let topics = &pair.topics;
    wait_for(
        "the table's topic to be deleted",
        &pair.work,
        Duration::from_secs(30),
        || topics.describe_topic("TEAMS").is_none(),
    );
    pair.both_stay_up("after the table's topic was deleted");
    for port in [port_a, port_b] {
        assert_eq!(materialized(port, "TEAMS"), BTreeMap::new());
        let tables = ksql(port, "SHOW TABLES;");
        assert!(
            !tables.to_string().contains("\"TEAMS\""),
            "{port} still has TEAMS: {tables}"
        );
    }
}

#[test]
#[ignore = "a measurement, not a check: see the module documentation"]
fn throughput_of_one_and_of_two_servers() {
    let _serial = serial();
    let events: u64 = std::env::var("SLUICE_SCALE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Records reach the aggregate only if they pass its WHERE.
    let passing = (0..events).filter(|i| event(*i).2 > 4).count() as u64;
    Throughput {
        partitions: PARTITIONS,
        events,
        record,
        work_dir: &work_dir,
        start: &start,
        owns_share: &|port, host, share| {
            owns(port, host, QUERY) == share && owns(port, host, STAGE) == share
        },
        query_prefix: QUERY,
        done_at: passing,
        limit: Duration::from_secs(900),
        through: " through both stages",
    }
    .run();
}

//! Scale-out on a real broker: two `sluice serve` processes with the same
//! service id and a shared state directory split a `GROUP BY` query's six
//! input partitions between them. While both run, a pull query on either
//! sees the whole table. Then one is killed with SIGKILL while events keep
//! arriving; the survivor takes over its partitions from their last
//! checkpoints, and the table must end exactly as this test computes it
//! from the events: nothing lost, nothing counted twice.
//!
//! `SLUICE_SCALE_EVENTS` sets another event count (default 200,000).
//!
//! An ignored test measures end-to-end throughput with one and with two
//! servers: `SLUICE_BIN=<release sluice> cargo test --workspace --test
//! scale_out -- --ignored --nocapture` (`SLUICE_SCALE_BENCH_EVENTS`, default
//! 1,000,000).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{
    Throughput, active_partitions, assert_table, difference, live_members, logs, produce_range,
    pull_totals, scale_events, settle, spawn_producer, start_member, start_two, wait_for,
};
use common::{KillOnDrop, get, plays, work_dir_with_queries};
use serde_json::Value;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

const PARTITIONS: u32 = 6;
const PLAYERS: u64 = 500;

/// Keyed by the grouping column, so the aggregate runs per partition.
const QUERIES: &str = "
CREATE STREAM plays (player STRING KEY, points INT)
  WITH (kafka_topic='plays', value_format='JSON');
CREATE TABLE totals AS
  SELECT player, COUNT(*) AS games, SUM(points) AS points
  FROM plays GROUP BY player;
";

fn record(i: u64) -> (Partitioning, Record) {
    plays::record(i, PLAYERS)
}

fn expected(n: u64) -> BTreeMap<String, (i64, i64)> {
    plays::expected(n, PLAYERS)
}

fn start(bootstrap: &str, work: &Path, name: &str, port: u16) -> KillOnDrop {
    let extra = ["--checkpoint-interval".as_ref(), "500".as_ref()];
    start_member(bootstrap, work, name, port, "scale_", &extra)
}

fn work_dir() -> PathBuf {
    work_dir_with_queries("scale", "plays.sql", QUERIES)
}

/// The whole table through a pull query on `port`, or why not.
fn pull(port: u16) -> Result<BTreeMap<String, (i64, i64)>, String> {
    pull_totals(port, "SELECT PLAYER, GAMES, POINTS FROM TOTALS;")
}

/// Partitions of the query each live member owns, by `host:port`.
fn ownership(port: u16) -> BTreeMap<String, Vec<i64>> {
    live_members(port)
        .into_iter()
        .map(|(host, member)| {
            let mut partitions: Vec<i64> =
                active_partitions(&member).into_values().flatten().collect();
            partitions.sort_unstable();
            (host, partitions)
        })
        .collect()
}

#[test]
fn two_servers_share_a_query_and_the_survivor_of_a_sigkill_finishes_it_exactly() {
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

    // Both members own half of the partitions, and both know it.
    let host_a = format!("127.0.0.1:{port_a}");
    let host_b = format!("127.0.0.1:{port_b}");
    wait_for(
        "the partitions to be split",
        &work,
        Duration::from_secs(60),
        || {
            [port_a, port_b].iter().all(|port| {
                let owned = ownership(*port);
                owned.get(&host_a).is_some_and(|p| p.len() == 3)
                    && owned.get(&host_b).is_some_and(|p| p.len() == 3)
            })
        },
    );

    // Phase 1: both servers count; a pull query on either sees every
    // player, with the exact totals.
    produce_range(&topics, "plays", 0..half, 20_000, Duration::ZERO, record);
    let first = expected(half);
    for port in [port_a, port_b] {
        let last = settle(Duration::from_secs(90), &first, || pull(port));
        let table = last.unwrap_or_else(|e| panic!("pull on {port}: {e}\n{}", logs(&work)));
        if table != first {
            for p in [port_a, port_b] {
                let metrics = get(p, "/metrics").unwrap_or_default();
                let lines: Vec<&str> = metrics
                    .lines()
                    .filter(|l| l.starts_with("sluice_query"))
                    .collect();
                eprintln!("metrics of {p}:\n{}", lines.join("\n"));
            }
            let mut consumer = topics.consumer("TOTALS").expect("sink consumer");
            let mut latest: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            let mut n = 0;
            let mut per_partition = BTreeMap::new();
            loop {
                let batch = consumer.poll(10_000).expect("poll");
                if batch.is_empty() && n > 0 && consumer.lag() == 0 {
                    break;
                }
                for r in batch {
                    n += 1;
                    *per_partition.entry(r.partition).or_insert(0) += 1;
                    let key =
                        String::from_utf8_lossy(&r.record.key.unwrap_or_default()).to_string();
                    let v: Value = serde_json::from_slice(&r.record.value.unwrap_or_default())
                        .unwrap_or_default();
                    latest.insert(
                        key,
                        (
                            v["GAMES"].as_i64().unwrap_or(-1),
                            v["POINTS"].as_i64().unwrap_or(-1),
                        ),
                    );
                }
            }
            eprintln!(
                "sink records {n} {per_partition:?} positions {:?}; diff {:?}",
                consumer.positions(),
                difference(&first, &latest)
            );
        }
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
    // Killed while it owns partitions and has work left.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(ownership(port_b).get(&host_b).map(Vec::len), Some(3));
    b.0.kill().expect("SIGKILL server b");
    let _ = b.0.wait();
    producer.join().expect("producer");

    // The survivor takes over all partitions and finishes exactly.
    wait_for(
        "a to own every partition",
        &work,
        Duration::from_secs(60),
        || ownership(port_a).get(&host_a).map(Vec::len) == Some(PARTITIONS as usize),
    );
    let all = expected(events);
    let last = settle(Duration::from_secs(120), &all, || pull(port_a));
    let table = last.unwrap_or_else(|e| panic!("pull on the survivor: {e}\n{}", logs(&work)));
    assert_table(&all, &table, "the survivor's table", &work);
    // b's partitions came from b's checkpoints, not from a recount.
    let a_log = std::fs::read_to_string(work.join("a.log")).unwrap_or_default();
    assert!(
        a_log.contains("unit restored from its checkpoint"),
        "the survivor restored nothing\n{}",
        logs(&work)
    );
    drop(a);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
#[ignore = "a measurement, not a check: see the module documentation"]
fn throughput_of_one_and_of_two_servers() {
    let events: u64 = std::env::var("SLUICE_SCALE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    Throughput {
        partitions: PARTITIONS,
        events,
        record,
        work_dir: &work_dir,
        start: &start,
        owns_share: &|port, host, share| {
            ownership(port).get(host).is_some_and(|p| p.len() == share)
        },
        query_prefix: "CTAS_TOTALS",
        done_at: events,
        limit: Duration::from_secs(600),
        through: "",
    }
    .run();
}

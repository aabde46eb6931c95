//! Scale-out of a stream-table join on a real broker: events keyed by
//! player joined with a table of players keyed alike, over six
//! co-partitioned partitions. Each partition joins on its own, so two
//! `sluice serve` processes split the query's partitions, and the joined
//! stream must hold every event once with its player's country.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{active_partitions, live_members, records_in, start_member, wait_for};
use common::{KillOnDrop, free_port, healthy, work_dir_with_queries};
use serde_json::Value;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

const PARTITIONS: u32 = 6;
const PLAYERS: u64 = 300;
const EVENTS: u64 = 30_000;
const QUERY: &str = "CSAS_ENRICHED_0";

const QUERIES: &str = "
CREATE STREAM plays (player STRING KEY, points INT)
  WITH (kafka_topic='plays', value_format='JSON');
CREATE TABLE players (player STRING PRIMARY KEY, country STRING)
  WITH (kafka_topic='players', value_format='JSON');
CREATE STREAM enriched AS
  SELECT p.player, p.points, c.country
  FROM plays p JOIN players c ON p.player = c.player;
";

fn country(player: u64) -> String {
    format!("c{}", player % 17)
}

fn start(bootstrap: &str, work: &Path, name: &str, port: u16) -> KillOnDrop {
    start_member(bootstrap, work, name, port, "join_", &[])
}

/// Partitions of the join the live member `host` owns, as `port` sees it.
fn owned(port: u16, host: &str) -> usize {
    live_members(port)
        .get(host)
        .and_then(|member| active_partitions(member).remove(QUERY))
        .map_or(0, |p| p.len())
}

#[test]
fn two_servers_join_their_own_partitions_of_a_co_partitioned_stream_and_table() {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics = KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected");
    topics.create_topic("plays", PARTITIONS, 1).expect("stream");
    topics
        .create_topic("players", PARTITIONS, 1)
        .expect("table");
    let work = work_dir_with_queries("join", "join.sql", QUERIES);
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start(&bootstrap, &work, "a", port_a);
    let _b = start(&bootstrap, &work, "b", port_b);
    for port in [port_a, port_b] {
        wait_for("a server", &work, Duration::from_secs(60), || healthy(port));
    }
    let hosts = [format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}")];
    wait_for(
        "the partitions to be split",
        &work,
        Duration::from_secs(60),
        || hosts.iter().all(|h| owned(port_a, h) == 3),
    );

    // The table first, read by the join before any event arrives (the
    // join reads its stream side before its table side).
    let players = (0..PLAYERS)
        .map(|p| {
            (
                Partitioning::ByKey,
                Record {
                    key: Some(Bytes::from(format!("p{p}"))),
                    value: Some(Bytes::from(format!(r#"{{"COUNTRY":"{}"}}"#, country(p)))),
                    timestamp: 1_700_000_000_000,
                    headers: vec![],
                },
            )
        })
        .collect();
    topics.produce("players", players).expect("players");
    wait_for(
        "the table to be read",
        &work,
        Duration::from_secs(60),
        || records_in(&[port_a, port_b], QUERY) >= PLAYERS,
    );
    let events = (0..EVENTS)
        .map(|i| {
            (
                Partitioning::ByKey,
                Record {
                    key: Some(Bytes::from(format!("p{}", i % PLAYERS))),
                    value: Some(Bytes::from(format!(r#"{{"POINTS":{i}}}"#))),
                    timestamp: 1_700_000_000_001 + i as i64,
                    headers: vec![],
                },
            )
        })
        .collect();
    topics.produce("plays", events).expect("events");

    // Every event once, with its player's country.
    let mut consumer = topics.consumer("ENRICHED").expect("sink");
    let mut seen: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut rows = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (seen.len() as u64) < EVENTS && Instant::now() < deadline {
        for r in consumer.poll(10_000).expect("poll") {
            rows += 1;
            let player = String::from_utf8_lossy(&r.record.key.unwrap_or_default()).to_string();
            let v: Value =
                serde_json::from_slice(&r.record.value.unwrap_or_default()).unwrap_or_default();
            let points = v["POINTS"].as_i64().unwrap_or(-1);
            let country = v["COUNTRY"].as_str().unwrap_or_default().to_string();
            seen.insert(points, (player, country));
        }
    }
    assert_eq!(seen.len() as u64, EVENTS, "joined events");
    assert_eq!(rows, EVENTS, "every event joined once");
    for (points, (player, got)) in &seen {
        let p = *points as u64 % PLAYERS;
        assert_eq!(player, &format!("p{p}"));
        assert_eq!(got, &country(p), "event {points}");
    }
    // Both members joined some of it.
    for port in [port_a, port_b] {
        assert!(
            records_in(&[port], QUERY) > 0,
            "server on {port} joined nothing"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

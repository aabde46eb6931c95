//! A broker outage stalls queries without failing them or losing records:
//! Tansu is paused (SIGSTOP, so its in-memory data survives) while a query
//! runs and input is being produced, long enough for librdkafka's request
//! and delivery timeouts to fire; once it resumes (SIGCONT) the query
//! catches up and its projection counts every record of its input once.
//!
//! Records whose delivery timed out are sent again, so the input may hold
//! some twice (the broker had them after all): that is the at-least-once
//! of producing without transactions, and the query counts what the topic
//! holds.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::query::QueryState;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn votes(from: u64, to: u64) -> Vec<(Partitioning, Record)> {
    (from..to)
        .map(|i| {
            (
                Partitioning::ByKey,
                Record {
                    key: Some(Bytes::from(format!("m{}", i % 17))),
                    value: Some(Bytes::from(format!(r#"{{"GUESS":"robot","N":{i}}}"#))),
                    timestamp: 1_000 + i as i64,
                    headers: vec![],
                },
            )
        })
        .collect()
}

#[test]
fn a_paused_broker_delays_but_loses_nothing() {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let mut config = KafkaConfig::new(broker.bootstrap_servers());
    // Short timeouts, so the outage makes requests and deliveries fail
    // and the retries (not librdkafka's own patience) carry the query.
    config.properties = vec![
        ("message.timeout.ms".into(), "1500".into()),
        ("socket.timeout.ms".into(), "1000".into()),
    ];
    let topics = Arc::new(KafkaTopics::connect(config).expect("connected"));
    let ctx = KsqlContext::with_backend(topics.clone(), 64);
    ctx.execute(
        "CREATE STREAM votes (match_id STRING KEY, guess STRING) WITH (kafka_topic='votes', value_format='JSON', partitions=3);
         CREATE TABLE tally AS SELECT match_id, COUNT(*) AS votes FROM votes GROUP BY match_id;",
    )
    .expect("statements");
    topics.produce("votes", votes(0, 2_000)).expect("produce");
    let driver = ctx.runtime().spawn().expect("driver");
    std::thread::sleep(Duration::from_millis(500));

    signal(broker.pid(), "STOP");
    let producer = {
        let topics = topics.clone();
        std::thread::spawn(move || topics.produce("votes", votes(2_000, 4_000)))
    };
    std::thread::sleep(Duration::from_secs(5));
    signal(broker.pid(), "CONT");
    producer
        .join()
        .expect("producer thread")
        .expect("records produced across the outage");

    let reader = KafkaTopics::connect(KafkaConfig::new(broker.bootstrap_servers()))
        .expect("reader connected");
    // What the input holds: every vote, some perhaps twice.
    let mut input = reader.consumer("votes").expect("consumer");
    let mut seen = HashSet::new();
    let mut held = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 4_000 && Instant::now() < deadline {
        for r in input.poll(1_000).expect("poll") {
            let row: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().expect("value")).expect("json");
            seen.insert(row["N"].as_i64().expect("N"));
            held += 1;
        }
    }
    while let Ok(more) = input.poll(1_000) {
        if more.is_empty() {
            break;
        }
        held += more.len() as i64;
    }
    assert_eq!(seen.len(), 4_000, "every vote reached the input topic");

    let mut consumer = reader.consumer("TALLY").expect("consumer");
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latest.values().sum::<i64>() != held && Instant::now() < deadline {
        for r in consumer.poll(1_000).expect("poll") {
            let row: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().expect("value")).expect("json");
            latest.insert(
                r.record.key.map(|k| k.to_vec()).unwrap_or_default(),
                row["VOTES"].as_i64().expect("VOTES"),
            );
        }
    }
    ctx.runtime().stop();
    driver.join().expect("driver");
    eprintln!("{held} input records for 4000 votes");
    assert_eq!(
        latest.values().sum::<i64>(),
        held,
        "every record of the input counted once"
    );
    assert!(
        ctx.runtime()
            .states()
            .iter()
            .all(|(_, s)| *s == QueryState::Running),
        "{:?}",
        ctx.runtime().states()
    );
}

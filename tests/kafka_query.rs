//! Persistent queries through a real Kafka broker (Tansu) write the same
//! bytes to the same partitions as on embedded topics: a stateless query,
//! an aggregate and a join, with the same inputs on both backends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{EmbeddedTopics, KafkaConfig, KafkaTopics};
use sluice_engine::topic::{ConsumedRecord, Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

const STATEMENTS: &str = "
CREATE STREAM moves (player STRING KEY, match_id STRING, x INT) WITH (kafka_topic='moves', value_format='JSON', partitions=3);
CREATE TABLE players (id STRING PRIMARY KEY, team STRING) WITH (kafka_topic='players', value_format='JSON', partitions=3);
CREATE STREAM far AS SELECT player, match_id, x * 2 AS double_x FROM moves WHERE x > 1;
CREATE TABLE per_match AS SELECT match_id, COUNT(*) AS moves, SUM(x) AS total FROM moves GROUP BY match_id;
CREATE STREAM with_team AS SELECT m.player, x, team FROM moves m LEFT JOIN players p ON m.player = p.id;
";

fn inputs() -> Vec<(&'static str, Record)> {
    let record = |key: &str, value: &str, timestamp: i64| Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        timestamp,
        headers: vec![],
    };
    let mut out = vec![
        ("players", record("ana", r#"{"team": "red"}"#, 1)),
        ("players", record("bo", r#"{"team": "blue"}"#, 2)),
    ];
    for i in 0..30 {
        let player = ["ana", "bo", "cy"][i % 3];
        out.push((
            "moves",
            record(
                player,
                &format!(r#"{{"match_id": "m{}", "x": {}}}"#, i % 4, i % 5),
                10 + i as i64,
            ),
        ));
    }
    out
}

/// Output records per topic as (partition, key, value, timestamp), in
/// partition then offset order.
type Outputs = BTreeMap<String, Vec<(i32, Option<Bytes>, Option<Bytes>, i64)>>;

fn collect(records: Vec<ConsumedRecord>) -> Vec<(i32, Option<Bytes>, Option<Bytes>, i64)> {
    let mut records = records;
    records.sort_by_key(|r| (r.partition, r.offset));
    records
        .into_iter()
        .map(|r| {
            (
                r.partition,
                r.record.key,
                r.record.value,
                r.record.timestamp,
            )
        })
        .collect()
}

fn run(
    topics: Arc<dyn TopicBackend>,
    read: impl Fn(&str, usize) -> Vec<ConsumedRecord>,
) -> Outputs {
    let ctx = KsqlContext::with_backend(topics.clone(), 1);
    ctx.execute(STATEMENTS).expect("statements");
    // One record at a time, as ksqlDB's tests feed them, so both backends
    // see the same order across topics.
    for (topic, record) in inputs() {
        topics
            .produce(topic, vec![(Partitioning::ByKey, record)])
            .expect("produce");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ctx.runtime().step() == 0 && Instant::now() < deadline {}
        ctx.runtime().run_until_idle();
    }
    let expected = [("FAR", 18), ("PER_MATCH", 30), ("WITH_TEAM", 30)];
    expected
        .iter()
        .map(|(topic, count)| (topic.to_string(), collect(read(topic, *count))))
        .collect()
}

#[test]
fn queries_on_kafka_write_what_they_write_on_embedded_topics() {
    let embedded = Arc::new(EmbeddedTopics::new());
    let reader = embedded.clone();
    let on_embedded = run(embedded, |topic, _| reader.records(topic).expect("records"));

    let broker = TansuBroker::start().expect("a Tansu broker");
    let kafka = Arc::new(
        KafkaTopics::connect(KafkaConfig::new(broker.bootstrap_servers())).expect("connected"),
    );
    let reader = kafka.clone();
    let on_kafka = run(kafka, |topic, count| {
        let mut consumer = reader.consumer(topic).expect("consumer");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.len() < count && Instant::now() < deadline {
            out.extend(consumer.poll(100).expect("poll"));
        }
        out
    });

    for (topic, records) in &on_embedded {
        assert!(!records.is_empty(), "{topic} has output");
        assert_eq!(
            on_kafka.get(topic),
            Some(records),
            "{topic}: same partitions, keys, values and timestamps on Kafka"
        );
    }
}

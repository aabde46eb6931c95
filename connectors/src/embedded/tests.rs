use bytes::Bytes;
use sluice_engine::topic::{Partitioning, Record, TopicBackend, partition_for_key};

use super::EmbeddedTopics;

fn record(key: &str, value: &str) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        timestamp: 7,
        headers: vec![],
    }
}

#[test]
fn keyed_records_land_on_kafkas_partition_and_are_read_once() {
    let topics = EmbeddedTopics::new();
    topics.create_topic("t", 4, 1).unwrap();
    let positions = topics
        .produce(
            "t",
            vec![
                (Partitioning::ByKey, record("k1", "a")),
                (Partitioning::ByKey, record("k1", "b")),
            ],
        )
        .unwrap();
    let expected = partition_for_key(b"k1", 4);
    assert_eq!(positions, vec![(expected, 0), (expected, 1)]);

    let mut consumer = topics.consumer("t").unwrap();
    assert_eq!(consumer.lag(), 2);
    let got = consumer.poll(10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].record.value.as_deref(), Some(&b"b"[..]));
    assert!(consumer.poll(10).unwrap().is_empty());
    assert_eq!(consumer.lag(), 0);
    consumer.seek(expected, 1).unwrap();
    assert_eq!(consumer.poll(10).unwrap().len(), 1);
}

#[test]
fn errors_name_the_missing_topic_or_partition() {
    let topics = EmbeddedTopics::new();
    assert!(topics.consumer("nope").is_err());
    topics.create_topic("t", 1, 1).unwrap();
    assert!(topics.create_topic("t", 1, 1).is_err());
    let err = topics
        .produce("t", vec![(Partitioning::Explicit(3), record("k", "v"))])
        .unwrap_err();
    assert!(err.to_string().contains("partition 3"));
    topics.delete_topic("t").unwrap();
    assert!(topics.describe_topic("t").is_none());
}

#[test]
fn consumers_read_the_oldest_record_across_partitions_first() {
    let topics = EmbeddedTopics::new();
    topics.create_topic("t", 2, 1).unwrap();
    let at = |partition: i32, ts: i64| {
        (
            Partitioning::Explicit(partition),
            Record {
                timestamp: ts,
                ..record("k", "v")
            },
        )
    };
    topics
        .produce("t", vec![at(0, 10), at(0, 40), at(1, 20), at(1, 30)])
        .unwrap();
    let mut consumer = topics.consumer("t").unwrap();
    let times: Vec<i64> = consumer
        .poll(10)
        .unwrap()
        .iter()
        .map(|r| r.record.timestamp)
        .collect();
    assert_eq!(times, vec![10, 20, 30, 40]);
}

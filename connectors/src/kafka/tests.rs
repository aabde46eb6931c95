//! The Kafka backend against a real broker (Tansu).

use bytes::Bytes;
use sluice_engine::topic::{Partitioning, Record, TopicBackend, partition_for_key};

use super::tansu::TansuBroker;
use super::{KafkaConfig, KafkaTopics};

fn connect() -> (TansuBroker, KafkaTopics) {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let topics =
        KafkaTopics::connect(KafkaConfig::new(broker.bootstrap_servers())).expect("connected");
    (broker, topics)
}

fn record(key: &str, value: Option<&str>, timestamp: i64) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        timestamp,
        headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
    }
}

#[test]
fn topics_are_created_described_and_deleted() {
    let (_broker, topics) = connect();
    topics.create_topic("moves", 3, 1).expect("created");
    let described = topics.describe_topic("moves").expect("described");
    assert_eq!(described.partitions, 3);
    assert!(topics.list_topics().iter().any(|t| t.name == "moves"));
    assert!(matches!(
        topics.create_topic("moves", 3, 1),
        Err(sluice_engine::EngineError::TopicExists(_))
    ));
    topics.delete_topic("moves").expect("deleted");
    assert!(topics.describe_topic("missing-topic").is_none());
}

#[test]
fn records_round_trip_with_kafka_partitioning() {
    let (_broker, topics) = connect();
    topics.create_topic("events", 4, 1).expect("created");
    let records: Vec<(Partitioning, Record)> = (0..20)
        .map(|i| {
            let value = format!("{{\"N\":{i}}}");
            let value = if i == 7 { None } else { Some(value.as_str()) };
            (
                Partitioning::ByKey,
                record(&format!("player-{i}"), value, 1_000 + i),
            )
        })
        .collect();
    let positions = topics.produce("events", records).expect("produced");
    for (i, (partition, _)) in positions.iter().enumerate() {
        // The partition Kafka's Java client would choose for the key.
        assert_eq!(
            *partition,
            partition_for_key(format!("player-{i}").as_bytes(), 4)
        );
    }
    let mut consumer = topics.consumer("events").expect("consumer");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < 20 && std::time::Instant::now() < deadline {
        seen.extend(consumer.poll(100).expect("polled"));
    }
    assert_eq!(seen.len(), 20, "every record comes back");
    let tombstone = seen
        .iter()
        .find(|r| r.record.key.as_deref() == Some(b"player-7".as_slice()))
        .expect("player-7");
    assert_eq!(tombstone.record.value, None);
    assert_eq!(tombstone.record.timestamp, 1_007);
    assert_eq!(
        tombstone.record.headers,
        vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
    );
    assert_eq!(consumer.lag(), 0);
    // From the watermarks the fetches brought, without asking the broker.
    assert_eq!(consumer.recent_lag(), 0);
    // Nothing fetched yet: the broker's answer.
    let fresh = topics.consumer("events").expect("consumer");
    assert!(fresh.lag() > 0);
    assert_eq!(fresh.recent_lag(), fresh.lag());

    // Seeking re-reads a partition from an offset.
    let (partition, _) = positions[0];
    consumer.seek(partition, 0).expect("seek");
    let mut again = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while again.is_empty() && std::time::Instant::now() < deadline {
        again.extend(consumer.poll(100).expect("polled"));
    }
    assert!(again.iter().all(|r| r.partition == partition));
    assert_eq!(again.first().map(|r| r.offset), Some(0));
}

#[test]
fn a_consumer_sought_into_a_batch_reads_from_that_record_on() {
    let (_broker, topics) = connect();
    topics.create_topic("batched", 1, 1).expect("created");
    // One produce call: the records travel in few, large batches.
    let records: Vec<(Partitioning, Record)> = (0..1_000)
        .map(|i| {
            (
                Partitioning::Explicit(0),
                record("k", Some(&format!("{i}")), 1_000 + i),
            )
        })
        .collect();
    topics.produce("batched", records).expect("produced");
    for start in [0, 1, 37, 500, 999] {
        let mut consumer = topics.consumer("batched").expect("consumer");
        consumer.seek(0, start).expect("seek");
        let mut offsets = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while offsets.len() < (1_000 - start) as usize && std::time::Instant::now() < deadline {
            offsets.extend(consumer.poll(1_000).expect("poll").iter().map(|r| r.offset));
        }
        assert_eq!(
            offsets,
            (start..1_000).collect::<Vec<_>>(),
            "reading from offset {start}"
        );
        assert_eq!(consumer.positions(), vec![(0, 1_000)]);
    }
}

#[test]
fn tansu_lacks_end_txn_so_output_is_at_least_once() {
    // Tansu 0.6 serves InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn
    // and TxnOffsetCommit, but routes no EndTxn: a transaction can never
    // commit there. When this fails, Tansu gained it.
    let (_broker, topics) = connect();
    assert_eq!(
        topics.transaction_support(),
        sluice_engine::topic::TransactionSupport::Unsupported(
            "the broker does not advertise EndTxn (API key 26)".into()
        )
    );
}

#[test]
fn a_writer_delivers_every_record_in_order_by_its_flush() {
    let (_broker, topics) = connect();
    topics.create_topic("written", 2, 1).expect("created");
    let mut writer = topics
        .writer("written")
        .expect("writer")
        .expect("Kafka pipelines its writes");
    // Several writes in flight at once, keyed over both partitions.
    for batch in 0..5 {
        let records = (0..2_000)
            .map(|i| {
                let n = batch * 2_000 + i;
                (
                    Partitioning::ByKey,
                    record(&format!("k{}", n % 7), Some(&n.to_string()), n),
                )
            })
            .collect();
        writer.write(records).expect("written");
    }
    writer.flush().expect("flushed");
    let mut consumer = topics.consumer("written").expect("consumer");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < 10_000 && std::time::Instant::now() < deadline {
        seen.extend(consumer.poll(10_000).expect("polled"));
    }
    assert_eq!(seen.len(), 10_000, "every record is in the topic");
    // Per key, the values come back in the order they were written.
    let mut last: std::collections::HashMap<Vec<u8>, i64> = Default::default();
    for r in &seen {
        let key = r.record.key.as_deref().expect("keyed").to_vec();
        assert_eq!(
            r.partition,
            partition_for_key(&key, 2),
            "keyed records go where Kafka's partitioner puts them"
        );
        let value: i64 = std::str::from_utf8(r.record.value.as_deref().expect("value"))
            .expect("text")
            .parse()
            .expect("a number");
        if let Some(before) = last.insert(key, value) {
            assert!(before < value, "{before} came before {value}");
        }
    }
}

#[test]
fn a_record_the_broker_cannot_take_fails_the_writer() {
    let (_broker, topics) = connect();
    topics.create_topic("small", 1, 1).expect("created");
    let mut writer = topics
        .writer("small")
        .expect("writer")
        .expect("Kafka pipelines its writes");
    // Larger than message.max.bytes (1 MB): no retry can deliver it.
    let huge = "x".repeat(2 << 20);
    let result = writer
        .write(vec![(Partitioning::ByKey, record("k", Some(&huge), 1))])
        .and_then(|()| writer.flush());
    let error = result.expect_err("the failure surfaces").to_string();
    assert!(error.contains("Kafka"), "{error}");
}

/// Polls `members` until `done` holds of what each owns, confirming every
/// change; returns the changes each saw.
fn settle(
    members: &mut [Box<dyn sluice_engine::topic::GroupMembership>],
    done: impl Fn(&[Vec<i32>]) -> bool,
) -> Vec<Vec<sluice_engine::topic::GroupChange>> {
    let mut seen = vec![Vec::new(); members.len()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        for (i, m) in members.iter_mut().enumerate() {
            if let Some(change) = m.poll().expect("poll the group") {
                seen[i].push(change);
                m.confirm().expect("confirm");
            }
        }
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m.owned()).collect();
        if done(&owned) {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the group did not settle: {owned:?}, changes {seen:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn group_members_share_partitions_and_take_over_those_of_a_leaver() {
    use sluice_engine::topic::GroupChange;
    let (_broker, topics) = connect();
    topics.create_topic("shared", 6, 1).expect("created");
    let mut members = vec![topics.join_group("g1", "shared").expect("joined")];
    settle(&mut members, |o| o[0].len() == 6);
    members.push(topics.join_group("g1", "shared").expect("joined"));
    let seen = settle(&mut members, |o| {
        o[0].len() == 3 && o[1].len() == 3 && o[0].iter().all(|p| !o[1].contains(p))
    });
    // The first member gave everything back before the split.
    assert!(
        seen[0]
            .iter()
            .any(|c| matches!(c, GroupChange::Revoked(p) if p.len() == 6))
    );
    // The second leaves; the first gets all partitions again.
    members.pop();
    settle(&mut members, |o| o[0] == vec![0, 1, 2, 3, 4, 5]);
}

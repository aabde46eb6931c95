//! With `ksql.streams.commit.interval.ms` set, a windowed aggregate holds
//! its updates and emits each changed window once per interval, also when
//! no more input arrives.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

#[test]
fn held_updates_are_flushed_once_the_interval_passes() {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 1);
    ctx.execute(
        "SET 'ksql.streams.commit.interval.ms'='60';
         CREATE STREAM votes (match_id STRING KEY, guess STRING) WITH (kafka_topic='votes', value_format='JSON', partitions=1);
         CREATE TABLE votes_per_minute AS SELECT match_id, COUNT(*) AS votes FROM votes
           WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 1 MINUTE) GROUP BY match_id;",
    )
    .expect("statements run");
    let vote = |ts: i64| {
        (
            Partitioning::ByKey,
            Record {
                key: Some(Bytes::from_static(b"m1")),
                value: Some(Bytes::from_static(br#"{"guess": "robot"}"#)),
                timestamp: ts,
                headers: vec![],
            },
        )
    };
    topics
        .produce("votes", vec![vote(1_000), vote(2_000), vote(3_000)])
        .expect("produce");
    ctx.runtime().run_until_idle();
    assert!(
        topics.records("VOTES_PER_MINUTE").expect("sink").is_empty(),
        "updates are held"
    );

    std::thread::sleep(Duration::from_millis(80));
    ctx.runtime().step();
    let out = topics.records("VOTES_PER_MINUTE").expect("sink");
    assert_eq!(out.len(), 1, "one update for the one changed window");
    assert_eq!(out[0].record.value.as_deref(), Some(&br#"{"VOTES":3}"#[..]));
}

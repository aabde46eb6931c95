//! Queries write their sink through a pipelining writer (as on Kafka):
//! what a query wrote is delivered by the time it checkpoints, and a
//! delivery that fails stops the query before any checkpoint claims the
//! input behind it.
//!
//! The backend here is the embedded one with a writer that holds records
//! until its flush, the most a pipelining writer may hold back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::checkpoint::CheckpointStore;
use sluice_engine::error::{EngineError, Result};
use sluice_engine::query::QueryState;
use sluice_engine::topic::{
    Partitioning, Record, TopicBackend, TopicConsumer, TopicDescription, TopicWriter,
};
use sluice_sql::{KsqlContext, StatementResult};

/// Embedded topics whose sink writers deliver only when flushed, and fail
/// to while `broken` is set.
struct Held {
    topics: Arc<EmbeddedTopics>,
    broken: Arc<AtomicBool>,
}

struct HeldWriter {
    topics: Arc<EmbeddedTopics>,
    topic: String,
    held: Vec<(Partitioning, Record)>,
    broken: Arc<AtomicBool>,
}

impl TopicWriter for HeldWriter {
    fn write(&mut self, records: Vec<(Partitioning, Record)>) -> Result<()> {
        self.held.extend(records);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(EngineError::Execution(
                "delivering a record: the broker refused it".into(),
            ));
        }
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.topics.produce(&self.topic, held)?;
        }
        Ok(())
    }
}

impl TopicBackend for Held {
    fn create_topic(&self, name: &str, partitions: u32, replicas: u16) -> Result<()> {
        self.topics.create_topic(name, partitions, replicas)
    }
    fn delete_topic(&self, name: &str) -> Result<()> {
        self.topics.delete_topic(name)
    }
    fn describe_topic(&self, name: &str) -> Option<TopicDescription> {
        self.topics.describe_topic(name)
    }
    fn list_topics(&self) -> Vec<TopicDescription> {
        self.topics.list_topics()
    }
    fn produce(
        &self,
        topic: &str,
        records: Vec<(Partitioning, Record)>,
    ) -> Result<Vec<(i32, i64)>> {
        self.topics.produce(topic, records)
    }
    fn consumer(&self, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        self.topics.consumer(topic)
    }
    fn writer(&self, topic: &str) -> Result<Option<Box<dyn TopicWriter>>> {
        Ok(Some(Box::new(HeldWriter {
            topics: self.topics.clone(),
            topic: topic.to_string(),
            held: Vec::new(),
            broken: self.broken.clone(),
        })))
    }
    fn wait_for_data(&self, timeout: Duration) {
        self.topics.wait_for_data(timeout)
    }
}

const SETUP: &str = "
    CREATE STREAM votes (voter STRING KEY, choice STRING)
      WITH (kafka_topic='votes', value_format='JSON', partitions=1);
    CREATE TABLE tally AS SELECT choice, COUNT(*) AS n FROM votes GROUP BY choice;
";

fn votes(topics: &EmbeddedTopics, n: usize) {
    let records = (0..n)
        .map(|i| {
            (
                Partitioning::Explicit(0),
                Record {
                    key: Some(Bytes::from(format!("v{i}"))),
                    value: Some(Bytes::from(format!(r#"{{"CHOICE":"c{}"}}"#, i % 3))),
                    timestamp: i as i64,
                    headers: vec![],
                },
            )
        })
        .collect();
    topics.produce("votes", records).expect("produce");
}

fn setup(name: &str, broken: bool) -> (Arc<EmbeddedTopics>, KsqlContext, PathBuf, String) {
    let topics = Arc::new(EmbeddedTopics::new());
    let backend = Arc::new(Held {
        topics: topics.clone(),
        broken: Arc::new(AtomicBool::new(broken)),
    });
    let dir = std::env::temp_dir().join(format!("sluice-sink-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Small polls and a checkpoint due at every pass.
    let ctx = KsqlContext::with_backend(backend, 8);
    ctx.open_state_dir(&dir, Duration::ZERO)
        .expect("open state dir");
    let results = ctx.execute(SETUP).expect("setup");
    let id = results
        .iter()
        .find_map(|r| match r {
            StatementResult::QueryStarted { query_id, .. } => Some(query_id.clone()),
            _ => None,
        })
        .expect("a query");
    (topics, ctx, dir, id)
}

#[test]
fn a_checkpoint_comes_after_the_output_it_covers_is_delivered() {
    let (topics, ctx, dir, id) = setup("delivered", false);
    votes(&topics, 100);
    // One pass: 8 votes read, their results held by the writer; the
    // checkpoint due flushes them before it saves the offsets.
    ctx.runtime().step();
    let checkpoint = CheckpointStore::open(&dir, &id)
        .expect("store")
        .load_latest()
        .expect("readable")
        .expect("a checkpoint");
    assert_eq!(checkpoint.offsets[0].partitions, vec![(0, 8)]);
    let written = topics.records("TALLY").expect("sink").len();
    assert_eq!(
        written as u64, checkpoint.sink.records_out,
        "everything counted in the checkpoint is in the topic"
    );
    assert!(written > 0);
    ctx.runtime().run_until_idle();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_delivery_stops_the_query_before_it_checkpoints() {
    let (topics, ctx, dir, id) = setup("failed", true);
    votes(&topics, 100);
    ctx.runtime().run_until_idle();
    let states = ctx.runtime().states();
    let (_, state) = states.iter().find(|(q, _)| *q == id).expect("the query");
    match state {
        QueryState::Error(message) => assert!(message.contains("refused"), "{message}"),
        QueryState::Running => panic!("the query runs on with its output lost"),
    }
    let checkpoint = CheckpointStore::open(&dir, &id)
        .expect("store")
        .load_latest()
        .expect("readable");
    assert!(
        checkpoint.is_none(),
        "no checkpoint claims input whose output was not delivered"
    );
    assert!(topics.records("TALLY").expect("sink").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

//! [`EmbeddedTopics`]: partitioned in-memory topics.
//!
//! Partitions are append-only vectors behind a read-write lock; consumers
//! keep their own offsets. Producing wakes anyone blocked in
//! [`TopicBackend::wait_for_data`], so idle drivers sleep rather than spin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use sluice_engine::error::{EngineError, Result};
use sluice_engine::topic::{
    ConsumedRecord, Partitioning, Record, TopicBackend, TopicConsumer, TopicDescription,
    partition_for_key,
};

#[cfg(test)]
mod tests;

type Partition = RwLock<Vec<Record>>;

struct Topic {
    name: Arc<str>,
    partitions: Vec<Partition>,
    replicas: u16,
    /// Round-robin cursor for records without a key.
    next_unkeyed: AtomicU64,
}

/// An in-process set of topics.
#[derive(Default)]
pub struct EmbeddedTopics {
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Bumped on every produce; paired with `signal` for waiters.
    generation: Mutex<u64>,
    signal: Condvar,
}

impl EmbeddedTopics {
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopic(name.to_string()))
    }

    /// Every record of a topic, partition by partition; for tests and
    /// the conformance runner.
    pub fn records(&self, name: &str) -> Result<Vec<ConsumedRecord>> {
        let topic = self.topic(name)?;
        let mut out = Vec::new();
        for (p, partition) in topic.partitions.iter().enumerate() {
            for (offset, record) in partition.read().iter().enumerate() {
                out.push(ConsumedRecord {
                    topic: topic.name.clone(),
                    partition: p as i32,
                    offset: offset as i64,
                    record: record.clone(),
                });
            }
        }
        Ok(out)
    }
}

impl TopicBackend for EmbeddedTopics {
    fn create_topic(&self, name: &str, partitions: u32, replicas: u16) -> Result<()> {
        let mut topics = self.topics.write();
        if topics.contains_key(name) {
            return Err(EngineError::TopicExists(name.to_string()));
        }
        let topic = Topic {
            name: Arc::from(name),
            partitions: (0..partitions.max(1))
                .map(|_| RwLock::new(Vec::new()))
                .collect(),
            replicas,
            next_unkeyed: AtomicU64::new(0),
        };
        topics.insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        match self.topics.write().remove(name) {
            Some(_) => Ok(()),
            None => Err(EngineError::UnknownTopic(name.to_string())),
        }
    }

    fn describe_topic(&self, name: &str) -> Option<TopicDescription> {
        self.topics.read().get(name).map(|t| describe(t))
    }

    fn list_topics(&self) -> Vec<TopicDescription> {
        self.topics.read().values().map(|t| describe(t)).collect()
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<(Partitioning, Record)>,
    ) -> Result<Vec<(i32, i64)>> {
        let topic = self.topic(topic)?;
        let count = topic.partitions.len() as u32;
        let mut positions = Vec::with_capacity(records.len());
        for (partitioning, record) in records {
            let partition = match (partitioning, &record.key) {
                (Partitioning::Explicit(p), _) => p,
                (Partitioning::ByKey, Some(key)) => partition_for_key(key, count),
                (Partitioning::ByKey, None) => {
                    (topic.next_unkeyed.fetch_add(1, Ordering::Relaxed) % count as u64) as i32
                }
            };
            let slot = usize::try_from(partition)
                .ok()
                .and_then(|p| topic.partitions.get(p))
                .ok_or_else(|| EngineError::UnknownPartition {
                    topic: topic.name.to_string(),
                    partition,
                })?;
            let mut log = slot.write();
            positions.push((partition, log.len() as i64));
            log.push(record);
        }
        *self.generation.lock() += 1;
        self.signal.notify_all();
        Ok(positions)
    }

    fn consumer(&self, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        let topic = self.topic(topic)?;
        let positions = vec![0; topic.partitions.len()];
        let assigned = (0..topic.partitions.len()).collect();
        Ok(Box::new(EmbeddedConsumer {
            topic,
            positions,
            assigned,
        }))
    }

    fn partition_consumer(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Box<dyn TopicConsumer>> {
        let topic = self.topic(topic)?;
        let mut assigned = Vec::with_capacity(partitions.len());
        for p in partitions {
            match usize::try_from(*p) {
                Ok(i) if i < topic.partitions.len() => assigned.push(i),
                _ => {
                    return Err(EngineError::UnknownPartition {
                        topic: topic.name.to_string(),
                        partition: *p,
                    });
                }
            }
        }
        let positions = vec![0; topic.partitions.len()];
        Ok(Box::new(EmbeddedConsumer {
            topic,
            positions,
            assigned,
        }))
    }

    fn wait_for_data(&self, timeout: Duration) {
        let mut generation = self.generation.lock();
        let seen = *generation;
        let _ = self
            .signal
            .wait_while_for(&mut generation, |g| *g == seen, timeout);
    }
}

fn describe(topic: &Topic) -> TopicDescription {
    TopicDescription {
        name: topic.name.to_string(),
        partitions: topic.partitions.len() as u32,
        replicas: topic.replicas,
    }
}

/// Reads the assigned partitions of one topic (all, unless opened by
/// [`TopicBackend::partition_consumer`]).
struct EmbeddedConsumer {
    topic: Arc<Topic>,
    /// Per partition of the topic; only assigned ones move.
    positions: Vec<usize>,
    assigned: Vec<usize>,
}

impl TopicConsumer for EmbeddedConsumer {
    /// Takes records in timestamp order across partitions, as Kafka
    /// Streams picks the partition whose next record is oldest: a lagging
    /// partition is read first instead of being judged late.
    fn poll(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let logs: Vec<_> = self.topic.partitions.iter().map(|p| p.read()).collect();
        let mut out = Vec::new();
        while out.len() < max {
            let oldest = self
                .assigned
                .iter()
                .filter_map(|p| logs[*p].get(self.positions[*p]).map(|r| (r.timestamp, *p)))
                .min();
            let Some((_, p)) = oldest else {
                break;
            };
            let offset = self.positions[p];
            out.push(ConsumedRecord {
                topic: self.topic.name.clone(),
                partition: p as i32,
                offset: offset as i64,
                record: logs[p][offset].clone(),
            });
            self.positions[p] = offset + 1;
        }
        Ok(out)
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.assigned
            .iter()
            .map(|p| (*p as i32, self.positions[*p] as i64))
            .collect()
    }

    fn seek(&mut self, partition: i32, offset: i64) -> Result<()> {
        let slot = usize::try_from(partition)
            .ok()
            .filter(|p| self.assigned.contains(p))
            .and_then(|p| self.positions.get_mut(p))
            .ok_or_else(|| EngineError::UnknownPartition {
                topic: self.topic.name.to_string(),
                partition,
            })?;
        *slot = offset.max(0) as usize;
        Ok(())
    }

    fn lag(&self) -> u64 {
        self.assigned
            .iter()
            .map(|p| {
                let end = self.topic.partitions[*p].read().len();
                end.saturating_sub(self.positions[*p]) as u64
            })
            .sum()
    }
}

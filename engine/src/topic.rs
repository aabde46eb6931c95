//! The topic abstraction every backend implements.
//!
//! A topic is a named, partitioned, append-only log of [`Record`]s, as in
//! Kafka. The engine reads and writes topics only through
//! [`TopicBackend`]; the embedded in-memory backend and the Kafka backend
//! live in `sluice-connectors`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

/// One record of a topic, as produced or consumed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Event time in epoch milliseconds.
    pub timestamp: i64,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record read back from a topic, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub record: Record,
}

/// Name and shape of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: u32,
    pub replicas: u16,
}

/// Where a record goes when produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Kafka's default partitioner: murmur2 of the key bytes, round robin
    /// for records without a key.
    ByKey,
    Explicit(i32),
}

/// A set of topics: what a broker (or its embedded stand-in) provides.
pub trait TopicBackend: Send + Sync {
    /// Creates a topic; fails with [`crate::EngineError::TopicExists`] if it
    /// exists already.
    fn create_topic(&self, name: &str, partitions: u32, replicas: u16) -> Result<()>;
    fn delete_topic(&self, name: &str) -> Result<()>;
    fn describe_topic(&self, name: &str) -> Option<TopicDescription>;
    fn list_topics(&self) -> Vec<TopicDescription>;
    /// Appends records; returns each record's partition and offset.
    fn produce(&self, topic: &str, records: Vec<(Partitioning, Record)>)
    -> Result<Vec<(i32, i64)>>;
    /// Opens a consumer positioned at the start of every partition.
    fn consumer(&self, topic: &str) -> Result<Box<dyn TopicConsumer>>;
    /// A writer that pipelines appends to `topic` (queries write their
    /// sink through one); `None` when [`TopicBackend::produce`] is as good,
    /// as for a backend whose appends complete at once.
    fn writer(&self, _topic: &str) -> Result<Option<Box<dyn TopicWriter>>> {
        Ok(None)
    }
    /// Whether writes to these topics could commit atomically with the
    /// source offsets (Kafka transactions), which exactly-once output
    /// needs.
    fn transaction_support(&self) -> TransactionSupport {
        TransactionSupport::Unsupported("the topics are not on a Kafka broker".into())
    }
    /// Blocks until some topic receives a record or the timeout passes;
    /// lets drivers sleep instead of spinning on empty polls.
    fn wait_for_data(&self, timeout: Duration);

    /// Opens a consumer of only `partitions` of `topic`, each at its
    /// start: a cluster member runs one query instance per partition it
    /// owns. Backends without clusters refuse.
    fn partition_consumer(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Box<dyn TopicConsumer>> {
        let _ = partitions;
        Err(crate::EngineError::Execution(format!(
            "this topic backend cannot read single partitions of '{topic}'"
        )))
    }

    /// Joins the consumer group `group` over `topic`: the members of a
    /// group share the topic's partitions. Backends without clusters
    /// refuse.
    fn join_group(&self, group: &str, topic: &str) -> Result<Box<dyn GroupMembership>> {
        Err(crate::EngineError::Execution(format!(
            "this topic backend has no consumer groups (group '{group}' over '{topic}')"
        )))
    }
}

/// A change of the partitions a group member owns, as the group decided
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// These partitions are taken away: the member saves their state,
    /// then [`GroupMembership::confirm`]s, and only then may another
    /// member get them.
    Revoked(Vec<i32>),
    /// These partitions were taken away without a handover (the member
    /// was out of touch with the group): another member may process them
    /// already, so their state must not be saved over its own.
    Lost(Vec<i32>),
    /// These partitions are the member's now (the whole new assignment).
    Assigned(Vec<i32>),
}

/// One member of a consumer group. It reads no records itself: it only
/// learns which partitions are its to process, and holds the group's
/// rebalance until the member has handled each change.
pub trait GroupMembership: Send {
    /// Services the group protocol (heartbeats, rebalances); returns the
    /// change waiting for confirmation, if any. Call it often: a member
    /// that stops polling is taken out of the group.
    fn poll(&mut self) -> Result<Option<GroupChange>>;
    /// Tells the group the change last returned by [`Self::poll`] is
    /// handled, letting the rebalance go on.
    fn confirm(&mut self) -> Result<()>;
    /// The partitions owned now (as last confirmed).
    fn owned(&self) -> Vec<i32>;
    /// Leaves the group and joins it again, forcing a rebalance: for when
    /// the member learns that another one died but the broker has not
    /// noticed (Tansu never expires a silent member). Its partitions come
    /// back through [`Self::poll`] as any revocation and assignment do.
    fn rejoin(&mut self) -> Result<()>;
}

/// Whether a backend can write in transactions, each case with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionSupport {
    Supported,
    Unsupported(String),
    /// Not found out (the reason says why).
    Unknown(String),
}

/// Appends to one topic without waiting for each append to complete:
/// records handed over are durable only once [`TopicWriter::flush`]
/// returns. A query flushes before it checkpoints, so the source offsets
/// it saves never run ahead of the output they produced.
pub trait TopicWriter: Send {
    /// Hands records over, in order. An error reports a record handed
    /// over earlier (or now) that cannot be delivered.
    fn write(&mut self, records: Vec<(Partitioning, Record)>) -> Result<()>;
    /// Waits until every record handed over is in the topic.
    fn flush(&mut self) -> Result<()>;
}

/// A [`TopicWriter`] over [`TopicBackend::produce`]: every write completes
/// before it returns.
pub struct ProduceWriter {
    backend: Arc<dyn TopicBackend>,
    topic: String,
}

impl ProduceWriter {
    pub fn new(backend: Arc<dyn TopicBackend>, topic: impl Into<String>) -> Self {
        ProduceWriter {
            backend,
            topic: topic.into(),
        }
    }
}

impl TopicWriter for ProduceWriter {
    fn write(&mut self, records: Vec<(Partitioning, Record)>) -> Result<()> {
        self.backend.produce(&self.topic, records).map(|_| ())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Reads one topic, all of its partitions.
pub trait TopicConsumer: Send {
    /// Up to `max` records that are available now, oldest first per
    /// partition; empty when the consumer is caught up.
    fn poll(&mut self, max: usize) -> Result<Vec<ConsumedRecord>>;
    /// The next offset to read, per partition.
    fn positions(&self) -> Vec<(i32, i64)>;
    /// Repositions a partition, as a restore from a checkpoint does.
    fn seek(&mut self, partition: i32, offset: i64) -> Result<()>;
    /// Records available but not read yet, summed over partitions. May
    /// ask the broker: not for every pass of a busy loop.
    fn lag(&self) -> u64;
    /// [`TopicConsumer::lag`] as of the consumer's latest exchange with
    /// the broker, without asking it: cheap enough for every pass and
    /// every metrics scrape, behind by at most one fetch.
    fn recent_lag(&self) -> u64 {
        self.lag()
    }
}

/// Kafka's default partitioner hash (murmur2 with Kafka's seed), so keys
/// land on the partitions a Kafka producer would choose.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as u32 % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}

//! [`KafkaTopics`]: the topic abstraction on a Kafka broker, through
//! rdkafka (librdkafka).
//!
//! Producing is batched, idempotent and compressed; records with a key go
//! to the partition Kafka's Java partitioner would pick (murmur2), so
//! topics written by Sluice are partitioned exactly like ksqlDB's.
//! Consumers assign themselves every partition of their topic and track
//! their own positions: a query's progress is its checkpoint's business,
//! not the broker's, which is what lets a restore resume exactly.
//!
//! Broker outages are waited out rather than failing queries: a consumer
//! that cannot fetch backs off and reports no records until the broker
//! answers again, and records whose delivery failed for a transient
//! reason are sent again, with backoff, until the broker takes them. A
//! producer that librdkafka declares fatally failed is replaced.

mod group;
mod probe;
pub mod tansu;
#[cfg(test)]
mod tests;
mod writer;

pub use writer::KafkaTopicWriter;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_engine::error::{EngineError, Result};
use sluice_engine::topic::{
    ConsumedRecord, GroupMembership, Partitioning, Record, TopicBackend, TopicConsumer,
    TopicDescription, TopicWriter, TransactionSupport, partition_for_key,
};

/// How long a metadata or admin request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a Kafka backend.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// ksqlDB's `ksql.service.id`: prefixes consumer groups and internal
    /// topics.
    pub service_id: String,
    /// Extra librdkafka properties (`security.protocol`, ...).
    pub properties: Vec<(String, String)>,
    /// How long a consumer's poll waits for a first record when none has
    /// arrived. A loop that runs until nothing is left (tests, `run`)
    /// needs it to see records still being fetched; a server's loop,
    /// which naps when a whole pass finds nothing, sets zero: there a
    /// wait on one empty consumer holds up every other query, unit and
    /// view (a cluster member spent about 2 s of 7 in such waits).
    pub poll_wait: Duration,
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            service_id: "default_".into(),
            properties: Vec::new(),
            poll_wait: Duration::from_millis(5),
        }
    }

    /// A client configuration: `defaults`, then the brokers and the
    /// configured properties, which override the defaults.
    fn client_with(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, v);
        }
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn client(&self) -> ClientConfig {
        self.client_with(&[])
    }

    fn producer(&self) -> Result<FutureProducer> {
        self.client_with(&[
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("compression.type", "lz4".into()),
            ("linger.ms", "5".into()),
            ("message.timeout.ms", "30000".into()),
        ])
        .create()
        .map_err(|e| kafka_err("creating the producer", e))
    }
}

/// Longest wait between retries while the broker is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Errors a later attempt may not meet: the broker is unreachable, busy
/// or electing a leader. Anything else (a record too large, a topic that
/// does not exist) fails the query instead of being retried forever.
fn transient(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NetworkException
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::QueueFull
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotCoordinator
            | C::CoordinatorNotAvailable
            | C::OutOfOrderSequenceNumber
            | C::Fatal
            | C::PurgeQueue
            | C::PurgeInflight
    ) || fences(code)
}

/// Errors after which the producer's identity is no longer accepted: a
/// new producer (a new producer id) sends the records again.
fn fences(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::ProducerFenced | C::InvalidProducerEpoch | C::UnknownProducerId
    )
}

fn transient_error(e: &KafkaError) -> bool {
    e.rdkafka_error_code().is_some_and(transient)
}

/// Topics on a Kafka broker.
pub struct KafkaTopics {
    config: KafkaConfig,
    /// Replaced when librdkafka reports it fatally failed; shared with
    /// the sink writers.
    producer: Arc<Mutex<FutureProducer>>,
    admin: AdminClient<DefaultClientContext>,
    /// Reads metadata and watermarks; never subscribes.
    metadata: BaseConsumer,
    /// Runs the admin client's and producer's futures to completion.
    runtime: tokio::runtime::Runtime,
    /// Partition counts seen, so keyed records are partitioned without a
    /// metadata request each.
    partitions: Mutex<std::collections::HashMap<String, u32>>,
    /// Found out at connect.
    transactions: TransactionSupport,
}

fn kafka_err(what: &str, e: KafkaError) -> EngineError {
    EngineError::Execution(format!("Kafka: {what}: {e}"))
}

impl KafkaTopics {
    /// Connects to the brokers (failing if none answers within the request
    /// timeout).
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let producer = config.producer()?;
        let admin: AdminClient<DefaultClientContext> = config
            .client()
            .create()
            .map_err(|e| kafka_err("creating the admin client", e))?;
        let metadata: BaseConsumer = config
            .client()
            .set("group.id", format!("_sluice-{}metadata", config.service_id))
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| kafka_err("creating the metadata client", e))?;
        metadata
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("reaching the brokers", e))?;
        let transactions = probe::transaction_support(&config);
        // Output topics are at-least-once either way: Sluice does not write
        // in transactions (yet); the log says whether the broker would let it.
        match &transactions {
            TransactionSupport::Supported => tracing::info!(
                "Kafka: the broker supports transactions; output topics are still at-least-once (Sluice does not write in transactions yet)"
            ),
            TransactionSupport::Unsupported(why) | TransactionSupport::Unknown(why) => {
                tracing::info!("Kafka: output topics are at-least-once: {why}")
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| EngineError::Execution(format!("starting the Kafka runtime: {e}")))?;
        Ok(KafkaTopics {
            config,
            producer: Arc::new(Mutex::new(producer)),
            admin,
            metadata,
            runtime,
            partitions: Mutex::new(std::collections::HashMap::new()),
            transactions,
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(n) = self.partitions.lock().get(topic) {
            return Ok(*n);
        }
        let described = self
            .describe_topic(topic)
            .ok_or_else(|| EngineError::UnknownTopic(topic.to_string()))?;
        Ok(described.partitions)
    }
}

impl KafkaTopics {
    /// Sends `records[i]` for every `i` of `which`, in order, and waits
    /// for their delivery: positions of the delivered ones go to
    /// `positions`; returns the ones that failed for a transient reason
    /// (any other failure is an error).
    fn send(
        &self,
        topic: &str,
        partitions: u32,
        records: &[(Partitioning, Record)],
        which: &[usize],
        positions: &mut [(i32, i64)],
    ) -> Result<Vec<(usize, KafkaError)>> {
        let producer = self.producer.lock().clone();
        let mut deliveries = Vec::with_capacity(which.len());
        let mut failed = Vec::new();
        for &i in which {
            let mut out = future_record(topic, partitions, &records[i]);
            // A full local queue drains as deliveries complete.
            let delivery = loop {
                match producer.send_result(out) {
                    Ok(delivery) => break Some(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(100));
                        out = back;
                    }
                    Err((e, _)) if transient_error(&e) => {
                        failed.push((i, e));
                        break None;
                    }
                    Err((e, _)) => return Err(kafka_err("producing", e)),
                }
            };
            if let Some(delivery) = delivery {
                deliveries.push((i, delivery));
            }
        }
        producer.poll(Duration::ZERO);
        for (i, delivery) in deliveries {
            let delivered = self
                .runtime
                .block_on(delivery)
                .map_err(|_| EngineError::Execution("Kafka: a delivery was cancelled".into()))?;
            match delivered {
                Ok(d) => positions[i] = (d.partition, d.offset),
                Err((e, _)) if transient_error(&e) => failed.push((i, e)),
                Err((e, _)) => return Err(kafka_err("delivering a record", e)),
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        Ok(failed)
    }
}

/// `record` as librdkafka takes it: keyed records go to the partition
/// Kafka's Java partitioner would pick.
fn future_record<'a>(
    topic: &'a str,
    partitions: u32,
    (partitioning, record): &'a (Partitioning, Record),
) -> FutureRecord<'a, [u8], [u8]> {
    let partition = match (partitioning, &record.key) {
        (Partitioning::Explicit(p), _) => Some(*p),
        (Partitioning::ByKey, Some(key)) => Some(partition_for_key(key, partitions)),
        // Kafka spreads keyless records; librdkafka does the same.
        (Partitioning::ByKey, None) => None,
    };
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).timestamp(record.timestamp);
    if !record.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        out = out.headers(headers);
    }
    if let Some(key) = &record.key {
        out = out.key(key.as_ref());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_ref());
    }
    if let Some(p) = partition {
        out = out.partition(p);
    }
    out
}

impl TopicBackend for KafkaTopics {
    fn create_topic(&self, name: &str, partitions: u32, replicas: u16) -> Result<()> {
        let partitions_i32 = i32::try_from(partitions)
            .map_err(|_| EngineError::Execution(format!("too many partitions: {partitions}")))?;
        let topic = NewTopic::new(
            name,
            partitions_i32,
            TopicReplication::Fixed(i32::from(replicas)),
        );
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .runtime
            .block_on(self.admin.create_topics([&topic], &options))
            .map_err(|e| kafka_err("creating a topic", e))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(EngineError::TopicExists(name.to_string()));
                }
                Err((topic, code)) => {
                    return Err(EngineError::Execution(format!(
                        "Kafka: creating topic '{topic}': {code}"
                    )));
                }
            }
        }
        self.partitions.lock().insert(name.to_string(), partitions);
        // Metadata reaches every broker a little after creation.
        for _ in 0..50 {
            if self.describe_topic(name).is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .runtime
            .block_on(self.admin.delete_topics(&[name], &options))
            .map_err(|e| kafka_err("deleting a topic", e))?;
        self.partitions.lock().remove(name);
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(EngineError::UnknownTopic(name.to_string()));
                }
                Err((topic, code)) => {
                    return Err(EngineError::Execution(format!(
                        "Kafka: deleting topic '{topic}': {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn describe_topic(&self, name: &str) -> Option<TopicDescription> {
        let metadata = self
            .metadata
            .fetch_metadata(Some(name), REQUEST_TIMEOUT)
            .ok()?;
        let topic = metadata.topics().iter().find(|t| t.name() == name)?;
        if topic.error().is_some() || topic.partitions().is_empty() {
            return None;
        }
        let partitions = u32::try_from(topic.partitions().len()).ok()?;
        let replicas = topic
            .partitions()
            .first()
            .map(|p| u16::try_from(p.replicas().len()).unwrap_or(1))
            .unwrap_or(1);
        self.partitions.lock().insert(name.to_string(), partitions);
        Some(TopicDescription {
            name: name.to_string(),
            partitions,
            replicas,
        })
    }

    fn list_topics(&self) -> Vec<TopicDescription> {
        let Ok(metadata) = self.metadata.fetch_metadata(None, REQUEST_TIMEOUT) else {
            return Vec::new();
        };
        let mut topics: Vec<TopicDescription> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| TopicDescription {
                name: t.name().to_string(),
                partitions: u32::try_from(t.partitions().len()).unwrap_or(0),
                replicas: t
                    .partitions()
                    .first()
                    .map(|p| u16::try_from(p.replicas().len()).unwrap_or(1))
                    .unwrap_or(1),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    fn produce(
        &self,
        topic: &str,
        records: Vec<(Partitioning, Record)>,
    ) -> Result<Vec<(i32, i64)>> {
        let partitions = self.partition_count(topic)?;
        let mut positions = vec![(0, 0); records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            let failed = self.send(topic, partitions, &records, &pending, &mut positions)?;
            let Some((_, first_error)) = failed.first() else {
                return Ok(positions);
            };
            tracing::warn!(
                "Kafka: {} of {} records to '{topic}' not delivered ({first_error}); sending them again in {backoff:?}",
                failed.len(),
                pending.len()
            );
            let fatal = self.producer.lock().client().fatal_error();
            let fenced = failed
                .iter()
                .any(|(_, e)| e.rdkafka_error_code().is_some_and(fences));
            if fatal.is_some() || fenced {
                let (code, reason) =
                    fatal.unwrap_or((RDKafkaErrorCode::ProducerFenced, String::new()));
                tracing::warn!("Kafka: the producer failed ({code} {reason}); replacing it");
                *self.producer.lock() = self.config.producer()?;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pending = failed.into_iter().map(|(i, _)| i).collect();
        }
    }

    fn consumer(&self, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        Ok(Box::new(KafkaTopicConsumer::open(
            &self.config,
            topic,
            None,
        )?))
    }

    fn partition_consumer(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Box<dyn TopicConsumer>> {
        Ok(Box::new(KafkaTopicConsumer::open(
            &self.config,
            topic,
            Some(partitions),
        )?))
    }

    fn join_group(&self, group: &str, topic: &str) -> Result<Box<dyn GroupMembership>> {
        Ok(Box::new(group::KafkaMembership::join(
            &self.config,
            group,
            topic,
        )?))
    }

    fn transaction_support(&self) -> TransactionSupport {
        self.transactions.clone()
    }

    fn writer(&self, topic: &str) -> Result<Option<Box<dyn TopicWriter>>> {
        let partitions = self.partitions.lock().get(topic).copied();
        Ok(Some(Box::new(KafkaTopicWriter::new(
            topic,
            self.config.clone(),
            self.producer.clone(),
            partitions,
        ))))
    }

    fn wait_for_data(&self, timeout: Duration) {
        // Consumers poll the broker themselves; a short nap keeps an idle
        // driver cheap without adding much latency.
        std::thread::sleep(timeout.min(Duration::from_millis(10)));
    }
}

/// Reads every partition of one topic from explicit positions.
pub struct KafkaTopicConsumer {
    topic: Arc<str>,
    consumer: BaseConsumer,
    /// The next offset to read, per partition.
    positions: Vec<(i32, i64)>,
    /// Failed polls in a row, for the backoff.
    failures: u32,
    /// Partitions are assigned at the first poll after opening or seeking.
    assigned: bool,
    /// [`KafkaConfig::poll_wait`].
    first_wait: Duration,
}

/// Errors librdkafka reports on the consumer's queue: it keeps fetching
/// after them by itself, so they are waited out, not fatal.
fn is_consumption_error(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(_))
}

impl KafkaTopicConsumer {
    /// A consumer of `only` these partitions of `topic`, or of all.
    fn open(config: &KafkaConfig, topic: &str, only: Option<&[i32]>) -> Result<Self> {
        let consumer: BaseConsumer = config
            .client()
            .set("group.id", format!("_sluice-{}{topic}", config.service_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| kafka_err("creating a consumer", e))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("reading topic metadata", e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .ok_or_else(|| EngineError::UnknownTopic(topic.to_string()))?;
        let partitions = match only {
            None => partitions,
            Some(only) => {
                if let Some(missing) = only.iter().find(|p| !partitions.contains(p)) {
                    return Err(EngineError::UnknownPartition {
                        topic: topic.to_string(),
                        partition: *missing,
                    });
                }
                only.to_vec()
            }
        };
        // Partitions are assigned at the first poll, after any seeks of a
        // restore: one assignment.
        Ok(KafkaTopicConsumer {
            topic: Arc::from(topic),
            consumer,
            positions: partitions.into_iter().map(|p| (p, 0)).collect(),
            failures: 0,
            assigned: false,
            first_wait: config.poll_wait,
        })
    }

    /// Assigns every partition at its position, if that is still to do.
    fn assign(&mut self) -> Result<()> {
        if self.assigned {
            return Ok(());
        }
        // Every partition is read from its start, also after a seek: poll
        // skips what lies before the position. Fetching from a position
        // inside a record batch is not reliable on every broker (Tansu
        // 0.6 returns only the batches that start at or after the fetch
        // offset, so the rest of the batch holding it is skipped, and a
        // position inside the last batch reads nothing at all until more
        // is written: no client-side check of the first record fetched
        // can tell; see the test
        // a_consumer_sought_into_a_batch_reads_from_that_record_on), and
        // a record lost there is a record the restored query never
        // counts. The price is re-reading each partition once per restore.
        let mut assignment = TopicPartitionList::new();
        for (p, _) in &self.positions {
            assignment
                .add_partition_offset(&self.topic, *p, Offset::Beginning)
                .map_err(|e| kafka_err("assigning partitions", e))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| kafka_err("assigning partitions", e))?;
        self.assigned = true;
        Ok(())
    }
}

impl TopicConsumer for KafkaTopicConsumer {
    fn poll(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        self.assign()?;
        let mut out = Vec::new();
        // The first poll may wait briefly for a fetch; later ones take only
        // what has arrived.
        let mut wait = self.first_wait;
        while out.len() < max {
            let Some(message) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = match message {
                Ok(m) => {
                    self.failures = 0;
                    m
                }
                // The broker is away: report what was read, and wait a
                // little longer each time before asking again.
                Err(e) if transient_error(&e) || is_consumption_error(&e) => {
                    self.failures = self.failures.saturating_add(1);
                    let backoff = Duration::from_millis(50)
                        .saturating_mul(1 << self.failures.min(5))
                        .min(MAX_BACKOFF);
                    if self.failures == 1 || self.failures.is_power_of_two() {
                        tracing::warn!(
                            topic = %self.topic,
                            "Kafka: consuming failed {} time(s) in a row ({e}); retrying",
                            self.failures
                        );
                    }
                    std::thread::sleep(backoff);
                    break;
                }
                Err(e) => return Err(kafka_err("consuming", e)),
            };
            let partition = message.partition();
            let offset = message.offset();
            match self.positions.iter_mut().find(|(p, _)| *p == partition) {
                // Before the position: fetched for an earlier one, or
                // re-read from the start after a seek (see `assign`).
                Some(entry) if offset < entry.1 => continue,
                Some(entry) => entry.1 = offset + 1,
                None => continue,
            }
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            (
                                header.key.to_string(),
                                header.value.map(Bytes::copy_from_slice),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ConsumedRecord {
                topic: self.topic.clone(),
                partition,
                offset,
                record: Record {
                    key: message.key().map(Bytes::copy_from_slice),
                    value: message.payload().map(Bytes::copy_from_slice),
                    timestamp: message.timestamp().to_millis().unwrap_or(0),
                    headers,
                },
            });
        }
        Ok(out)
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.positions.clone()
    }

    fn seek(&mut self, partition: i32, offset: i64) -> Result<()> {
        let Some(entry) = self.positions.iter_mut().find(|(p, _)| *p == partition) else {
            return Err(EngineError::UnknownPartition {
                topic: self.topic.to_string(),
                partition,
            });
        };
        entry.1 = offset;
        // Assigned (again) at the next poll; records before the position
        // are skipped there.
        self.assigned = false;
        Ok(())
    }

    fn lag(&self) -> u64 {
        self.positions
            .iter()
            .map(|(p, position)| {
                match self
                    .consumer
                    .fetch_watermarks(&self.topic, *p, REQUEST_TIMEOUT)
                {
                    Ok((_, high)) => u64::try_from(high - position).unwrap_or(0),
                    Err(_) => 0,
                }
            })
            .sum()
    }

    fn recent_lag(&self) -> u64 {
        self.positions
            .iter()
            .map(|(p, position)| {
                let high = match cached_high_watermark(&self.consumer, &self.topic, *p) {
                    Some(high) => high,
                    // Not fetched yet: only the broker knows.
                    None => match self
                        .consumer
                        .fetch_watermarks(&self.topic, *p, REQUEST_TIMEOUT)
                    {
                        Ok((_, high)) => high,
                        Err(_) => return 0,
                    },
                };
                u64::try_from(high - position).unwrap_or(0)
            })
            .sum()
    }
}

/// The high watermark of a partition as the latest fetch response for it
/// said, which librdkafka keeps (its `rd_kafka_get_watermark_offsets`,
/// not wrapped by rdkafka); `None` before the first response. Asking the
/// broker instead (`fetch_watermarks`) is a round trip per partition,
/// which in every pass of the runtime cost a cluster member most of its
/// throughput.
fn cached_high_watermark(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is valid while `consumer` is borrowed;
    // `topic` is NUL-terminated and outlives the call, which only reads
    // it and writes the two offsets through pointers to locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

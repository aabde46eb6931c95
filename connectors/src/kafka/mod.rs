//! [`KafkaTopics`]: the topic abstraction on a Kafka broker, through
//! rdkafka (librdkafka).
//!
//! Producing is batched, idempotent and compressed; records with a key go
//! to the partition Kafka's Java partitioner would pick (murmur2), so
//! topics written by Sluice are partitioned exactly like ksqlDB's.
//! Consumers assign themselves every partition of their topic and track
//! their own positions: a query's progress is its checkpoint's business,
//! not the broker's, which is what lets a restore resume exactly.

pub mod tansu;
#[cfg(test)]
mod tests;

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
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sluice_engine::error::{EngineError, Result};
use sluice_engine::topic::{
    ConsumedRecord, Partitioning, Record, TopicBackend, TopicConsumer, TopicDescription,
    partition_for_key,
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
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            service_id: "default_".into(),
            properties: Vec::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Topics on a Kafka broker.
pub struct KafkaTopics {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Reads metadata and watermarks; never subscribes.
    metadata: BaseConsumer,
    /// Runs the admin client's and producer's futures to completion.
    runtime: tokio::runtime::Runtime,
    /// Partition counts seen, so keyed records are partitioned without a
    /// metadata request each.
    partitions: Mutex<std::collections::HashMap<String, u32>>,
}

fn kafka_err(what: &str, e: KafkaError) -> EngineError {
    EngineError::Execution(format!("Kafka: {what}: {e}"))
}

impl KafkaTopics {
    /// Connects to the brokers (failing if none answers within the request
    /// timeout).
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| kafka_err("creating the producer", e))?;
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| EngineError::Execution(format!("starting the Kafka runtime: {e}")))?;
        Ok(KafkaTopics {
            config,
            producer,
            admin,
            metadata,
            runtime,
            partitions: Mutex::new(std::collections::HashMap::new()),
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
        let mut deliveries = Vec::with_capacity(records.len());
        for (partitioning, record) in &records {
            let partition = match (partitioning, &record.key) {
                (Partitioning::Explicit(p), _) => Some(*p),
                (Partitioning::ByKey, Some(key)) => Some(partition_for_key(key, partitions)),
                // Kafka spreads keyless records; librdkafka does the same.
                (Partitioning::ByKey, None) => None,
            };
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: value.as_deref(),
                });
            }
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .timestamp(record.timestamp)
                .headers(headers);
            if let Some(key) = &record.key {
                out = out.key(key.as_ref());
            }
            if let Some(value) = &record.value {
                out = out.payload(value.as_ref());
            }
            if let Some(p) = partition {
                out = out.partition(p);
            }
            let delivery = self
                .producer
                .send_result(out)
                .map_err(|(e, _)| kafka_err("producing", e))?;
            deliveries.push(delivery);
        }
        self.producer.poll(Duration::ZERO);
        let mut positions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let delivered = self
                .runtime
                .block_on(delivery)
                .map_err(|_| EngineError::Execution("Kafka: a delivery was cancelled".into()))?;
            let delivery = delivered.map_err(|(e, _)| kafka_err("delivering a record", e))?;
            positions.push((delivery.partition, delivery.offset));
        }
        Ok(positions)
    }

    fn consumer(&self, topic: &str) -> Result<Box<dyn TopicConsumer>> {
        Ok(Box::new(KafkaTopicConsumer::open(&self.config, topic)?))
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
}

impl KafkaTopicConsumer {
    fn open(config: &KafkaConfig, topic: &str) -> Result<Self> {
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
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment
                .add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(|e| kafka_err("assigning partitions", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_err("assigning partitions", e))?;
        Ok(KafkaTopicConsumer {
            topic: Arc::from(topic),
            consumer,
            positions: partitions.into_iter().map(|p| (p, 0)).collect(),
        })
    }
}

impl TopicConsumer for KafkaTopicConsumer {
    fn poll(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let mut out = Vec::new();
        // The first poll may wait briefly for a fetch; later ones take only
        // what has arrived.
        let mut wait = Duration::from_millis(5);
        while out.len() < max {
            let Some(message) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = message.map_err(|e| kafka_err("consuming", e))?;
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
            let partition = message.partition();
            let offset = message.offset();
            if let Some(entry) = self.positions.iter_mut().find(|(p, _)| *p == partition) {
                entry.1 = offset + 1;
            }
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
        let mut assignment = TopicPartitionList::new();
        for (p, position) in &mut self.positions {
            let at = if *p == partition {
                *position = offset;
                Offset::Offset(offset)
            } else {
                Offset::Offset(*position)
            };
            assignment
                .add_partition_offset(&self.topic, *p, at)
                .map_err(|e| kafka_err("seeking", e))?;
        }
        if !self.positions.iter().any(|(p, _)| *p == partition) {
            return Err(EngineError::UnknownPartition {
                topic: self.topic.to_string(),
                partition,
            });
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| kafka_err("seeking", e))
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
}

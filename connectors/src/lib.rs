//! Topic backends for Sluice.
//!
//! Each backend implements [`sluice_engine::topic::TopicBackend`]:
//! - [`embedded`]: in-memory topics inside the process, for tests, the
//!   conformance runner and the zero-setup demo. It is not a broker: it
//!   keeps no data across restarts and serves one process.
//! - [`kafka`]: a Kafka broker through librdkafka; topics partitioned and
//!   encoded exactly as ksqlDB's, so both can share them.
//!
//! And [`generator`]: seeded event generators for the product's match
//! game and agent orchestrator, writing through any backend.

pub mod embedded;
pub mod generator;
pub mod kafka;

pub use embedded::EmbeddedTopics;
pub use kafka::{KafkaConfig, KafkaTopics};

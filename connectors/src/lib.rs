//! Topic backends for Sluice.
//!
//! Each backend implements [`sluice_engine::topic::TopicBackend`]:
//! - [`embedded`]: in-memory topics inside the process, for tests, the
//!   conformance runner and the zero-setup demo. It is not a broker: it
//!   keeps no data across restarts and serves one process.

pub mod embedded;

pub use embedded::EmbeddedTopics;

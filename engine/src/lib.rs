//! The streaming runtime of Sluice.
//!
//! This crate owns everything that moves and transforms records once a query
//! has been planned: the [`topic`] traits that connectors implement, the
//! [`format`]s that turn topic bytes into Arrow batches and back, the
//! [`operator`]s that run over those batches, and the [`query`] runtime that
//! drives a persistent query from its source topic to its sink topic, with
//! [`checkpoint`]s that let it resume exactly after a crash.
//!
//! It knows nothing of SQL text, HTTP or Kafka: the `sluice-sql` crate
//! builds [`query::QueryPlan`]s, connectors provide [`topic::TopicBackend`]s.

pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod format;
pub mod operator;
pub mod processing_log;
pub mod query;
pub mod runtime;
pub mod schema;
pub mod topic;
pub mod window;

pub use datafusion;
pub use error::{EngineError, Result};

//! The engine's error type, [`EngineError`].

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Everything that can go wrong inside the streaming runtime.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("partition {partition} of topic '{topic}' does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("serialization error: {0}")]
    Serde(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid plan: {0}")]
    Plan(String),
    #[error("{0}")]
    Execution(String),
    /// A checkpoint could not be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Builds an [`EngineError::Serde`] from a format string.
#[macro_export]
macro_rules! serde_err {
    ($($arg:tt)*) => { Err($crate::error::EngineError::Serde(format!($($arg)*))) };
}

/// Builds an [`EngineError::Plan`] from a format string.
#[macro_export]
macro_rules! plan_err {
    ($($arg:tt)*) => { Err($crate::error::EngineError::Plan(format!($($arg)*))) };
}

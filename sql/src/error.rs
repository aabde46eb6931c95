//! The SQL layer's error type, [`SqlError`], and its `*_err!` macros.

use datafusion::error::DataFusionError;
use sluice_engine::EngineError;

/// Everything a statement can be rejected for.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text does not parse; carries the position.
    #[error("line {line}:{column}: {message}")]
    Syntax {
        line: u64,
        column: u64,
        message: String,
    },
    /// The statement parses but is not valid (unknown source, bad key...).
    #[error("{0}")]
    Statement(String),
    /// Valid ksqlDB that Sluice does not run yet.
    #[error("{0} is not supported yet")]
    NotSupported(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SqlError::Engine(EngineError::Arrow(e))
    }
}

/// `Err(SqlError::Statement(format!(...)))`
#[macro_export]
macro_rules! statement_err {
    ($($arg:tt)*) => { Err($crate::error::SqlError::Statement(format!($($arg)*))) };
}

/// `Err(SqlError::NotSupported(format!(...)))`
#[macro_export]
macro_rules! not_supported {
    ($($arg:tt)*) => { Err($crate::error::SqlError::NotSupported(format!($($arg)*))) };
}

//! ksqlDB's dialect for Sluice.
//!
//! - [`parser`]: statements and expressions of ksqlDB SQL, with positions.
//! - [`planner`]: queries to engine operators over DataFusion expressions.
//! - [`catalog`]: streams, tables and queries.
//! - [`functions`]: ksqlDB function names over DataFusion functions.
//! - [`context`]: [`KsqlContext`], which executes statements.

pub mod catalog;
pub mod context;
pub mod error;
pub mod functions;
pub mod parser;
pub mod planner;
pub mod statement_log;

pub use context::{KsqlContext, StatementError, StatementResult, TransientQuery};
pub use error::{Result, SqlError};

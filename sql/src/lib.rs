//! ksqlDB's dialect for Sluice.
//!
//! - [`parser`]: statements and expressions of ksqlDB SQL, with positions.
//! - [`planner`]: queries to engine operators over DataFusion expressions.
//! - [`catalog`]: streams, tables and queries.
//! - [`functions`]: ksqlDB function names over DataFusion functions.
//! - [`context`]: [`KsqlContext`], which executes statements.
//! - [`statement_log`], [`command_topic`]: the statements that built the
//!   catalog, kept in a file (one server) or a topic (a cluster).

pub mod catalog;
pub mod command_topic;
pub mod context;
pub mod error;
pub mod functions;
pub mod parser;
pub mod planner;
pub mod statement_log;

pub use context::{KsqlContext, StatementError, StatementResult, TransientQuery};
pub use error::{Result, SqlError};

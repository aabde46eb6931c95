//! [`LoggedStatement`], one catalog-changing statement as a server keeps
//! it, and [`StatementLog`], the file form of the log of them: the executed
//! statements of a standalone server, persisted so a restart comes back
//! with the same streams, tables and queries. (A cluster keeps the same
//! records in a command topic instead, as ksqlDB does: see
//! [`crate::command_topic`]; both are replayed by the same code, in
//! `KsqlContext`.)
//!
//! The log is a file of JSON lines, one per statement that changed the
//! catalog (`CREATE`, `DROP`, `INSERT INTO ... SELECT`, `TERMINATE`,
//! `SET`/`UNSET`), in execution order, with the id of the query it started.
//! Each line is fsynced before the statement's result is returned. A crash
//! in the middle of an append leaves a torn last line without its newline:
//! reading drops it (that statement never reported success); a damaged line
//! before the last is an error, never silently skipped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};

/// One catalog-changing statement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoggedStatement {
    pub sql: String,
    /// The persistent query it started, whose id a replay must reproduce
    /// (the query's checkpoints are filed under it). Only the file log
    /// knows it: in a command topic the statement is logged before it
    /// runs, and the topic's order alone fixes the ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// The server that sent it (command topic only): the one that carries
    /// out its effects outside the catalog, such as deleting a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Names this command among all others (command topic only), so its
    /// sender finds the result of applying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// Applies only if the catalog does not hold its effect yet (a
    /// `CREATE` of a source that exists, an `INSERT INTO` identical to a
    /// running query are skipped): the statements of `serve --queries`,
    /// which every member of a cluster sends at its start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub if_absent: bool,
    /// The properties (`SET`, a request's `streamsProperties`) in force
    /// where it was sent (command topic only): every member applies it
    /// under them, so all plan it alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<std::collections::BTreeMap<String, String>>,
}

/// An open statement log, appending.
#[derive(Debug)]
pub struct StatementLog {
    path: PathBuf,
    file: Mutex<File>,
}

fn log_err(path: &Path, what: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError::Statement(format!("statement log {}: {what}: {e}", path.display()))
}

impl StatementLog {
    /// Opens (or creates) the log at `path`; returns it with the
    /// statements it holds, oldest first.
    pub fn open(path: &Path) -> Result<(Self, Vec<LoggedStatement>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| log_err(path, "opening", e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| log_err(path, "reading", e))?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let mut statements = Vec::new();
        for (n, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let statement: LoggedStatement = serde_json::from_str(line)
                .map_err(|e| log_err(path, &format!("line {}", n + 1), e))?;
            statements.push(statement);
        }
        if complete < text.len() {
            tracing::warn!(
                "statement log {}: dropping a torn last line (a crash during an append)",
                path.display()
            );
            file.set_len(complete as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| log_err(path, "truncating a torn line", e))?;
            file.seek(SeekFrom::End(0))
                .map_err(|e| log_err(path, "seeking", e))?;
        }
        Ok((
            StatementLog {
                path: path.to_path_buf(),
                file: Mutex::new(file),
            },
            statements,
        ))
    }

    /// Appends a statement durably.
    pub fn append(&self, statement: &LoggedStatement) -> Result<()> {
        let mut line =
            serde_json::to_string(statement).map_err(|e| log_err(&self.path, "encoding", e))?;
        line.push('\n');
        let mut file = self.file.lock();
        file.write_all(line.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| log_err(&self.path, "appending", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "sluice-statement-log-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn appends_and_reads_back_in_order() {
        let path = temp_file("order");
        let (log, existing) = StatementLog::open(&path).expect("open");
        assert!(existing.is_empty());
        let a = LoggedStatement {
            sql: "CREATE STREAM s (k INT KEY)\nWITH (kafka_topic='s');".into(),
            ..LoggedStatement::default()
        };
        let b = LoggedStatement {
            sql: "CREATE TABLE t AS SELECT k, COUNT(*) FROM s GROUP BY k;".into(),
            query_id: Some("CTAS_T_0".into()),
            ..LoggedStatement::default()
        };
        log.append(&a).expect("append");
        log.append(&b).expect("append");
        drop(log);
        let (_, read) = StatementLog::open(&path).expect("reopen");
        assert_eq!(read, vec![a, b]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_appending_continues() {
        let path = temp_file("torn");
        std::fs::write(&path, "{\"sql\":\"SET 'a'='b';\"}\n{\"sql\":\"CREA").expect("write");
        let (log, read) = StatementLog::open(&path).expect("open");
        assert_eq!(read.len(), 1);
        let c = LoggedStatement {
            sql: "UNSET 'a';".into(),
            ..LoggedStatement::default()
        };
        log.append(&c).expect("append");
        drop(log);
        let (_, read) = StatementLog::open(&path).expect("reopen");
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], c);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_damaged_middle_line_is_an_error() {
        let path = temp_file("damaged");
        std::fs::write(&path, "garbage\n{\"sql\":\"SET 'a'='b';\"}\n").expect("write");
        let err = StatementLog::open(&path).expect_err("damaged");
        assert!(err.to_string().contains("line 1"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}

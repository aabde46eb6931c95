//! The processing log: where records that could not be processed go.
//!
//! A record that fails to decode, or whose expressions fail to evaluate, is
//! not allowed to stop its query. It is counted and kept here with the
//! reason, so that it can be inspected later (as ksqlDB's
//! `KSQL_PROCESSING_LOG`), and the query moves on to the next record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// What went wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessingErrorKind {
    /// The key or value bytes did not decode in the source's format.
    Deserialization,
    /// An expression failed for the record (bad cast, division by zero...).
    Evaluation,
    /// A result could not be encoded in the sink's format.
    Serialization,
    /// The record was dropped by a rule, for example a null GROUP BY key.
    Dropped,
}

/// One failed record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessingLogEntry {
    pub query_id: String,
    pub kind: ProcessingErrorKind,
    pub message: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The offending record, as text where it is UTF-8.
    pub record: Option<String>,
}

/// A bounded, shared log of failed records with a running count.
#[derive(Debug)]
pub struct ProcessingLog {
    entries: Mutex<VecDeque<ProcessingLogEntry>>,
    capacity: usize,
    total: AtomicU64,
}

impl Default for ProcessingLog {
    fn default() -> Self {
        ProcessingLog::with_capacity(10_000)
    }
}

impl ProcessingLog {
    /// Keeps at most `capacity` entries, dropping the oldest; the count
    /// still includes every entry ever logged.
    pub fn with_capacity(capacity: usize) -> Self {
        ProcessingLog {
            entries: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            total: AtomicU64::new(0),
        }
    }

    pub fn log(&self, entry: ProcessingLogEntry) {
        tracing::debug!(query = %entry.query_id, kind = ?entry.kind, "{}", entry.message);
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// How many records were logged since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> Vec<ProcessingLogEntry> {
        self.entries.lock().iter().cloned().collect()
    }
}
